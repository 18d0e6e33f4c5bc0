//! A small blocking HTTP/1.1 server on std for the management address. Scrapes and load-balancer probes are a
//! few requests per second, so one thread serving one connection at a time (`Connection: close`, read timeout)
//! is enough and keeps the dependency list short.
use super::acceptor::Acceptor;
use super::snapshot::SnapshotPublisher;
use crate::ops::notify::Heartbeats;
use crate::stats::{PromWriter, Registry, prom::CONTENT_TYPE};
use serde::Serialize;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Process state a load balancer cares about, set by main and the drain logic.
#[derive(Default)]
pub struct Health {
    phase: AtomicU8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Starting,
    Serving,
    Draining,
    Stopping,
}

impl Health {
    pub fn set(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Serving,
            2 => Phase::Draining,
            3 => Phase::Stopping,
            _ => Phase::Starting,
        }
    }
}

/// What the mgmt thread serves from.
#[derive(Clone)]
pub struct MgmtState {
    pub registry: Registry,
    pub calls: Arc<SnapshotPublisher>,
    pub health: Arc<Health>,
    /// Thread heartbeats (the watchdog's board); a stale thread makes `/health` answer 503.
    pub heartbeats: Option<Arc<Heartbeats>>,
    pub heartbeat_max_age: Duration,
}

#[derive(Serialize)]
struct HealthBody<'a> {
    status: &'static str,
    phase: Phase,
    calls: usize,
    stale_threads: Vec<&'a str>,
}

/// A response: status code, content type, body.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl MgmtState {
    /// Routes one request (method and path, query ignored). Pure apart from reading the shared state, so it is
    /// tested without a socket.
    pub fn respond(&self, method: &str, target: &str, scratch: &mut PromWriter) -> Response {
        let path = target.split('?').next().unwrap_or(target);
        if method != "GET" && method != "HEAD" {
            return Response {
                status: 405,
                content_type: "text/plain",
                body: "method not allowed\n".into(),
            };
        }
        match path {
            "/metrics" => {
                self.registry.render_into(scratch);
                Response {
                    status: 200,
                    content_type: CONTENT_TYPE,
                    body: scratch.as_str().to_owned(),
                }
            }
            "/health" => {
                let snap = self.calls.load();
                let stale = self
                    .heartbeats
                    .as_ref()
                    .map(|h| h.stale(self.heartbeat_max_age))
                    .unwrap_or_default();
                let phase = self.health.phase();
                let ok = phase == Phase::Serving && stale.is_empty();
                let body = HealthBody {
                    status: if ok { "ok" } else { "unavailable" },
                    phase,
                    calls: snap.calls.len(),
                    stale_threads: stale,
                };
                Response {
                    status: if ok { 200 } else { 503 },
                    content_type: "application/json",
                    body: serde_json::to_string(&body).unwrap_or_default(),
                }
            }
            "/calls" => {
                let snap = self.calls.load();
                Response {
                    status: 200,
                    content_type: "application/json",
                    body: serde_json::to_string(&*snap).unwrap_or_default(),
                }
            }
            _ => Response {
                status: 404,
                content_type: "text/plain",
                body: "not found\n".into(),
            },
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Splits `METHOD TARGET HTTP/1.x`; `None` for anything else (untrusted input from the management network).
pub fn parse_request_line(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if v.starts_with("HTTP/1.") && t.starts_with('/') => {
            Some((m, t))
        }
        _ => None,
    }
}

fn serve_one(state: &MgmtState, stream: TcpStream, scratch: &mut PromWriter) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(stream.try_clone()?).take(16 * 1024);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let (method, target) = match parse_request_line(&line) {
        Some((m, t)) => (m.to_owned(), t.to_owned()),
        None => {
            let resp = Response {
                status: 400,
                content_type: "text/plain",
                body: "bad request\n".into(),
            };
            return write_response(stream, &resp, false);
        }
    };
    // Drain the headers; nothing in them changes the answer.
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let resp = state.respond(&method, &target, scratch);
    write_response(stream, &resp, method == "HEAD")
}

fn write_response(mut s: TcpStream, resp: &Response, head: bool) -> io::Result<()> {
    let hdr = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    s.write_all(hdr.as_bytes())?;
    if !head {
        s.write_all(resp.body.as_bytes())?;
    }
    s.flush()
}

/// The running HTTP thread. Dropping it stops the thread.
pub struct MgmtServer(Acceptor);

impl MgmtServer {
    pub fn spawn(addr: SocketAddr, state: MgmtState) -> io::Result<Self> {
        let mut scratch = PromWriter::new();
        let a = Acceptor::spawn(TcpListener::bind(addr)?, "mgmt-http", move |s, _| {
            if let Err(e) = serve_one(&state, s, &mut scratch) {
                tracing::debug!(error = %e, "mgmt http connection");
            }
        })?;
        Ok(Self(a))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::snapshot::{CallsSnapshot, tests::sample_call};
    use crate::stats::MetricSource;

    use std::sync::atomic::AtomicU64;

    struct Counter(AtomicU64);
    impl MetricSource for Counter {
        fn write_metrics(&self, w: &mut PromWriter) {
            w.counter(
                "tollgate_sip_requests_total",
                "SIP requests received.",
                &[("method", "INVITE")],
                self.0.load(Ordering::Relaxed),
            );
        }
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    #[test]
    fn serves_metrics_health_calls_over_tcp() {
        let counter = Arc::new(Counter(AtomicU64::new(0)));
        let registry = Registry::new();
        registry.register(counter.clone());
        let (board, hb) = Heartbeats::new(["sig"]);
        let state = MgmtState {
            registry,
            calls: SnapshotPublisher::new(),
            health: Arc::new(Health::default()),
            heartbeats: Some(board),
            heartbeat_max_age: Duration::from_secs(60),
        };
        let srv = MgmtServer::spawn("127.0.0.1:0".parse().unwrap(), state.clone()).unwrap();
        let addr = srv.local_addr();

        let (st, body) = get(addr, "/health");
        assert_eq!(st, 503, "starting is not healthy");
        assert!(body.contains("\"phase\":\"starting\""), "{body}");
        state.health.set(Phase::Serving);
        hb[0].beat();
        let (st, body) = get(addr, "/health");
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");

        for _ in 0..42 {
            counter.0.fetch_add(1, Ordering::Relaxed);
        }
        let (st, body) = get(addr, "/metrics");
        assert_eq!(st, 200);
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == "tollgate_sip_requests_total")
            .unwrap();
        assert!(matches!(s.value, prometheus_parse::Value::Counter(v) if v == 42.0));

        state.calls.publish(CallsSnapshot {
            taken_ms: 5,
            calls: vec![sample_call("c1"), sample_call("c2")],
        });
        let (st, body) = get(addr, "/calls?x=1");
        assert_eq!(st, 200);
        let back: CallsSnapshot = serde_json::from_str(&body).unwrap();
        assert_eq!(back.calls.len(), 2);
        assert_eq!(back.calls[1].legs[0].streams[0].lost, 2);

        state.health.set(Phase::Draining);
        let (st, body) = get(addr, "/health");
        assert_eq!(st, 503);
        assert!(body.contains("\"calls\":2"), "{body}");
        assert_eq!(get(addr, "/nope").0, 404);
    }

    #[test]
    fn stale_thread_makes_health_503_and_bad_requests_get_4xx() {
        let (board, hb) = Heartbeats::new(["sig", "media0"]);
        hb[0].beat_at_ms(u64::MAX / 2);
        let state = MgmtState {
            registry: Registry::new(),
            calls: SnapshotPublisher::new(),
            health: Arc::new(Health::default()),
            heartbeats: Some(board),
            heartbeat_max_age: Duration::from_millis(0),
        };
        state.health.set(Phase::Serving);
        std::thread::sleep(Duration::from_millis(5));
        let mut w = PromWriter::new();
        let r = state.respond("GET", "/health", &mut w);
        assert_eq!(r.status, 503);
        assert!(
            r.body.contains("\"stale_threads\":[\"media0\"]"),
            "{}",
            r.body
        );
        assert_eq!(state.respond("POST", "/metrics", &mut w).status, 405);
        let srv = MgmtServer::spawn("127.0.0.1:0".parse().unwrap(), state).unwrap();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.write_all(b"garbage\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }
}
