//! The forwarding REST API (in process, on 127.0.0.1 ports 44000–45999) and the real binary's start with a
//! good, corrupt or locked database. Every child is bounded in time and killed on drop.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
#[path = "support/proc.rs"]
mod proc;
use proc::{Proc as Tollgate, self_signed};
use tollgate::forward::admin::{Admin, AdminOptions};
use tollgate::forward::auth::LockoutPolicy;
use tollgate::forward::http::ApiServer;
use tollgate::forward::store::Forwarding;
use tollgate::forward::users::add_user;
use tollgate::forward::{Catalog, empty_table};

/// Ports 44000–44999 (forward_e2e has 45000–45999): a block of 20 per process.
fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    44000 + (std::process::id() % 50) as u16 * 20 + NEXT.fetch_add(1, Ordering::Relaxed)
}

fn catalog() -> Catalog {
    Catalog {
        trunks: vec!["carrier".into(), "cloud".into()],
        numbers: vec!["+18005551234".into(), "+18005551235".into()],
    }
}

/// A per-test directory, removed when the test passes (kept for a look when it fails).
struct Dir(PathBuf);

impl std::ops::Deref for Dir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn tmp(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("tg-fwd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

const USER: &str = "admin";
const PASSWORD: &str = "correct horse battery";

fn admin(fw: Arc<Forwarding>, db: PathBuf, lockout_after: u32) -> Arc<Admin> {
    Arc::new(Admin::new(
        fw,
        db,
        AdminOptions {
            node: "test".into(),
            lockout: LockoutPolicy {
                after: lockout_after,
                window: Duration::from_secs(60),
            },
            secure: false,
        },
    ))
}

/// A server with user `admin` on a fresh database.
fn server(name: &str) -> (ApiServer, Arc<Forwarding>, Dir) {
    let d = tmp(name);
    let db = d.join("fwd.db");
    add_user(&db, USER, PASSWORD).unwrap();
    let fw = Forwarding::open(&db, catalog(), empty_table()).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", port()).parse().unwrap();
    let srv = ApiServer::start(addr, admin(fw.clone(), db, 5), None).unwrap();
    (srv, fw, d)
}

/// One raw exchange; returns (status, head, body).
fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_owned(), body.to_owned())
}

/// A signed-in API client: the session cookie and the CSRF token the sign-in returned.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    cookie: String,
    csrf: String,
}

fn sign_in(addr: SocketAddr) -> Client {
    let creds = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
    let (st, head, body) = raw(
        addr,
        "POST",
        "/api/session",
        "Content-Type: application/json\r\n",
        &creds,
    );
    assert_eq!(st, 200, "{head}\n{body}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    Client {
        addr,
        cookie,
        csrf: v["csrf"].as_str().unwrap().to_owned(),
    }
}

/// One request as a signed-in client; returns (status, body as JSON or Null).
fn req(c: &Client, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let h = format!(
        "Content-Type: application/json\r\nCookie: {}\r\nX-CSRF-Token: {}\r\n",
        c.cookie, c.csrf
    );
    let (st, _, body) = raw(c.addr, method, path, &h, body);
    (
        st,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

const GOOD: &str = r#"{"number":"+18005551234","target":"+442071838750","trunk":"cloud"}"#;

#[test]
fn every_endpoint() {
    let (srv, fw, _d) = server("endpoints");
    let a = &sign_in(srv.local_addr());
    let (st, doc) = req(a, "GET", "/api/openapi.json", "");
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/forwards/{number}"]["put"].is_object());
    assert!(doc["paths"]["/api/session"]["post"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["session"]["name"],
        "tg_session"
    );

    assert_eq!(
        req(a, "GET", "/api/forwards", ""),
        (200, serde_json::json!([]))
    );
    let (st, b) = req(a, "POST", "/api/forwards", GOOD);
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["caller_id"]["policy"], "keep");
    assert_eq!(b["enabled"], true);
    // The index the B2BUA reads has it at once.
    assert_eq!(
        fw.table().load().get("+18005551234").unwrap().target,
        "+442071838750"
    );
    assert_eq!(req(a, "POST", "/api/forwards", GOOD).0, 409);

    let (st, b) = req(a, "GET", "/api/forwards/%2B18005551234", "");
    assert_eq!((st, b["trunk"].as_str()), (200, Some("cloud")));
    let (st, b) = req(a, "GET", "/api/forwards", "");
    assert_eq!((st, b.as_array().unwrap().len()), (200, 1));

    let changed = r#"{"number":"+18005551234","target":"+442071838751","trunk":"carrier","ring_timeout_s":20,"caller_id":{"policy":"fixed","number":"+18005551235"},"fallback":true}"#;
    let (st, b) = req(a, "PUT", "/api/forwards/+18005551234", changed);
    assert_eq!(st, 200, "{b}");
    let idx = fw.table().load();
    let f = idx.get("+18005551234").unwrap();
    assert_eq!(
        (
            f.target.as_str(),
            f.trunk.as_str(),
            f.ring_timeout_s,
            f.fallback
        ),
        ("+442071838751", "carrier", Some(20), true)
    );

    let (st, b) = req(a, "GET", "/api/numbers", "");
    assert_eq!(st, 200);
    assert_eq!(b[0]["number"], "+18005551234");
    assert_eq!(b[0]["forward"]["target"], "+442071838751");
    assert_eq!(b[1]["forward"], serde_json::Value::Null);
    let (st, b) = req(a, "GET", "/api/trunks", "");
    assert_eq!(
        (st, b),
        (
            200,
            serde_json::json!([
                {"name":"carrier","active_calls":null,"max_calls":null},
                {"name":"cloud","active_calls":null,"max_calls":null}
            ])
        )
    );

    let (st, b) = req(a, "DELETE", "/api/forwards/+18005551234", "");
    assert_eq!((st, b["target"].as_str()), (200, Some("+442071838751")));
    assert!(fw.table().load().get("+18005551234").is_none());
    assert_eq!(req(a, "DELETE", "/api/forwards/+18005551234", "").0, 404);
    assert_eq!(req(a, "GET", "/api/forwards/+18005551234", "").0, 404);
    assert_eq!(req(a, "PUT", "/api/forwards/+18005551234", GOOD).0, 404);

    // Audit: add, change, remove, newest first, with who and before/after.
    let (st, b) = req(a, "GET", "/api/audit", "");
    assert_eq!(st, 200);
    let rows = b.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{b}");
    assert!(
        rows.iter()
            .all(|r| r.to_string().contains("admin@127.0.0.1")),
        "{b}"
    );

    assert_eq!(req(a, "GET", "/nope", "").0, 404);
    assert_eq!(req(a, "PATCH", "/api/forwards/+18005551234", "").0, 405);
    assert_eq!(req(a, "DELETE", "/api/forwards", "").0, 405);
}

/// (body, field the 400 must name)
const INVALID: &[(&str, &str)] = &[
    (
        r#"{"number":"18005551234","target":"+442071838750","trunk":"cloud"}"#,
        "number",
    ),
    (
        r#"{"number":"+19995550000","target":"+442071838750","trunk":"cloud"}"#,
        "number",
    ),
    (
        r#"{"number":"+18005551234","target":"0207","trunk":"cloud"}"#,
        "target",
    ),
    (
        r#"{"number":"+18005551234","target":"+18005551234","trunk":"cloud"}"#,
        "target",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"nope"}"#,
        "trunk",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"cloud","ring_timeout_s":0}"#,
        "ring_timeout_s",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"cloud","ring_timeout_s":601}"#,
        "ring_timeout_s",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"cloud","caller_id":{"policy":"fixed","number":"x"}}"#,
        "caller_id",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"cloud","caller_id":{"policy":"fixed","number":"+15550001111"}}"#,
        "caller_id",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750"}"#,
        "trunk",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"cloud","colour":"red"}"#,
        "colour",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"cloud","ring_timeout_s":"x"}"#,
        "ring_timeout_s",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"cloud","enabled":"yes"}"#,
        "enabled",
    ),
    (
        r#"{"number":"+18005551234","target":"+442071838750","trunk":"cloud","caller_id":{"policy":"maybe"}}"#,
        "caller_id",
    ),
    (r#"["+18005551234"]"#, "body"),
    (r#"not json"#, "body"),
];

#[test]
fn every_validation_error_is_400_with_field_and_reason() {
    let (srv, fw, _d) = server("invalid");
    let a = &sign_in(srv.local_addr());
    for (body, want) in INVALID {
        for (m, p) in [
            ("POST", "/api/forwards"),
            ("PUT", "/api/forwards/+18005551234"),
        ] {
            let (st, b) = req(a, m, p, body);
            assert_eq!(st, 400, "{m} {body}: {b}");
            let e = &b["errors"][0];
            if *want == "colour" {
                // Unknown fields are refused; serde names the field in the reason.
                assert_eq!(e["field"], "body", "{body}: {b}");
                assert!(e["reason"].as_str().unwrap().contains("colour"), "{b}");
            } else {
                assert_eq!(e["field"], *want, "{m} {body}: {b}");
            }
            assert!(!e["reason"].as_str().unwrap().is_empty(), "{b}");
        }
    }
    // Body number must match the path.
    let (st, b) = req(a, "PUT", "/api/forwards/+18005551235", GOOD);
    assert_eq!(
        (st, b["errors"][0]["field"].as_str()),
        (400, Some("number"))
    );
    // Several errors at once are all listed.
    let (st, b) = req(
        a,
        "POST",
        "/api/forwards",
        r#"{"number":"x","target":"y","trunk":"z"}"#,
    );
    assert_eq!(st, 400);
    let fields: Vec<_> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["number", "target", "trunk"]);
    assert!(fw.list().unwrap().is_empty(), "nothing invalid was stored");
    assert!(fw.audit(10).unwrap().is_empty());
}

#[test]
fn two_concurrent_clients_lose_nothing() {
    let (srv, fw, _d) = server("concurrent");
    let addr = srv.local_addr();
    let threads: Vec<_> = (0..2)
        .map(|c| {
            std::thread::spawn(move || {
                // Two clients: two operators, each with their own session.
                let a = &sign_in(addr);
                let number = format!("+1800555123{}", 4 + c);
                for i in 0..25 {
                    let body = format!(
                        r#"{{"number":"{number}","target":"+4420718387{i:02}","trunk":"cloud"}}"#
                    );
                    let (st, b) = if i == 0 {
                        req(a, "POST", "/api/forwards", &body)
                    } else {
                        req(a, "PUT", &format!("/api/forwards/{number}"), &body)
                    };
                    assert!(st == 200 || st == 201, "{st} {b}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let idx = fw.table().load();
    assert_eq!(idx.get("+18005551234").unwrap().target, "+442071838724");
    assert_eq!(idx.get("+18005551235").unwrap().target, "+442071838724");
    assert_eq!(
        fw.audit(1000).unwrap().len(),
        50,
        "every change has its audit row"
    );
}

fn config(dir: &Path, db: &Path, sip: u16, api: u16) -> PathBuf {
    let cfg = format!(
        r#"
[node]
name = "fwd"
[[listen]]
transport = "udp"
address = "127.0.0.1:{sip}"
[media]
mode = "bypass"
[[trunk]]
name = "carrier"
acl = ["127.0.0.1/32"]
targets = ["sip:127.0.0.1:{carrier}"]
health = {{ ping_interval_s = 0 }}
[[trunk]]
name = "cloud"
targets = ["sip:127.0.0.2:{carrier}"]
health = {{ ping_interval_s = 0 }}
[[route]]
from = "carrier"
to = "cloud"
[forwarding]
db = "{db}"
api = "127.0.0.1:{api}"
numbers = ["+18005551234"]
"#,
        carrier = sip + 1,
        db = db.display()
    );
    let p = dir.join("tollgate.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

fn spawn(cfg: &Path) -> Tollgate {
    Tollgate(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["run", "--config"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tollgate"),
    )
}

/// Waits (bounded) for the process to exit; returns (success, stderr).
fn exit_of(mut t: Tollgate, limit: Duration) -> (bool, String) {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = t.0.try_wait().unwrap() {
            let mut e = String::new();
            t.0.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            return (st.success(), e);
        }
        assert!(
            Instant::now() < end,
            "tollgate did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_api(addr: SocketAddr, t: &mut Tollgate) {
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(st) = t.0.try_wait().unwrap() {
            let mut e = String::new();
            t.0.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            panic!("tollgate exited early ({st}):\n{e}");
        }
        assert!(Instant::now() < end, "forwarding API did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn forward_survives_restart() {
    let d = tmp("restart");
    let db = d.join("fwd.db");
    let (sip, api) = (port(), port());
    let cfg = config(&d, &db, sip, api);
    add_user(&db, USER, PASSWORD).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{api}").parse().unwrap();
    {
        let mut t = spawn(&cfg);
        wait_api(addr, &mut t);
        let (st, b) = req(&sign_in(addr), "POST", "/api/forwards", GOOD);
        assert_eq!(st, 201, "{b}");
    }
    // A fresh SIP port: the killed process's io_uring teardown may hold the old one for a moment.
    let cfg = config(&d, &db, port(), api);
    let mut t = spawn(&cfg);
    wait_api(addr, &mut t);
    // Sessions do not survive a restart (they live in memory); the user and the forward do.
    let (st, b) = req(&sign_in(addr), "GET", "/api/forwards/+18005551234", "");
    assert_eq!(
        (st, b["target"].as_str()),
        (200, Some("+442071838750")),
        "{b}"
    );
}

#[test]
fn corrupt_database_is_a_clear_error_at_start() {
    let d = tmp("corrupt");
    let db = d.join("fwd.db");
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    let cfg = config(&d, &db, port(), port());
    let (ok, err) = exit_of(spawn(&cfg), Duration::from_secs(20));
    assert!(!ok, "tollgate must not start on a corrupt database");
    assert!(err.contains("corrupt or not a tollgate database"), "{err}");
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        vec![0x5a; 8192],
        "the file is left as it was"
    );
}

#[test]
fn locked_database_is_a_clear_error_at_start() {
    let d = tmp("locked");
    let db = d.join("fwd.db");
    // A tollgate database, then another process's exclusive lock on it.
    drop(Forwarding::open(&db, catalog(), empty_table()).unwrap());
    let other = rusqlite::Connection::open(&db).unwrap();
    other
        .execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();
    let cfg = config(&d, &db, port(), port());
    let (ok, err) = exit_of(spawn(&cfg), Duration::from_secs(30));
    assert!(!ok, "tollgate must not start on a locked database");
    assert!(err.contains("is locked by another process"), "{err}");
    drop(other);
}

fn ctl(cfg: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["ctl", "--config"])
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

#[test]
fn ctl_backup_and_restore() {
    let d = tmp("backup");
    let db = d.join("fwd.db");
    let cfg = config(&d, &db, port(), port());
    let fw = Forwarding::open(&db, catalog(), empty_table()).unwrap();
    let f: tollgate::forward::Forward = serde_json::from_str(GOOD).unwrap();
    fw.add(&f, "test").unwrap();
    let bak = d.join("bak.db");
    let (ok, out) = ctl(&cfg, &["backup", bak.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("backed up 1 forwards"), "{out}");
    let (ok, out) = ctl(&cfg, &["backup", bak.to_str().unwrap()]);
    assert!(!ok && out.contains("already exists"), "{out}");
    fw.remove("+18005551234", "test").unwrap();
    drop(fw);
    let (ok, out) = ctl(&cfg, &["restore", bak.to_str().unwrap()]);
    assert!(ok, "{out}");
    let fw = Forwarding::open(&db, catalog(), empty_table()).unwrap();
    assert_eq!(fw.list().unwrap(), vec![f]);
    drop(fw);
    let junk = d.join("junk.db");
    std::fs::write(&junk, b"not a database at all, not at all").unwrap();
    let (ok, out) = ctl(&cfg, &["restore", junk.to_str().unwrap()]);
    assert!(
        !ok && out.contains("corrupt or not a tollgate database"),
        "{out}"
    );
}

#[test]
fn ctl_user_add_reads_the_password_from_stdin() {
    let d = tmp("user");
    let db = d.join("fwd.db");
    let cfg = config(&d, &db, port(), port());
    // `tollgate ctl user VERB NAME` with the password on stdin; returns (success, stdout + stderr).
    let user = |verb: &str, name: &str, pw: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["ctl", "--config"])
            .arg(&cfg)
            .args(["user", verb, name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(pw.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), s)
    };
    let add = |name: &str, pw: &str| user("add", name, pw);
    let passwd = |name: &str, pw: &str| user("passwd", name, pw).0;
    let (ok, out) = add("alice", "correct horse battery\n");
    assert!(ok && out.contains("added user alice"), "{out}");
    assert!(
        !out.contains("correct horse"),
        "the password is never printed: {out}"
    );
    assert!(tollgate::forward::users::verify_user(&db, "alice", "correct horse battery").unwrap());
    let (ok, out) = add("alice", "another long password\n");
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = add("bob", "short\n");
    assert!(!ok && out.contains("too short"), "{out}");
    let (ok, out) = add("bob", "bobs long password\n");
    assert!(ok, "{out}");
    let (ok, out) = ctl(&cfg, &["user", "list"]);
    assert!(ok && out.contains("alice") && out.contains("bob"), "{out}");
    assert!(!out.contains("argon2"), "hashes are not listed: {out}");
    assert!(passwd("alice", "a different long password\n"));
    assert!(
        tollgate::forward::users::verify_user(&db, "alice", "a different long password").unwrap()
    );
    assert!(!passwd("nobody", "a different long password\n"));
    let (ok, out) = ctl(&cfg, &["user", "del", "bob"]);
    assert!(ok && out.contains("removed user bob"), "{out}");
    let (ok, out) = ctl(&cfg, &["user", "del", "bob"]);
    assert!(!ok && out.contains("no user `bob`"), "{out}");
    // The users table does not stop the daemon from opening the database.
    let (ok, out) = ctl(&cfg, &["backup", d.join("b.db").to_str().unwrap()]);
    assert!(ok, "{out}");
}

#[test]
fn sign_in_sessions_csrf_and_lockout_over_the_wire() {
    let d = tmp("auth");
    let db = d.join("fwd.db");
    add_user(&db, USER, PASSWORD).unwrap();
    let fw = Forwarding::open(&db, catalog(), empty_table()).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", port()).parse().unwrap();
    let _srv = ApiServer::start(addr, admin(fw.clone(), db, 3), None).unwrap();
    let json = "Content-Type: application/json\r\n";

    // Nothing but the OpenAPI document without a session.
    assert_eq!(raw(addr, "GET", "/api/openapi.json", "", "").0, 200);
    for (m, p) in [
        ("GET", "/api/forwards"),
        ("GET", "/api/numbers"),
        ("GET", "/api/trunks"),
        ("GET", "/api/audit"),
        ("POST", "/api/forwards"),
        ("DELETE", "/api/forwards/+18005551234"),
    ] {
        assert_eq!(raw(addr, m, p, json, GOOD).0, 401, "{m} {p}");
    }
    let c = sign_in(addr);
    // A valid cookie without the CSRF token changes nothing.
    let h = format!("{json}Cookie: {}\r\n", c.cookie);
    assert_eq!(raw(addr, "POST", "/api/forwards", &h, GOOD).0, 403);
    let h2 = format!("{h}X-CSRF-Token: {}\r\n", "f".repeat(64));
    assert_eq!(raw(addr, "POST", "/api/forwards", &h2, GOOD).0, 403);
    assert!(fw.list().unwrap().is_empty());
    assert_eq!(req(&c, "POST", "/api/forwards", GOOD).0, 201);
    let (st, me) = req(&c, "GET", "/api/session", "");
    assert_eq!((st, me["user"].as_str()), (200, Some(USER)));
    assert_eq!(me["csrf"].as_str(), Some(c.csrf.as_str()));
    // A forged cookie is no session.
    let forged = Client {
        cookie: format!("tg_session={}", "0".repeat(64)),
        ..c.clone()
    };
    assert_eq!(req(&forged, "GET", "/api/forwards", "").0, 401);
    // The cookie: HttpOnly, SameSite=Strict, no Secure over plain HTTP.
    let creds = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
    let (_, head, _) = raw(addr, "POST", "/api/session", json, &creds);
    let set = head
        .lines()
        .find(|l| l.starts_with("Set-Cookie: tg_session="))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure"),
        "{set}"
    );
    assert!(
        head.contains("X-Frame-Options: DENY") && head.contains("X-Content-Type-Options: nosniff")
    );

    // Lockout: the third wrong password locks the user, then even the right one gets 429 with Retry-After.
    let wrong = format!(r#"{{"user":"{USER}","password":"not the password"}}"#);
    assert_eq!(raw(addr, "POST", "/api/session", json, &wrong).0, 401);
    assert_eq!(raw(addr, "POST", "/api/session", json, &wrong).0, 401);
    let (st, head, body) = raw(addr, "POST", "/api/session", json, &wrong);
    assert_eq!(st, 429, "{body}");
    assert!(head.contains("Retry-After: 60"), "{head}");
    let (st, _, body) = raw(addr, "POST", "/api/session", json, &creds);
    assert_eq!(st, 429, "locked even with the right password: {body}");
    // An existing session is not ended by the lockout of new sign-ins.
    assert_eq!(req(&c, "GET", "/api/forwards", "").0, 200);
    // Unknown users are answered like wrong passwords (no user enumeration).
    let ghost = r#"{"user":"ghost","password":"whatever it is"}"#;
    let (st, _, body) = raw(addr, "POST", "/api/session", json, ghost);
    assert_eq!(st, 401);
    assert!(body.contains("wrong user name or password"), "{body}");
    // Sign-out ends the session.
    assert_eq!(req(&c, "DELETE", "/api/session", "").0, 200);
    assert_eq!(req(&c, "GET", "/api/forwards", "").0, 401);
}

#[test]
fn over_tls_the_session_cookie_is_secure() {
    let d = tmp("tls");
    let Some((cert, key)) = self_signed(&d, "localhost") else {
        eprintln!("skipped: openssl not installed (apt-get install openssl)");
        return;
    };
    let db = d.join("fwd.db");
    add_user(&db, USER, PASSWORD).unwrap();
    let fw = Forwarding::open(&db, catalog(), empty_table()).unwrap();
    let tls = tollgate::signaling::tls::build_server_config(
        &tollgate::signaling::tls::TlsServerFiles::single(&cert, &key),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", port()).parse().unwrap();
    let a = Arc::new(Admin::new(
        fw,
        db,
        AdminOptions {
            node: "tls".into(),
            lockout: LockoutPolicy::default(),
            secure: true,
        },
    ));
    let _srv = ApiServer::start(addr, a, Some(Arc::new(tls))).unwrap();
    let creds = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
    let request = format!(
        "POST /api/session HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{creds}",
        creds.len()
    );
    let mut c = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-quiet", "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let out = String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let set = out
        .lines()
        .find(|l| l.starts_with("Set-Cookie: tg_session="))
        .unwrap();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );
    // Plain HTTP to the TLS port gets no answer.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /api/openapi.json HTTP/1.1\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    assert!(!buf.starts_with("HTTP/1.1 200"), "{buf}");
}
