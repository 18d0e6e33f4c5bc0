//! The admin server's HTTP/1.1 transport: bytes to [`Request`], [`Reply`] to bytes, optionally under TLS.
//!
//! Admin traffic is a few requests a minute, so one accept thread plus one short-lived thread per connection
//! (read timeout, bounded head and body, `Connection: close`) is enough, and it never runs on the signaling
//! thread. Connections are capped so a flood of idle sockets cannot exhaust threads.
use super::admin::{Admin, Reply, Request};
use crate::mgmt::acceptor::Acceptor;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MAX_BODY: usize = 64 * 1024;
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

fn plain(status: u16, msg: &str) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        headers: vec![],
        body: serde_json::json!({ "error": msg }).to_string(),
    }
}

/// Reads one request; `Err(reply)` for what cannot be parsed or is too large (public for the fuzz target).
pub fn read_request<S: Read>(stream: S, peer: IpAddr) -> io::Result<Result<Request, Reply>> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(Err(plain(400, "bad request line")));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    let mut head = line.len();
    loop {
        let mut h = String::new();
        let n = r.by_ref().take(MAX_HEAD as u64).read_line(&mut h)?;
        head += n;
        if n == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if head > MAX_HEAD || headers.len() >= MAX_HEADERS {
            return Ok(Err(plain(431, "request head too large")));
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    // Browsers and curl send a Content-Length for forms and JSON; a chunked body is refused rather than
    // misread as empty.
    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Ok(Err(plain(411, "send the body with a Content-Length")));
    }
    let len = match headers.iter().find(|(k, _)| k == "content-length") {
        None => 0,
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) if n <= MAX_BODY => n,
            Ok(_) => return Ok(Err(plain(413, "body too large"))),
            Err(_) => return Ok(Err(plain(400, "bad Content-Length"))),
        },
    };
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Ok(Request {
        method,
        target,
        headers,
        body,
        peer,
    }))
}

fn write_reply<S: Write>(mut s: S, r: &Reply) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(r.body.as_bytes())?;
    s.flush()
}

/// One request and its answer on any byte stream (plain TCP or TLS).
fn exchange<S: Read + Write>(admin: &Admin, s: &mut S, peer: IpAddr) -> io::Result<()> {
    let reply = match read_request(&mut *s, peer)? {
        Ok(req) => {
            let r = admin.serve(&req, Instant::now());
            tracing::debug!(method = %req.method, path = %req.target.split('?').next().unwrap_or(""),
                status = r.status, %peer, "admin request");
            r
        }
        Err(r) => r,
    };
    write_reply(s, &reply)
}

fn serve_conn(
    admin: &Admin,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> io::Result<()> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    match tls {
        None => {
            let mut s = tcp;
            exchange(admin, &mut s, peer.ip())
        }
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            exchange(admin, &mut s, peer.ip())?;
            s.conn.send_close_notify();
            s.flush()
        }
    }
}

/// The admin server's accept thread; dropping it stops the server.
pub struct ApiServer(Acceptor);

impl ApiServer {
    /// Serves `admin` on `addr`, over TLS when `tls` is given.
    pub fn start(
        addr: SocketAddr,
        admin: Arc<Admin>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<ApiServer> {
        let open = Arc::new(AtomicUsize::new(0));
        let a = Acceptor::spawn(
            TcpListener::bind(addr)?,
            "tollgate-admin",
            move |stream, peer| {
                if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    open.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!(%peer, "admin server: too many connections, closed");
                    return;
                }
                let (admin, tls, mine) = (admin.clone(), tls.clone(), open.clone());
                let spawned = std::thread::Builder::new()
                    .name("tollgate-admin-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_conn(&admin, stream, peer, tls.as_ref()) {
                            tracing::debug!(error = %e, %peer, "admin connection");
                        }
                        mine.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    open.fetch_sub(1, Ordering::AcqRel);
                }
            },
        )?;
        Ok(ApiServer(a))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Request, Reply> {
        read_request(raw.as_bytes(), IpAddr::from([127, 0, 0, 1])).unwrap()
    }

    #[test]
    fn requests_parse_with_lowercased_headers_and_bounded_sizes() {
        let r = parse("POST /login?x=1 HTTP/1.1\r\nCookie: a=b\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap();
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("POST", "/login?x=1")
        );
        assert_eq!(r.header("cookie"), Some("a=b"));
        assert_eq!(r.body, b"abc");
        assert_eq!(parse("\r\n").unwrap_err().status, 400);
        let big = format!("GET / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(parse(&big).unwrap_err().status, 413);
        assert_eq!(
            parse("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        let chunked =
            "POST /login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap_err().status, 411);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n"))
                .unwrap_err()
                .status,
            431
        );
    }

    #[test]
    fn replies_carry_their_headers() {
        let mut out = Vec::new();
        let r = Reply {
            status: 303,
            content_type: "text/plain",
            headers: vec![("Location", "/console".into())],
            body: String::new(),
        };
        write_reply(&mut out, &r).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 303 See Other\r\n"));
        assert!(s.contains("\r\nLocation: /console\r\n") && s.ends_with("\r\n\r\n"));
    }
}
