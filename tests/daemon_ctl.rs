//! The daemon answers `tollgate ctl` over its control socket, tells systemd READY/RELOADING/STOPPING and pings
//! its watchdog, and writes a CDR line per finished call. The real binary on loopback, ports 42260-42280.
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SBC: &str = "127.0.0.1:42260";
const UAC: &str = "127.0.0.1:42261";
const CLOUD: &str = "127.0.0.3:42280";

fn cfg(dir: &Path, max_calls: u32) -> String {
    format!(
        "[node]\nname = \"d\"\n[[listen]]\ntransport = \"udp\"\naddress = \"{SBC}\"\n\
         [[trunk]]\nname = \"carrier\"\nacl = [\"127.0.0.0/8\"]\n\
         [[trunk]]\nname = \"cloud\"\ntargets = [\"sip:{CLOUD}\"]\nmax_calls = {max_calls}\n\
         health = {{ ping_interval_s = 0 }}\n\
         [[route]]\nfrom = \"carrier\"\nto = \"cloud\"\n\
         [mgmt]\nhttp = \"off\"\ncontrol_socket = \"{}\"\ncdr_file = \"{}\"\ndrain_timeout_s = 5\n",
        dir.join("ctl.sock").display(),
        dir.join("cdr.jsonl").display(),
    )
}

fn ctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("ctl")
        .arg("--socket")
        .arg(dir.join("ctl.sock"))
        .args(args)
        .output()
        .unwrap()
}

fn ctl_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let o = ctl(dir, &a);
    assert!(o.status.success(), "ctl {args:?}: {o:?}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {o:?}"))
}

/// The value of `header` (by full name) in a SIP message.
fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

/// The cloud: answers every INVITE 486 Busy Here (and ignores the ACK), so a call ends with a CDR.
fn busy_cloud() -> std::thread::JoinHandle<()> {
    let s = UdpSocket::bind(CLOUD).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                continue;
            };
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("BYE") || m.starts_with("FINISH") {
                return;
            }
            if !m.starts_with("INVITE") {
                continue;
            }
            let vias: String = m
                .lines()
                .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
                .map(|l| format!("{l}\r\n"))
                .collect();
            let r = format!(
                "SIP/2.0 486 Busy Here\r\n{vias}From: {}\r\nTo: {};tag=cloud1\r\nCall-ID: {}\r\nCSeq: {}\r\n\
                 Content-Length: 0\r\n\r\n",
                header(&m, "From"),
                header(&m, "To"),
                header(&m, "Call-ID"),
                header(&m, "CSeq"),
            );
            s.send_to(r.as_bytes(), from).unwrap();
        }
    })
}

/// What systemd would receive on `$NOTIFY_SOCKET`, collected until `want` shows up or `wait` passes.
fn notified(sock: &UnixDatagram, seen: &mut String, want: &str, wait: Duration) -> bool {
    let end = Instant::now() + wait;
    let mut buf = [0u8; 1024];
    while !seen.contains(want) && Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    seen.contains(want)
}

#[test]
fn ctl_cdr_and_systemd_notifications_from_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.toml");
    std::fs::write(&path, cfg(dir.path(), 10)).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = dir.path().join("log");
    let cloud = busy_cloud();
    let mut p = Kill(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["run", "--config"])
            .arg(&path)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut seen = String::new();
    assert!(
        notified(&notify, &mut seen, "READY=1", Duration::from_secs(20)),
        "no READY=1: {seen:?}\n{}",
        read_log()
    );
    // The watchdog pings while the signaling thread keeps beating (the loop wakes every second).
    assert!(
        notified(&notify, &mut seen, "WATCHDOG=1", Duration::from_secs(3)),
        "no WATCHDOG=1: {seen:?}"
    );

    // One call: the cloud is busy, the carrier gets 486, the CDR file gets a line.
    let uac = UdpSocket::bind(UAC).unwrap();
    uac.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "INVITE sip:+15551234567@{SBC} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bKdc1\r\n\
         From: <sip:+15550001111@127.0.0.1>;tag=uac1\r\nTo: <sip:+15551234567@{SBC}>\r\n\
         Call-ID: daemon-ctl-1\r\nCSeq: 1 INVITE\r\nContact: <sip:u@{UAC}>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    uac.send_to(invite.as_bytes(), SBC).unwrap();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    let mut final_status = String::new();
    while final_status.is_empty() && Instant::now() < end {
        if let Ok((n, _)) = uac.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            let code = m.get(8..11).unwrap_or("");
            if !code.starts_with('1') {
                final_status = code.to_owned();
                let ack = format!(
                    "ACK sip:+15551234567@{SBC} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bKdc1\r\n\
                     From: <sip:+15550001111@127.0.0.1>;tag=uac1\r\nTo: {}\r\nCall-ID: daemon-ctl-1\r\n\
                     CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                    header(&m, "To")
                );
                uac.send_to(ack.as_bytes(), SBC).unwrap();
            }
        }
    }
    assert_eq!(final_status, "486", "{}", read_log());
    let cdr_path = dir.path().join("cdr.jsonl");
    let end = Instant::now() + Duration::from_secs(5);
    let mut cdr = String::new();
    while cdr.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        cdr = std::fs::read_to_string(&cdr_path).unwrap_or_default();
    }
    let rec: serde_json::Value = serde_json::from_str(cdr.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| {
            panic!("CDR line: {e}: {cdr:?}\n{}", read_log());
        });
    assert_eq!(rec["result_code"], 486, "{rec}");

    // ctl sees what the signaling thread sees.
    let stats = ctl_json(dir.path(), &["stats"]);
    assert!(
        stats["data"]["b2bua.received"].as_f64().unwrap_or(0.0) >= 2.0,
        "{stats}"
    );
    let trunks = ctl_json(dir.path(), &["trunks"]);
    let cloud_t = trunks["data"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "cloud"))
        .unwrap_or_else(|| panic!("{trunks}"))
        .clone();
    assert_eq!(cloud_t["calls_total"], 1, "{cloud_t}");
    assert_eq!(cloud_t["max_calls"], 10, "{cloud_t}");
    assert_eq!(cloud_t["asr"], 0.0, "{cloud_t}");
    let calls = ctl_json(dir.path(), &["calls"]);
    assert_eq!(calls["data"].as_array().map(Vec::len), Some(0), "{calls}");
    let bans = ctl_json(dir.path(), &["ban", "list"]);
    assert_eq!(bans["data"].as_array().map(Vec::len), Some(0), "{bans}");
    let o = ctl(dir.path(), &["ban", "del", "192.0.2.7"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not banned")
            || String::from_utf8_lossy(&o.stderr).contains("not banned"),
        "{o:?}"
    );

    // Reload over ctl: the changes are listed, and systemd hears RELOADING then READY again.
    std::fs::write(&path, cfg(dir.path(), 20)).unwrap();
    seen.clear();
    let o = ctl(dir.path(), &["reload"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && out.contains("trunk cloud changed"),
        "{o:?}"
    );
    assert!(
        notified(&notify, &mut seen, "RELOADING=1", Duration::from_secs(3)),
        "{seen:?}"
    );
    assert!(
        notified(&notify, &mut seen, "READY=1", Duration::from_secs(3)),
        "{seen:?}"
    );
    let trunks = ctl_json(dir.path(), &["trunks"]);
    assert!(trunks.to_string().contains("\"max_calls\":20"), "{trunks}");

    // A broken file is refused with its line, and the running config stays.
    std::fs::write(&path, "[node]\nname = \"\"\n").unwrap();
    let o = ctl(dir.path(), &["reload"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && out.contains("d.toml:2:8"), "{o:?}");
    let trunks = ctl_json(dir.path(), &["trunks"]);
    assert!(trunks.to_string().contains("\"max_calls\":20"), "{trunks}");

    // Drain over ctl: STOPPING=1, and with no calls the daemon exits 0.
    let d = ctl_json(dir.path(), &["drain"]);
    assert_eq!(d["data"]["active_calls"], 0, "{d}");
    assert!(
        notified(&notify, &mut seen, "STOPPING=1", Duration::from_secs(3)),
        "{seen:?}"
    );
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "did not exit\n{}", read_log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}\n{}", read_log());
    let _ = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"FINISH", CLOUD));
    let _ = cloud.join();
}
