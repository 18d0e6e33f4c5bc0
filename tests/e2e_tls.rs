//! SIP over TLS against a running tollgate: a TLS listener configured from PEM files answers OPTIONS on the
//! TLS connection (`openssl s_client` as the peer, verifying the server certificate).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn options_over_tls_answered_200() {
    if !have("openssl") {
        eprintln!("skipped: openssl not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tollgate-e2e-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=sbc.test",
            "-addext",
            "subjectAltName=DNS:sbc.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl req failed");
    let conf = dir.join("t.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[node]
name = "tls-test"

[[listen]]
transport = "tls"
address = "127.0.0.1:15461"
tls_cert = "{}"
tls_key = "{}"

[media]
mode = "bypass"

[[trunk]]
name = "carrier"
acl = ["127.0.0.0/8"]

[[trunk]]
name = "cloud"
targets = ["sip:127.0.0.1:15462"]
health = {{ ping_interval_s = 0 }}

[[route]]
from = "carrier"
to = "cloud"

[mgmt]
http = "127.0.0.1:15463"
control_socket = "{}"
"#,
            cert.display(),
            key.display(),
            dir.join("ctl.sock").display()
        ),
    )
    .unwrap();
    let _tollgate = Kill(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["run", "--config"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(800));
    let options = "OPTIONS sip:sbc.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:40000;branch=z9hG4bK-tls1\r\n\
        From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:sbc.test>\r\nCall-ID: tls-probe-1\r\n\
        CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let mut client = Kill(
        Command::new("timeout")
            .args(["5", "openssl", "s_client", "-quiet", "-verify_return_error"])
            .args(["-connect", "127.0.0.1:15461", "-servername", "sbc.test"])
            .arg("-CAfile")
            .arg(&cert)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = client.0.stdin.take().unwrap();
    stdin.write_all(options.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // Keep stdin open while the answer comes back; s_client exits at the timeout.
    let out = client.0.wait_with_output_keep(stdin);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.starts_with("SIP/2.0 200 OK\r\n") && out.contains("Call-ID: tls-probe-1"),
        "unexpected answer over TLS: {out:?}"
    );
}

trait WaitKeep {
    fn wait_with_output_keep(&mut self, stdin: std::process::ChildStdin) -> String;
}

impl WaitKeep for Child {
    fn wait_with_output_keep(&mut self, stdin: std::process::ChildStdin) -> String {
        use std::io::Read;
        let mut stdout = self.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let _ = self.wait();
        drop(stdin);
        String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned()
    }
}
