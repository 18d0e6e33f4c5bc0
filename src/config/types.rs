//! The validated configuration: every value parsed, defaulted and cross-checked.
//!
//! Other modules read only these types. Regexes are compiled here, once, at load time.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A validated appliance configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node: Node,
    pub listen: Vec<Listener>,
    pub media: Media,
    pub trunks: Vec<Trunk>,
    pub rules: Vec<Rule>,
    pub routes: Vec<Route>,
    pub security: Security,
    pub mgmt: Mgmt,
    pub forwarding: Forwarding,
    pub log: Log,
}

impl Config {
    /// Index of the trunk called `name` (the index is the trunk's id in `routing`).
    pub fn trunk_index(&self, name: &str) -> Option<usize> {
        self.trunks.iter().position(|t| t.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub fqdn: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub transport: Transport,
    pub address: SocketAddr,
    /// Present exactly when `transport` is TLS.
    pub tls: Option<TlsFiles>,
    /// Index into `Config::trunks`: requests arriving here are presumed to come from that trunk when no ACL
    /// says otherwise.
    pub trunk: Option<usize>,
}

impl Listener {
    /// Identity used by the reload diff.
    pub fn key(&self) -> String {
        format!("{}:{}", self.transport.as_str(), self.address)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaMode {
    Xdp,
    Socket,
    Bypass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceRole {
    Carrier,
    Cloud,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub role: InterfaceRole,
    /// Local address media is bound to on this interface; when absent the driver uses the interface's first.
    pub address: Option<IpAddr>,
    /// Address written into SDP (behind 1:1 NAT it differs from the local one).
    pub public_address: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub mode: MediaMode,
    /// Refuse to start when XDP cannot be attached, instead of falling back to sockets.
    pub xdp_required: bool,
    pub interfaces: Vec<Interface>,
    /// Even, inclusive.
    pub port_min: u16,
    /// Inclusive; `port_max - port_min + 1` is even so ports pair up as RTP/RTCP.
    pub port_max: u16,
    pub worker_cores: Vec<usize>,
    pub rtp_timeout_s: u32,
    pub hold_timeout_s: u32,
    pub port_quarantine_s: u32,
    pub strict_latching: bool,
}

impl Media {
    /// Number of media workers (at least one even when no cores are pinned).
    pub fn workers(&self) -> usize {
        self.worker_cores.len().max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Generic,
    /// Azure Communication Services direct routing.
    Acs,
    /// Amazon Chime SDK Voice Connector / Amazon Connect.
    Chime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriScheme {
    Sip,
    Sips,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// One configured outbound target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// `sip:host[:port][;transport=x]`, `sips:...`, or bare `host[:port]`.
    Uri {
        scheme: UriScheme,
        host: Host,
        port: Option<u16>,
        transport: Transport,
    },
    /// `_sip._udp.example.com`: resolve SRV, order by RFC 2782.
    Srv { name: String, transport: Transport },
}

impl TargetSpec {
    pub fn transport(&self) -> Transport {
        match self {
            TargetSpec::Uri { transport, .. } | TargetSpec::Srv { transport, .. } => *transport,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub password: String,
}

/// Digest authentication demanded of requests arriving on the trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundAuth {
    pub realm: String,
    pub users: Vec<User>,
    pub nonce_ttl_s: u32,
    pub algorithm: DigestAlgorithm,
}

/// Digest credentials answered to challenges from the trunk's targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Only answer challenges for this realm when set.
    pub realm: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// 0 disables OPTIONS pings: targets stay usable until a call fails on them.
    pub ping_interval_s: u32,
    pub up_after: u32,
    pub down_after: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpPolicy {
    Off,
    Optional,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpSuite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl SrtpSuite {
    pub fn sdes_name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }
    pub fn from_sdes_name(s: &str) -> Option<Self> {
        [
            SrtpSuite::AesCm128HmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32,
            SrtpSuite::AeadAes128Gcm,
            SrtpSuite::AeadAes256Gcm,
        ]
        .into_iter()
        .find(|x| x.sdes_name().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srtp {
    pub policy: SrtpPolicy,
    /// In preference order.
    pub suites: Vec<SrtpSuite>,
    /// SDES keys travel in SDP; sending them over UDP/TCP exposes them, so this must be said out loud.
    pub allow_sdes_without_tls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    G722,
    Opus,
    G729,
    TelephoneEvent,
}

impl Codec {
    /// The encoding name as written in `a=rtpmap`.
    pub fn rtpmap_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
            Codec::G729 => "G729",
            Codec::TelephoneEvent => "telephone-event",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        [
            Codec::Pcmu,
            Codec::Pcma,
            Codec::G722,
            Codec::Opus,
            Codec::G729,
            Codec::TelephoneEvent,
        ]
        .into_iter()
        .find(|c| c.rtpmap_name().eq_ignore_ascii_case(s))
    }
}

/// A header value with `${var}` placeholders, split once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateVar {
    /// The request-URI user part as received, before translation.
    OriginalTo,
    /// The From user part as received.
    OriginalFrom,
    /// Name of the trunk the request came from.
    Trunk,
    /// Source IP of the request.
    SourceIp,
    /// This node's name.
    Node,
}

impl TemplateVar {
    pub(crate) const ALL: [(&'static str, TemplateVar); 5] = [
        ("original_to", TemplateVar::OriginalTo),
        ("original_from", TemplateVar::OriginalFrom),
        ("trunk", TemplateVar::Trunk),
        ("source_ip", TemplateVar::SourceIp),
        ("node", TemplateVar::Node),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Var(TemplateVar),
}

impl Template {
    /// Expands the template; `var` supplies each variable's value.
    pub fn render<'a>(&self, mut var: impl FnMut(TemplateVar) -> &'a str, out: &mut String) {
        for p in &self.parts {
            match p {
                TemplatePart::Literal(s) => out.push_str(s),
                TemplatePart::Var(v) => out.push_str(var(*v)),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderAction {
    /// Add the header (another instance if one exists).
    Add(Template),
    /// Replace every instance, or add when absent.
    Replace(Template),
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    pub name: String,
    pub action: HeaderAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// Header-name globs (`X-*`, case-insensitive) passed through from the other leg; everything else that is
    /// not needed to build the leg is dropped.
    pub allow: Vec<String>,
    pub rules: Vec<HeaderRule>,
}

impl Headers {
    /// Whether a non-essential header from the other leg may be copied across.
    pub fn allows(&self, name: &str) -> bool {
        self.allow.iter().any(|g| glob_match_ci(g, name))
    }
}

/// Case-insensitive match with `*` as "any run of characters"; header names are ASCII tokens.
pub fn glob_match_ci(glob: &str, name: &str) -> bool {
    let (g, n) = (glob.as_bytes(), name.as_bytes());
    let (mut gi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match g.get(gi) {
            Some(b'*') => {
                star = Some((gi, ni));
                gi += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&n[ni]) => {
                gi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sg, sn)) => {
                    gi = sg + 1;
                    ni = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    g[gi.min(g.len())..].iter().all(|&c| c == b'*')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferPolicy {
    /// Pass REFER to the other leg.
    Relay,
    /// The SBC acts on REFER itself (new outbound leg, then replaces the referring one).
    Handle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    pub enabled: bool,
    pub expires_s: u32,
    pub min_se_s: u32,
}

/// How this trunk writes numbers, for E.164 normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbering {
    /// Country calling code without `+`, e.g. `1`, `44`.
    pub country_code: String,
    /// Trunk prefix dialled before a national number, e.g. `0` (most of Europe) or `1` (NANP).
    pub national_prefix: Option<String>,
    /// Prefix for international numbers, e.g. `00` or `011`.
    pub international_prefix: Option<String>,
    /// Length of a national significant number dialled without any prefix (10 in NANP).
    pub national_digits: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trunk {
    pub name: String,
    pub profile: Profile,
    pub acl: Vec<IpNet>,
    pub targets: Vec<TargetSpec>,
    pub inbound_auth: Option<InboundAuth>,
    pub credentials: Option<Credentials>,
    pub health: Health,
    pub failover_codes: Vec<u16>,
    pub target_timeout_ms: u32,
    pub srtp: Srtp,
    /// Allowed codecs in preference order.
    pub codecs: Vec<Codec>,
    pub ptime_ms: u16,
    pub headers: Headers,
    /// Header carrying the called number as received (before translation) towards this trunk.
    pub original_to_header: Option<String>,
    /// E.164 number presented as caller towards this trunk.
    pub caller_id_override: Option<String>,
    pub max_calls: Option<u32>,
    pub max_cps: Option<f64>,
    pub refer: ReferPolicy,
    pub session_timer: SessionTimer,
    pub numbering: Option<Numbering>,
    /// Response when a request from this trunk matches no route.
    pub no_route_code: u16,
}

/// A compiled regex that compares by its source text (so configs can be diffed).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The user parts a rule may rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberField {
    RequestUri,
    To,
    From,
    Pai,
}

impl NumberField {
    pub fn as_str(self) -> &'static str {
        match self {
            NumberField::RequestUri => "ruri",
            NumberField::To => "to",
            NumberField::From => "from",
            NumberField::Pai => "pai",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: Option<String>,
    /// Index into `Config::trunks`: the trunk whose incoming requests this rule rewrites.
    pub trunk: usize,
    pub pattern: Pattern,
    /// `$1`, `${name}` refer to the pattern's groups (checked at load).
    pub replace: String,
    pub apply_to: Vec<NumberField>,
}

impl Rule {
    pub fn applies_to(&self, f: NumberField) -> bool {
        self.apply_to.contains(&f)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: Option<String>,
    pub from: usize,
    /// Called number (after translation) must match; `None` matches every number.
    pub number: Option<Pattern>,
    pub to: usize,
    /// Lower is tried first; ties keep file order.
    pub priority: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnauthorizedAction {
    Reject,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub max_requests_per_s: u32,
    pub max_invites_per_s: u32,
    /// Violations from one source before it is banned.
    pub ban_threshold: u32,
    pub ban_duration_s: u32,
    /// Lower-case substrings of User-Agent that mark a scanner.
    pub scanner_user_agents: Vec<String>,
    pub max_message_size: u32,
    pub max_headers: u32,
    pub unauthorized: UnauthorizedAction,
    /// Open TCP/TLS connections in total (accepted and outbound); fixed at start.
    pub tcp_max_connections: u32,
    /// Accepted TCP/TLS connections per source IP; fixed at start.
    pub tcp_max_per_source: u32,
    /// A connection without traffic either way for this long is closed; fixed at start.
    pub tcp_idle_timeout_s: u32,
    /// A message (or TLS handshake) whose first byte has arrived must be complete within this long, or the
    /// connection is closed: bytes trickling in keep a connection from being idle, not from being cut.
    pub tcp_message_timeout_ms: u32,
    /// Banned sources are also dropped by netfilter (`raw PREROUTING`, chain `TGBAN-<node>`), so a flood
    /// from them stops filling the SIP socket's queue; the guard's own bans work without it.
    pub kernel_bans: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mgmt {
    pub http: Option<SocketAddr>,
    pub control_socket: PathBuf,
    /// SIGTERM: how long calls may go on (new ones get 503) before the rest are hung up.
    pub drain_timeout_s: u32,
    /// Where a JSON line per finished call is appended; `None`: each record is logged (target `cdr`).
    pub cdr_file: Option<PathBuf>,
    pub sip_trace: SipTrace,
}

/// `[mgmt] sip_trace_*`, `hep_*`: every SIP message received and sent, as pcap and/or HEPv3 (see
/// `crate::stats::trace`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SipTrace {
    /// pcap file (LINKTYPE_RAW); the previous file is kept as `FILE.1` at start and at `max_bytes`.
    pub pcap: Option<PathBuf>,
    pub max_bytes: u64,
    /// Homer collector (HEPv3 over UDP).
    pub hep: Option<SocketAddr>,
    pub hep_capture_id: u32,
    pub hep_auth_key: Option<String>,
}

impl SipTrace {
    pub fn enabled(&self) -> bool {
        self.pcap.is_some() || self.hep.is_some()
    }
}

/// `[forwarding]`: runtime call forwarding (see `crate::forward`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// The SQLite file; `None`: forwarding is off.
    pub db: Option<PathBuf>,
    /// Where the forwarding REST API listens (`None`: not served).
    pub api: Option<SocketAddr>,
    /// The appliance's own numbers (E.164, as after translation): forwards may be set on these, and a fixed
    /// caller ID must be one of them.
    pub numbers: Vec<String>,
    /// Failed console sign-ins for one user within `lockout` before that user is locked for `lockout`.
    pub lockout_after: u32,
    pub lockout: std::time::Duration,
    /// Serve the API and console over TLS (cookies then carry `Secure`).
    pub tls: Option<ForwardingTls>,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            db: None,
            api: None,
            numbers: Vec::new(),
            lockout_after: 5,
            lockout: std::time::Duration::from_secs(900),
            tls: None,
        }
    }
}

/// `[forwarding] tls_cert` / `tls_key` (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// A `tracing` filter directive (`info`, `tollgate=debug,warn`).
    pub level: String,
    pub format: LogFormat,
}
