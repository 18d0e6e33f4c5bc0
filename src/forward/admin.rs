//! Who may do what on the admin server, sans-IO: sign-in, sessions, CSRF, and the console's routes. The HTTP
//! layer ([`super::http`]) parses bytes into a [`Request`] and writes the [`Reply`] back; nothing here touches a
//! socket, so tests drive it directly with a clock of their choosing.
//!
//! - `GET /api/openapi.json` and the console's static assets are public; `POST /api/session` and `POST /login`
//!   sign in (argon2id users from [`super::users`], lockout from [`super::auth`]).
//! - Everything else needs the `tg_session` cookie. A state change also needs the session's CSRF token: the
//!   `X-CSRF-Token` header on the API, the `csrf` form field on the console. Cookies are SameSite=Strict as well,
//!   but the token is what a cross-site form cannot forge.
//! - The sign-in form itself is CSRF-proof by double submit (`tg_login` cookie = hidden field), and the JSON
//!   sign-in needs `Content-Type: application/json`, which a cross-site form cannot send.
use super::auth::{self, Auth, LOGIN_COOKIE, LockoutPolicy, SESSION_COOKIE, Session};
use super::console::{self, ConsoleView, TrunkLive};
use super::runtime::{self, Response, TrunkLiveView, error, json};
use super::store::{Forwarding, StoreError};
use super::{FieldError, users};
use crate::mgmt::LivePublisher;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the sign-in form stays valid.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(600);

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: IpAddr,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "cookie")
            .find_map(|(_, v)| auth::cookie(v, name))
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    fn is_json(&self) -> bool {
        self.header("content-type").is_some_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
    }

    fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    fn api(r: Response) -> Reply {
        Reply {
            status: r.status,
            content_type: "application/json",
            headers: vec![],
            body: r.body,
        }
    }

    fn html(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            headers: vec![("Content-Security-Policy", console::CSP.into())],
            body,
        }
    }

    fn redirect(to: &str) -> Reply {
        Reply {
            status: 303,
            content_type: "text/plain; charset=utf-8",
            headers: vec![("Location", to.into())],
            body: String::new(),
        }
    }

    fn with(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Settings of one admin server.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Shown in the page header (`[node] name`).
    pub node: String,
    pub lockout: LockoutPolicy,
    /// Served over TLS: cookies get `Secure`.
    pub secure: bool,
}

/// Why a sign-in did not open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refused {
    Locked(Duration),
    Wrong,
    Internal(String),
}

/// The admin server's state: the forwarding service, who is signed in, and the live view of the trunks.
pub struct Admin {
    fw: Arc<Forwarding>,
    db: PathBuf,
    opts: AdminOptions,
    auth: Mutex<Auth>,
    /// Held across check, verify and count of one sign-in, so parallel guesses cannot all slip past the
    /// lockout before the first failure is counted. Session checks do not wait for it.
    signin: Mutex<()>,
    live: OnceLock<Arc<LivePublisher>>,
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

impl Admin {
    pub fn new(fw: Arc<Forwarding>, db: PathBuf, opts: AdminOptions) -> Admin {
        Admin {
            fw,
            db,
            auth: Mutex::new(Auth::new(opts.lockout)),
            opts,
            signin: Mutex::new(()),
            live: OnceLock::new(),
        }
    }

    pub fn attach_live(&self, live: Arc<LivePublisher>) {
        let _ = self.live.set(live);
    }

    fn auth(&self) -> std::sync::MutexGuard<'_, Auth> {
        // Auth's maps are consistent after every call, so a panic elsewhere does not make them unusable.
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The request's live session. Its user must still exist with the password it signed in with; if not
    /// (removed, password changed, or the table unreadable: fail closed) the session ends here.
    fn session(&self, req: &Request, now: Instant) -> Option<(String, Session)> {
        let id = req.cookie(SESSION_COOKIE)?;
        let s = self.auth().session(id, now)?;
        let current = users::stamp(&self.db, &s.user).unwrap_or_else(|e| {
            tracing::error!(error = %e, "console session check: user table");
            None
        });
        if current.as_deref() != Some(s.stamp.as_str()) {
            tracing::info!(user = %s.user, "console session ended: user removed or password changed");
            self.auth().sign_out(id);
            return None;
        }
        Some((id.to_owned(), s))
    }

    fn sign_in(
        &self,
        user: &str,
        password: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<(String, Session), Refused> {
        let _one_at_a_time = self.signin.lock().unwrap_or_else(|p| p.into_inner());
        self.auth()
            .may_try(user, from, now)
            .map_err(|l| Refused::Locked(l.retry_after))?;
        let stamp = users::verify(&self.db, user, password).map_err(|e| {
            tracing::error!(error = %e, "console sign-in: user table");
            Refused::Internal(e.to_string())
        })?;
        let mut a = self.auth();
        if let Some(stamp) = stamp {
            tracing::info!(user, %from, "console sign-in");
            return Ok(a.signed_in(user, stamp, from, now));
        }
        tracing::warn!(user, %from, "console sign-in refused: wrong user name or password");
        match a.failed(user, from, now) {
            Some(l) => {
                tracing::warn!(user, %from, secs = l.retry_after.as_secs(), "console sign-in locked");
                Err(Refused::Locked(l.retry_after))
            }
            None => Err(Refused::Wrong),
        }
    }

    fn session_cookie(&self, id: &str) -> String {
        auth::set_cookie(SESSION_COOKIE, id, None, self.opts.secure)
    }

    fn clear_cookie(&self, name: &str) -> String {
        auth::set_cookie(name, "", Some(Duration::ZERO), self.opts.secure)
    }

    /// Answers one request at time `now`.
    pub fn serve(&self, req: &Request, now: Instant) -> Reply {
        let mut r = self.route(req, now);
        r.headers.push(("X-Content-Type-Options", "nosniff".into()));
        r.headers.push(("X-Frame-Options", "DENY".into()));
        r.headers.push(("Referrer-Policy", "no-referrer".into()));
        if !r.headers.iter().any(|(k, _)| *k == "Cache-Control") {
            r.headers.push(("Cache-Control", "no-store".into()));
        }
        r
    }

    fn route(&self, req: &Request, now: Instant) -> Reply {
        let path = req.path();
        match (req.method.as_str(), path) {
            ("GET", "/api/openapi.json") => {
                Reply::api(runtime::handle(&self.fw, "GET", path, b"", ""))
            }
            ("POST", "/api/session") => self.api_sign_in(req, now),
            (_, p) if p.starts_with("/api/") => self.api(req, now),
            ("GET", "/") => Reply::redirect("/console"),
            ("GET", "/login") => match self.session(req, now) {
                Some(_) => Reply::redirect("/console"),
                None => self.login_page(200, None),
            },
            ("POST", "/login") => self.form_sign_in(req, now),
            ("GET", "/assets/console.css") => asset("text/css; charset=utf-8", console::CSS),
            ("GET", "/assets/console.js") => asset("text/javascript; charset=utf-8", console::JS),
            (
                "GET" | "POST",
                "/console" | "/console/add" | "/console/remove" | "/console/audit" | "/logout",
            ) => self.console(req, now),
            _ => Reply::api(error(404, "not found", vec![])),
        }
    }

    fn api_sign_in(&self, req: &Request, now: Instant) -> Reply {
        if !req.is_json() {
            return Reply::api(error(
                415,
                "sign-in needs Content-Type: application/json",
                vec![],
            ));
        }
        let Ok(c) = serde_json::from_slice::<Credentials>(&req.body) else {
            return Reply::api(error(
                400,
                "invalid sign-in",
                vec![FieldError {
                    field: "body",
                    reason: "must be {\"user\": \"...\", \"password\": \"...\"}".into(),
                }],
            ));
        };
        match self.sign_in(&c.user, &c.password, req.peer, now) {
            Ok((id, s)) => Reply::api(json(
                200,
                &serde_json::json!({"user": s.user, "csrf": s.csrf}),
            ))
            .with("Set-Cookie", self.session_cookie(&id)),
            Err(Refused::Locked(d)) => Reply::api(error(
                429,
                &format!(
                    "too many failed sign-ins; try again in {} s",
                    d.as_secs().max(1)
                ),
                vec![],
            ))
            .with("Retry-After", d.as_secs().max(1).to_string()),
            Err(Refused::Wrong) => Reply::api(error(401, "wrong user name or password", vec![])),
            Err(Refused::Internal(e)) => Reply::api(error(500, &e, vec![])),
        }
    }

    fn api(&self, req: &Request, now: Instant) -> Reply {
        let Some((id, s)) = self.session(req, now) else {
            return Reply::api(error(
                401,
                "sign in first: POST /api/session, then send the tg_session cookie",
                vec![],
            ));
        };
        let method = req.method.as_str();
        if method != "GET" {
            let ok = req
                .header("x-csrf-token")
                .is_some_and(|t| auth::same(t, &s.csrf));
            if !ok {
                return Reply::api(error(
                    403,
                    "missing or wrong X-CSRF-Token (the csrf value the sign-in returned)",
                    vec![],
                ));
            }
        }
        let path = req.path();
        match (method, path) {
            ("DELETE", "/api/session") => {
                self.auth().sign_out(&id);
                Reply::api(json(200, &serde_json::json!({"signed_out": s.user})))
                    .with("Set-Cookie", self.clear_cookie(SESSION_COOKIE))
            }
            ("GET", "/api/session") => Reply::api(json(
                200,
                &serde_json::json!({"user": s.user, "csrf": s.csrf}),
            )),
            ("GET", "/api/trunks") => {
                let trunks = self.trunks();
                let v: Vec<TrunkLiveView> = trunks
                    .iter()
                    .map(|t| TrunkLiveView {
                        name: &t.name,
                        active_calls: t.active_calls,
                        max_calls: t.max_calls,
                    })
                    .collect();
                Reply::api(json(200, &v))
            }
            (_, "/api/session") => Reply::api(error(405, "method not allowed", vec![])),
            _ => Reply::api(runtime::handle(
                &self.fw,
                method,
                &req.target,
                &req.body,
                &format!("{}@{}", s.user, req.peer),
            )),
        }
    }

    /// Every configured trunk with the counts last published by the signaling thread.
    fn trunks(&self) -> Vec<TrunkLive> {
        let live = self.live.get().map(|l| l.load());
        self.fw
            .catalog()
            .trunks
            .iter()
            .map(|name| {
                let v = live
                    .as_ref()
                    .and_then(|l| l.trunks.iter().find(|t| &t.name == name));
                TrunkLive {
                    name: name.clone(),
                    active_calls: v.map(|t| t.active_calls),
                    max_calls: v.and_then(|t| t.max_calls),
                }
            })
            .collect()
    }

    fn login_page(&self, status: u16, message: Option<&str>) -> Reply {
        let t = auth::token();
        Reply::html(status, console::login(&self.opts.node, &t, message)).with(
            "Set-Cookie",
            auth::set_cookie(LOGIN_COOKIE, &t, Some(LOGIN_FORM_TTL), self.opts.secure),
        )
    }

    fn form_sign_in(&self, req: &Request, now: Instant) -> Reply {
        let form = req.form();
        let sent = field(&form, "csrf").unwrap_or_default();
        let expected = req.cookie(LOGIN_COOKIE).unwrap_or_default();
        if expected.is_empty() || !auth::same(sent, expected) {
            return self.login_page(403, Some("The sign-in form expired; please sign in again."));
        }
        let user = field(&form, "user").unwrap_or_default();
        let password = field(&form, "password").unwrap_or_default();
        match self.sign_in(user, password, req.peer, now) {
            Ok((id, _)) => Reply::redirect("/console")
                .with("Set-Cookie", self.session_cookie(&id))
                .with("Set-Cookie", self.clear_cookie(LOGIN_COOKIE)),
            Err(Refused::Locked(d)) => self
                .login_page(
                    429,
                    Some(&format!(
                        "Too many failed sign-ins: locked, try again in {} s.",
                        d.as_secs().max(1)
                    )),
                )
                .with("Retry-After", d.as_secs().max(1).to_string()),
            Err(Refused::Wrong) => self.login_page(401, Some("Wrong user name or password.")),
            Err(Refused::Internal(e)) => {
                self.login_page(500, Some(&format!("Sign-in failed: {e}")))
            }
        }
    }

    fn console(&self, req: &Request, now: Instant) -> Reply {
        let Some((id, s)) = self.session(req, now) else {
            return Reply::redirect("/login");
        };
        let path = req.path();
        if req.method == "GET" {
            return match path {
                "/console" => {
                    let notice = match req.query("done").as_deref() {
                        Some("added") => {
                            Some("Forward added; the next call to that number follows it.")
                        }
                        Some("removed") => {
                            Some("Forward removed; the number is back on its normal route.")
                        }
                        _ => None,
                    };
                    self.console_page(200, &s, &[], notice)
                }
                "/console/audit" => match self.fw.audit(200) {
                    Ok(a) => Reply::html(200, console::audit(&self.opts.node, &a)),
                    Err(e) => self.console_page(500, &s, &[db_error(e)], None),
                },
                _ => Reply::redirect("/console"),
            };
        }
        let form = req.form();
        if !field(&form, "csrf").is_some_and(|t| auth::same(t, &s.csrf)) {
            return self.console_page(
                403,
                &s,
                &[FieldError {
                    field: "csrf",
                    reason: "the form is not from this session; reload the page and try again"
                        .into(),
                }],
                None,
            );
        }
        let who = format!("{}@{}", s.user, req.peer);
        match path {
            "/logout" => {
                self.auth().sign_out(&id);
                tracing::info!(user = %s.user, "console sign-out");
                Reply::redirect("/login").with("Set-Cookie", self.clear_cookie(SESSION_COOKIE))
            }
            "/console/add" => {
                let f = match console::forward_from_form(&form) {
                    Ok(f) => f,
                    Err(errs) => return self.console_page(400, &s, &errs, None),
                };
                match self.fw.add(&f, &who) {
                    Ok(()) => Reply::redirect("/console?done=added"),
                    Err(e) => {
                        let (st, errs) = change_error(e);
                        self.console_page(st, &s, &errs, None)
                    }
                }
            }
            "/console/remove" => {
                let number = field(&form, "number").unwrap_or_default();
                match self.fw.remove(number, &who) {
                    Ok(_) => Reply::redirect("/console?done=removed"),
                    Err(e) => {
                        let (st, errs) = change_error(e);
                        self.console_page(st, &s, &errs, None)
                    }
                }
            }
            _ => Reply::api(error(405, "method not allowed", vec![])),
        }
    }

    fn console_page(
        &self,
        status: u16,
        s: &Session,
        errors: &[FieldError],
        notice: Option<&str>,
    ) -> Reply {
        let forwards = match self.fw.list() {
            Ok(f) => f,
            // Never show an empty table for a database that cannot be read: say so instead.
            Err(e) => {
                tracing::error!(error = %e, "console: forwarding database");
                return Reply::html(
                    500,
                    console::failure(&self.opts.node, &format!("forwarding database: {e}")),
                );
            }
        };
        let trunks = self.trunks();
        Reply::html(
            status,
            console::console(&ConsoleView {
                node: &self.opts.node,
                user: &s.user,
                csrf: &s.csrf,
                catalog: self.fw.catalog(),
                forwards: &forwards,
                trunks: &trunks,
                errors,
                notice,
            }),
        )
    }
}

fn asset(content_type: &'static str, body: &str) -> Reply {
    Reply {
        status: 200,
        content_type,
        headers: vec![("Cache-Control", "max-age=300".into())],
        body: body.to_owned(),
    }
}

fn db_error(e: StoreError) -> FieldError {
    FieldError {
        field: "database",
        reason: e.to_string(),
    }
}

/// A refused console change as (status, errors shown by field).
fn change_error(e: StoreError) -> (u16, Vec<FieldError>) {
    match e {
        StoreError::Invalid(errs) => (400, errs),
        StoreError::Exists(n) => (
            409,
            vec![FieldError {
                field: "number",
                reason: format!("{n} is already forwarded; remove that forward first"),
            }],
        ),
        StoreError::NotFound(n) => (
            404,
            vec![FieldError {
                field: "number",
                reason: format!("{n} has no forward (removed meanwhile?)"),
            }],
        ),
        e => {
            tracing::error!(error = %e, "console change");
            (500, vec![db_error(e)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{Catalog, empty_table};

    const PW: &str = "correct horse battery";

    fn admin(dir: &std::path::Path, secure: bool) -> Admin {
        let db = dir.join("fwd.db");
        users::add_user(&db, "alice", PW).unwrap();
        let fw = Forwarding::open(
            &db,
            Catalog {
                trunks: vec!["cloud".into(), "pstn".into()],
                numbers: vec!["+18005551234".into()],
            },
            empty_table(),
        )
        .unwrap();
        Admin::new(
            fw,
            db,
            AdminOptions {
                node: "edge".into(),
                lockout: LockoutPolicy {
                    after: 3,
                    window: Duration::from_secs(60),
                },
                secure,
            },
        )
    }

    fn req(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            peer: IpAddr::from([192, 0, 2, 7]),
        }
    }

    /// `name=value` of the first Set-Cookie naming `name`.
    fn set_cookie(r: &Reply, name: &str) -> String {
        r.headers
            .iter()
            .filter(|(k, _)| *k == "Set-Cookie")
            .find(|(_, v)| v.starts_with(&format!("{name}=")))
            .map(|(_, v)| v.split(';').next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {name} cookie in {:?}", r.headers))
    }

    #[test]
    fn api_needs_a_session_and_changes_need_the_csrf_token() {
        let d = tempfile::tempdir().unwrap();
        let a = admin(d.path(), false);
        let now = Instant::now();
        assert_eq!(
            a.serve(&req("GET", "/api/forwards", &[], ""), now).status,
            401
        );
        assert_eq!(
            a.serve(&req("GET", "/api/openapi.json", &[], ""), now)
                .status,
            200
        );
        // Not JSON: a cross-site form cannot sign anyone in.
        let creds = format!(r#"{{"user":"alice","password":"{PW}"}}"#);
        let form = [("content-type", "application/x-www-form-urlencoded")];
        assert_eq!(
            a.serve(&req("POST", "/api/session", &form, &creds), now)
                .status,
            415
        );
        let ct = ("content-type", "application/json");
        let r = a.serve(&req("POST", "/api/session", &[ct], &creds), now);
        assert_eq!(r.status, 200, "{}", r.body);
        let full = r.header("set-cookie").unwrap();
        assert!(
            full.contains("HttpOnly")
                && full.contains("SameSite=Strict")
                && !full.contains("Secure")
        );
        let cookie = set_cookie(&r, SESSION_COOKIE);
        let csrf = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["csrf"]
            .as_str()
            .unwrap()
            .to_owned();
        let c = ("cookie", cookie.as_str());
        assert_eq!(
            a.serve(&req("GET", "/api/forwards", &[c], ""), now).status,
            200
        );
        let body = r#"{"number":"+18005551234","target":"+442071838750","trunk":"pstn"}"#;
        assert_eq!(
            a.serve(&req("POST", "/api/forwards", &[c, ct], body), now)
                .status,
            403
        );
        let bad = ("x-csrf-token", "0000");
        assert_eq!(
            a.serve(&req("POST", "/api/forwards", &[c, ct, bad], body), now)
                .status,
            403
        );
        let t = ("x-csrf-token", csrf.as_str());
        let r = a.serve(&req("POST", "/api/forwards", &[c, ct, t], body), now);
        assert_eq!(r.status, 201, "{}", r.body);
        // The audit log names the signed-in user and where from.
        assert_eq!(a.fw.audit(10).unwrap()[0].who, "alice@192.0.2.7");
        // Trunks are listed with live counts (none published yet: null).
        let r = a.serve(&req("GET", "/api/trunks", &[c], ""), now);
        assert_eq!(
            r.body,
            r#"[{"name":"cloud","active_calls":null,"max_calls":null},{"name":"pstn","active_calls":null,"max_calls":null}]"#
        );
        // Signing out ends the session for the API too.
        assert_eq!(
            a.serve(&req("DELETE", "/api/session", &[c, t], ""), now)
                .status,
            200
        );
        assert_eq!(
            a.serve(&req("GET", "/api/forwards", &[c], ""), now).status,
            401
        );
    }

    #[test]
    fn removing_a_user_or_changing_its_password_ends_its_sessions() {
        let d = tempfile::tempdir().unwrap();
        let a = admin(d.path(), false);
        let now = Instant::now();
        let ct = ("content-type", "application/json");
        let creds = format!(r#"{{"user":"alice","password":"{PW}"}}"#);
        let sign_in = || {
            let r = a.serve(&req("POST", "/api/session", &[ct], &creds), now);
            assert_eq!(r.status, 200);
            set_cookie(&r, SESSION_COOKIE)
        };
        let c = sign_in();
        assert_eq!(
            a.serve(&req("GET", "/api/forwards", &[("cookie", &c)], ""), now)
                .status,
            200
        );
        users::set_password(&a.db, "alice", "a new long password").unwrap();
        assert_eq!(
            a.serve(&req("GET", "/api/forwards", &[("cookie", &c)], ""), now)
                .status,
            401
        );
        users::set_password(&a.db, "alice", PW).unwrap();
        let c = sign_in();
        users::remove_user(&a.db, "alice").unwrap();
        assert_eq!(
            a.serve(&req("GET", "/console", &[("cookie", &c)], ""), now)
                .status,
            303
        );
    }

    #[test]
    fn lockout_answers_429_even_for_the_right_password() {
        let d = tempfile::tempdir().unwrap();
        let a = admin(d.path(), false);
        let now = Instant::now();
        let ct = ("content-type", "application/json");
        let wrong = r#"{"user":"alice","password":"wrong password!"}"#;
        for _ in 0..2 {
            assert_eq!(
                a.serve(&req("POST", "/api/session", &[ct], wrong), now)
                    .status,
                401
            );
        }
        let r = a.serve(&req("POST", "/api/session", &[ct], wrong), now);
        assert_eq!((r.status, r.header("retry-after")), (429, Some("60")));
        let right = format!(r#"{{"user":"alice","password":"{PW}"}}"#);
        assert_eq!(
            a.serve(&req("POST", "/api/session", &[ct], &right), now)
                .status,
            429
        );
        let later = now + Duration::from_secs(61);
        assert_eq!(
            a.serve(&req("POST", "/api/session", &[ct], &right), later)
                .status,
            200
        );
    }

    #[test]
    fn the_console_signs_in_by_form_and_changes_need_the_form_token() {
        let d = tempfile::tempdir().unwrap();
        let a = admin(d.path(), true);
        let now = Instant::now();
        assert_eq!(
            a.serve(&req("GET", "/console", &[], ""), now)
                .header("location"),
            Some("/login")
        );
        let page = a.serve(&req("GET", "/login", &[], ""), now);
        assert_eq!(page.status, 200);
        assert!(
            page.header("content-security-policy")
                .unwrap()
                .contains("default-src 'self'")
        );
        let login = set_cookie(&page, LOGIN_COOKIE);
        let token = login.split_once('=').unwrap().1.to_owned();
        assert!(page.body.contains(&format!("value=\"{token}\"")));
        // Without the cookie (a cross-site post), the form is refused before the password is looked at.
        let f = format!("csrf={token}&user=alice&password=correct+horse+battery");
        assert_eq!(a.serve(&req("POST", "/login", &[], &f), now).status, 403);
        let lc = ("cookie", login.as_str());
        let r = a.serve(&req("POST", "/login", &[lc], &f), now);
        assert_eq!((r.status, r.header("location")), (303, Some("/console")));
        assert!(
            r.header("set-cookie").unwrap().contains("; Secure"),
            "TLS: Secure cookies"
        );
        let session = set_cookie(&r, SESSION_COOKIE);
        let sc = ("cookie", session.as_str());
        let page = a.serve(&req("GET", "/console", &[sc], ""), now);
        assert_eq!(page.status, 200);
        let csrf = {
            let i = page.body.find("name=\"csrf\" value=\"").unwrap() + 19;
            page.body[i..i + 64].to_owned()
        };
        let add = "number=%2B18005551234&target=%2B442071838750&trunk=pstn&ring_timeout_s=30&caller_id=keep&enabled=1";
        // A form without this session's token changes nothing.
        let r = a.serve(
            &req("POST", "/console/add", &[sc], &format!("csrf=x&{add}")),
            now,
        );
        assert_eq!(r.status, 403);
        assert!(a.fw.list().unwrap().is_empty());
        let r = a.serve(
            &req("POST", "/console/add", &[sc], &format!("csrf={csrf}&{add}")),
            now,
        );
        assert_eq!(
            r.header("location"),
            Some("/console?done=added"),
            "{}",
            r.body
        );
        assert_eq!(
            a.fw.get("+18005551234").unwrap().unwrap().target,
            "+442071838750"
        );
        let r = a.serve(
            &req("POST", "/console/add", &[sc], &format!("csrf={csrf}&{add}")),
            now,
        );
        assert_eq!(r.status, 409, "the number is already forwarded");
        assert!(r.body.contains("already forwarded"), "{}", r.body);
        let r = a.serve(
            &req(
                "POST",
                "/console/remove",
                &[sc],
                &format!("csrf={csrf}&number=%2B18005551234"),
            ),
            now,
        );
        assert_eq!(r.header("location"), Some("/console?done=removed"));
        // A bad target is shown by field, with 400, and stores nothing.
        let bad = add.replace("%2B442071838750", "12ab");
        let r = a.serve(
            &req("POST", "/console/add", &[sc], &format!("csrf={csrf}&{bad}")),
            now,
        );
        assert_eq!(r.status, 400);
        assert!(a.fw.list().unwrap().is_empty());
        assert!(r.body.contains("data-field=\"target\""), "{}", r.body);
        let audit = a.serve(&req("GET", "/console/audit", &[sc], ""), now);
        assert!(audit.body.contains("alice@192.0.2.7") && audit.body.contains("remove"));
        let r = a.serve(&req("POST", "/logout", &[sc], &format!("csrf={csrf}")), now);
        assert_eq!(r.header("location"), Some("/login"));
        assert_eq!(a.serve(&req("GET", "/console", &[sc], ""), now).status, 303);
    }
}
