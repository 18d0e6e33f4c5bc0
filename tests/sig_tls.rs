//! SIP over TLS through the io_uring loop on 127.0.0.1: rustls and `openssl s_client` peers against a TLS
//! listener, outbound connections to a rustls server with right and wrong trust, mutual TLS, SNI and
//! certificate reload. Certificates are generated here with rcgen. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use tollgate::signaling::tls_layer_factory_by_listener;
use tollgate::signaling::{
    CertKeyFiles, CloseReason, ConnEvent, ConnId, Counters, DnsAnswer, DnsError, DnsRequestId, Io,
    ListenerId, LoopHandle, SigConfig, SigLoop, SipHandler, StreamBuf, TimerToken, TlsClient,
    TlsClientSet, TlsFailure, TlsFailureKind, TlsServer, TlsServerFiles, Transport,
    tls_layer_factory,
};
use tollgate::sip::{FrameKind, frame_at};

const WAIT: Duration = Duration::from_secs(5);
const NAME: &str = "sip.tollgate.test";

fn sip_msg(tag: &str) -> Vec<u8> {
    let body = format!("hello {tag}");
    format!(
        "OPTIONS sip:{NAME} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK{tag}\r\nCall-ID: {tag}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// ---------------------------------------------------------------- certificates

/// A directory of PEM files for one test, removed on drop.
struct Pki {
    dir: PathBuf,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tgtls-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ca(&self, name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let pem = self.path(&format!("{name}.ca.pem"));
        std::fs::write(&pem, issuer.pem()).unwrap();
        Ca { issuer, pem }
    }

    /// A leaf for `names` signed by `ca`, written as `<file>.crt` / `<file>.key`.
    fn leaf(&self, ca: &Ca, file: &str, names: &[&str], expired: bool) -> CertKeyFiles {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(file));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.issuer).unwrap();
        let files = CertKeyFiles {
            cert: self.path(&format!("{file}.crt")),
            key: self.path(&format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- the loop

enum Msg {
    /// Send bytes over TLS to addr, opening a connection if needed.
    TlsTo(SocketAddr, Vec<u8>, mpsc::Sender<Result<ConnId, String>>),
}

#[derive(Debug)]
enum Seen {
    Frame(ConnId, Vec<u8>),
    Ping,
    Conn(ConnEvent),
}

/// Echoes every SIP message, answers a CRLFCRLF ping with a CRLF pong (RFC 5626).
struct Echo {
    out: mpsc::Sender<Seen>,
    echo: bool,
}

impl SipHandler for Echo {
    type Message = Msg;

    fn on_datagram(&mut self, _: Instant, _: ListenerId, _: SocketAddr, _: &[u8], _: &mut Io<'_>) {}

    fn on_stream_data(
        &mut self,
        _: Instant,
        conn: ConnId,
        _: SocketAddr,
        buf: &mut StreamBuf,
        io: &mut Io<'_>,
    ) {
        loop {
            match frame_at(buf.data(), 0) {
                Ok(Some((kind, len))) => {
                    let frame = buf.take_front(len).to_vec();
                    match kind {
                        FrameKind::Message => {
                            if self.echo {
                                io.send_on(conn, &frame).expect("echo");
                            }
                            let _ = self.out.send(Seen::Frame(conn, frame));
                        }
                        FrameKind::Ping => {
                            io.send_on(conn, b"\r\n").expect("pong");
                            let _ = self.out.send(Seen::Ping);
                        }
                        FrameKind::Pong => {}
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    io.close(conn);
                    break;
                }
            }
        }
    }

    fn on_conn_event(
        &mut self,
        _: Instant,
        _conn: ConnId,
        _: SocketAddr,
        ev: ConnEvent,
        _: &mut Io<'_>,
    ) {
        let _ = self.out.send(Seen::Conn(ev));
    }

    fn on_timer(&mut self, _: Instant, _: TimerToken, _: u64, _: &mut Io<'_>) {}

    fn on_dns(
        &mut self,
        _: Instant,
        _: DnsRequestId,
        _: Result<DnsAnswer, DnsError>,
        _: &mut Io<'_>,
    ) {
    }

    fn on_message(&mut self, _: Instant, msg: Msg, io: &mut Io<'_>) {
        match msg {
            Msg::TlsTo(addr, bytes, tx) => {
                let _ = tx.send(
                    io.send_stream_to(addr, Transport::Tls, &bytes)
                        .map_err(|e| e.to_string()),
                );
            }
        }
    }
}

struct Running {
    handle: LoopHandle<Msg>,
    thread: JoinHandle<std::io::Result<(Echo, Counters)>>,
    seen: mpsc::Receiver<Seen>,
    tls: Option<SocketAddr>,
}

impl Running {
    fn start(server: Option<Arc<TlsServer>>, client: TlsClientSet, echo: bool) -> Self {
        let mut sig = SigLoop::<Msg>::new(SigConfig::default()).expect("loop");
        let tls = server
            .is_some()
            .then(|| sig.bind_tls("127.0.0.1:0".parse().unwrap()).unwrap());
        let tls = tls.and_then(|id| sig.local_addr(id));
        sig.set_tls_layer(tls_layer_factory(server, client));
        let handle = sig.handle();
        let (out, seen) = mpsc::channel();
        let thread = std::thread::spawn(move || sig.run(Echo { out, echo }));
        Self {
            handle,
            thread,
            seen,
            tls,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.tls.expect("listener")
    }

    fn next(&self) -> Seen {
        self.seen.recv_timeout(WAIT).expect("handler event in time")
    }

    /// The next event that is not an accept/connect notice.
    fn next_data_or_close(&self) -> Seen {
        loop {
            match self.next() {
                Seen::Conn(ConnEvent::Accepted { .. } | ConnEvent::Connected) => continue,
                s => return s,
            }
        }
    }

    fn send_tls(&self, to: SocketAddr, bytes: Vec<u8>) -> ConnId {
        let (tx, rx) = mpsc::channel();
        self.handle.send(Msg::TlsTo(to, bytes, tx));
        rx.recv_timeout(WAIT).expect("reply").expect("send")
    }

    fn stop(self) {
        self.handle.stop();
        let deadline = Instant::now() + WAIT;
        while !self.thread.is_finished() {
            assert!(Instant::now() < deadline, "loop did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.thread.join().expect("loop thread").expect("loop");
    }
}

/// Waits (bounded) for a failure of `kind` in a log.
fn wait_failure(what: impl Fn() -> Vec<TlsFailure>, kind: TlsFailureKind) -> TlsFailure {
    let deadline = Instant::now() + WAIT;
    loop {
        let all = what();
        if let Some(f) = all.iter().find(|f| f.kind == kind) {
            eprintln!("logged: {f}");
            return f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {kind:?} failure logged; got {all:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- a blocking rustls peer

type ClientStream = StreamOwned<ClientConnection, TcpStream>;

fn rustls_connect(addr: SocketAddr, cfg: Arc<ClientConfig>, name: &str) -> ClientStream {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.set_write_timeout(Some(WAIT)).unwrap();
    let conn = ClientConnection::new(cfg, ServerName::try_from(name.to_string()).unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("handshake");
    }
    s
}

fn read_n(s: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)?;
    Ok(v)
}

// ---------------------------------------------------------------- tests

#[test]
fn rustls_client_exchanges_split_and_glued_sip_messages_and_keepalive() {
    let pki = Pki::new("echo");
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "srv", &[NAME], false);
    let server = TlsServer::from_files(TlsServerFiles::single(&leaf.cert, &leaf.key)).unwrap();
    let run = Running::start(Some(server), TlsClientSet::new(), true);
    let client = TlsClient::new(Some(&ca.pem), None).unwrap();

    let mut s = rustls_connect(run.addr(), client.config(), NAME);
    // Two messages glued in one record, then one split across records with a pause between.
    let (a, b, c) = (sip_msg("a"), sip_msg("b"), sip_msg("c"));
    let mut glued = a.clone();
    glued.extend_from_slice(&b);
    s.write_all(&glued).unwrap();
    s.flush().unwrap();
    let (head, tail) = c.split_at(20);
    s.write_all(head).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(tail).unwrap();
    s.flush().unwrap();
    for want in [&a, &b, &c] {
        match run.next_data_or_close() {
            Seen::Frame(_, f) => assert_eq!(&f, want),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
    let back = read_n(&mut s, a.len() + b.len() + c.len()).unwrap();
    assert_eq!(back, [a, b, c].concat(), "echoed whole and in order");

    // RFC 5626 keepalive over TLS: ping in, pong out, the connection stays usable.
    s.write_all(b"\r\n\r\n").unwrap();
    s.flush().unwrap();
    assert!(matches!(run.next_data_or_close(), Seen::Ping));
    assert_eq!(read_n(&mut s, 2).unwrap(), b"\r\n");
    let d = sip_msg("d");
    s.write_all(&d).unwrap();
    s.flush().unwrap();
    assert_eq!(read_n(&mut s, d.len()).unwrap(), d);
    assert_eq!(
        s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    run.stop();
}

/// Runs `openssl s_client` with `args`, writes `input`, and returns (stdout bytes read until `want` bytes or
/// the deadline, exit success).
fn s_client(addr: SocketAddr, args: &[&str], input: &[u8], want: usize) -> (Vec<u8>, bool) {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(["-quiet", "-no_ign_eof"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl installed (apt-get install openssl)");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let _ = stdin.write_all(input);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < want {
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = tx.send(got);
    });
    let got = rx.recv_timeout(WAIT).unwrap_or_default();
    drop(stdin);
    let deadline = Instant::now() + WAIT;
    let ok = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (got, ok)
}

#[test]
fn openssl_s_client_tls12_and_tls13_are_answered_and_tls11_is_refused() {
    let pki = Pki::new("ossl");
    let ca = pki.ca("ca");
    let leaf = pki.leaf(&ca, "srv", &[NAME], false);
    let server = TlsServer::from_files(TlsServerFiles::single(&leaf.cert, &leaf.key)).unwrap();
    let run = Running::start(Some(server.clone()), TlsClientSet::new(), true);
    let ca_arg = ca.pem.to_str().unwrap();
    for version in ["-tls1_2", "-tls1_3"] {
        let m = sip_msg(version.trim_start_matches('-'));
        let args = [
            version,
            "-CAfile",
            ca_arg,
            "-servername",
            NAME,
            "-verify_return_error",
        ];
        let (got, _) = s_client(run.addr(), &args, &m, m.len());
        assert_eq!(got, m, "{version}: the echo came back through openssl");
    }
    // OpenSSL 3 would refuse TLS 1.1 on its own side at the default security level; lower it so the refusal
    // can only come from us.
    let args = [
        "-tls1_1",
        "-cipher",
        "DEFAULT@SECLEVEL=0",
        "-CAfile",
        ca_arg,
    ];
    let (got, ok) = s_client(run.addr(), &args, &sip_msg("old"), 1);
    assert!(got.is_empty() && !ok, "TLS 1.1 must not get through");
    let f = wait_failure(|| server.recent_failures(), TlsFailureKind::Incompatible);
    assert!(!f.outbound && f.detail.contains("TLS 1.1"), "{f}");
    run.stop();
}

/// A rustls server on a plain thread: accepts one connection, echoes one SIP message (or fails).
fn rustls_echo_server(
    cfg: Arc<rustls::ServerConfig>,
) -> (SocketAddr, JoinHandle<Result<(), String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        let sock = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let conn = rustls::ServerConnection::new(cfg).map_err(|e| e.to_string())?;
        let mut s = StreamOwned::new(conn, sock);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Some((FrameKind::Message, len))) = frame_at(&buf, 0) {
                s.write_all(&buf[..len]).map_err(|e| e.to_string())?;
                s.flush().map_err(|e| e.to_string())?;
                // Wait for the peer to read and close, so the echo is not cut off by our close.
                let _ = s.read(&mut chunk);
                return Ok(());
            }
            match s.read(&mut chunk) {
                Ok(0) => return Err("closed".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    (addr, t)
}

/// Opens an outbound TLS connection through the loop to a rustls server with `srv` files; returns what the
/// loop saw first after connecting (an echoed frame or a close) and the client set.
fn outbound(srv: &CertKeyFiles, ca: &Path, name: &str) -> (Seen, TlsClientSet) {
    let server = TlsServer::from_files(TlsServerFiles::single(&srv.cert, &srv.key)).unwrap();
    let (addr, peer) = rustls_echo_server(server.config());
    let clients = TlsClientSet::new();
    let client = TlsClient::new(Some(ca), None).unwrap();
    clients.add_target(addr, name, &client).unwrap();
    let run = Running::start(None, clients.clone(), false);
    let m = sip_msg("out");
    let id = run.send_tls(addr, m.clone());
    let seen = run.next_data_or_close();
    if let Seen::Frame(fid, f) = &seen {
        assert_eq!((*fid, f), (id, &m));
    }
    run.stop();
    let _ = peer.join();
    (seen, clients)
}

#[test]
fn outbound_tls_succeeds_with_right_ca_and_name_and_fails_with_reason_otherwise() {
    let pki = Pki::new("out");
    let ca = pki.ca("ca");
    let other_ca = pki.ca("other");
    let good = pki.leaf(&ca, "good", &[NAME], false);
    let expired = pki.leaf(&ca, "expired", &[NAME], true);

    let (seen, clients) = outbound(&good, &ca.pem, NAME);
    assert!(matches!(seen, Seen::Frame(..)), "{seen:?}");
    assert!(clients.recent_failures().is_empty());

    for (srv, trust, name, kind) in [
        (&good, &other_ca.pem, NAME, TlsFailureKind::UnknownCa),
        (&expired, &ca.pem, NAME, TlsFailureKind::Expired),
        (
            &good,
            &ca.pem,
            "wrong.tollgate.test",
            TlsFailureKind::WrongServerName,
        ),
    ] {
        let (seen, clients) = outbound(srv, trust, name);
        assert!(
            matches!(seen, Seen::Conn(ConnEvent::Closed(CloseReason::LayerError))),
            "{kind:?}: {seen:?}"
        );
        let f = wait_failure(|| clients.recent_failures(), kind);
        assert!(f.outbound && !f.detail.is_empty(), "{f}");
    }
}

#[test]
fn mutual_tls_refuses_a_client_without_certificate_and_accepts_a_valid_one() {
    let pki = Pki::new("mtls");
    let ca = pki.ca("ca");
    let client_ca = pki.ca("clients");
    let srv = pki.leaf(&ca, "srv", &[NAME], false);
    let cli = pki.leaf(&client_ca, "cli", &["trunk.tollgate.test"], false);
    let stranger = pki.leaf(&ca, "stranger", &["x.tollgate.test"], false);
    let mut files = TlsServerFiles::single(&srv.cert, &srv.key);
    files.client_ca = Some(client_ca.pem.clone());
    let server = TlsServer::from_files(files).unwrap();
    let run = Running::start(Some(server.clone()), TlsClientSet::new(), true);

    // No certificate: with TLS 1.3 the client's handshake ends before the server's verdict, so the refusal
    // shows as an error (or EOF) on the first read.
    let anon = TlsClient::new(Some(&ca.pem), None).unwrap();
    let sock = TcpStream::connect(run.addr()).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let conn = ClientConnection::new(anon.config(), ServerName::try_from(NAME).unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, sock);
    let m = sip_msg("anon");
    let _ = s.write_all(&m).and_then(|_| s.flush());
    assert!(read_n(&mut s, m.len()).is_err(), "refused");
    wait_failure(
        || server.recent_failures(),
        TlsFailureKind::NoClientCertificate,
    );

    // A certificate from a CA the listener does not trust.
    let wrong = TlsClient::new(Some(&ca.pem), Some(&stranger)).unwrap();
    let sock = TcpStream::connect(run.addr()).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let conn = ClientConnection::new(wrong.config(), ServerName::try_from(NAME).unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, sock);
    let _ = s.write_all(&m).and_then(|_| s.flush());
    assert!(read_n(&mut s, m.len()).is_err(), "refused");
    wait_failure(|| server.recent_failures(), TlsFailureKind::UnknownCa);

    let trusted = TlsClient::new(Some(&ca.pem), Some(&cli)).unwrap();
    let mut s = rustls_connect(run.addr(), trusted.config(), NAME);
    let m = sip_msg("mtls");
    s.write_all(&m).unwrap();
    s.flush().unwrap();
    assert_eq!(read_n(&mut s, m.len()).unwrap(), m);
    run.stop();
}

fn peer_leaf(s: &ClientStream) -> Vec<u8> {
    s.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("server certificate")
}

fn leaf_der(files: &CertKeyFiles) -> Vec<u8> {
    let pem = std::fs::read(&files.cert).unwrap();
    let mut rd = BufReader::new(&pem[..]);
    let mut b64 = String::new();
    let mut line = String::new();
    while rd.read_line(&mut line).unwrap() > 0 {
        if !line.starts_with("-----") {
            b64.push_str(line.trim());
        }
        line.clear();
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn reload_serves_new_cert_to_new_connections_keeps_old_ones_and_refuses_bad_files() {
    let pki = Pki::new("reload");
    let ca = pki.ca("ca");
    let first = pki.leaf(&ca, "first", &[NAME], false);
    let second = pki.leaf(&ca, "second", &[NAME], false);
    let live = CertKeyFiles {
        cert: pki.path("live.crt"),
        key: pki.path("live.key"),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let server = TlsServer::from_files(TlsServerFiles::single(&live.cert, &live.key)).unwrap();
    let run = Running::start(Some(server.clone()), TlsClientSet::new(), true);
    let client = TlsClient::new(Some(&ca.pem), None).unwrap();

    let mut old = rustls_connect(run.addr(), client.config(), NAME);
    assert_eq!(peer_leaf(&old), leaf_der(&first));

    std::fs::copy(&second.cert, &live.cert).unwrap();
    std::fs::copy(&second.key, &live.key).unwrap();
    server.reload().expect("valid files reload");
    let new = rustls_connect(run.addr(), client.config(), NAME);
    assert_eq!(
        peer_leaf(&new),
        leaf_der(&second),
        "new connection, new cert"
    );
    let m = sip_msg("old-conn");
    old.write_all(&m).unwrap();
    old.flush().unwrap();
    assert_eq!(
        read_n(&mut old, m.len()).unwrap(),
        m,
        "established one goes on"
    );

    // A broken certificate file: refused with the file named, the second cert stays.
    std::fs::write(&live.cert, b"-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let err = server.reload().expect_err("bad PEM refused").to_string();
    assert!(err.contains("live.crt"), "{err}");
    let s = rustls_connect(run.addr(), client.config(), NAME);
    assert_eq!(peer_leaf(&s), leaf_der(&second));

    // A key that belongs to another certificate: refused too.
    std::fs::copy(&second.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let err = server
        .reload()
        .expect_err("mismatched key refused")
        .to_string();
    assert!(err.contains("live.key"), "{err}");
    // An empty key file names the file and what is missing.
    std::fs::write(&live.key, b"").unwrap();
    let err = server.reload().expect_err("no key").to_string();
    assert!(
        err.contains("live.key") && err.contains("PRIVATE KEY"),
        "{err}"
    );
    let s = rustls_connect(run.addr(), client.config(), NAME);
    assert_eq!(peer_leaf(&s), leaf_der(&second));
    run.stop();
}

#[test]
fn sni_picks_the_certificate_by_name_and_falls_back_to_the_default() {
    let pki = Pki::new("sni");
    let ca = pki.ca("ca");
    let default = pki.leaf(&ca, "default", &[NAME], false);
    let acs = pki.leaf(&ca, "acs", &["sbc.acs.tollgate.test"], false);
    let wild = pki.leaf(&ca, "wild", &["*.chime.tollgate.test"], false);
    let mut files = TlsServerFiles::single(&default.cert, &default.key);
    files.sni = vec![
        ("SBC.acs.tollgate.test".into(), acs.clone()),
        ("*.chime.tollgate.test".into(), wild.clone()),
    ];
    let server = TlsServer::from_files(files).unwrap();
    let run = Running::start(Some(server), TlsClientSet::new(), true);
    let client = TlsClient::new(Some(&ca.pem), None).unwrap();
    let s = rustls_connect(run.addr(), client.config(), "sbc.acs.tollgate.test");
    assert_eq!(peer_leaf(&s), leaf_der(&acs));
    let s = rustls_connect(run.addr(), client.config(), "vc1.chime.tollgate.test");
    assert_eq!(peer_leaf(&s), leaf_der(&wild));
    let s = rustls_connect(run.addr(), client.config(), NAME);
    assert_eq!(peer_leaf(&s), leaf_der(&default));
    run.stop();
}

#[test]
fn bad_pem_files_are_named_with_the_reason() {
    let pki = Pki::new("pem");
    let missing = pki.path("missing.crt");
    let err = TlsServer::from_files(TlsServerFiles::single(&missing, &missing))
        .expect_err("missing file")
        .to_string();
    assert!(err.contains("missing.crt"), "{err}");
    let empty = pki.path("empty.pem");
    std::fs::write(&empty, b"just text\n").unwrap();
    let err = TlsClient::new(Some(&empty), None)
        .expect_err("no CA in file")
        .to_string();
    assert!(
        err.contains("empty.pem") && err.contains("CERTIFICATE"),
        "{err}"
    );
}

#[test]
fn each_listener_uses_its_own_server_and_client_ca() {
    let pki = Pki::new("perl");
    let ca = pki.ca("ca");
    let client_ca = pki.ca("clients");
    let open_leaf = pki.leaf(&ca, "open", &[NAME], false);
    let trunk_leaf = pki.leaf(&ca, "trunk", &["trunk-side.tollgate.test"], false);
    let cli = pki.leaf(&client_ca, "cli", &["carrier.tollgate.test"], false);
    let open =
        TlsServer::from_files(TlsServerFiles::single(&open_leaf.cert, &open_leaf.key)).unwrap();
    let mut files = TlsServerFiles::single(&trunk_leaf.cert, &trunk_leaf.key);
    files.client_ca = Some(client_ca.pem.clone());
    let trunk = TlsServer::from_files(files).unwrap();

    let mut sig = SigLoop::<Msg>::new(SigConfig::default()).expect("loop");
    let l_open = sig.bind_tls("127.0.0.1:0".parse().unwrap()).unwrap();
    let l_trunk = sig.bind_tls("127.0.0.1:0".parse().unwrap()).unwrap();
    let (a_open, a_trunk) = (
        sig.local_addr(l_open).unwrap(),
        sig.local_addr(l_trunk).unwrap(),
    );
    sig.set_tls_layer(tls_layer_factory_by_listener(
        vec![(l_trunk, trunk.clone())],
        Some(open.clone()),
        TlsClientSet::new(),
    ));
    let handle = sig.handle();
    let (out, seen) = mpsc::channel();
    let thread = std::thread::spawn(move || sig.run(Echo { out, echo: true }));
    let run = Running {
        handle,
        thread,
        seen,
        tls: None,
    };

    let anon = TlsClient::new(Some(&ca.pem), None).unwrap();
    let mut s = rustls_connect(a_open, anon.config(), NAME);
    assert_eq!(peer_leaf(&s), leaf_der(&open_leaf));
    let m = sip_msg("open");
    s.write_all(&m).unwrap();
    s.flush().unwrap();
    assert_eq!(
        read_n(&mut s, m.len()).unwrap(),
        m,
        "no client cert needed here"
    );

    let sock = TcpStream::connect(a_trunk).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let name = ServerName::try_from("trunk-side.tollgate.test").unwrap();
    let mut s = StreamOwned::new(ClientConnection::new(anon.config(), name).unwrap(), sock);
    let _ = s.write_all(&m).and_then(|_| s.flush());
    assert!(
        read_n(&mut s, m.len()).is_err(),
        "the trunk listener wants a client cert"
    );
    wait_failure(
        || trunk.recent_failures(),
        TlsFailureKind::NoClientCertificate,
    );
    assert!(open.recent_failures().is_empty());

    let carrier = TlsClient::new(Some(&ca.pem), Some(&cli)).unwrap();
    let mut s = rustls_connect(a_trunk, carrier.config(), "trunk-side.tollgate.test");
    s.write_all(&m).unwrap();
    s.flush().unwrap();
    assert_eq!(read_n(&mut s, m.len()).unwrap(), m);
    run.stop();
}
