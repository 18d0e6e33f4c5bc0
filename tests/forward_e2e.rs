//! End to end through the real binary: a forward added over the REST API sends the next SIPp call to the
//! forward target (a SIPp UAS on 127.0.0.3); removing it sends the next call down the normal route (a SIPp UAS
//! on 127.0.0.2). Loopback only, ports 44000–45999; every child bounded in time and killed on drop. Skips
//! (passes with a message) when `sipp` is not installed.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "support/proc.rs"]
mod proc;
use proc::Proc;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

fn sipp(dir: &Path, scen: &str, ip: &str, port: u16, target: Option<&str>, args: &[&str]) -> Proc {
    let mut c = Command::new("sipp");
    c.current_dir(dir)
        .arg("-sf")
        .arg(scenario(scen))
        .args(["-i", ip, "-p", &port.to_string(), "-nostdin", "-trace_err"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-recv_timeout",
            "10000",
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(t) = target {
        c.arg(t);
    }
    Proc(c.spawn().expect("start sipp"))
}

/// One request with extra header lines `auth`; returns (status, whole answer).
fn req(addr: SocketAddr, auth: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out[9..12].parse().unwrap(), out)
}

/// Signs in as `user`; returns the header lines (session cookie and CSRF token) later requests carry.
fn sign_in(addr: SocketAddr, user: &str, password: &str) -> String {
    let creds = format!(r#"{{"user":"{user}","password":"{password}"}}"#);
    let (st, out) = req(addr, "", "POST", "/api/session", &creds);
    assert_eq!(st, 200, "{out}");
    let cookie = out
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let body = out.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    format!(
        "Cookie: {cookie}\r\nX-CSRF-Token: {}\r\n",
        v["csrf"].as_str().unwrap()
    )
}

fn wait_sip(port: u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    for i in 0..100 {
        let msg = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{i}\r\nFrom: <sip:probe@{local}>;tag=r\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: fwdready{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(msg.as_bytes(), ("127.0.0.1", port));
        let mut buf = [0u8; 2048];
        if let Ok(n) = sock.recv(&mut buf)
            && buf[..n].starts_with(b"SIP/2.0 200")
        {
            return;
        }
    }
    panic!("tollgate did not answer OPTIONS");
}

#[test]
fn api_forward_reaches_target_and_removal_restores_normal_route() {
    if Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: `sipp` not found (Debian package sip-tester)");
        return;
    }
    let base = 45000 + (std::process::id() % 90) as u16 * 10;
    let (cloud, carrier_uas, uac, target, api) = (base + 1, base + 2, base + 3, base + 4, base + 5);
    let dir = std::env::temp_dir().join(format!("tg-fwd-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("fwd.db");
    let cfg = format!(
        r#"
[node]
name = "fwd-e2e"
[[listen]]
transport = "udp"
address = "127.0.0.1:{base}"
[media]
mode = "bypass"
[[trunk]]
name = "carrier"
acl = ["127.0.0.1/32"]
targets = ["sip:127.0.0.1:{carrier_uas}"]
health = {{ ping_interval_s = 0 }}
[[trunk]]
name = "cloud"
targets = ["sip:127.0.0.2:{cloud}"]
health = {{ ping_interval_s = 0 }}
headers = {{ allow = ["X-Context"] }}
[[trunk]]
name = "pstn"
targets = ["sip:127.0.0.3:{target}"]
health = {{ ping_interval_s = 0 }}
[[rule]]
trunk = "carrier"
match = '^\+?1?5551234567$'
replace = "+18005551234"
[[route]]
from = "carrier"
to = "cloud"
[forwarding]
db = "{db}"
api = "127.0.0.1:{api}"
numbers = ["+18005551234"]
"#,
        db = db.display()
    );
    let cfg_path = dir.join("tollgate.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    tollgate::forward::users::add_user(&db, "operator", "correct horse battery").unwrap();
    let log = std::fs::File::create(dir.join("tollgate.log")).unwrap();
    let _tollgate = Proc(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tollgate"),
    );
    wait_sip(base);
    let log = || std::fs::read_to_string(dir.join("tollgate.log")).unwrap_or_default();
    let api: SocketAddr = format!("127.0.0.1:{api}").parse().unwrap();
    let to = format!("127.0.0.1:{base}");
    let call = |scen: &str, uas_ip: &str, uas_port: u16, what: &str| {
        let mut uas = sipp(&dir, scen, uas_ip, uas_port, None, &["-m", "1"]);
        std::thread::sleep(Duration::from_millis(200));
        let mut c = sipp(
            &dir,
            "uac_call.xml",
            "127.0.0.1",
            uac,
            Some(&to),
            &["-s", "15551234567", "-m", "1", "-d", "200"],
        );
        assert!(
            c.ok_within(Duration::from_secs(20)),
            "{what}: caller failed\n{}",
            log()
        );
        assert!(
            uas.ok_within(Duration::from_secs(10)),
            "{what}: {uas_ip} did not get the call\n{}",
            log()
        );
    };

    let auth = sign_in(api, "operator", "correct horse battery");
    let (st, b) = req(
        api,
        &auth,
        "POST",
        "/api/forwards",
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"pstn"}"#,
    );
    assert_eq!(st, 201, "{b}");
    // The target UAS checks the request-URI and To carry the forward target and the caller ID is kept.
    call("uas_forward_target.xml", "127.0.0.3", target, "forwarded");

    let (st, b) = req(api, &auth, "DELETE", "/api/forwards/+18005551234", "");
    assert_eq!(st, 200, "{b}");
    // The cloud UAS checks the request-URI and To carry the translated number (+18005551234).
    call("uas_answer.xml", "127.0.0.2", cloud, "normal route");
    let _ = std::fs::remove_dir_all(&dir);
}
