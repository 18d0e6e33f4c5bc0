//! From the raw file to a typed `Config`: parse every value, apply defaults, check cross-references.
//!
//! Every check records its error and carries on with a placeholder, so one run reports everything. Errors
//! point at the value (or, for a missing value, the key of the enclosing table entry).

use super::Collector;
use super::raw::*;
use super::types::*;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Each worker gets its own slice of the port range; fewer pairs than this per worker and a busy worker runs dry.
pub const MIN_PORT_PAIRS_PER_WORKER: u32 = 64;

const DEFAULT_SCANNERS: [&str; 3] = ["friendly-scanner", "sipvicious", "sipcli"];

struct V<'a> {
    c: &'a mut Collector,
    text: &'a str,
}

impl V<'_> {
    fn err(&mut self, at: usize, msg: impl Into<String>) {
        self.c.at(at..at, msg);
    }

    /// A path setting, which must be absolute (a relative one depends on where the daemon was started).
    fn abs_path(&mut self, p: &S<String>, what: &str) -> PathBuf {
        if !p.get_ref().starts_with('/') {
            self.err(p.span().start, format!("{what} must be an absolute path"));
        }
        PathBuf::from(p.get_ref())
    }

    fn int<T: TryFrom<i64>>(&mut self, v: &S<i64>, lo: i64, hi: i64, what: &str) -> Option<T> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            self.err(
                v.span().start,
                format!("{what} must be between {lo} and {hi}, got {n}"),
            );
            return None;
        }
        T::try_from(n).ok()
    }

    fn int_or<T: TryFrom<i64> + Copy>(
        &mut self,
        v: Option<&S<i64>>,
        lo: i64,
        hi: i64,
        what: &str,
        default: T,
    ) -> T {
        v.and_then(|v| self.int(v, lo, hi, what)).unwrap_or(default)
    }

    fn choice<T: Copy>(&mut self, v: &S<String>, opts: &[(&str, T)], what: &str) -> Option<T> {
        let s = v.get_ref().as_str();
        if let Some((_, t)) = opts.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Some(*t);
        }
        let names: Vec<&str> = opts.iter().map(|(n, _)| *n).collect();
        self.err(
            v.span().start,
            format!(
                "unknown {what} `{s}`, expected one of: {}",
                names.join(", ")
            ),
        );
        None
    }

    fn choice_or<T: Copy>(
        &mut self,
        v: Option<&S<String>>,
        opts: &[(&str, T)],
        what: &str,
        default: T,
    ) -> T {
        v.and_then(|v| self.choice(v, opts, what))
            .unwrap_or(default)
    }

    /// File offset of byte `idx` of a string value's decoded contents (for errors inside regexes and
    /// templates). Multi-line strings fall back to the start of the value.
    fn inner_offset(&self, v: &S<String>, idx: usize) -> usize {
        let span = v.span();
        let raw = self.text.get(span.clone()).unwrap_or("");
        if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            return span.start;
        }
        if raw.starts_with('\'') {
            return span.start + 1 + idx;
        }
        if !raw.starts_with('"') {
            return span.start;
        }
        let mut decoded = 0usize;
        let mut chars = raw.char_indices().skip(1);
        while let Some((i, ch)) = chars.next() {
            if decoded >= idx {
                return span.start + i;
            }
            if ch == '\\' {
                match chars.next() {
                    Some((_, 'u')) => {
                        let hex: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                        decoded += char_len_hex(&hex);
                    }
                    Some((_, 'U')) => {
                        let hex: String = chars.by_ref().take(8).map(|(_, c)| c).collect();
                        decoded += char_len_hex(&hex);
                    }
                    _ => decoded += 1,
                }
            } else {
                decoded += ch.len_utf8();
            }
        }
        span.start
    }

    fn pattern(&mut self, v: &S<String>, what: &str) -> Option<Pattern> {
        use regex_syntax::{ast, hir};
        let src = v.get_ref();
        let parsed = ast::parse::Parser::new().parse(src);
        let ast = match parsed {
            Ok(a) => a,
            Err(e) => {
                let at = self.inner_offset(v, e.span().start.offset);
                self.err(at, format!("invalid {what} regex: {}", e.kind()));
                return None;
            }
        };
        if let Err(e) = hir::translate::Translator::new().translate(src, &ast) {
            let at = self.inner_offset(v, e.span().start.offset);
            self.err(at, format!("invalid {what} regex: {}", e.kind()));
            return None;
        }
        match regex::Regex::new(src) {
            Ok(regex) => Some(Pattern {
                source: src.clone(),
                regex,
            }),
            Err(e) => {
                self.err(v.span().start, format!("invalid {what} regex: {e}"));
                None
            }
        }
    }

    fn socket_addr(&mut self, v: &S<String>, what: &str) -> Option<SocketAddr> {
        match v.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    v.span().start,
                    format!(
                        "{what} `{}` is not an ip:port address (IPv6 as [addr]:port)",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn ip(&mut self, v: &S<String>, what: &str) -> Option<IpAddr> {
        match v.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    v.span().start,
                    format!("{what} `{}` is not an IP address", v.get_ref()),
                );
                None
            }
        }
    }

    fn nonempty(&mut self, v: &S<String>, what: &str) -> String {
        if v.get_ref().trim().is_empty() {
            self.err(v.span().start, format!("{what} must not be empty"));
        }
        v.get_ref().clone()
    }

    fn header_name(&mut self, v: &S<String>, what: &str, glob: bool) -> String {
        let s = v.get_ref();
        if s.is_empty() || !s.bytes().all(|b| is_token(b) || (glob && b == b'*')) {
            self.err(
                v.span().start,
                format!("{what} `{s}` is not a valid SIP header name"),
            );
        }
        s.clone()
    }

    fn template(&mut self, v: &S<String>) -> Template {
        let s = v.get_ref();
        let mut parts = Vec::new();
        let mut rest = s.as_str();
        let mut consumed = 0usize;
        while let Some(i) = rest.find("${") {
            if i > 0 {
                parts.push(TemplatePart::Literal(rest[..i].to_owned()));
            }
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                let at = self.inner_offset(v, consumed + i);
                self.err(at, "unterminated `${` in header value");
                return Template { parts };
            };
            let name = &after[..end];
            match TemplateVar::ALL.iter().find(|(n, _)| *n == name) {
                Some((_, var)) => parts.push(TemplatePart::Var(*var)),
                None => {
                    let at = self.inner_offset(v, consumed + i);
                    let known: Vec<&str> = TemplateVar::ALL.iter().map(|(n, _)| *n).collect();
                    self.err(
                        at,
                        format!(
                            "unknown variable `${{{name}}}`, expected one of: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
            let step = i + 2 + end + 1;
            consumed += step;
            rest = &rest[step..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_owned()));
        }
        Template { parts }
    }
}

fn char_len_hex(hex: &str) -> usize {
    u32::from_str_radix(hex, 16)
        .ok()
        .and_then(char::from_u32)
        .map_or(1, char::len_utf8)
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// `+` followed by 2 to 15 digits, the first not 0 (ITU-T E.164).
pub fn is_e164(s: &str) -> bool {
    let Some(d) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

const TRANSPORTS: [(&str, Transport); 3] = [
    ("udp", Transport::Udp),
    ("tcp", Transport::Tcp),
    ("tls", Transport::Tls),
];

pub(crate) fn validate(r: &RawConfig, text: &str, c: &mut Collector) -> Config {
    let mut v = V { c, text };
    let trunk_names: HashMap<&str, usize> = {
        let mut m = HashMap::new();
        for (i, t) in r.trunk.iter().enumerate() {
            let n = t.name.get_ref().as_str();
            if m.insert(n, i).is_some() {
                v.err(t.name.span().start, format!("duplicate trunk name `{n}`"));
                // Keep the first definition as the one references resolve to.
                let first = r.trunk.iter().position(|x| x.name.get_ref() == n);
                if let Some(f) = first {
                    m.insert(n, f);
                }
            }
        }
        m
    };
    let trunk_ref = |v: &mut V, s: &S<String>, what: &str| -> Option<usize> {
        let i = trunk_names.get(s.get_ref().as_str()).copied();
        if i.is_none() {
            v.err(
                s.span().start,
                format!("{what} refers to unknown trunk `{}`", s.get_ref()),
            );
        }
        i
    };

    let node = Node {
        name: v.nonempty(&r.node.name, "node.name"),
        fqdn: r.node.fqdn.as_ref().map(|f| {
            if !is_hostname(f.get_ref()) {
                v.err(
                    f.span().start,
                    format!("node.fqdn `{}` is not a host name", f.get_ref()),
                );
            }
            f.get_ref().clone()
        }),
    };

    let mut listen = Vec::new();
    for l in &r.listen {
        let transport = v.choice(&l.transport, &TRANSPORTS, "transport");
        let address = v.socket_addr(&l.address, "listen address");
        let tls = match transport {
            Some(Transport::Tls) => match (&l.tls_cert, &l.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: PathBuf::from(cert.get_ref()),
                    key: PathBuf::from(key.get_ref()),
                    ca: l.tls_ca.as_ref().map(|p| PathBuf::from(p.get_ref())),
                }),
                _ => {
                    v.err(
                        l.transport.span().start,
                        "transport tls needs tls_cert and tls_key",
                    );
                    None
                }
            },
            _ => {
                for p in [&l.tls_cert, &l.tls_key, &l.tls_ca].into_iter().flatten() {
                    v.err(
                        p.span().start,
                        "TLS files only apply to transport = \"tls\"",
                    );
                }
                None
            }
        };
        let trunk = l
            .trunk
            .as_ref()
            .and_then(|t| trunk_ref(&mut v, t, "listener"));
        if let (Some(transport), Some(address)) = (transport, address) {
            let l2 = Listener {
                transport,
                address,
                tls,
                trunk,
            };
            if listen.iter().any(|x: &Listener| x.key() == l2.key()) {
                v.err(
                    l.address.span().start,
                    format!("duplicate listener {}", l2.key()),
                );
            }
            listen.push(l2);
        }
    }
    if r.listen.is_empty() {
        v.err(0, "no [[listen]] section: the SBC would accept no SIP");
    }

    let media = validate_media(&mut v, &r.media);

    let mut acl_owner: HashMap<IpNet, &str> = HashMap::new();
    let mut trunks = Vec::new();
    for t in &r.trunk {
        let tr = validate_trunk(&mut v, t, &mut acl_owner);
        trunks.push(tr);
    }

    let mut rules = Vec::new();
    for rr in &r.rule {
        let trunk = trunk_ref(&mut v, &rr.trunk, "rule");
        let pattern = v.pattern(&rr.pattern, "match");
        if let Some(p) = &pattern {
            check_replacement(&mut v, &rr.replace, &p.regex);
        }
        let apply_to = match &rr.apply_to {
            None => vec![NumberField::RequestUri, NumberField::To],
            Some(list) => {
                if list.get_ref().is_empty() {
                    v.err(list.span().start, "apply_to must name at least one field");
                }
                let mut out = Vec::new();
                for f in list.get_ref() {
                    let opts = [
                        ("ruri", NumberField::RequestUri),
                        ("to", NumberField::To),
                        ("from", NumberField::From),
                        ("pai", NumberField::Pai),
                    ];
                    if let Some(x) = v.choice(f, &opts, "apply_to field") {
                        if out.contains(&x) {
                            v.err(f.span().start, format!("`{}` listed twice", x.as_str()));
                        } else {
                            out.push(x);
                        }
                    }
                }
                out
            }
        };
        if let (Some(trunk), Some(pattern)) = (trunk, pattern) {
            rules.push(Rule {
                name: rr.name.as_ref().map(|n| n.get_ref().clone()),
                trunk,
                pattern,
                replace: rr.replace.get_ref().clone(),
                apply_to,
            });
        }
    }

    let mut routes = Vec::new();
    for rt in &r.route {
        let from = trunk_ref(&mut v, &rt.from, "route `from`");
        let to = trunk_ref(&mut v, &rt.to, "route `to`");
        if let Some(ti) = to
            && let Some(t) = trunks.get(ti)
            && t.targets.is_empty()
        {
            v.err(
                rt.to.span().start,
                format!(
                    "route to trunk `{}`, which has no targets or srv to send to",
                    t.name
                ),
            );
        }
        let number = match &rt.number {
            None => Some(None),
            Some(n) => v.pattern(n, "number").map(Some),
        };
        let priority = v.int_or(rt.priority.as_ref(), 0, u32::MAX as i64, "priority", 100u32);
        if let (Some(from), Some(to), Some(number)) = (from, to, number) {
            routes.push(Route {
                name: rt.name.as_ref().map(|n| n.get_ref().clone()),
                from,
                number,
                to,
                priority,
            });
        }
    }

    let security = validate_security(&mut v, &r.security);

    let mgmt = Mgmt {
        http: match &r.mgmt.http {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            Some(s) if s.get_ref() == "off" => None,
            Some(s) => v.socket_addr(s, "mgmt.http"),
        },
        control_socket: match &r.mgmt.control_socket {
            None => PathBuf::from("/run/tollgate/control.sock"),
            Some(p) => v.abs_path(p, "mgmt.control_socket"),
        },
        drain_timeout_s: v.int_or(
            r.mgmt.drain_timeout_s.as_ref(),
            0,
            86400,
            "drain_timeout_s",
            30,
        ),
        cdr_file: r
            .mgmt
            .cdr_file
            .as_ref()
            .map(|p| v.abs_path(p, "mgmt.cdr_file")),
        sip_trace: SipTrace {
            pcap: r
                .mgmt
                .sip_trace_pcap
                .as_ref()
                .map(|p| v.abs_path(p, "mgmt.sip_trace_pcap")),
            max_bytes: v.int_or(
                r.mgmt.sip_trace_max_mb.as_ref(),
                1,
                100_000,
                "mgmt.sip_trace_max_mb",
                100u64,
            ) * 1024
                * 1024,
            hep: r
                .mgmt
                .sip_trace_hep
                .as_ref()
                .and_then(|s| v.socket_addr(s, "mgmt.sip_trace_hep")),
            hep_capture_id: v.int_or(
                r.mgmt.hep_capture_id.as_ref(),
                0,
                i64::from(u32::MAX),
                "mgmt.hep_capture_id",
                2001u32,
            ),
            hep_auth_key: r.mgmt.hep_auth_key.as_ref().map(|k| k.get_ref().clone()),
        },
    };

    let forwarding = validate_forwarding(&mut v, &r.forwarding);

    let log = Log {
        level: match &r.log.level {
            None => "info".into(),
            Some(l) => {
                if tracing_subscriber::EnvFilter::try_new(l.get_ref()).is_err() {
                    v.err(
                        l.span().start,
                        format!("log.level `{}` is not a valid filter", l.get_ref()),
                    );
                }
                l.get_ref().clone()
            }
        },
        format: v.choice_or(
            r.log.format.as_ref(),
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            "log format",
            LogFormat::Text,
        ),
    };

    Config {
        node,
        listen,
        media,
        trunks,
        rules,
        routes,
        security,
        mgmt,
        forwarding,
        log,
    }
}

fn validate_forwarding(v: &mut V, f: &RawForwarding) -> Forwarding {
    let db = f.db.as_ref().map(|p| v.abs_path(p, "forwarding.db"));
    let api = match &f.api {
        None => None,
        Some(s) if s.get_ref() == "off" => None,
        Some(s) => {
            if db.is_none() {
                v.err(s.span().start, "forwarding.api needs forwarding.db");
            }
            v.socket_addr(s, "forwarding.api")
        }
    };
    let mut numbers: Vec<String> = Vec::new();
    for n in f.numbers.iter().flatten() {
        if !is_e164(n.get_ref()) {
            v.err(
                n.span().start,
                format!(
                    "forwarding.numbers: `{}` is not an E.164 number",
                    n.get_ref()
                ),
            );
        } else if numbers.contains(n.get_ref()) {
            v.err(
                n.span().start,
                format!("forwarding.numbers: `{}` is listed twice", n.get_ref()),
            );
        } else {
            numbers.push(n.get_ref().clone());
        }
    }
    let lockout_after = v.int_or(
        f.lockout_after.as_ref(),
        1,
        1000,
        "forwarding.lockout_after",
        5u32,
    );
    let lockout_s: u64 = v.int_or(
        f.lockout_s.as_ref(),
        1,
        86_400,
        "forwarding.lockout_s",
        900u64,
    );
    let tls = match (&f.tls_cert, &f.tls_key) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            for p in [c, k] {
                if !p.get_ref().starts_with('/') {
                    v.err(
                        p.span().start,
                        "forwarding.tls_cert/tls_key must be absolute paths",
                    );
                }
            }
            Some(ForwardingTls {
                cert: PathBuf::from(c.get_ref()),
                key: PathBuf::from(k.get_ref()),
            })
        }
        (Some(p), None) | (None, Some(p)) => {
            v.err(
                p.span().start,
                "forwarding.tls_cert and forwarding.tls_key go together",
            );
            None
        }
    };
    if tls.is_some() && api.is_none() {
        v.err(
            f.tls_cert.as_ref().map_or(0, |c| c.span().start),
            "forwarding.tls_cert needs forwarding.api",
        );
    }
    Forwarding {
        db,
        api,
        numbers,
        lockout_after,
        lockout: std::time::Duration::from_secs(lockout_s),
        tls,
    }
}

fn validate_media(v: &mut V, m: &RawMedia) -> Media {
    let mode = v.choice_or(
        m.mode.as_ref(),
        &[
            ("xdp", MediaMode::Xdp),
            ("socket", MediaMode::Socket),
            ("bypass", MediaMode::Bypass),
        ],
        "media mode",
        // Anchoring needs to know where media lives: without interfaces the default passes SDP through.
        if m.interface.is_empty() {
            MediaMode::Bypass
        } else {
            MediaMode::Socket
        },
    );
    let xdp_required = m.xdp_required.as_ref().is_some_and(|x| *x.get_ref());
    if xdp_required
        && mode != MediaMode::Xdp
        && let Some(x) = &m.xdp_required
    {
        v.err(
            x.span().start,
            "xdp_required = true needs media mode \"xdp\"",
        );
    }
    let mut interfaces: Vec<Interface> = Vec::new();
    for i in &m.interface {
        let name = v.nonempty(&i.name, "interface name");
        if interfaces.iter().any(|x| x.name == name) {
            v.err(i.name.span().start, format!("duplicate interface `{name}`"));
        }
        let role = v.choice_or(
            Some(&i.role),
            &[
                ("carrier", InterfaceRole::Carrier),
                ("cloud", InterfaceRole::Cloud),
            ],
            "interface role",
            InterfaceRole::Carrier,
        );
        let address = i
            .address
            .as_ref()
            .and_then(|a| v.ip(a, "interface address"));
        let public_address = i
            .public_address
            .as_ref()
            .and_then(|a| v.ip(a, "public_address"));
        interfaces.push(Interface {
            name,
            role,
            address,
            public_address,
        });
    }
    if mode == MediaMode::Xdp && interfaces.is_empty() {
        let at = m.mode.as_ref().map_or(0, |s| s.span().start);
        v.err(
            at,
            "media mode \"xdp\" needs at least one [[media.interface]]",
        );
    }
    let port_min: u16 = v.int_or(m.port_min.as_ref(), 1024, 65534, "port_min", 20000);
    let port_max: u16 = v.int_or(m.port_max.as_ref(), 1025, 65535, "port_max", 39999);
    if let Some(p) = &m.port_min
        && !port_min.is_multiple_of(2)
    {
        v.err(
            p.span().start,
            "port_min must be even (RTP on even ports, RTCP on odd)",
        );
    }
    let mut worker_cores = Vec::new();
    if let Some(cores) = &m.worker_cores {
        for core in cores.get_ref() {
            if let Some(n) = v.int::<usize>(core, 0, 4095, "worker core") {
                if worker_cores.contains(&n) {
                    v.err(core.span().start, format!("core {n} listed twice"));
                }
                worker_cores.push(n);
            }
        }
    }
    if port_max <= port_min {
        let at = m
            .port_max
            .as_ref()
            .or(m.port_min.as_ref())
            .map_or(0, |s| s.span().start);
        v.err(
            at,
            format!("port_max {port_max} must be above port_min {port_min}"),
        );
    } else {
        let pairs = (u32::from(port_max) - u32::from(port_min)).div_ceil(2);
        let workers = worker_cores.len().max(1) as u32;
        let need = workers * MIN_PORT_PAIRS_PER_WORKER;
        if pairs < need {
            let at = m
                .port_max
                .as_ref()
                .or(m.port_min.as_ref())
                .map_or(0, |s| s.span().start);
            v.err(
                at,
                format!(
                    "port range {port_min}-{port_max} holds {pairs} RTP/RTCP pairs; {workers} worker(s) need at least {need} ({MIN_PORT_PAIRS_PER_WORKER} each)"
                ),
            );
        }
    }
    Media {
        mode,
        xdp_required,
        interfaces,
        port_min,
        port_max,
        worker_cores,
        rtp_timeout_s: v.int_or(m.rtp_timeout_s.as_ref(), 1, 86400, "rtp_timeout_s", 60),
        hold_timeout_s: v.int_or(m.hold_timeout_s.as_ref(), 1, 604800, "hold_timeout_s", 7200),
        port_quarantine_s: v.int_or(
            m.port_quarantine_s.as_ref(),
            0,
            3600,
            "port_quarantine_s",
            5,
        ),
        strict_latching: m.strict_latching.unwrap_or(false),
    }
}

/// Defaults a profile brings; anything written in the trunk wins.
struct ProfileDefaults {
    srtp: SrtpPolicy,
    codecs: &'static [Codec],
    ping_interval_s: u32,
    allow: &'static [&'static str],
    refer: ReferPolicy,
}

fn profile_defaults(p: Profile) -> ProfileDefaults {
    use Codec::*;
    match p {
        Profile::Generic => ProfileDefaults {
            srtp: SrtpPolicy::Off,
            codecs: &[Pcmu, Pcma, G722, TelephoneEvent],
            ping_interval_s: 30,
            allow: &[],
            refer: ReferPolicy::Relay,
        },
        // ACS direct routing expects an OPTIONS ping about once a minute, TLS and SRTP.
        Profile::Acs => ProfileDefaults {
            srtp: SrtpPolicy::Required,
            codecs: &[Opus, G722, Pcmu, Pcma, TelephoneEvent],
            ping_interval_s: 60,
            allow: &["X-*"],
            refer: ReferPolicy::Handle,
        },
        // Chime Voice Connector / Connect pass call context in X- headers and User-to-User.
        Profile::Chime => ProfileDefaults {
            srtp: SrtpPolicy::Required,
            codecs: &[Pcmu, Pcma, G722, TelephoneEvent],
            ping_interval_s: 30,
            allow: &["X-*", "User-to-User"],
            refer: ReferPolicy::Relay,
        },
    }
}

fn validate_trunk<'r>(
    v: &mut V,
    t: &'r RawTrunk,
    acl_owner: &mut HashMap<IpNet, &'r str>,
) -> Trunk {
    let name = v.nonempty(&t.name, "trunk name");
    let profile = v.choice_or(
        t.profile.as_ref(),
        &[
            ("generic", Profile::Generic),
            ("acs", Profile::Acs),
            ("chime", Profile::Chime),
        ],
        "profile",
        Profile::Generic,
    );
    let pd = profile_defaults(profile);

    let mut acl = Vec::new();
    for a in &t.acl {
        if let Some(net) = parse_cidr(v, a) {
            if let Some(other) = acl_owner.insert(net, t.name.get_ref()) {
                v.err(
                    a.span().start,
                    format!("ACL entry {net} is also listed by trunk `{other}`"),
                );
            }
            acl.push(net);
        }
    }

    let mut targets = Vec::new();
    let mut target_at = Vec::new();
    for s in &t.targets {
        if let Some(ts) = parse_target(v, s) {
            targets.push(ts);
            target_at.push(s.span().start);
        }
    }
    if let Some(s) = &t.srv {
        let n = s.get_ref();
        let transport = [
            ("_sip._udp.", Transport::Udp),
            ("_sip._tcp.", Transport::Tcp),
            ("_sips._tcp.", Transport::Tls),
        ]
        .into_iter()
        .find(|(p, _)| n.to_ascii_lowercase().starts_with(p));
        match transport {
            Some((p, tr)) if is_hostname(&n[p.len()..]) => {
                targets.push(TargetSpec::Srv {
                    name: n.clone(),
                    transport: tr,
                });
                target_at.push(s.span().start);
            }
            _ => v.err(
                s.span().start,
                format!(
                    "srv `{n}` must look like _sip._udp.NAME, _sip._tcp.NAME or _sips._tcp.NAME"
                ),
            ),
        }
    }

    let inbound_auth = t.auth.as_ref().map(|a| {
        let realm = v.nonempty(&a.realm, "auth.realm");
        let mut users: Vec<User> = Vec::new();
        for u in &a.users {
            let username = v.nonempty(&u.username, "username");
            if users.iter().any(|x| x.username == username) {
                v.err(
                    u.username.span().start,
                    format!("duplicate user `{username}`"),
                );
            }
            users.push(User {
                username,
                password: v.nonempty(&u.password, "password"),
            });
        }
        if users.is_empty() {
            v.err(
                a.realm.span().start,
                "auth needs at least one entry in users",
            );
        }
        InboundAuth {
            realm,
            users,
            nonce_ttl_s: v.int_or(a.nonce_ttl_s.as_ref(), 10, 86400, "nonce_ttl_s", 300),
            algorithm: v.choice_or(
                a.algorithm.as_ref(),
                &[
                    ("MD5", DigestAlgorithm::Md5),
                    ("SHA-256", DigestAlgorithm::Sha256),
                ],
                "digest algorithm",
                DigestAlgorithm::Md5,
            ),
        }
    });

    let credentials = t.credentials.as_ref().map(|c| Credentials {
        username: v.nonempty(&c.username, "credentials.username"),
        password: c.password.get_ref().clone(),
        realm: c.realm.as_ref().map(|r| r.get_ref().clone()),
    });

    let health = {
        let h = t.health.as_ref();
        let ping_interval_s = v.int_or(
            h.and_then(|h| h.ping_interval_s.as_ref()),
            0,
            3600,
            "ping_interval_s",
            pd.ping_interval_s,
        );
        Health {
            ping_interval_s,
            up_after: v.int_or(h.and_then(|h| h.up_after.as_ref()), 1, 100, "up_after", 2),
            down_after: v.int_or(
                h.and_then(|h| h.down_after.as_ref()),
                1,
                100,
                "down_after",
                3,
            ),
        }
    };

    let failover_codes = match &t.failover_codes {
        None => vec![503],
        Some(list) => {
            let mut out = Vec::new();
            for c in list.get_ref() {
                if let Some(code) = v.int::<u16>(c, 400, 599, "failover code") {
                    out.push(code);
                }
            }
            out
        }
    };

    let srtp = {
        let s = t.srtp.as_ref();
        let policy = v.choice_or(
            s.and_then(|s| s.policy.as_ref()),
            &[
                ("off", SrtpPolicy::Off),
                ("optional", SrtpPolicy::Optional),
                ("required", SrtpPolicy::Required),
            ],
            "srtp policy",
            pd.srtp,
        );
        let suites = match s.and_then(|s| s.suites.as_ref()) {
            None => vec![
                SrtpSuite::AesCm128HmacSha1_80,
                SrtpSuite::AesCm128HmacSha1_32,
            ],
            Some(list) => {
                let mut out = Vec::new();
                for n in list.get_ref() {
                    match SrtpSuite::from_sdes_name(n.get_ref()) {
                        Some(x) => out.push(x),
                        None => v.err(
                            n.span().start,
                            format!("unknown SRTP suite `{}`", n.get_ref()),
                        ),
                    }
                }
                if list.get_ref().is_empty() {
                    v.err(list.span().start, "srtp.suites must not be empty");
                }
                out
            }
        };
        let allow_sdes_without_tls = s.and_then(|s| s.allow_sdes_without_tls).unwrap_or(false);
        if policy != SrtpPolicy::Off
            && !allow_sdes_without_tls
            && let Some(at) = target_at
                .iter()
                .zip(&targets)
                .find(|(_, x)| x.transport() != Transport::Tls)
                .map(|(at, _)| *at)
        {
            v.err(
                    at,
                    "SRTP keys (SDES) would cross this non-TLS target in clear text; use a TLS target or set srtp.allow_sdes_without_tls = true",
                );
        }
        Srtp {
            policy,
            suites,
            allow_sdes_without_tls,
        }
    };

    let codecs = match &t.codecs {
        None => pd.codecs.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for n in list.get_ref() {
                match Codec::from_name(n.get_ref()) {
                    Some(c) if out.contains(&c) => {
                        v.err(n.span().start, format!("codec `{}` listed twice", n.get_ref()))
                    }
                    Some(c) => out.push(c),
                    None => v.err(
                        n.span().start,
                        format!(
                            "unknown codec `{}`, expected PCMU, PCMA, G722, opus, G729 or telephone-event",
                            n.get_ref()
                        ),
                    ),
                }
            }
            if !out.iter().any(|c| *c != Codec::TelephoneEvent) {
                v.err(
                    list.span().start,
                    "codecs must include at least one audio codec",
                );
            }
            out
        }
    };

    let ptime_ms: u16 = v.int_or(t.ptime.as_ref(), 10, 120, "ptime", 20);
    if let Some(p) = &t.ptime
        && !ptime_ms.is_multiple_of(10)
    {
        v.err(p.span().start, "ptime must be a multiple of 10 ms");
    }

    let headers = {
        let h = t.headers.as_ref();
        let allow = match h.and_then(|h| h.allow.as_ref()) {
            None => pd.allow.iter().map(|s| s.to_string()).collect(),
            Some(list) => list
                .get_ref()
                .iter()
                .map(|g| v.header_name(g, "header glob", true))
                .collect(),
        };
        let mut rules = Vec::new();
        for hr in h.map(|h| h.rules.as_slice()).unwrap_or(&[]) {
            let hname = v.header_name(&hr.name, "header", false);
            let kind = v.choice(
                &hr.action,
                &[("add", 0u8), ("replace", 1), ("remove", 2)],
                "header action",
            );
            let action = match (kind, &hr.value) {
                (Some(2), None) => Some(HeaderAction::Remove),
                (Some(2), Some(val)) => {
                    v.err(val.span().start, "remove takes no value");
                    None
                }
                (Some(k), Some(val)) => {
                    let tpl = v.template(val);
                    Some(if k == 0 {
                        HeaderAction::Add(tpl)
                    } else {
                        HeaderAction::Replace(tpl)
                    })
                }
                (Some(_), None) => {
                    v.err(hr.action.span().start, "add and replace need a value");
                    None
                }
                (None, _) => None,
            };
            if let Some(action) = action {
                rules.push(HeaderRule {
                    name: hname,
                    action,
                });
            }
        }
        Headers { allow, rules }
    };

    let original_to_header = t
        .original_to_header
        .as_ref()
        .map(|h| v.header_name(h, "original_to_header", false));

    let caller_id_override = t.caller_id_override.as_ref().map(|c| {
        if !is_e164(c.get_ref()) {
            v.err(
                c.span().start,
                format!(
                    "caller_id_override `{}` is not an E.164 number (+ and 2 to 15 digits)",
                    c.get_ref()
                ),
            );
        }
        c.get_ref().clone()
    });

    let max_calls = t
        .max_calls
        .as_ref()
        .and_then(|m| v.int::<u32>(m, 1, 1_000_000, "max_calls"));
    let max_cps = t.max_cps.as_ref().and_then(|m| {
        let x = *m.get_ref();
        if x.is_finite() && x > 0.0 && x <= 100_000.0 {
            Some(x)
        } else {
            v.err(m.span().start, "max_cps must be above 0 and at most 100000");
            None
        }
    });

    let refer = v.choice_or(
        t.refer.as_ref(),
        &[
            ("relay", ReferPolicy::Relay),
            ("handle", ReferPolicy::Handle),
        ],
        "refer policy",
        pd.refer,
    );

    let session_timer = {
        let s = t.session_timer.as_ref();
        let min_se_s = v.int_or(
            s.and_then(|s| s.min_se_s.as_ref()),
            90,
            86400,
            "min_se_s",
            90u32,
        );
        let expires_s = v.int_or(
            s.and_then(|s| s.expires_s.as_ref()),
            90,
            86400,
            "expires_s",
            1800u32,
        );
        if expires_s < min_se_s {
            let at = s
                .and_then(|s| s.expires_s.as_ref())
                .map_or(t.name.span().start, |x| x.span().start);
            v.err(
                at,
                format!("expires_s {expires_s} is below min_se_s {min_se_s}"),
            );
        }
        SessionTimer {
            enabled: s.and_then(|s| s.enabled).unwrap_or(true),
            expires_s,
            min_se_s,
        }
    };

    let numbering = t.numbering.as_ref().map(|n| {
        let digits = |v: &mut V, s: &S<String>, what: &str, max: usize| {
            let x = s.get_ref();
            if x.is_empty() || x.len() > max || !x.bytes().all(|b| b.is_ascii_digit()) {
                v.err(s.span().start, format!("{what} must be 1 to {max} digits"));
            }
            x.clone()
        };
        Numbering {
            country_code: digits(v, &n.country_code, "country_code", 3),
            national_prefix: n
                .national_prefix
                .as_ref()
                .map(|p| digits(v, p, "national_prefix", 4)),
            international_prefix: n
                .international_prefix
                .as_ref()
                .map(|p| digits(v, p, "international_prefix", 4)),
            national_digits: n
                .national_digits
                .as_ref()
                .and_then(|d| v.int::<u8>(d, 4, 14, "national_digits")),
        }
    });

    let no_route_code = match &t.no_route_code {
        None => 404,
        Some(c) => match *c.get_ref() {
            x @ (403 | 404 | 480 | 484 | 603 | 604) => x as u16,
            x => {
                v.err(
                    c.span().start,
                    format!("no_route_code {x} must be one of 403, 404, 480, 484, 603, 604"),
                );
                404
            }
        },
    };

    Trunk {
        name,
        profile,
        acl,
        targets,
        inbound_auth,
        credentials,
        health,
        failover_codes,
        target_timeout_ms: v.int_or(
            t.target_timeout_ms.as_ref(),
            100,
            120_000,
            "target_timeout_ms",
            2000,
        ),
        srtp,
        codecs,
        ptime_ms,
        headers,
        original_to_header,
        caller_id_override,
        max_calls,
        max_cps,
        refer,
        session_timer,
        numbering,
        no_route_code,
    }
}

fn parse_cidr(v: &mut V, a: &S<String>) -> Option<IpNet> {
    let s = a.get_ref().trim();
    let net = if s.contains('/') {
        s.parse::<IpNet>().ok()
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    };
    match net {
        None => {
            v.err(
                a.span().start,
                format!("ACL entry `{s}` is not a CIDR (addr/len) or an IP address"),
            );
            None
        }
        Some(n) if n.trunc() != n => {
            v.err(
                a.span().start,
                format!(
                    "ACL entry `{s}` has host bits set; did you mean {}?",
                    n.trunc()
                ),
            );
            None
        }
        Some(n) => Some(n),
    }
}

fn parse_target(v: &mut V, s: &S<String>) -> Option<TargetSpec> {
    match parse_target_str(s.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            v.err(s.span().start, format!("target `{}`: {e}", s.get_ref()));
            None
        }
    }
}

/// `sip:host[:port][;transport=x]`, `sips:host[:port]`, or `host[:port]` (UDP).
pub fn parse_target_str(s: &str) -> Result<TargetSpec, String> {
    let lower = s.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("sips:") {
        (UriScheme::Sips, &s[5..])
    } else if lower.starts_with("sip:") {
        (UriScheme::Sip, &s[4..])
    } else {
        (UriScheme::Sip, s)
    };
    if rest.contains('@') {
        return Err("a target names a host, not a user (remove `user@`)".into());
    }
    let mut parts = rest.split(';');
    let hostport = parts.next().unwrap_or("");
    let mut transport = if scheme == UriScheme::Sips {
        Transport::Tls
    } else {
        Transport::Udp
    };
    for p in parts {
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        if k.eq_ignore_ascii_case("transport") {
            transport = match val.to_ascii_lowercase().as_str() {
                "udp" if scheme == UriScheme::Sip => Transport::Udp,
                "tcp" if scheme == UriScheme::Sip => Transport::Tcp,
                "tls" => Transport::Tls,
                "udp" | "tcp" => return Err("sips: needs TLS".into()),
                _ => return Err(format!("unknown transport `{val}`")),
            };
        } else if !k.eq_ignore_ascii_case("lr") {
            return Err(format!("unsupported parameter `{k}`"));
        }
    }
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or("unclosed `[`")?;
        let ip: std::net::Ipv6Addr = h
            .parse()
            .map_err(|_| format!("`{h}` is not an IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("junk after `]`".into()),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (h, p) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if h.contains(':') {
            return Err("IPv6 addresses go in brackets: [2001:db8::1]:5060".into());
        }
        let host = match h.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) if is_hostname(h) && !h.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                Host::Name(h.to_ascii_lowercase())
            }
            Err(_) => return Err(format!("`{h}` is not a host name or IP address")),
        };
        (host, p)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("bad port `{p}`")),
        },
    };
    Ok(TargetSpec::Uri {
        scheme,
        host,
        port,
        transport,
    })
}

/// Checks `$1`/`${name}` references the way `regex::Captures::expand` reads them.
fn check_replacement(v: &mut V, rep: &S<String>, re: &regex::Regex) {
    let s = rep.get_ref().as_bytes();
    let mut i = 0usize;
    while i < s.len() {
        if s[i] != b'$' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if s.get(i) == Some(&b'$') {
            i += 1;
            continue;
        }
        let name: &[u8] = if s.get(i) == Some(&b'{') {
            match s[i..].iter().position(|&b| b == b'}') {
                Some(end) => {
                    let n = &s[i + 1..i + end];
                    i += end + 1;
                    n
                }
                None => {
                    let at = v.inner_offset(rep, start);
                    v.err(at, "unterminated `${` in replace");
                    return;
                }
            }
        } else {
            let len = s[i..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            let n = &s[i..i + len];
            i += len;
            n
        };
        if name.is_empty() {
            continue;
        }
        let name = String::from_utf8_lossy(name);
        let ok = match name.parse::<usize>() {
            Ok(n) => n < re.captures_len(),
            Err(_) => re.capture_names().flatten().any(|n| n == name),
        };
        if !ok {
            let at = v.inner_offset(rep, start);
            v.err(
                at,
                format!(
                    "replace refers to group `{name}`, which the match regex does not have (it has {} numbered group(s){})",
                    re.captures_len() - 1,
                    if re.capture_names().flatten().next().is_some() { " and named ones" } else { "" }
                ),
            );
        }
    }
}

fn validate_security(v: &mut V, s: &RawSecurity) -> Security {
    let scanner_user_agents = match &s.scanner_user_agents {
        None => DEFAULT_SCANNERS.iter().map(|x| x.to_string()).collect(),
        Some(list) => list
            .iter()
            .map(|x| v.nonempty(x, "scanner user agent").to_ascii_lowercase())
            .collect(),
    };
    Security {
        max_requests_per_s: v.int_or(
            s.max_requests_per_s.as_ref(),
            1,
            1_000_000,
            "max_requests_per_s",
            100,
        ),
        max_invites_per_s: v.int_or(
            s.max_invites_per_s.as_ref(),
            1,
            1_000_000,
            "max_invites_per_s",
            20,
        ),
        ban_threshold: v.int_or(s.ban_threshold.as_ref(), 1, 1_000_000, "ban_threshold", 50),
        ban_duration_s: v.int_or(
            s.ban_duration_s.as_ref(),
            1,
            31_536_000,
            "ban_duration_s",
            600,
        ),
        scanner_user_agents,
        max_message_size: v.int_or(
            s.max_message_size.as_ref(),
            1024,
            1_048_576,
            "max_message_size",
            65535,
        ),
        max_headers: v.int_or(s.max_headers.as_ref(), 16, 1024, "max_headers", 100),
        unauthorized: v.choice_or(
            s.unauthorized.as_ref(),
            &[
                ("reject", UnauthorizedAction::Reject),
                ("drop", UnauthorizedAction::Drop),
            ],
            "unauthorized action",
            UnauthorizedAction::Reject,
        ),
        tcp_max_connections: v.int_or(
            s.tcp_max_connections.as_ref(),
            1,
            1_000_000,
            "tcp_max_connections",
            10_000,
        ),
        tcp_max_per_source: v.int_or(
            s.tcp_max_per_source.as_ref(),
            1,
            1_000_000,
            "tcp_max_per_source",
            64,
        ),
        tcp_idle_timeout_s: v.int_or(
            s.tcp_idle_timeout_s.as_ref(),
            1,
            86_400,
            "tcp_idle_timeout_s",
            600,
        ),
        tcp_message_timeout_ms: v.int_or(
            s.tcp_message_timeout_ms.as_ref(),
            100,
            600_000,
            "tcp_message_timeout_ms",
            10_000,
        ),
        kernel_bans: s.kernel_bans.as_ref().is_some_and(|b| *b.get_ref()),
    }
}
