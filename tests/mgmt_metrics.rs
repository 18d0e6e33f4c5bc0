//! `tollgate run` serves `/metrics`, `/health` and `/calls` on `[mgmt] http`: the counters a scrape shows
//! match what this test sent (parsed with a Prometheus text parser). Loopback, ports 42060/42090.
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(path: &str) -> (u16, String) {
    let mut s = TcpStream::connect("127.0.0.1:42090").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (code, body)
}

fn options(sock: &UdpSocket, i: u32) {
    let m = format!(
        "OPTIONS sip:127.0.0.1:42060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:42061;branch=z9hG4bKm{i}\r\n\
         From: <sip:probe@127.0.0.1>;tag=m{i}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: metrics-{i}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(m.as_bytes(), "127.0.0.1:42060").unwrap();
}

#[test]
fn metrics_health_and_calls_reflect_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nname = \"m\"\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:42060\"\n\
             [[trunk]]\nname = \"carrier\"\nacl = [\"127.0.0.0/8\"]\n\
             [[trunk]]\nname = \"cloud\"\ntargets = [\"sip:127.0.0.1:42080\"]\nhealth = {{ ping_interval_s = 0 }}\n\
             [[route]]\nfrom = \"carrier\"\nto = \"cloud\"\n\
             [mgmt]\nhttp = \"127.0.0.1:42090\"\ncontrol_socket = \"{}\"\n",
            dir.path().join("ctl.sock").display()
        ),
    )
    .unwrap();
    let _p = Kill(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sock = UdpSocket::bind("127.0.0.1:42061").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Up when the first OPTIONS is answered.
    let end = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 2048];
    let mut answered = 0;
    let mut i = 0;
    while answered == 0 && Instant::now() < end {
        options(&sock, i);
        i += 1;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            assert!(buf[..n].starts_with(b"SIP/2.0 200"));
            answered += 1;
        }
    }
    assert_eq!(answered, 1, "tollgate did not come up");
    for k in 0..4 {
        options(&sock, 1000 + k);
        let (n, _) = sock.recv_from(&mut buf).expect("answer");
        assert!(buf[..n].starts_with(b"SIP/2.0 200"));
    }
    // Every OPTIONS sent got an answer; retries of the start-up loop count too.
    let answered_total = 4 + 1;
    let sent_total = f64::from(i) + 4.0;
    std::thread::sleep(Duration::from_millis(1500));
    let (code, text) = get("/metrics");
    assert_eq!(code, 200);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    let opts = value("tollgate_options_answered_total");
    assert!(
        opts >= f64::from(answered_total) && opts <= sent_total,
        "{opts} answered of {sent_total} sent"
    );
    assert!(value("tollgate_sip_received_total") >= opts);
    assert_eq!(value("tollgate_active_calls"), 0.0);
    assert!(value("process_resident_memory_bytes") > 0.0);
    assert!(
        text.contains("tollgate_target_up{trunk=\"cloud\",target=\"udp:127.0.0.1:42080\"} 1"),
        "{text}"
    );
    let (code, body) = get("/health");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("serving"), "{body}");
    let (code, body) = get("/calls");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["calls"].as_array().map(Vec::len), Some(0), "{body}");
}
