//! The admin console in a real browser, in the lab topology: headless Chromium (Debian `chromium`, driven over
//! WebDriver by `chromedriver`) runs in the carrier namespace and opens the console that tollgate serves over
//! TLS on its carrier-side address. It signs in, adds a forward through the form, and a SIPp call from the
//! carrier to the corporate number then reaches the forward target (a SIPp UAS behind the `pstn` trunk, back on
//! the carrier side) while the console shows the call live; removing the forward through the form sends the
//! next call down the normal route to the cloud UAS. Needs root (namespaces); skips with a message without
//! root, `sipp`, `chromium`, `chromedriver` or `openssl`. Namespaces `tglab-<pid>-wb*` are deleted on drop.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tollgate::lab::topo::Topo;

#[path = "../tests/support/proc.rs"]
mod proc;
use proc::{Proc, self_signed};

/// Kills every process whose command line contains the pattern, on drop.
struct Reap(String);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-f", &self.0]).status();
    }
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn in_ns(ns: &str, args: &[&str], dir: &Path, log: &str) -> Proc {
    let out = std::fs::File::create(dir.join(log)).unwrap();
    Proc(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}")),
    )
}

fn sipp(ns: &str, dir: &Path, scen: &str, ip: &str, port: u16, extra: &[&str]) -> Proc {
    let scen = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scen);
    let port = port.to_string();
    let mut args = vec!["sipp", "-sf", scen.to_str().unwrap(), "-i", ip, "-p", &port];
    args.extend_from_slice(&[
        "-nostdin",
        "-trace_err",
        "-timeout",
        "30s",
        "-timeout_error",
    ]);
    args.extend_from_slice(&["-recv_timeout", "10000"]);
    args.extend_from_slice(extra);
    in_ns(ns, &args, dir, &format!("sipp-{ip}-{port}.log"))
}

/// One WebDriver command over HTTP to chromedriver (in the carrier namespace); returns its `value`.
fn wd(ns: &str, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (method, target) = (method.to_owned(), path.to_owned());
    let out = Topo::in_ns(ns, move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&"127.0.0.1:9515".parse().unwrap(), Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:9515\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        read_http(&mut s)
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
    let json = out.split_once("\r\n\r\n").map_or("", |x| x.1);
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("webdriver {path}: {e}: {out}"));
    if v["value"]["error"].is_string() {
        panic!("webdriver {path}: {}", v["value"]);
    }
    v["value"].clone()
}

/// One HTTP/1.1 response by its Content-Length (chromedriver keeps the connection open after answering).
fn read_http(s: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

struct Browser {
    ns: String,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn open(ns: &str, profile: &Path) -> Browser {
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The console's certificate is made by this test, so no CA the browser knows signed it.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = wd(ns, "POST", "/session", Some(caps));
        Browser {
            ns: ns.to_owned(),
            session: v["sessionId"].as_str().expect("session id").to_owned(),
        }
    }

    fn cmd(&self, method: &str, what: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        wd(
            &self.ns,
            method,
            &format!("/session/{}{what}", self.session),
            body,
        )
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(serde_json::json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(serde_json::json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().expect("element id").to_owned()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/click"),
            Some(serde_json::json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/clear"),
            Some(serde_json::json!({})),
        );
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(serde_json::json!({ "text": text })),
        );
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Polls (a form post's navigation is not awaited by the click) until `css` exists and its text contains
    /// `want`; returns the text.
    fn wait_text(&self, css: &str, want: &str) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let js = format!(
                "const e = document.querySelector({}); return e ? e.textContent : null;",
                serde_json::Value::from(css)
            );
            let got = self.script(&js);
            if let Some(t) = got.as_str()
                && t.contains(want)
            {
                return t.to_owned();
            }
            assert!(
                Instant::now() < end,
                "`{css}` never contained `{want}` (last: {got}) on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn script(&self, js: &str) -> serde_json::Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({"script": js, "args": []})),
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Topo::in_ns(&self.ns, || {
            TcpStream::connect_timeout(&"127.0.0.1:9515".parse().unwrap(), Duration::from_secs(2))
                .map(|mut s| {
                    let _ = write!(
                        s,
                        "DELETE /session/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        self.session
                    );
                    let _ = read_http(&mut s);
                })
        });
    }
}

fn config(t: &Topo, dir: &Path) -> PathBuf {
    let cfg = format!(
        r#"
[node]
name = "lab-console"
[[listen]]
transport = "udp"
address = "{sbc_c}:5060"
[[listen]]
transport = "udp"
address = "{sbc_d}:5060"
[media]
mode = "bypass"
[[trunk]]
name = "carrier"
acl = ["{carrier}/32"]
[[trunk]]
name = "cloud"
targets = ["sip:{cloud}:5080"]
health = {{ ping_interval_s = 0 }}
headers = {{ allow = ["X-Context"] }}
# The carrier again, as the outbound trunk a forward to a PSTN number takes.
[[trunk]]
name = "pstn"
targets = ["sip:{carrier}:5090"]
health = {{ ping_interval_s = 0 }}
[[rule]]
trunk = "carrier"
match = '^\+?1?5551234567$'
replace = "+18005551234"
[[route]]
from = "carrier"
to = "cloud"
[mgmt]
control_socket = "{dir}/ctl.sock"
[forwarding]
db = "{dir}/fwd.db"
api = "{sbc_c}:8443"
numbers = ["+18005551234"]
tls_cert = "{dir}/cert.pem"
tls_key = "{dir}/key.pem"
"#,
        sbc_c = t.sbc_carrier_ip,
        sbc_d = t.sbc_cloud_ip,
        carrier = t.carrier_ip,
        cloud = t.cloud_ip,
        dir = dir.display(),
    );
    let p = dir.join("tollgate.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

#[test]
fn console_in_chromium_forwards_a_sipp_call_and_removal_restores_the_route() {
    if !is_root() {
        eprintln!(
            "skipped: needs root for network namespaces (run: sudo cargo test --test forward_browser)"
        );
        return;
    }
    for (tool, arg, pkg) in [
        ("sipp", "-v", "sip-tester"),
        ("chromium", "--version", "chromium"),
        ("chromedriver", "--version", "chromium-driver"),
        ("openssl", "version", "openssl"),
    ] {
        if !have(tool, arg) {
            eprintln!("skipped: `{tool}` not found (apt-get install {pkg})");
            return;
        }
    }
    let dir = std::env::temp_dir().join(format!("tg-fwd-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    self_signed(&dir, "sbc.lab.invalid").expect("openssl req");
    let t = Topo::new("wb", 88).expect("topology");
    let cfg = config(&t, &dir);
    tollgate::forward::users::add_user(&dir.join("fwd.db"), "operator", "correct horse battery")
        .unwrap();

    let tollgate_bin = env!("CARGO_BIN_EXE_tollgate");
    let mut daemon = in_ns(
        &t.sbc,
        &[tollgate_bin, "run", "--config", cfg.to_str().unwrap()],
        &dir,
        "tollgate.log",
    );
    let log = || std::fs::read_to_string(dir.join("tollgate.log")).unwrap_or_default();
    let console: SocketAddr = format!("{}:8443", t.sbc_carrier_ip).parse().unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while Topo::in_ns(&t.carrier, || {
        TcpStream::connect_timeout(&console, Duration::from_millis(200))
    })
    .unwrap()
    .is_err()
    {
        assert!(
            daemon.0.try_wait().unwrap().is_none(),
            "tollgate exited:\n{}",
            log()
        );
        assert!(Instant::now() < end, "console did not come up:\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }

    let _driver = in_ns(
        &t.carrier,
        &["chromedriver", "--port=9515"],
        &dir,
        "chromedriver.log",
    );
    let end = Instant::now() + Duration::from_secs(20);
    while Topo::in_ns(&t.carrier, || {
        TcpStream::connect_timeout(
            &"127.0.0.1:9515".parse().unwrap(),
            Duration::from_millis(200),
        )
    })
    .unwrap()
    .is_err()
    {
        assert!(Instant::now() < end, "chromedriver did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = dir.join("chromium-profile");
    // Chromium outlives a killed chromedriver; its processes are found by this run's profile directory.
    let _reap = Reap(profile.display().to_string());
    let b = Browser::open(&t.carrier, &profile);
    let base = format!("https://{console}");

    // Not signed in: the console sends the browser to the sign-in page. A wrong password is refused.
    b.go(&format!("{base}/console"));
    assert!(b.url().ends_with("/login"), "{}", b.url());
    b.type_into("#user", "operator");
    b.type_into("#password", "not the password");
    b.click("#signin");
    b.wait_text("#message", "Wrong user name or password");
    b.type_into("#user", "operator");
    b.type_into("#password", "correct horse battery");
    b.click("#signin");
    b.wait_text("header", "operator");
    assert!(b.url().ends_with("/console"), "signed in: {}", b.url());
    // The session cookie is HttpOnly: page script cannot read it.
    assert_eq!(b.script("return document.cookie;"), serde_json::json!(""));
    let row = "tr[data-number=\"+18005551234\"] td.fwd";
    assert_eq!(b.text(row), "normal route");

    // Add the forward through the form.
    b.type_into("#target", "+442071838750");
    b.click("#trunk option[value=\"pstn\"]");
    b.type_into("#ring_timeout_s", "20");
    b.click("#add_forward");
    b.wait_text("#notice", "Forward added");
    assert_eq!(b.text(row), "→ +442071838750");

    let (c, d) = (t.carrier_ip.to_string(), t.cloud_ip.to_string());
    let sbc = format!("{}:5060", t.sbc_carrier_ip);
    let call =
        |uas_ns: &str, uas_ip: &str, uas_port: u16, scen: &str, hold_ms: &str, what: &str| {
            let uas = sipp(uas_ns, &dir, scen, uas_ip, uas_port, &["-m", "1"]);
            std::thread::sleep(Duration::from_millis(300));
            let uac = sipp(
                &t.carrier,
                &dir,
                "uac_call.xml",
                &c,
                5070,
                &["-s", "15551234567", "-m", "1", "-d", hold_ms, &sbc],
            );
            (uas, uac, what.to_owned())
        };
    let finish = |(mut uas, mut uac, what): (Proc, Proc, String)| {
        assert!(
            uac.ok_within(Duration::from_secs(25)),
            "{what}: caller failed\n{}",
            log()
        );
        assert!(
            uas.ok_within(Duration::from_secs(10)),
            "{what}: the expected UAS did not get the call\n{}",
            log()
        );
    };

    // The forwarded call reaches the target through the pstn trunk; while it is up the console shows it live.
    let running = call(
        &t.carrier,
        &c,
        5090,
        "uas_forward_target.xml",
        "5000",
        "forwarded call",
    );
    let end = Instant::now() + Duration::from_secs(5);
    let live = loop {
        let cells = b.script(
            "return Array.from(document.querySelectorAll('#trunks tr[data-trunk]')).map(r => \
             [r.dataset.trunk, r.querySelector('td.calls').textContent]);",
        );
        let busy: Vec<String> = cells
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r[1].as_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(0)
                    > 0
            })
            .map(|r| r[0].as_str().unwrap().to_owned())
            .collect();
        if !busy.is_empty() || Instant::now() > end {
            break busy;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(!live.is_empty(), "the console never showed the call live");
    finish(running);

    // Remove it through the form: the next call takes the normal route to the cloud.
    b.go(&format!("{base}/console"));
    b.click("tr[data-number=\"+18005551234\"] button.remove");
    b.wait_text("#notice", "Forward removed");
    assert_eq!(b.text(row), "normal route");
    finish(call(
        &t.cloud,
        &d,
        5080,
        "uas_answer.xml",
        "200",
        "normal route",
    ));

    // The audit page names the operator for both changes.
    b.go(&format!("{base}/console/audit"));
    let audit = b.wait_text("#audit", "remove");
    assert!(
        audit.contains("operator@") && audit.contains("add") && audit.contains("remove"),
        "{audit}"
    );
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}
