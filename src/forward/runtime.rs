//! Forwarding at run time: opens the store, publishes the index the B2BUA reads, and serves the REST API.
//!
//! The API server is a blocking std HTTP/1.1 server in the style of `mgmt::http`: admin traffic is a few
//! requests a minute, so one accept thread plus one short-lived thread per connection (read timeout, bounded
//! body, `Connection: close`) is enough, adds no dependency, and never runs on the signaling thread. The only
//! thing the signaling thread ever sees is the `ForwardTable` pointer swap done by [`Forwarding`].
//!
//! Users, sessions and CSRF are not built yet, so [`start`] refuses to serve the API on anything but a loopback
//! address: an unauthenticated write API that redirects calls must not face a network.
use super::store::{Forwarding, StoreError};
use super::{Catalog, FieldError, Forward, empty_table};
use crate::config::Config;
use anyhow::Context;
use serde::Serialize;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The OpenAPI 3 document of this API (kept in the repo next to this file).
pub const OPENAPI: &str = include_str!("openapi.json");

const MAX_BODY: usize = 64 * 1024;
const MAX_HEAD: usize = 16 * 1024;

/// What `tollgate run` keeps alive while it serves: the forwarding service and the API thread.
pub struct ForwardRuntime {
    pub forwarding: Arc<Forwarding>,
    pub api: Option<ApiServer>,
}

/// Opens `[forwarding] db` (a corrupt, foreign, locked or newer file is an error, never an empty table), loads
/// the index and starts the API on `[forwarding] api`. `Ok(None)`: forwarding is not configured.
pub fn start(cfg: &Config) -> anyhow::Result<Option<ForwardRuntime>> {
    let Some(db) = &cfg.forwarding.db else {
        return Ok(None);
    };
    let forwarding = Forwarding::open(db, Catalog::from_config(cfg), empty_table())?;
    tracing::info!(db = %db.display(), forwards = forwarding.table().load().len(), "forwarding loaded");
    let api = match cfg.forwarding.api {
        Some(addr) => {
            anyhow::ensure!(
                addr.ip().is_loopback(),
                "forwarding.api {addr}: the API has no sign-in yet, so it is served on a loopback address only"
            );
            let s = ApiServer::start(addr, forwarding.clone())
                .with_context(|| format!("forwarding API on {addr}"))?;
            tracing::info!(addr = %s.local_addr(), "forwarding API listening");
            Some(s)
        }
        None => None,
    };
    Ok(Some(ForwardRuntime { forwarding, api }))
}

impl ForwardRuntime {
    pub fn table(&self) -> super::ForwardTable {
        self.forwarding.table().clone()
    }
}

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

fn json<T: Serialize>(status: u16, v: &T) -> Response {
    Response {
        status,
        body: serde_json::to_string(v).unwrap_or_else(|_| "{}".into()),
    }
}

fn error(status: u16, msg: &str, errors: Vec<FieldError>) -> Response {
    json(status, &ErrorBody { error: msg, errors })
}

fn field(field: &'static str, reason: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError {
        field,
        reason: reason.into(),
    }]
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Invalid(errs) => error(400, "invalid forward", errs),
        StoreError::Exists(n) => error(409, &format!("a forward for {n} already exists"), vec![]),
        StoreError::NotFound(n) => error(404, &format!("no forward for {n}"), vec![]),
        e => {
            tracing::error!(error = %e, "forwarding API");
            error(500, &e.to_string(), vec![])
        }
    }
}

/// A body that is not a forward is answered 400 naming the offending field (`body` when it is not JSON).
fn parse_forward(body: &[u8]) -> Result<Forward, Response> {
    let bad = |f: &str, reason: String| {
        let f: &'static str = FIELDS.iter().find(|x| **x == f).copied().unwrap_or("body");
        // An unknown key is not a FIELDS name; say which in the reason.
        error(400, "invalid forward", field(f, reason))
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(bad("body", "must be a JSON object".into()));
    };
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad("body", format!("unknown field `{k}`")));
    }
    let e = match serde_json::from_value::<Forward>(v.clone()) {
        Ok(f) => return Ok(f),
        Err(e) => e.to_string(),
    };
    if let Some(f) = FIELDS
        .iter()
        .find(|f| e.starts_with(&format!("missing field `{f}`")))
    {
        return Err(bad(f, "is required".into()));
    }
    // A type error names no field: find the one that fails on its own in an otherwise valid forward.
    for (k, val) in obj {
        let mut t = serde_json::json!({"number": "", "target": "", "trunk": ""});
        t[k.as_str()] = val.clone();
        if let Err(e) = serde_json::from_value::<Forward>(t) {
            return Err(bad(k, e.to_string()));
        }
    }
    Err(bad("body", e))
}

const FIELDS: [&str; 7] = [
    "number",
    "target",
    "trunk",
    "ring_timeout_s",
    "caller_id",
    "fallback",
    "enabled",
];

#[derive(Serialize)]
struct NumberView<'a> {
    number: &'a str,
    forward: Option<&'a Forward>,
}

#[derive(Serialize)]
struct TrunkView<'a> {
    name: &'a str,
}

/// Routes one request (sans-IO, so tests and the server share it). `who` goes into the audit log.
pub fn handle(fw: &Forwarding, method: &str, path: &str, body: &[u8], who: &str) -> Response {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET", "/api/openapi.json") => Response {
            status: 200,
            body: OPENAPI.to_owned(),
        },
        ("GET", "/api/forwards") => match fw.list() {
            Ok(all) => json(200, &all),
            Err(e) => store_error(e),
        },
        ("POST", "/api/forwards") => {
            let f = match parse_forward(body) {
                Ok(f) => f,
                Err(r) => return r,
            };
            match fw.add(&f, who) {
                Ok(()) => json(201, &f),
                Err(e) => store_error(e),
            }
        }
        ("GET", "/api/numbers") => match fw.list() {
            Ok(all) => {
                let v: Vec<NumberView> = fw
                    .catalog()
                    .numbers
                    .iter()
                    .map(|n| NumberView {
                        number: n,
                        forward: all.iter().find(|f| &f.number == n),
                    })
                    .collect();
                json(200, &v)
            }
            Err(e) => store_error(e),
        },
        ("GET", "/api/trunks") => {
            let v: Vec<TrunkView> = fw
                .catalog()
                .trunks
                .iter()
                .map(|t| TrunkView { name: t })
                .collect();
            json(200, &v)
        }
        ("GET", "/api/audit") => match fw.audit(100) {
            Ok(a) => json(200, &a),
            Err(e) => store_error(e),
        },
        (m, p) if p.starts_with("/api/forwards/") => {
            let number = &p["/api/forwards/".len()..];
            // `+` may arrive percent-encoded.
            let number = number.replace("%2B", "+").replace("%2b", "+");
            match m {
                "GET" => match fw.get(&number) {
                    Ok(Some(f)) => json(200, &f),
                    Ok(None) => error(404, &format!("no forward for {number}"), vec![]),
                    Err(e) => store_error(e),
                },
                "PUT" => {
                    let f = match parse_forward(body) {
                        Ok(f) => f,
                        Err(r) => return r,
                    };
                    if f.number != number {
                        return error(
                            400,
                            "invalid forward",
                            field(
                                "number",
                                format!(
                                    "body number `{}` differs from the path `{number}`",
                                    f.number
                                ),
                            ),
                        );
                    }
                    match fw.change(&f, who) {
                        Ok(_) => json(200, &f),
                        Err(e) => store_error(e),
                    }
                }
                "DELETE" => match fw.remove(&number, who) {
                    Ok(before) => json(200, &before),
                    Err(e) => store_error(e),
                },
                _ => error(405, "method not allowed", vec![]),
            }
        }
        (
            _,
            "/api/forwards" | "/api/numbers" | "/api/trunks" | "/api/audit" | "/api/openapi.json",
        ) => error(405, "method not allowed", vec![]),
        _ => error(404, "not found", vec![]),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    }
}

fn serve_one(fw: &Forwarding, stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return write_response(stream, &error(400, "bad request line", vec![]));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut len = 0usize;
    let mut head = line.len();
    loop {
        let mut h = String::new();
        let n = r.by_ref().take(MAX_HEAD as u64).read_line(&mut h)?;
        head += n;
        if n == 0 || h == "\r\n" || h == "\n" || head > MAX_HEAD {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(usize::MAX);
        }
    }
    if len > MAX_BODY {
        return write_response(stream, &error(413, "body too large", vec![]));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let resp = handle(fw, &method, &target, &body, &format!("api@{}", peer.ip()));
    write_response(stream, &resp)
}

fn write_response(mut s: TcpStream, resp: &Response) -> io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len()
    )?;
    s.write_all(resp.body.as_bytes())?;
    s.flush()
}

/// The API's accept thread; dropping it stops the server.
pub struct ApiServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    pub fn start(addr: SocketAddr, fw: Arc<Forwarding>) -> io::Result<ApiServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tollgate-fwd-api".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let Ok(peer) = stream.peer_addr() else {
                        continue;
                    };
                    let fw = fw.clone();
                    let _ = std::thread::Builder::new()
                        .name("tollgate-fwd-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve_one(&fw, stream, peer) {
                                tracing::debug!(error = %e, %peer, "forwarding API connection");
                            }
                        });
                }
            })?;
        Ok(ApiServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
