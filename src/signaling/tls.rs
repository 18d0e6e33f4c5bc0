//! SIP over TLS: a [`StreamLayer`] over a rustls session, driven by the loop's reads and writes.
//!
//! The loop moves wire bytes only; this layer feeds them to rustls and hands plaintext to the SIP framer, so
//! RFC 5626 keepalives (CRLF ping/pong) pass through untouched like any other application bytes.
//!
//! - Server side: [`TlsServer`] holds the current `ServerConfig` behind an `ArcSwap`. Each accepted connection
//!   takes a snapshot, so [`TlsServer::reload`] (validated before the swap) changes what new connections see
//!   and leaves established sessions alone. Several certificates are chosen by SNI, with a default.
//!   Optional mutual TLS: client certificates required and verified against a CA bundle.
//! - Client side: [`TlsClient`] is one trust profile (CA bundle or the system roots, optional client
//!   certificate); [`TlsClientSet`] maps a peer address to the profile and the name its certificate must carry.
//! - Only TLS 1.2 and 1.3. Failures are classified ([`TlsFailureKind`]), logged with the peer and the reason,
//!   and kept in a small bounded log ([`TlsServer::recent_failures`], [`TlsClientSet::recent_failures`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use arc_swap::ArcSwap;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, Connection, RootCertStore,
    ServerConfig, ServerConnection,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::handler::ListenerId;
use super::stream::{LayerContext, LayerError, LayerFactory, StreamBuf, StreamLayer};

/// TLS 1.2 and 1.3; nothing older is offered or accepted.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// How many failures each [`FailureLog`] keeps for inspection (older ones are only in the log output).
const FAILURE_LOG_LEN: usize = 64;

/// Plaintext is drained through this stack buffer into the connection's `StreamBuf`.
const PLAIN_CHUNK: usize = 4096;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS material could not be loaded or a configuration built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable, malformed, or holds nothing of the expected kind.
    #[error("{}: {reason}", file.display())]
    Pem { file: PathBuf, reason: String },
    /// The private key cannot be used with the certificate (wrong pair, unsupported algorithm).
    #[error("{} / {}: {reason}", cert.display(), key.display())]
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// A host name that cannot be a TLS server name.
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused the configuration (e.g. an empty CA bundle for client verification).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Certificate chain and private key, both PEM files (the chain leaf first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKeyFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a [`TlsServer`] is built (and rebuilt on reload) from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsServerFiles {
    /// Served when the client sends no SNI or a name no `sni` entry matches.
    pub default: CertKeyFiles,
    /// Extra certificates by server name (exact, case-insensitive, or `*.domain` for one label).
    pub sni: Vec<(String, CertKeyFiles)>,
    /// When set, clients must present a certificate that chains to one of these CAs (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsServerFiles {
    /// One certificate, no client certificates asked.
    pub fn single(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            default: CertKeyFiles {
                cert: cert.into(),
                key: key.into(),
            },
            sni: Vec::new(),
            client_ca: None,
        }
    }
}

/// The class of a TLS failure, for logs, counters and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailureKind {
    /// The peer's certificate does not chain to a trusted CA (or the peer said so about ours).
    UnknownCa,
    /// The peer's certificate is expired or not yet valid (or the peer said so about ours).
    Expired,
    /// The server certificate is not valid for the name we connected to.
    WrongServerName,
    /// Mutual TLS: the client presented no certificate.
    NoClientCertificate,
    /// The peer offered only protocol versions or cipher suites we refuse (e.g. TLS 1.1).
    Incompatible,
    /// Any other certificate problem (bad encoding, wrong usage, revoked, ...).
    BadCertificate,
    /// Malformed records, unexpected messages, other alerts.
    Handshake,
    /// No profile to open or accept the connection with (configuration gap).
    NoProfile,
}

/// One failed TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFailure {
    pub peer: SocketAddr,
    pub outbound: bool,
    pub kind: TlsFailureKind,
    /// rustls' own words, for the log.
    pub detail: String,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.outbound { "to" } else { "from" };
        write!(
            f,
            "TLS {dir} {} failed: {:?}: {}",
            self.peer, self.kind, self.detail
        )
    }
}

/// Logs failures and keeps the last few for inspection. Only touched when a connection fails.
#[derive(Debug, Default)]
struct FailureLog(Mutex<VecDeque<TlsFailure>>);

impl FailureLog {
    fn record(&self, failure: TlsFailure) {
        tracing::warn!(
            peer = %failure.peer,
            outbound = failure.outbound,
            kind = ?failure.kind,
            detail = %failure.detail,
            "TLS connection failed"
        );
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() == FAILURE_LOG_LEN {
            q.pop_front();
        }
        q.push_back(failure);
    }

    fn recent(&self) -> Vec<TlsFailure> {
        let q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        q.iter().cloned().collect()
    }
}

/// Maps a rustls error to the class an operator acts on.
pub fn classify(err: &rustls::Error) -> TlsFailureKind {
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => TlsFailureKind::UnknownCa,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailureKind::Expired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailureKind::WrongServerName
            }
            _ => TlsFailureKind::BadCertificate,
        },
        E::NoCertificatesPresented => TlsFailureKind::NoClientCertificate,
        E::PeerIncompatible(_) => TlsFailureKind::Incompatible,
        E::AlertReceived(a) => match a {
            AlertDescription::UnknownCA => TlsFailureKind::UnknownCa,
            AlertDescription::CertificateExpired => TlsFailureKind::Expired,
            AlertDescription::CertificateRequired => TlsFailureKind::NoClientCertificate,
            AlertDescription::ProtocolVersion | AlertDescription::HandshakeFailure => {
                TlsFailureKind::Incompatible
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked => TlsFailureKind::BadCertificate,
            _ => TlsFailureKind::Handshake,
        },
        _ => TlsFailureKind::Handshake,
    }
}

fn pem_err(file: &Path, e: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        file: file.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Every certificate in a PEM file; a file without one is an error.
pub fn load_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| pem_err(file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(file, e))?;
    if certs.is_empty() {
        return Err(pem_err(file, "no CERTIFICATE section"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(file).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => pem_err(file, "no PRIVATE KEY section"),
        e => pem_err(file, e),
    })
}

/// A CA bundle; every certificate in it must parse as a trust anchor.
pub fn load_roots(file: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(file)? {
        roots
            .add(cert)
            .map_err(|e| pem_err(file, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The system trust store (Debian: /etc/ssl/certs from `ca-certificates`), read from disk, no network.
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), ToString::to_string);
        return Err(TlsError::Config(format!(
            "no system root certificates: {why}"
        )));
    }
    Ok(roots)
}

fn certified_key(files: &CertKeyFiles, p: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    // `from_der` also checks that the key belongs to the leaf certificate.
    CertifiedKey::from_der(chain, key, p).map_err(|e| TlsError::KeyPair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })
}

/// Picks the certificate by SNI; the default for no or unknown names.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        // rustls hands SNI over lower-cased already; configured names were lower-cased at build time.
        if let Some(k) = self.by_name.get(name) {
            return k.clone();
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(k) = self.by_name.get(&format!("*.{parent}"))
        {
            return k.clone();
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// A server configuration (TLS 1.2/1.3, SNI, optional client certificates) from certificate files.
pub fn build_server_config(files: &TlsServerFiles) -> Result<ServerConfig, TlsError> {
    let p = provider();
    let default = Arc::new(certified_key(&files.default, &p)?);
    let mut by_name = HashMap::with_capacity(files.sni.len());
    for (name, f) in &files.sni {
        by_name.insert(name.to_ascii_lowercase(), Arc::new(certified_key(f, &p)?));
    }
    let builder = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, p)
                .build()
                .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_cert_resolver(Arc::new(SniResolver { by_name, default })))
}

/// The server side of every TLS listener: current configuration, reloadable, plus the failure log.
#[derive(Debug)]
pub struct TlsServer {
    files: Mutex<TlsServerFiles>,
    config: ArcSwap<ServerConfig>,
    failures: FailureLog,
}

impl TlsServer {
    /// Loads and checks every file; errors name the file and the reason.
    pub fn from_files(files: TlsServerFiles) -> Result<Arc<Self>, TlsError> {
        let config = build_server_config(&files)?;
        Ok(Arc::new(Self {
            files: Mutex::new(files),
            config: ArcSwap::from_pointee(config),
            failures: FailureLog::default(),
        }))
    }

    /// Re-reads the same files (SIGHUP). On error the current configuration stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let files = self
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.reload_from(files)
    }

    /// Switches to other files (a config reload that changed paths); same guarantee as [`TlsServer::reload`].
    pub fn reload_from(&self, files: TlsServerFiles) -> Result<(), TlsError> {
        match build_server_config(&files) {
            Ok(config) => {
                self.config.store(Arc::new(config));
                *self.files.lock().unwrap_or_else(PoisonError::into_inner) = files;
                tracing::info!("TLS server certificates reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload refused; keeping the current certificates");
                Err(e)
            }
        }
    }

    /// The configuration new connections get now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// A layer for a connection accepted from `peer`.
    pub fn layer_for(self: &Arc<Self>, peer: SocketAddr) -> Result<TlsLayer, LayerError> {
        match ServerConnection::new(self.config.load_full()) {
            Ok(c) => Ok(TlsLayer::new(
                Connection::Server(c),
                peer,
                Failures::Server(self.clone()),
            )),
            Err(e) => {
                let f = self.failure(peer, false, TlsFailureKind::Handshake, e.to_string());
                Err(LayerError(f))
            }
        }
    }

    /// The last failures (bounded), oldest first.
    pub fn recent_failures(&self) -> Vec<TlsFailure> {
        self.failures.recent()
    }

    fn failure(&self, peer: SocketAddr, outbound: bool, kind: TlsFailureKind, d: String) -> String {
        record(&self.failures, peer, outbound, kind, d)
    }
}

fn record(
    log: &FailureLog,
    peer: SocketAddr,
    outbound: bool,
    kind: TlsFailureKind,
    detail: String,
) -> String {
    let f = TlsFailure {
        peer,
        outbound,
        kind,
        detail,
    };
    let text = f.to_string();
    log.record(f);
    text
}

/// One client trust profile: which CAs we trust for the peer and which certificate we show it.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// `ca`: the peer's CA bundle (PEM), or `None` for the system roots. `client_cert`: shown when the server
    /// asks (mutual TLS).
    pub fn new(ca: Option<&Path>, client_cert: Option<&CertKeyFiles>) -> Result<Self, TlsError> {
        let p = provider();
        let roots = match ca {
            Some(f) => load_roots(f)?,
            None => system_roots()?,
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), p.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = ClientConfig::builder_with_provider(p.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_webpki_verifier(verifier);
        let config = match client_cert {
            Some(files) => {
                let ck = certified_key(files, &p)?;
                builder
                    .with_client_auth_cert(ck.cert, load_key(&files.key)?)
                    .map_err(|e| TlsError::KeyPair {
                        cert: files.cert.clone(),
                        key: files.key.clone(),
                        reason: e.to_string(),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration (e.g. for a test peer).
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

#[derive(Debug, Clone)]
struct Target {
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

#[derive(Debug, Default)]
struct Targets {
    by_addr: HashMap<SocketAddr, Target>,
    by_ip: HashMap<IpAddr, Target>,
    default: Option<Arc<ClientConfig>>,
}

/// The client side: for each peer, the trust profile and the name its certificate must carry.
///
/// Cheap to clone; clones share the table, so the B2BUA can register a target after resolving a trunk's
/// host name while the loop's factory holds another clone. Looked up once per outbound connection.
#[derive(Debug, Clone, Default)]
pub struct TlsClientSet {
    targets: Arc<RwLock<Targets>>,
    failures: Arc<FailureLog>,
}

impl TlsClientSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections to `peer` use `client` and check the server certificate against `server_name` (the
    /// host of the `sips:` target, not the resolved address).
    pub fn add_target(
        &self,
        peer: SocketAddr,
        server_name: &str,
        client: &TlsClient,
    ) -> Result<(), TlsError> {
        let t = target(server_name, client)?;
        self.write().by_addr.insert(peer, t);
        Ok(())
    }

    /// Like [`TlsClientSet::add_target`] for every port of `ip` (checked after the exact address).
    pub fn add_target_ip(
        &self,
        ip: IpAddr,
        server_name: &str,
        client: &TlsClient,
    ) -> Result<(), TlsError> {
        let t = target(server_name, client)?;
        self.write().by_ip.insert(ip, t);
        Ok(())
    }

    /// Forgets a target (trunk removed on reload).
    pub fn remove_target(&self, peer: SocketAddr) {
        self.write().by_addr.remove(&peer);
    }

    /// Profile for peers not registered: their certificate must then be valid for the peer's IP address.
    pub fn set_default(&self, client: Option<&TlsClient>) {
        self.write().default = client.map(|c| c.config.clone());
    }

    /// A layer for a connection we open to `peer`.
    pub fn layer_for(&self, peer: SocketAddr) -> Result<TlsLayer, LayerError> {
        let found = {
            let t = self.targets.read().unwrap_or_else(PoisonError::into_inner);
            t.by_addr
                .get(&peer)
                .or_else(|| t.by_ip.get(&peer.ip()))
                .cloned()
                .or_else(|| {
                    t.default.clone().map(|config| Target {
                        name: ServerName::IpAddress(peer.ip().into()),
                        config,
                    })
                })
        };
        let Some(t) = found else {
            let d = "no TLS client profile for this peer".to_string();
            return Err(LayerError(record(
                &self.failures,
                peer,
                true,
                TlsFailureKind::NoProfile,
                d,
            )));
        };
        match ClientConnection::new(t.config, t.name) {
            Ok(c) => Ok(TlsLayer::new(
                Connection::Client(c),
                peer,
                Failures::Client(self.failures.clone()),
            )),
            Err(e) => Err(LayerError(record(
                &self.failures,
                peer,
                true,
                classify(&e),
                e.to_string(),
            ))),
        }
    }

    /// The last failures of outbound connections (bounded), oldest first.
    pub fn recent_failures(&self) -> Vec<TlsFailure> {
        self.failures.recent()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Targets> {
        self.targets.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn target(server_name: &str, client: &TlsClient) -> Result<Target, TlsError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| TlsError::ServerName(server_name.to_string()))?;
    Ok(Target {
        name,
        config: client.config.clone(),
    })
}

/// Where a layer reports its failure.
#[derive(Debug)]
enum Failures {
    Server(Arc<TlsServer>),
    Client(Arc<FailureLog>),
}

impl Failures {
    fn log(&self) -> &FailureLog {
        match self {
            Failures::Server(s) => &s.failures,
            Failures::Client(l) => l,
        }
    }
}

/// One TLS session as a [`StreamLayer`].
pub struct TlsLayer {
    conn: Connection,
    peer: SocketAddr,
    failures: Failures,
    handshake_logged: bool,
    /// `client_version` of the ClientHello a server received, to say why an old client was refused.
    hello_version: Option<u16>,
}

impl fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsLayer")
            .field("peer", &self.peer)
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsLayer {
    fn new(conn: Connection, peer: SocketAddr, failures: Failures) -> Self {
        Self {
            conn,
            peer,
            failures,
            handshake_logged: false,
            hello_version: None,
        }
    }

    fn outbound(&self) -> bool {
        matches!(self.conn, Connection::Client(_))
    }

    /// Moves every record rustls has ready (handshake, alerts, application data) to the socket queue.
    fn flush(&mut self, wire_out: &mut Vec<u8>) -> Result<(), LayerError> {
        while self.conn.wants_write() {
            if let Err(e) = self.conn.write_tls(wire_out) {
                return Err(self.fail(TlsFailureKind::Handshake, e.to_string()));
            }
        }
        Ok(())
    }

    fn fail(&self, kind: TlsFailureKind, detail: String) -> LayerError {
        LayerError(record(
            self.failures.log(),
            self.peer,
            self.outbound(),
            kind,
            detail,
        ))
    }

    fn drain_plaintext(&mut self, app_in: &mut StreamBuf) -> Result<(), LayerError> {
        let mut chunk = [0u8; PLAIN_CHUNK];
        loop {
            match self.conn.reader().read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => app_in.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // A TCP close without close_notify: the loop sees the read of 0 next and closes anyway.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(self.fail(TlsFailureKind::Handshake, e.to_string())),
            }
        }
    }

    fn note_established(&mut self) {
        if self.handshake_logged || self.conn.is_handshaking() {
            return;
        }
        self.handshake_logged = true;
        let sni = match &self.conn {
            Connection::Server(s) => s.server_name().map(str::to_string),
            Connection::Client(_) => None,
        };
        tracing::debug!(
            peer = %self.peer,
            version = ?self.conn.protocol_version(),
            suite = ?self.conn.negotiated_cipher_suite().map(|s| s.suite()),
            sni = ?sni,
            "TLS established"
        );
    }
}

impl StreamLayer for TlsLayer {
    fn on_connected(&mut self, wire_out: &mut Vec<u8>) -> Result<(), LayerError> {
        // The client's ClientHello is ready at once; a server has nothing to say yet.
        self.flush(wire_out)
    }

    fn read_wire(
        &mut self,
        wire: &[u8],
        app_in: &mut StreamBuf,
        wire_out: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        if self.hello_version.is_none() && !self.outbound() {
            self.hello_version = client_hello_version(wire);
        }
        let mut rest = wire;
        while !rest.is_empty() {
            let n = match self.conn.read_tls(&mut rest) {
                Ok(n) => n,
                Err(e) => return Err(self.fail(TlsFailureKind::Handshake, e.to_string())),
            };
            if let Err(e) = self.conn.process_new_packets() {
                // Send our alert too; the loop closes the connection after this error.
                let _ = self.flush(wire_out);
                let kind = classify(&e);
                let detail = match (kind, self.hello_version) {
                    (TlsFailureKind::Incompatible, Some(v)) if v < 0x0303 => {
                        format!("client offers at most {}: {e}", version_name(v))
                    }
                    _ => e.to_string(),
                };
                return Err(self.fail(kind, detail));
            }
            self.drain_plaintext(app_in)?;
            if n == 0 {
                break;
            }
        }
        self.note_established();
        self.flush(wire_out)
    }

    fn in_progress(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn write_app(&mut self, app: &[u8], wire_out: &mut Vec<u8>) -> Result<(), LayerError> {
        // Before the handshake is done rustls keeps the plaintext and sends it once keys exist.
        if let Err(e) = self.conn.writer().write_all(app) {
            return Err(self.fail(TlsFailureKind::Handshake, e.to_string()));
        }
        self.flush(wire_out)
    }
}

/// `client_version` of a ClientHello at the start of `wire` (record type 22, handshake type 1). A client
/// that can do TLS 1.2 or 1.3 puts 0x0303 there; anything lower is an older client's highest version.
fn client_hello_version(wire: &[u8]) -> Option<u16> {
    match wire {
        [0x16, _, _, _, _, 0x01, _, _, _, hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

fn version_name(v: u16) -> &'static str {
    match v {
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        _ => "an unknown version",
    }
}

/// The factory the binary gives [`SigLoop::set_tls_layer`](super::SigLoop::set_tls_layer): accepted
/// connections get a server session from `server`, outbound ones a client session from `client`.
pub fn tls_layer_factory(server: Option<Arc<TlsServer>>, client: TlsClientSet) -> LayerFactory {
    tls_layer_factory_by_listener(Vec::new(), server, client)
}

/// Like [`tls_layer_factory`] with a server per listener (own certificate, own client CA for mutual TLS);
/// listeners not in `servers` use `default`.
pub fn tls_layer_factory_by_listener(
    servers: Vec<(ListenerId, Arc<TlsServer>)>,
    default: Option<Arc<TlsServer>>,
    client: TlsClientSet,
) -> LayerFactory {
    let servers: HashMap<ListenerId, Arc<TlsServer>> = servers.into_iter().collect();
    Box::new(move |ctx: &LayerContext| {
        let layer = if ctx.outbound {
            client.layer_for(ctx.peer)?
        } else {
            let server = ctx
                .listener
                .and_then(|l| servers.get(&l))
                .or(default.as_ref());
            match server {
                Some(s) => s.layer_for(ctx.peer)?,
                None => {
                    return Err(LayerError(record(
                        &client.failures,
                        ctx.peer,
                        false,
                        TlsFailureKind::NoProfile,
                        "no TLS server certificate configured for this listener".into(),
                    )));
                }
            }
        };
        Ok(Box::new(layer) as Box<dyn StreamLayer>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "192.0.2.1:5061".parse().unwrap()
    }

    /// A server layer without any certificate material: enough to see how hostile bytes are handled,
    /// since rustls rejects them before a certificate is ever chosen.
    fn bare_server() -> Arc<TlsServer> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
        Arc::new(TlsServer {
            files: Mutex::new(TlsServerFiles::single("none", "none")),
            config: ArcSwap::from_pointee(config),
            failures: FailureLog::default(),
        })
    }

    #[test]
    fn plain_sip_on_a_tls_port_is_a_typed_error() {
        let server = bare_server();
        let mut layer = server.layer_for(peer()).unwrap();
        let (mut app, mut out) = (StreamBuf::default(), Vec::new());
        layer.on_connected(&mut out).unwrap();
        assert!(out.is_empty(), "a server waits for the ClientHello");
        let err = layer
            .read_wire(b"OPTIONS sip:x SIP/2.0\r\n\r\n", &mut app, &mut out)
            .unwrap_err();
        assert!(app.is_empty());
        let f = server.recent_failures();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, TlsFailureKind::Handshake);
        assert!(err.0.contains("192.0.2.1:5061"), "{err}");
    }

    #[test]
    fn random_and_truncated_records_never_panic() {
        let server = bare_server();
        // xorshift: deterministic, no dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..2000 {
            let len = (next() % 600) as usize;
            let mut wire: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half of them look like a handshake record so rustls parses further in.
            if i % 2 == 0 && wire.len() > 6 {
                wire[..6].copy_from_slice(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01]);
            }
            let mut layer = server.layer_for(peer()).unwrap();
            let (mut app, mut out) = (StreamBuf::default(), Vec::new());
            for chunk in wire.chunks(1 + (next() % 64) as usize) {
                if layer.read_wire(chunk, &mut app, &mut out).is_err() {
                    break;
                }
            }
            assert!(app.is_empty(), "no plaintext before a handshake");
        }
        assert!(server.recent_failures().len() <= FAILURE_LOG_LEN);
    }

    #[test]
    fn client_hello_version_reads_only_a_client_hello() {
        let hello11 = [
            0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x02, 0xaa,
        ];
        assert_eq!(client_hello_version(&hello11), Some(0x0302));
        assert_eq!(client_hello_version(&hello11[..10]), None);
        assert_eq!(client_hello_version(b"OPTIONS sip:x SIP/2.0"), None);
        assert_eq!(version_name(0x0302), "TLS 1.1");
    }

    #[test]
    fn unknown_peer_without_default_profile_is_refused_with_reason() {
        let set = TlsClientSet::new();
        let err = set.layer_for(peer()).unwrap_err();
        assert!(err.0.contains("no TLS client profile"), "{err}");
        assert_eq!(set.recent_failures()[0].kind, TlsFailureKind::NoProfile);
        assert!(matches!(
            set.add_target(
                peer(),
                "bad name!",
                &TlsClient {
                    config: Arc::new(
                        ClientConfig::builder_with_provider(provider())
                            .with_protocol_versions(VERSIONS)
                            .unwrap()
                            .with_root_certificates(RootCertStore::empty())
                            .with_no_client_auth()
                    )
                }
            ),
            Err(TlsError::ServerName(_))
        ));
    }
}
