//! SIGHUP reloads the config file for new requests and keeps the running one when the file is bad;
//! SIGTERM drains and exits 0. The real binary on loopback, port 42160.
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cfg(acl: &str, dir: &Path) -> String {
    format!(
        "[node]\nname = \"l\"\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:42160\"\n\
         [[trunk]]\nname = \"carrier\"\nacl = [\"{acl}\"]\n\
         [[trunk]]\nname = \"cloud\"\ntargets = [\"sip:127.0.0.3:42180\"]\nhealth = {{ ping_interval_s = 0 }}\n\
         [[route]]\nfrom = \"carrier\"\nto = \"cloud\"\n\
         [mgmt]\nhttp = \"off\"\ncontrol_socket = \"{}\"\ndrain_timeout_s = 5\n",
        dir.join("ctl.sock").display()
    )
}

/// The status code tollgate answers an OPTIONS from 127.0.0.1 with (0: no answer).
fn options_status(sock: &UdpSocket, i: u32) -> u16 {
    let m = format!(
        "OPTIONS sip:127.0.0.1:42160 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:42161;branch=z9hG4bKl{i}\r\n\
         From: <sip:probe@127.0.0.1>;tag=l{i}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: life-{i}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(m.as_bytes(), "127.0.0.1:42160").unwrap();
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => std::str::from_utf8(&buf[8..11.min(n)])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

fn signal(p: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn sighup_reloads_or_keeps_running_config_and_sigterm_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    // Only 127.0.0.2 may send: our OPTIONS from 127.0.0.1 are refused 403.
    std::fs::write(&path, cfg("127.0.0.2/32", dir.path())).unwrap();
    let log = dir.path().join("log");
    let mut p = Kill(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let sock = UdpSocket::bind("127.0.0.1:42161").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut i = 0;
    let end = Instant::now() + Duration::from_secs(15);
    let mut st = 0;
    while st == 0 && Instant::now() < end {
        i += 1;
        st = options_status(&sock, i);
    }
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(st, 403, "not in the ACL yet\n{}", read_log());

    // A wider ACL, then SIGHUP: the next OPTIONS is answered 200.
    std::fs::write(&path, cfg("127.0.0.0/8", dir.path())).unwrap();
    signal(&p.0, "-HUP");
    let end = Instant::now() + Duration::from_secs(5);
    while st != 200 && Instant::now() < end {
        i += 1;
        st = options_status(&sock, i);
    }
    assert_eq!(st, 200, "reloaded\n{}", read_log());

    // A broken file: refused with its line, the running config stays.
    std::fs::write(&path, "[node]\nname = \"\"\n").unwrap();
    signal(&p.0, "-HUP");
    std::thread::sleep(Duration::from_millis(500));
    i += 1;
    assert_eq!(options_status(&sock, i), 200, "still the good config");
    let l = read_log();
    assert!(
        l.contains("t.toml:2:8") && l.contains("reload refused"),
        "{l}"
    );

    // SIGTERM: drain (no calls) and a clean exit.
    signal(&p.0, "-TERM");
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "did not exit\n{}", read_log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}\n{}", read_log());
    assert!(read_log().contains("draining"));
}
