//! The admin server faces the management network: any bytes as an HTTP request, parsed and answered by the
//! console/API routes, must never panic, always carry the safety headers, and never change a forward unless
//! the request carried the session's CSRF token. Inputs may contain `@SESSION@` / `@CSRF@`, replaced by a
//! live session's cookie and token, so mutations reach the signed-in routes too.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tollgate::forward::admin::{Admin, AdminOptions, Request};
use tollgate::forward::auth::LockoutPolicy;
use tollgate::forward::store::Forwarding;
use tollgate::forward::{Catalog, empty_table};

const USER: &str = "fuzz-fixture-7f3a9c";
const PASSWORD: &str = "fixture password 0123";

struct Fixture {
    admin: Admin,
    fw: Arc<Forwarding>,
    cookie: String,
    csrf: String,
}

fn sign_in(admin: &Admin) -> (String, String) {
    let body = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
    let req = Request {
        method: "POST".into(),
        target: "/api/session".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
        // Not the fuzzed requests' source, so their failed sign-ins never lock the fixture out.
        peer: IpAddr::from([192, 0, 2, 200]),
    };
    let r = admin.serve(&req, Instant::now());
    assert_eq!(r.status, 200, "fixture sign-in: {}", r.body);
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned();
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("sign-in JSON");
    (cookie, v["csrf"].as_str().expect("csrf").to_owned())
}

fn fixture() -> &'static std::sync::Mutex<Fixture> {
    static F: OnceLock<std::sync::Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        // The fixture lives as long as the process; sweep what earlier (finished) runs left behind.
        if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("tg-fuzz-admin-")
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("tg-fuzz-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("fwd.db");
        tollgate::forward::users::add_user(&db, USER, PASSWORD).expect("fixture user");
        let catalog = Catalog {
            trunks: vec!["cloud".into(), "pstn".into()],
            numbers: vec!["+18005551234".into(), "+18005551235".into()],
        };
        let fw = Forwarding::open(&db, catalog, empty_table()).expect("fixture db");
        let admin = Admin::new(
            fw.clone(),
            db,
            AdminOptions {
                node: "fuzz".into(),
                lockout: LockoutPolicy::default(),
                secure: false,
            },
        );
        let (cookie, csrf) = sign_in(&admin);
        std::sync::Mutex::new(Fixture {
            admin,
            fw,
            cookie,
            csrf,
        })
    })
}

pub fn run(data: &[u8]) {
    let mut f = fixture().lock().unwrap_or_else(|p| p.into_inner());
    let text = String::from_utf8_lossy(data)
        .replace("@SESSION@", &f.cookie)
        .replace("@CSRF@", &f.csrf);
    let peer = IpAddr::from([192, 0, 2, 1]);
    let req = match tollgate::forward::http::read_request(text.as_bytes(), peer) {
        Ok(Ok(req)) => req,
        Ok(Err(reply)) => {
            assert!(matches!(reply.status, 400 | 411 | 413 | 431), "{reply:?}");
            return;
        }
        // A body shorter than its Content-Length: the connection would time out.
        Err(_) => return,
    };
    let before = f.fw.list().expect("list");
    let r = f.admin.serve(&req, Instant::now());
    assert!(
        matches!(
            r.status,
            200 | 201 | 303 | 400 | 401 | 403 | 404 | 405 | 409 | 415 | 429 | 500
        ),
        "{r:?}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    if r.content_type.starts_with("text/html") {
        assert!(r.header("content-security-policy").is_some());
    }
    if !text.contains(&f.csrf) {
        assert_eq!(
            f.fw.list().expect("list"),
            before,
            "changed without the CSRF token: {text:?}"
        );
    }
    // A fuzzed sign-out (or sign-in over the fixture's cookie) must not stop later inputs reaching the
    // signed-in routes.
    let check = Request {
        method: "GET".into(),
        target: "/api/session".into(),
        headers: vec![("cookie".into(), f.cookie.clone())],
        body: vec![],
        peer,
    };
    if f.admin.serve(&check, Instant::now()).status != 200 {
        let (cookie, csrf) = sign_in(&f.admin);
        f.cookie = cookie;
        f.csrf = csrf;
    }
}
