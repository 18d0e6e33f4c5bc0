//! The B2BUA, sans-IO: two dialogs per call (A = the side that sent the INVITE, B = the side tollgate calls),
//! fed received bytes and time, producing [`Transmit`]s and a deadline (quinn-proto style).
//!
//! ```text
//!   driver ──on_message(now, src, bytes)──► B2bua ──poll_transmit()──► driver sends
//!          ──on_timeout(now) at next_timeout()──►
//! ```
//!
//! What happens to a request, in order: size and header-count caps; the source address must belong to a trunk
//! (ACL, or one of a trunk's targets, `routing::Routing::trunk_of_source`), else `routing::guard` drops banned
//! sources, scanners and floods and the rest is answered 403 / dropped (per `[security] unauthorized`) before
//! any state exists; then the
//! transaction layer (`sip::txn`) absorbs retransmissions; then the request is routed: in-dialog by Call-ID +
//! our tag, out of dialog by method (INVITE creates a call, OPTIONS is answered 200, the rest 405/501).
//!
//! A new call: admission (per-trunk concurrent calls and calls/s, 503 + Retry-After), number translation by
//! the source trunk's rules, route by called number, then a fresh B-leg dialog (own Call-ID, tags, Via,
//! Contact, CSeq) to the destination trunk's first healthy target. Only headers on the destination trunk's
//! allow-list are copied, then its add/replace/remove rules run. Media: without a [`MediaAnchor`] (bypass) SDP
//! passes unchanged; with one (`media.rs`) every offer and answer is anchored on tollgate's media addresses
//! and the negotiated streams are programmed into the media plane as flows.
pub mod build;
mod media;
mod ops;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use media::{MediaAddr, MediaAnchor, MediaCounters};

use crate::config::{Config, HeaderAction, NumberField, TemplateVar};
use crate::forward::{AfterFailure, CallerId, ForwardTable, after_failure};
use crate::routing::admission::Admission;
use crate::routing::digest::{self as rdigest, Challenge};
use crate::routing::guard::{RequestFacts, SourceGuard, Verdict};
use crate::routing::targets::{self as rtargets, DnsAnswers};
use crate::routing::{Routing, TrunkId};
use crate::sip::builder::{MessageBuilder, error_response};
use crate::sip::dialog::{Dialog, DialogResponse, UacRequest, UasRequest};
use crate::sip::header::Method;
use crate::sip::message::{Message, StartLine};
use crate::sip::name::HeaderName;
pub use crate::sip::txn::Transport;
use crate::sip::txn::{
    Action, ClientRequest, Dest, RequestInfo, RequestMatch, ResponseInfo, ResponseMatch,
    TimerConfig, TimerName, TuMsg, TxnId, TxnTable,
};
pub use ops::{ReloadRefused, TrunkTotals, TrunkView};

/// One resolved target of a trunk, as the transaction layer addresses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

fn transport_of(t: crate::config::Transport) -> Transport {
    match t {
        crate::config::Transport::Udp => Transport::Udp,
        crate::config::Transport::Tcp => Transport::Tcp,
        crate::config::Transport::Tls => Transport::Tls,
    }
}

/// The trunk's targets that need no DNS (literal IPs), in failover order, through `routing::targets`.
fn static_targets(cfg: &Config, trunk: usize) -> Vec<Target> {
    let Some(t) = cfg.trunks.get(trunk) else {
        return Vec::new();
    };
    rtargets::resolve(&t.targets, &DnsAnswers::default(), |_| 0)
        .into_iter()
        .map(|t| Target {
            transport: transport_of(t.transport),
            addr: t.addr,
        })
        .collect()
}

/// The user part of a URI as a number: only digits, `+`, `*`, `#` (visual separators and garbage dropped).
fn clean_number(user: &[u8]) -> String {
    user.iter()
        .filter(|b| b.is_ascii_digit() || **b == b'+' || **b == b'*' || **b == b'#')
        .map(|&b| b as char)
        .collect()
}

fn trunk_id(i: usize) -> TrunkId {
    TrunkId(u16::try_from(i).unwrap_or(u16::MAX))
}

/// How bytes reach a peer: the transport, which of our local addresses (index into the `locals` given to
/// [`B2bua::new`]) and, for a stream accepted from the peer, the driver's connection id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub local: u16,
    pub conn: Option<u64>,
}

/// One of tollgate's listening addresses, as bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A message to put on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub flow: Flow,
    pub dest: SocketAddr,
    pub bytes: Bytes,
}

/// What the B2BUA counts (read by the driver for logs and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub received: u64,
    pub acl_rejected: u64,
    pub acl_dropped: u64,
    pub malformed_answered: u64,
    pub malformed_dropped: u64,
    pub stray_responses: u64,
    pub calls_started: u64,
    pub calls_answered: u64,
    pub calls_failed: u64,
    pub admission_rejected: u64,
    pub no_route: u64,
    pub failovers: u64,
    pub auth_retries: u64,
    pub session_refresh_failed: u64,
    pub options_answered: u64,
    pub not_implemented: u64,
    /// Requests from unknown sources the guard dropped (banned source, scanner User-Agent, rate limit).
    pub guard_dropped: u64,
    /// Requests answered 513/400 for exceeding `max_message_size` / `max_headers`.
    pub guard_rejected: u64,
    /// Calls sent to a runtime forward's target (`crate::forward`).
    pub forwarded: u64,
    /// Forwarded calls that failed or rang out and went down the number's normal route.
    pub forward_fallbacks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct CallRef {
    idx: u32,
    generation: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Our 2xx to an INVITE, retransmitted over UDP until the ACK (RFC 3261 13.3.1.4).
struct Retx {
    txn: TxnId,
    bytes: Bytes,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

struct Leg {
    flow: Flow,
    /// Where requests to this peer go (the carrier's source address, or the target we called).
    dest: SocketAddr,
    call_id: String,
    local_tag: String,
    dialog: Option<Dialog>,
    pending_2xx: Option<Retx>,
    /// ACK we sent for this peer's 2xx (with its CSeq), resent when that 2xx is retransmitted.
    last_ack: Option<(u32, Bytes)>,
    keyed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Setup,
    Answered,
}

struct Call {
    generation: u32,
    phase: Phase,
    in_trunk: usize,
    out_trunk: usize,
    a: Leg,
    b: Leg,
    /// A's INVITE server transaction and the INVITE, until it has a final response.
    a_invite: Option<(TxnId, Bytes)>,
    /// The INVITE as sent to B, until it has a final response (CANCEL and auth retries are built from it).
    b_invite: Option<(TxnId, Bytes)>,
    b_cseq: u32,
    b_provisional: bool,
    cancelled: bool,
    targets: Vec<Target>,
    target_idx: usize,
    target_deadline: Option<Instant>,
    auth_tried: bool,
    b_auth: Option<(HeaderName, String)>,
    called: String,
    calling: String,
    original_to: String,
    original_from: String,
    source_ip: String,
    /// A sent no SDP in its INVITE (late offer): B's 2xx is ACKed with A's ACK body.
    late_offer: bool,
    /// An offerless re-INVITE was answered with an offer by this leg (the CSeq to ACK): our ACK to it waits
    /// for the originator's ACK, which carries the answer.
    reinvite_ack: Option<(Side, u32)>,
    session: Option<Duration>,
    refresh_at: Option<Instant>,
    meta: ops::CallMeta,
    /// Set when the call follows a runtime forward.
    forward: Option<ForwardLeg>,
    /// Anchored media (None in bypass mode).
    media: Option<media::CallMedia>,
}

/// A forwarded call's way back to its normal route.
struct ForwardLeg {
    /// The normal route (trunk, called, calling), when the forward asks for a fallback and one exists.
    fallback: Option<(usize, String, String)>,
    ring_deadline: Option<Instant>,
    /// The ring timeout fired and B was cancelled: its 487 means "no answer".
    rang_out: bool,
}

impl Call {
    fn leg(&mut self, s: Side) -> &mut Leg {
        match s {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }
}

enum Role {
    AInvite(CallRef),
    BInvite(CallRef),
    /// An in-dialog request received on `side`, relayed as `peer` on the other side.
    RelayServer {
        side: Side,
        req: Bytes,
    },
    RelayClient {
        call: CallRef,
        side: Side,
        server: TxnId,
    },
    Refresh(CallRef),
    Ping {
        trunk: usize,
        target: usize,
    },
    Own,
}

struct TxnUse {
    flow: Flow,
    dest: SocketAddr,
    role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerEv {
    Retx2xx(CallRef, Side),
    TargetTimeout(CallRef),
    SessionRefresh(CallRef),
    Ping { trunk: usize, target: usize },
    ForwardRing(CallRef),
}

/// Health of one target of a trunk from OPTIONS pings.
#[derive(Clone, Copy, Debug)]
struct Health {
    up: bool,
    ok_streak: u32,
    fail_streak: u32,
    in_flight: bool,
}

struct TrunkState {
    targets: Vec<Target>,
    health: Vec<Health>,
}

/// Answer for [`B2bua::target_up`].
pub type TargetHealth = Option<bool>;

/// The B2BUA. See the module docs.
pub struct B2bua {
    cfg: Arc<Config>,
    routing: Routing,
    admission: Admission,
    guard: SourceGuard,
    locals: Vec<LocalAddr>,
    txns: TxnTable,
    uses: HashMap<TxnId, TxnUse>,
    calls: Vec<Option<Call>>,
    free: Vec<u32>,
    next_generation: u32,
    active_calls: usize,
    dialogs: HashMap<Box<[u8]>, (CallRef, Side)>,
    trunks: Vec<TrunkState>,
    timers: BinaryHeap<Reverse<(Instant, TimerEv)>>,
    actions: Vec<Action>,
    out: VecDeque<Transmit>,
    buf: Vec<u8>,
    rng: u64,
    counters: Counters,
    ops: ops::OpsState,
    forwards: Option<ForwardTable>,
    media: Option<MediaAnchor>,
    /// `Reason` header value for the BYEs tollgate sends while set (media timeout).
    bye_reason: Option<&'static [u8]>,
    /// The latest time an entry point was called with (port quarantine at call teardown).
    last_now: Instant,
}

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

impl B2bua {
    /// A B2BUA for `cfg`, listening on `locals` (as bound; index = [`Flow::local`]).
    pub fn new(cfg: Arc<Config>, locals: Vec<LocalAddr>, now: Instant) -> Self {
        let timer_cfg = TimerConfig {
            trying_delay: Duration::ZERO,
            ..TimerConfig::default()
        };
        let seed = now.elapsed().as_nanos() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(std::process::id()) << 32;
        let mut b = B2bua {
            trunks: Vec::new(),
            routing: Routing::new(&cfg),
            admission: Admission::new(&cfg),
            guard: SourceGuard::new(&cfg.security),
            cfg,
            locals,
            txns: TxnTable::new(timer_cfg),
            uses: HashMap::new(),
            calls: Vec::new(),
            free: Vec::new(),
            next_generation: 1,
            active_calls: 0,
            dialogs: HashMap::new(),
            timers: BinaryHeap::new(),
            actions: Vec::new(),
            out: VecDeque::new(),
            buf: Vec::with_capacity(2048),
            rng: seed | 1,
            counters: Counters::default(),
            ops: ops::OpsState::default(),
            forwards: None,
            media: None,
            bye_reason: None,
            last_now: now,
        };
        b.trunks = (0..b.cfg.trunks.len())
            .map(|i| {
                let targets = static_targets(&b.cfg, i);
                TrunkState {
                    health: vec![
                        Health {
                            up: true,
                            ok_streak: 0,
                            fail_streak: 0,
                            in_flight: false,
                        };
                        targets.len()
                    ],
                    targets,
                }
            })
            .collect();
        for (i, t) in b.cfg.trunks.iter().enumerate() {
            if t.health.ping_interval_s > 0 {
                for target in 0..b.trunks[i].targets.len() {
                    b.timers
                        .push(Reverse((now, TimerEv::Ping { trunk: i, target })));
                }
            }
        }
        b
    }

    /// Consult `table` (runtime forwards, `crate::forward`) before the static routes. The lookup is a
    /// lock-free load of an immutable index; the writer publishes a new one.
    pub fn set_forwards(&mut self, table: ForwardTable) {
        self.forwards = Some(table);
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Calls that exist (set up or answered).
    pub fn active_calls(&self) -> usize {
        self.active_calls
    }

    /// Whether target `target` of trunk `trunk` is considered up (OPTIONS health); `None` if no such target.
    pub fn target_up(&self, trunk: usize, target: usize) -> TargetHealth {
        self.trunks.get(trunk)?.health.get(target).map(|h| h.up)
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`B2bua::on_timeout`] must next be called.
    pub fn next_timeout(&mut self) -> Option<Instant> {
        let t = self.txns.next_deadline();
        let c = self.timers.peek().map(|Reverse((at, _))| *at);
        match (t, c) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs every timer due at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.txns.poll(now, &mut self.actions);
        self.drain(now, None);
        while let Some(Reverse((at, ev))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.fire(now, at, ev);
            self.drain(now, None);
        }
    }

    /// Sending to `dest` over a stream transport failed (connect refused, reset): every client transaction
    /// waiting on it fails now instead of at its timeout.
    pub fn on_transport_error(&mut self, now: Instant, dest: SocketAddr, transport: Transport) {
        self.last_now = now;
        let ids: Vec<TxnId> = self
            .uses
            .iter()
            .filter(|(_, u)| u.dest == dest && u.flow.transport == transport)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let _ = self.txns.transport_error(now, id, &mut self.actions);
        }
        self.drain(now, None);
    }

    /// One message received from `src` on `flow`.
    pub fn on_message(&mut self, now: Instant, flow: Flow, src: SocketAddr, data: &[u8]) {
        self.last_now = now;
        self.counters.received += 1;
        let bytes = Bytes::copy_from_slice(data);
        let parsed = match flow.transport {
            Transport::Udp => Message::parse(bytes.clone()),
            _ => Message::parse_stream(bytes.clone()),
        };
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                if !self.allowed(now, src, flow, data) {
                    return;
                }
                // An ACK is never answered (RFC 3261 17.2.1), however broken.
                if data.starts_with(b"ACK ") {
                    self.counters.malformed_dropped += 1;
                    return;
                }
                let tag = self.token();
                self.buf.clear();
                if error_response(data, &e, Some(tag.as_bytes()), &mut self.buf) {
                    self.counters.malformed_answered += 1;
                    let bytes = Bytes::copy_from_slice(&self.buf);
                    self.out.push_back(Transmit {
                        flow,
                        dest: src,
                        bytes,
                    });
                } else {
                    self.counters.malformed_dropped += 1;
                }
                return;
            }
        };
        if msg.is_request() {
            self.on_request(now, flow, src, msg);
        } else {
            self.on_response(now, msg);
        }
        self.drain(now, None);
    }

    /// Intake: size and header caps for everyone; a source outside every trunk then goes through
    /// `routing::guard` (bans, scanner User-Agents, per-source rate limits) and, if it survives, is answered
    /// 403 (stateless) or dropped per `[security] unauthorized`. Trunk peers are limited per trunk by
    /// admission instead: a carrier sends every call from one address, far above per-source rates.
    fn allowed(&mut self, now: Instant, src: SocketAddr, flow: Flow, data: &[u8]) -> bool {
        let known = self.routing.trunk_of_source(src.ip()).is_some();
        // A banned flooder costs one hash lookup, not a parse.
        if !known && self.guard.is_banned(src.ip(), now) {
            self.counters.guard_dropped += 1;
            return false;
        }
        let sec = &self.cfg.security;
        let framed = Message::frame_only(data).ok();
        let header_count = framed.as_ref().map_or(0, |m| m.header_count());
        let verdict = if known {
            if data.len() > sec.max_message_size as usize {
                Verdict::Reject(513)
            } else if header_count > sec.max_headers as usize {
                Verdict::Reject(400)
            } else {
                return true;
            }
        } else {
            let ua = framed
                .as_ref()
                .and_then(|m| m.header(HeaderName::UserAgent))
                .and_then(|v| std::str::from_utf8(v).ok());
            let facts = RequestFacts {
                src: src.ip(),
                is_invite: data.starts_with(b"INVITE "),
                user_agent: ua,
                size: data.len(),
                header_count,
            };
            match self.guard.check(&facts, now) {
                Verdict::Allow => self.guard.unauthorized(src.ip(), now),
                Verdict::Drop => {
                    self.counters.guard_dropped += 1;
                    return false;
                }
                v => v,
            }
        };
        let (code, reason): (u16, &[u8]) = match verdict {
            Verdict::Allow => return true,
            Verdict::Drop => {
                self.counters.acl_dropped += 1;
                return false;
            }
            Verdict::Reject(403) => {
                self.counters.acl_rejected += 1;
                (403, b"Forbidden")
            }
            Verdict::Reject(513) => {
                self.counters.guard_rejected += 1;
                (513, b"Message Too Large")
            }
            Verdict::Reject(c) => {
                self.counters.guard_rejected += 1;
                (c, b"Too Many Headers")
            }
        };
        if let Some(m) = framed
            && m.is_request()
            && m.method() != Some(Method::Ack)
        {
            let tag = self.token();
            self.buf.clear();
            build::simple_response(&mut self.buf, &m, code, reason, Some(tag.as_bytes()), &[]);
            let bytes = Bytes::copy_from_slice(&self.buf);
            self.out.push_back(Transmit {
                flow,
                dest: src,
                bytes,
            });
        }
        false
    }

    fn on_request(&mut self, now: Instant, flow: Flow, src: SocketAddr, msg: Message<Bytes>) {
        if !self.allowed(now, src, flow, msg.as_bytes()) {
            return;
        }
        let Some(method) = msg.method() else { return };
        let top_via = msg.top_via();
        let to_tag = msg.to().and_then(|t| t.tag()).unwrap_or_default();
        let info = RequestInfo {
            method: method.as_bytes(),
            branch: top_via.and_then(|v| v.branch()).unwrap_or_default(),
            sent_by: msg.header(HeaderName::Via).map(sent_by).unwrap_or_default(),
            request_uri: match msg.start_line() {
                StartLine::Request { uri, .. } => uri,
                StartLine::Response { .. } => b"",
            },
            from_tag: msg.from().and_then(|f| f.tag()).unwrap_or_default(),
            to_tag,
            call_id: msg.call_id(),
            cseq: msg.cseq().seq,
            top_via: msg.header(HeaderName::Via).unwrap_or_default(),
        };
        let dest = Dest {
            transport: flow.transport,
            addr: src,
        };
        if method == Method::Cancel {
            self.on_cancel(now, flow, src, &msg, &info, dest);
            return;
        }
        let bytes = msg.buffer().clone();
        match self
            .txns
            .on_request(now, &info, &bytes, dest, &mut self.actions)
        {
            RequestMatch::New(id) => {
                self.uses.insert(
                    id,
                    TxnUse {
                        flow,
                        dest: src,
                        role: Role::Own,
                    },
                );
                // The 100 Trying for an INVITE is asked for at once (trying_delay = 0): send it first.
                self.drain(now, None);
                if to_tag.is_empty() {
                    self.out_of_dialog(now, id, flow, src, &msg, method);
                } else {
                    self.in_dialog(now, id, &msg, method);
                }
            }
            RequestMatch::Existing(_) => {
                // Retransmission (absorbed) or an ACK matching an Accepted INVITE (passed to TU below).
                let acked = self.actions.iter().any(|a| {
                    matches!(
                        a,
                        Action::PassToTu {
                            msg: TuMsg::Ack,
                            ..
                        }
                    )
                });
                if acked {
                    self.on_ack(now, &msg);
                }
            }
            RequestMatch::UnmatchedAck => self.on_ack(now, &msg),
            RequestMatch::Conflict => {}
        }
    }

    fn respond_simple(
        &mut self,
        now: Instant,
        id: TxnId,
        req: &Message<Bytes>,
        code: u16,
        reason: &[u8],
        extra: &[(&[u8], &[u8])],
    ) {
        let tag = self.token();
        self.buf.clear();
        build::simple_response(
            &mut self.buf,
            req,
            code,
            reason,
            Some(tag.as_bytes()),
            extra,
        );
        let bytes = Bytes::copy_from_slice(&self.buf);
        let _ = self
            .txns
            .send_response(now, id, code, bytes, tag.as_bytes(), &mut self.actions);
    }

    fn out_of_dialog(
        &mut self,
        now: Instant,
        id: TxnId,
        flow: Flow,
        src: SocketAddr,
        msg: &Message<Bytes>,
        method: Method<'_>,
    ) {
        // RFC 3261 8.2.2.1 / RFC 4475 3.3.2: a Request-URI scheme we do not serve gets 416.
        if method != Method::Ack
            && msg
                .request_uri()
                .is_some_and(|u| u.scheme == crate::sip::uri::Scheme::Other)
        {
            self.respond_simple(now, id, msg, 416, b"Unsupported URI Scheme", &[]);
            return;
        }
        // RFC 3261 8.2.2.3: a Require naming an extension we lack gets 420 on any request but ACK.
        if method != Method::Ack
            && msg
                .tokens(HeaderName::Require)
                .any(|t| !t.eq_ignore_ascii_case(b"timer"))
        {
            let unsupported: Vec<u8> = msg
                .tokens(HeaderName::Require)
                .filter(|t| !t.eq_ignore_ascii_case(b"timer"))
                .collect::<Vec<_>>()
                .join(&b", "[..]);
            self.respond_simple(
                now,
                id,
                msg,
                420,
                b"Bad Extension",
                &[(b"Unsupported", &unsupported)],
            );
            return;
        }
        match method {
            Method::Invite => self.new_call(now, id, flow, src, msg),
            Method::Options => {
                self.counters.options_answered += 1;
                self.respond_simple(
                    now,
                    id,
                    msg,
                    200,
                    b"OK",
                    &[
                        (b"Allow", build::ALLOW),
                        (b"Accept", b"application/sdp"),
                        (b"Supported", b"timer"),
                    ],
                );
            }
            Method::Bye | Method::Prack | Method::Update | Method::Info | Method::Notify => {
                self.respond_simple(now, id, msg, 481, b"Call/Transaction Does Not Exist", &[])
            }
            Method::Extension(_) => {
                self.counters.not_implemented += 1;
                self.respond_simple(
                    now,
                    id,
                    msg,
                    501,
                    b"Not Implemented",
                    &[(b"Allow", build::ALLOW)],
                )
            }
            _ => self.respond_simple(
                now,
                id,
                msg,
                405,
                b"Method Not Allowed",
                &[(b"Allow", build::ALLOW)],
            ),
        }
    }

    fn on_cancel(
        &mut self,
        now: Instant,
        flow: Flow,
        src: SocketAddr,
        msg: &Message<Bytes>,
        info: &RequestInfo<'_>,
        dest: Dest,
    ) {
        let target = self.txns.find_cancel_target(info);
        let bytes = msg.buffer().clone();
        let RequestMatch::New(cid) =
            self.txns
                .on_request(now, info, &bytes, dest, &mut self.actions)
        else {
            return;
        };
        self.uses.insert(
            cid,
            TxnUse {
                flow,
                dest: src,
                role: Role::Own,
            },
        );
        let call = target.and_then(|t| match self.uses.get(&t).map(|u| &u.role) {
            Some(Role::AInvite(c)) => Some((t, *c)),
            _ => None,
        });
        let Some((invite_txn, cref)) = call else {
            self.respond_simple(now, cid, msg, 481, b"Call/Transaction Does Not Exist", &[]);
            return;
        };
        self.respond_simple(now, cid, msg, 200, b"OK", &[]);
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        if call.a_invite.as_ref().map(|(t, _)| *t) != Some(invite_txn) {
            return;
        }
        call.cancelled = true;
        self.reject_a(now, cref, 487, b"Request Terminated");
        self.cancel_b(now, cref);
    }

    /// Sends CANCEL for B's INVITE if B has answered provisionally (RFC 3261 9.1: not before); otherwise the
    /// CANCEL goes out when the first provisional arrives, and if none ever does the call ends at the timeout.
    fn cancel_b(&mut self, now: Instant, cref: CallRef) {
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        if !call.b_provisional {
            if call.b_invite.is_none() {
                self.free_call(cref);
            }
            return;
        }
        let Some((_, invite)) = call.b_invite.clone() else {
            return;
        };
        let (flow, dest) = (call.b.flow, call.b.dest);
        let Ok(inv) = Message::parse(invite) else {
            return;
        };
        self.buf.clear();
        build::cancel_for(&mut self.buf, &inv);
        let branch = inv.top_via().and_then(|v| v.branch()).unwrap_or_default();
        let req = ClientRequest {
            method: b"CANCEL",
            branch,
            bytes: Bytes::copy_from_slice(&self.buf),
            dest: Dest {
                transport: flow.transport,
                addr: dest,
            },
        };
        if let Ok(id) = self.txns.start_client(now, req, &mut self.actions) {
            self.uses.insert(
                id,
                TxnUse {
                    flow,
                    dest,
                    role: Role::Own,
                },
            );
        }
    }

    /// Final error response to A's INVITE (if still pending).
    fn reject_a(&mut self, now: Instant, cref: CallRef, code: u16, reason: &[u8]) {
        self.reject_a_with(now, cref, code, reason, &[]);
    }

    fn reject_a_with(
        &mut self,
        now: Instant,
        cref: CallRef,
        code: u16,
        reason: &[u8],
        extra: &[(&[u8], &[u8])],
    ) {
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        let Some((txn, invite)) = call.a_invite.take() else {
            return;
        };
        call.meta.result_code = code;
        let tag = call.a.local_tag.clone();
        if let Ok(m) = Message::parse(invite) {
            self.buf.clear();
            build::simple_response(&mut self.buf, &m, code, reason, Some(tag.as_bytes()), extra);
            let bytes = Bytes::copy_from_slice(&self.buf);
            let _ =
                self.txns
                    .send_response(now, txn, code, bytes, tag.as_bytes(), &mut self.actions);
        }
        if let Some(u) = self.uses.get_mut(&txn) {
            u.role = Role::Own;
        }
        self.counters.calls_failed += 1;
    }

    // ---- new calls ----

    fn new_call(
        &mut self,
        now: Instant,
        id: TxnId,
        flow: Flow,
        src: SocketAddr,
        msg: &Message<Bytes>,
    ) {
        let Some(in_trunk) = self.routing.trunk_of_source(src.ip()).map(TrunkId::index) else {
            return;
        };
        if self.ops.draining {
            self.respond_simple(
                now,
                id,
                msg,
                503,
                b"Service Unavailable",
                &[(b"Retry-After", b"60")],
            );
            return;
        }
        if msg.max_forwards() == Some(0) {
            self.respond_simple(now, id, msg, 483, b"Too Many Hops", &[]);
            return;
        }
        let ruri_user = msg
            .request_uri()
            .and_then(|u| u.user)
            .map(clean_number)
            .unwrap_or_default();
        let from_user = msg
            .from()
            .and_then(|t| t.uri.user)
            .map(clean_number)
            .unwrap_or_default();
        let tr = &self.routing.translator;
        let tin = trunk_id(in_trunk);
        let called = tr
            .translate(tin, NumberField::RequestUri, &ruri_user)
            .map_or_else(|| ruri_user.clone(), |r| r.number);
        let mut calling = tr
            .translate(tin, NumberField::From, &from_user)
            .map_or_else(|| from_user.clone(), |r| r.number);
        let normal = self.routing.router.route(tin, &called);
        // Forward hook: a runtime forward of the translated number wins over the static routes.
        let forward = self.forward_plan(&called, &calling, normal.ok().map(|h| h.to.index()));
        let out_trunk = match (&forward, normal) {
            (Some(f), _) => f.0,
            (None, Ok(hit)) => hit.to.index(),
            (None, Err(no)) => {
                self.counters.no_route += 1;
                let code = no.code;
                let reason: &[u8] = match code {
                    484 => b"Address Incomplete",
                    604 => b"Does Not Exist Anywhere",
                    _ => b"Not Found",
                };
                self.respond_simple(now, id, msg, code, reason, &[]);
                return;
            }
        };
        // Admission on both trunks the call touches; a refusal on the second gives back the first.
        for (n, t) in [in_trunk, out_trunk].into_iter().enumerate() {
            if let Err(refused) = self.admission.admit(trunk_id(t), now) {
                if n == 1 {
                    self.admission.release(trunk_id(in_trunk));
                }
                let retry = refused.retry_after_s().to_string();
                self.counters.admission_rejected += 1;
                self.respond_simple(
                    now,
                    id,
                    msg,
                    503,
                    b"Service Unavailable",
                    &[(b"Retry-After", retry.as_bytes())],
                );
                return;
            }
        }
        let targets: Vec<Target> = {
            let ts = &self.trunks[out_trunk];
            let up: Vec<Target> = ts
                .targets
                .iter()
                .zip(&ts.health)
                .filter(|(_, h)| h.up)
                .map(|(t, _)| *t)
                .collect();
            up
        };
        if targets.is_empty() {
            self.admission.release(trunk_id(in_trunk));
            self.admission.release(trunk_id(out_trunk));
            self.counters.no_route += 1;
            self.respond_simple(
                now,
                id,
                msg,
                503,
                b"Service Unavailable",
                &[(b"Retry-After", b"30")],
            );
            return;
        }
        if let Some(cid) = &self.cfg.trunks[out_trunk].caller_id_override {
            calling = cid.clone();
        }
        let (called, forward) = match forward {
            Some((_, target, fixed_cid, ring, fallback)) => {
                self.counters.forwarded += 1;
                if let Some(n) = fixed_cid {
                    calling = n;
                }
                let leg = ForwardLeg {
                    fallback,
                    ring_deadline: ring.map(|d| now + d),
                    rang_out: false,
                };
                (target, Some(leg))
            }
            None => (called, None),
        };
        let ot = &self.cfg.trunks[out_trunk];
        let session = ot
            .session_timer
            .enabled
            .then(|| Duration::from_secs(u64::from(ot.session_timer.expires_s.max(90))));
        let a_tag = self.token();
        let b_tag = self.token();
        let b_call_id = format!("{}@{}", self.token(), self.cfg.node.name);
        let a_call_id = String::from_utf8_lossy(msg.call_id()).into_owned();
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let call = Call {
            generation,
            phase: Phase::Setup,
            in_trunk,
            out_trunk,
            a: Leg {
                flow,
                dest: src,
                call_id: a_call_id,
                local_tag: a_tag,
                dialog: None,
                pending_2xx: None,
                last_ack: None,
                keyed: false,
            },
            b: Leg {
                flow: Flow {
                    transport: targets[0].transport,
                    local: 0,
                    conn: None,
                },
                dest: targets[0].addr,
                call_id: b_call_id,
                local_tag: b_tag,
                dialog: None,
                pending_2xx: None,
                last_ack: None,
                keyed: false,
            },
            a_invite: Some((id, msg.buffer().clone())),
            b_invite: None,
            b_cseq: 0,
            b_provisional: false,
            cancelled: false,
            targets,
            target_idx: 0,
            target_deadline: None,
            auth_tried: false,
            b_auth: None,
            called,
            calling,
            original_to: ruri_user,
            original_from: from_user,
            source_ip: src.ip().to_string(),
            late_offer: msg.body().is_empty(),
            reinvite_ack: None,
            session,
            refresh_at: None,
            meta: ops::CallMeta::now(),
            forward,
            media: None,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.calls[i as usize] = Some(call);
                i
            }
            None => {
                self.calls.push(Some(call));
                (self.calls.len() - 1) as u32
            }
        };
        let cref = CallRef { idx, generation };
        self.active_calls += 1;
        self.counters.calls_started += 1;
        if let Some(u) = self.uses.get_mut(&id) {
            u.role = Role::AInvite(cref);
        }
        if let Some(at) = self
            .call_ref(cref)
            .and_then(|c| c.forward.as_ref())
            .and_then(|f| f.ring_deadline)
        {
            self.timers.push(Reverse((at, TimerEv::ForwardRing(cref))));
        }
        if let Err(r) = self.media_on_new_call(now, cref, msg.body()) {
            self.reject_a(now, cref, r.code, r.reason);
            self.free_call(cref);
            return;
        }
        self.send_b_invite(now, cref, msg);
    }

    /// The forward of `called`, if any, as (trunk, target, fixed caller ID, ring timeout, fallback route).
    /// A forward whose trunk is not in this configuration is ignored (the normal route applies).
    #[allow(clippy::type_complexity)]
    fn forward_plan(
        &self,
        called: &str,
        calling: &str,
        normal: Option<usize>,
    ) -> Option<(
        usize,
        String,
        Option<String>,
        Option<Duration>,
        Option<(usize, String, String)>,
    )> {
        let index = self.forwards.as_ref()?.load();
        let f = index.get(called)?;
        let trunk = self.cfg.trunk_index(&f.trunk)?;
        let fixed = match &f.caller_id {
            CallerId::Keep => None,
            CallerId::Fixed(n) => Some(n.clone()),
        };
        let fallback = normal.filter(|_| f.fallback).map(|t| {
            let calling = self.cfg.trunks[t]
                .caller_id_override
                .clone()
                .unwrap_or_else(|| calling.to_owned());
            (t, called.to_owned(), calling)
        });
        // The forward's trunk has no healthy target: go straight to the fallback.
        let up = self.trunks[trunk].health.iter().any(|h| h.up);
        if !up && fallback.is_some() {
            return None;
        }
        Some((
            trunk,
            f.target.clone(),
            fixed,
            f.ring_timeout_s.map(|s| Duration::from_secs(u64::from(s))),
            fallback,
        ))
    }

    /// A forwarded call's attempt failed with `code` (or rang out): re-target it to the number's normal route
    /// when the forward allows. Returns false when the caller should hear the failure instead; `code` is then
    /// replaced by 480 for a ring-out.
    fn forward_failed(&mut self, now: Instant, cref: CallRef, code: &mut u16) -> bool {
        let Some(call) = self.call_mut(cref) else {
            return false;
        };
        let cancelled = call.cancelled;
        let Some(fw) = call.forward.as_mut() else {
            return false;
        };
        let rang_out = fw.rang_out;
        let fallback = fw.fallback.take();
        fw.ring_deadline = None;
        let wants = fallback.is_some();
        let (trunk, called, calling) =
            match after_failure(wants, fallback, cancelled, rang_out, *code) {
                AfterFailure::Fallback(f) => f,
                AfterFailure::Reject(c) => {
                    *code = c;
                    return false;
                }
            };
        let targets: Vec<Target> = {
            let ts = &self.trunks[trunk];
            ts.targets
                .iter()
                .zip(&ts.health)
                .filter(|(_, h)| h.up)
                .map(|(t, _)| *t)
                .collect()
        };
        if targets.is_empty() || self.admission.admit(trunk_id(trunk), now).is_err() {
            return false;
        }
        let ot = &self.cfg.trunks[trunk];
        let session = ot
            .session_timer
            .enabled
            .then(|| Duration::from_secs(u64::from(ot.session_timer.expires_s.max(90))));
        let b_tag = self.token();
        let b_call_id = format!("{}@{}", self.token(), self.cfg.node.name);
        let Some(call) = self.call_mut(cref) else {
            return false;
        };
        let old = std::mem::replace(&mut call.out_trunk, trunk);
        call.called = called;
        call.calling = calling;
        call.targets = targets;
        call.target_idx = 0;
        call.auth_tried = false;
        call.b_auth = None;
        call.b_provisional = false;
        call.b.dialog = None;
        call.b.local_tag = b_tag;
        call.b.call_id = b_call_id;
        call.session = session;
        call.forward = None;
        let a_invite = call.a_invite.as_ref().map(|(_, b)| b.clone());
        self.admission.release(trunk_id(old));
        self.counters.forward_fallbacks += 1;
        match a_invite.map(Message::parse) {
            Some(Ok(m)) => {
                self.send_b_invite(now, cref, &m);
                true
            }
            _ => false,
        }
    }

    /// The forward's ring timeout: cancel B if it is ringing (its 487 then falls back), else give up on it now.
    fn forward_ring_timeout(&mut self, now: Instant, cref: CallRef, at: Instant) {
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        if call.phase != Phase::Setup || call.cancelled {
            return;
        }
        let Some(fw) = call.forward.as_mut() else {
            return;
        };
        if fw.ring_deadline != Some(at) {
            return;
        }
        fw.ring_deadline = None;
        fw.rang_out = true;
        let Some((txn, _)) = call.b_invite.clone() else {
            return;
        };
        if call.b_provisional {
            self.cancel_b(now, cref);
            return;
        }
        // No provisional yet: CANCEL is not allowed (RFC 3261 9.1); drop the attempt.
        if let Some(call) = self.call_mut(cref) {
            call.b_invite = None;
            call.target_deadline = None;
        }
        if let Some(u) = self.uses.get_mut(&txn) {
            u.role = Role::Own;
        }
        let mut code = 480;
        if !self.forward_failed(now, cref, &mut code) {
            self.reject_a(now, cref, code, b"Temporarily Unavailable");
            self.free_call(cref);
        }
    }

    /// The listener to send to `dest` from. An SBC has a carrier-facing and a cloud-facing address: the
    /// B-leg must leave from the one on the peer's side, or the peer sees (and answers) an address it has
    /// no route to. Without the routing table here, the listener sharing the longest address prefix with
    /// `dest` stands in for the route; a wildcard listener (the kernel picks the source) beats a match
    /// weaker than /24.
    fn local_for(&self, transport: Transport, dest: SocketAddr) -> (u16, SocketAddr) {
        let score = |a: SocketAddr| -> i32 {
            match (a.ip(), dest.ip()) {
                (ip, _) if ip.is_unspecified() => 24,
                (IpAddr::V4(l), IpAddr::V4(d)) => {
                    (u32::from(l) ^ u32::from(d)).leading_zeros() as i32
                }
                (IpAddr::V6(l), IpAddr::V6(d)) => {
                    (u128::from(l) ^ u128::from(d)).leading_zeros() as i32
                }
                _ => -1,
            }
        };
        let mut best: Option<(usize, i32)> = None;
        for (i, l) in self.locals.iter().enumerate() {
            if l.transport != transport {
                continue;
            }
            let s = score(l.addr);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
        best.map(|(i, _)| i)
            .or_else(|| (!self.locals.is_empty()).then_some(0))
            .and_then(|i| Some((i as u16, self.locals.get(i)?.addr)))
            .unwrap_or((0, SocketAddr::from(([127, 0, 0, 1], 5060))))
    }

    /// The B-leg INVITE to the current target, built from A's INVITE (with the anchored offer, if any).
    fn send_b_invite(&mut self, now: Instant, cref: CallRef, a_msg: &Message<Bytes>) {
        if let Err(r) = self.media_retarget(now, cref, a_msg.body()) {
            self.reject_a(now, cref, r.code, r.reason);
            self.free_call(cref);
            return;
        }
        let cfg = self.cfg.clone();
        let branch = format!("z9hG4bK{}", self.token());
        let mut out = std::mem::take(&mut self.buf);
        let Some(call) = self.call_ref(cref) else {
            return;
        };
        let Some(&target) = call.targets.get(call.target_idx) else {
            return;
        };
        let (local_idx, local) = self.local_for(target.transport, target.addr);
        let ot = &cfg.trunks[call.out_trunk];
        let mut uri = String::with_capacity(64);
        let _ = write!(uri, "sip:{}@{}", call.called, target.addr);
        if target.transport == Transport::Tcp {
            uri.push_str(";transport=tcp");
        }
        let mut from = String::with_capacity(64);
        let _ = write!(
            from,
            "<sip:{}@{}>;tag={}",
            call.calling, local, call.b.local_tag
        );
        let mut to = String::with_capacity(64);
        let _ = write!(to, "<sip:{}@{}>", call.called, target.addr);
        let via = build::via_value(target.transport, local, &branch);
        let contact = build::contact_value(target.transport, local);
        let cseq = call.b_cseq + 1;
        let mf = a_msg
            .max_forwards()
            .map_or(70, |m| m.saturating_sub(1).min(70));
        let in_name = cfg.trunks[call.in_trunk].name.clone();
        let vars = |v: TemplateVar| -> String {
            match v {
                TemplateVar::OriginalTo => call.original_to.clone(),
                TemplateVar::OriginalFrom => call.original_from.clone(),
                TemplateVar::Trunk => in_name.clone(),
                TemplateVar::SourceIp => call.source_ip.clone(),
                TemplateVar::Node => cfg.node.name.clone(),
            }
        };
        {
            let mut b = MessageBuilder::request(&mut out, Method::Invite, uri.as_bytes());
            b.header(HeaderName::Via, via.as_bytes())
                .header_u64(HeaderName::MaxForwards, u64::from(mf))
                .header(HeaderName::From, from.as_bytes())
                .header(HeaderName::To, to.as_bytes())
                .header(HeaderName::CallId, call.b.call_id.as_bytes())
                .cseq(cseq, Method::Invite)
                .header(HeaderName::Contact, contact.as_bytes())
                .header(HeaderName::Allow, build::ALLOW);
            if let Some(se) = call.session {
                b.header(HeaderName::Supported, b"timer");
                let v = format!("{};refresher=uac", se.as_secs());
                b.header(HeaderName::SessionExpires, v.as_bytes());
                let v = format!("{}", ot.session_timer.min_se_s);
                b.header(HeaderName::MinSe, v.as_bytes());
            }
            if let Some((name, value)) = &call.b_auth {
                b.header(*name, value.as_bytes());
            }
            // Allow-listed headers, minus those a rule removes or replaces.
            for h in a_msg.headers() {
                if build::is_core_header(h.name, h.raw_name) {
                    continue;
                }
                let name = std::str::from_utf8(h.raw_name).unwrap_or("");
                let canonical = if h.name == HeaderName::Other {
                    name
                } else {
                    h.name.as_str()
                };
                if !ot.headers.allows(canonical) && !ot.headers.allows(name) {
                    continue;
                }
                let touched = ot.headers.rules.iter().any(|r| {
                    r.name.eq_ignore_ascii_case(canonical)
                        && matches!(r.action, HeaderAction::Remove | HeaderAction::Replace(_))
                });
                if !touched {
                    b.raw_header(h.raw_name, h.value);
                }
            }
            for r in &ot.headers.rules {
                if let HeaderAction::Add(t) | HeaderAction::Replace(t) = &r.action {
                    let mut v = String::new();
                    for p in &t.parts {
                        match p {
                            crate::config::TemplatePart::Literal(s) => v.push_str(s),
                            crate::config::TemplatePart::Var(x) => v.push_str(&vars(*x)),
                        }
                    }
                    b.raw_header(r.name.as_bytes(), v.as_bytes());
                }
            }
            if let Some(h) = &ot.original_to_header {
                b.raw_header(h.as_bytes(), call.original_to.as_bytes());
            }
            let body = self.media_offer_b(cref, a_msg.body());
            if !body.is_empty()
                && let Some(ct) = a_msg.header(HeaderName::ContentType)
            {
                b.header(HeaderName::ContentType, ct);
            }
            b.finish(body);
        }
        let bytes = Bytes::copy_from_slice(&out);
        self.buf = out;
        let flow = Flow {
            transport: target.transport,
            local: local_idx,
            conn: None,
        };
        let timeout = ot.target_timeout_ms;
        let req = ClientRequest {
            method: b"INVITE",
            branch: branch.as_bytes(),
            bytes: bytes.clone(),
            dest: Dest {
                transport: target.transport,
                addr: target.addr,
            },
        };
        let Ok(id) = self.txns.start_client(now, req, &mut self.actions) else {
            return;
        };
        self.uses.insert(
            id,
            TxnUse {
                flow,
                dest: target.addr,
                role: Role::BInvite(cref),
            },
        );
        let deadline = (timeout > 0).then(|| now + Duration::from_millis(u64::from(timeout)));
        if let Some(call) = self.call_mut(cref) {
            call.b_cseq = cseq;
            call.b_invite = Some((id, bytes));
            call.b.flow = flow;
            call.b.dest = target.addr;
            call.b_provisional = false;
            call.target_deadline = deadline;
        }
        if let Some(d) = deadline {
            self.timers.push(Reverse((d, TimerEv::TargetTimeout(cref))));
        }
    }

    // ---- responses ----

    fn on_response(&mut self, now: Instant, msg: Message<Bytes>) {
        let Some(status) = msg.status() else { return };
        let cseq = msg.cseq();
        let info = ResponseInfo {
            status,
            branch: msg.top_via().and_then(|v| v.branch()).unwrap_or_default(),
            cseq_method: cseq.method.as_bytes(),
        };
        let bytes = msg.buffer().clone();
        match self.txns.on_response(now, &info, &bytes, &mut self.actions) {
            ResponseMatch::Matched(_) => self.drain(now, Some(&msg)),
            ResponseMatch::Unmatched => {
                // A retransmitted 2xx to an INVITE whose transaction is gone: resend our ACK (13.2.2.4).
                if (200..300).contains(&status)
                    && cseq.method == Method::Invite
                    && let Some((cref, side)) = self.dialog_of_response(&msg)
                    && let Some(call) = self.call_mut(cref)
                {
                    let leg = call.leg(side);
                    if let Some((_, ack)) = leg.last_ack.clone().filter(|(s, _)| *s == cseq.seq) {
                        let t = Transmit {
                            flow: leg.flow,
                            dest: leg.dest,
                            bytes: ack,
                        };
                        self.out.push_back(t);
                        return;
                    }
                }
                self.counters.stray_responses += 1;
            }
        }
    }

    fn dialog_of_response(&self, msg: &Message<Bytes>) -> Option<(CallRef, Side)> {
        let tag = msg.from()?.tag()?;
        self.dialogs
            .get(&dialog_key(msg.call_id(), tag)[..])
            .copied()
    }

    /// Executes the transaction layer's actions; `ctx` is the response being processed, if any.
    fn drain(&mut self, now: Instant, ctx: Option<&Message<Bytes>>) {
        let mut guard = 0;
        while !self.actions.is_empty() && guard < 64 {
            guard += 1;
            let mut batch = std::mem::take(&mut self.actions);
            // The ACK for a non-2xx goes on the wire before anything the TU sends in reaction to that
            // response (a failover or authenticated INVITE), as a peer reading in order expects.
            batch.sort_by_key(|a| !matches!(a, Action::NeedAck { .. }));
            for a in batch {
                self.exec(now, a, ctx);
            }
        }
    }

    fn exec(&mut self, now: Instant, a: Action, ctx: Option<&Message<Bytes>>) {
        match a {
            Action::Send {
                txn, bytes, dest, ..
            } => {
                let flow = self.uses.get(&txn).map_or(
                    Flow {
                        transport: dest.transport,
                        local: self.local_for(dest.transport, dest.addr).0,
                        conn: None,
                    },
                    |u| u.flow,
                );
                self.out.push_back(Transmit {
                    flow,
                    dest: dest.addr,
                    bytes,
                });
            }
            Action::PassToTu {
                txn,
                msg: TuMsg::Response { status },
                ..
            } => {
                if let Some(m) = ctx {
                    self.on_txn_response(now, txn, status, m);
                }
            }
            Action::PassToTu { .. } => {}
            Action::NeedAck { txn, request, .. } => {
                let to = ctx
                    .and_then(|m| m.header(HeaderName::To))
                    .unwrap_or_default();
                if let Ok(inv) = Message::parse(request) {
                    self.buf.clear();
                    build::ack_non_2xx(&mut self.buf, &inv, to);
                    let ack = Bytes::copy_from_slice(&self.buf);
                    let _ = self.txns.provide_ack(now, txn, ack, &mut self.actions);
                }
            }
            Action::NeedTrying { txn, request } => {
                if let Ok(inv) = Message::parse(request) {
                    self.buf.clear();
                    build::simple_response(&mut self.buf, &inv, 100, b"Trying", None, &[]);
                    let r = Bytes::copy_from_slice(&self.buf);
                    let _ = self
                        .txns
                        .send_response(now, txn, 100, r, b"", &mut self.actions);
                }
            }
            Action::Timeout { txn, timer } => self.on_txn_failure(now, txn, Some(timer)),
            Action::TransportError { txn } => self.on_txn_failure(now, txn, None),
            Action::Terminated { txn } => {
                if let Some(u) = self.uses.remove(&txn)
                    && let Role::BInvite(cref) = u.role
                    && let Some(call) = self.call_ref(cref)
                    && call.cancelled
                    && call.b_invite.as_ref().is_some_and(|(t, _)| *t == txn)
                {
                    self.free_call(cref);
                }
            }
        }
    }

    fn on_txn_failure(&mut self, now: Instant, txn: TxnId, _timer: Option<TimerName>) {
        let Some(u) = self.uses.get(&txn) else { return };
        match u.role {
            Role::BInvite(cref) => {
                let dest = u.dest;
                self.mark_target_failure(cref, dest);
                self.b_attempt_failed(now, cref, txn, 408, b"Request Timeout");
            }
            Role::RelayClient { call, server, .. } => {
                self.relay_final_error(now, server, 408, b"Request Timeout");
                // A BYE that timed out still ends the call.
                let _ = call;
            }
            Role::Refresh(cref) => {
                self.counters.session_refresh_failed += 1;
                self.teardown(now, cref);
            }
            Role::Ping { trunk, target } => self.ping_result(trunk, target, false),
            Role::AInvite(cref) => {
                // Our 2xx/final never got through to A.
                self.teardown(now, cref);
            }
            Role::RelayServer { .. } | Role::Own => {}
        }
    }

    fn mark_target_failure(&mut self, cref: CallRef, dest: SocketAddr) {
        let Some(call) = self.call_ref(cref) else {
            return;
        };
        let trunk = call.out_trunk;
        if let Some(ts) = self.trunks.get_mut(trunk)
            && let Some(i) = ts.targets.iter().position(|t| t.addr == dest)
            && let Some(h) = ts.health.get_mut(i)
        {
            h.fail_streak += 1;
            h.ok_streak = 0;
        }
    }

    /// B's INVITE to the current target failed (timeout, transport error, failover code): next target, or
    /// map the failure back to A.
    fn b_attempt_failed(
        &mut self,
        now: Instant,
        cref: CallRef,
        txn: TxnId,
        code: u16,
        reason: &[u8],
    ) {
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        if call.b_invite.as_ref().map(|(t, _)| *t) != Some(txn) {
            return;
        }
        call.b_invite = None;
        call.target_deadline = None;
        if let Some(u) = self.uses.get_mut(&txn) {
            u.role = Role::Own;
        }
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        if call.cancelled {
            self.free_call(cref);
            return;
        }
        if call.target_idx + 1 < call.targets.len() {
            call.target_idx += 1;
            call.auth_tried = false;
            call.b_auth = None;
            let a_invite = call.a_invite.as_ref().map(|(_, b)| b.clone());
            self.counters.failovers += 1;
            if let Some(a) = a_invite
                && let Ok(m) = Message::parse(a)
            {
                self.send_b_invite(now, cref, &m);
                return;
            }
        }
        let mut new_code = code;
        if self.forward_failed(now, cref, &mut new_code) {
            return;
        }
        let reason = if new_code == code {
            reason
        } else {
            b"Temporarily Unavailable"
        };
        self.reject_a(now, cref, new_code, reason);
        self.free_call(cref);
    }

    fn on_txn_response(&mut self, now: Instant, txn: TxnId, status: u16, m: &Message<Bytes>) {
        let Some(u) = self.uses.get(&txn) else { return };
        match u.role {
            Role::BInvite(cref) => self.on_b_invite_response(now, cref, txn, status, m),
            Role::RelayClient { call, side, server } => {
                self.on_relay_response(now, call, side, server, status, m)
            }
            Role::Refresh(cref) => {
                if matches!(status, 408 | 481) {
                    self.counters.session_refresh_failed += 1;
                    self.teardown(now, cref);
                }
            }
            Role::Ping { trunk, target } if status >= 200 => self.ping_result(trunk, target, true),
            _ => {}
        }
    }

    fn on_b_invite_response(
        &mut self,
        now: Instant,
        cref: CallRef,
        txn: TxnId,
        status: u16,
        m: &Message<Bytes>,
    ) {
        let cfg = self.cfg.clone();
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        if call.b_invite.as_ref().map(|(t, _)| *t) != Some(txn) {
            return;
        }
        call.target_deadline = None;
        if status < 200 {
            if status > 100 {
                call.b_provisional = true;
            }
            if call.cancelled {
                if status > 100 {
                    self.cancel_b(now, cref);
                }
                return;
            }
            if status > 100 {
                call.b_provisional = true;
                let late = call.late_offer;
                self.b_dialog_from(cref, status, m);
                // Early media: the 18x's SDP is anchored like the 2xx's; SDP we cannot anchor is not relayed.
                let body = match self.media_sdp(now, cref, Side::B, m.body(), !late) {
                    Ok(b) => b,
                    Err(_) => Some(Vec::new()),
                };
                self.relay_invite_response(now, cref, status, m, body.as_deref());
            }
            return;
        }
        if (200..300).contains(&status) {
            self.b_dialog_from(cref, status, m);
            let Some(call) = self.call_mut(cref) else {
                return;
            };
            call.b_invite = None;
            call.phase = Phase::Answered;
            call.meta.answered_ms = Some(ops::epoch_ms());
            if let Some(u) = self.uses.get_mut(&txn) {
                u.role = Role::Own;
            }
            let late = self.call_ref(cref).is_some_and(|c| c.late_offer);
            if !late || self.call_ref(cref).is_some_and(|c| c.cancelled) {
                self.send_ack(cref, Side::B, m.cseq().seq, None);
            }
            if self.call_ref(cref).is_some_and(|c| c.cancelled) {
                self.teardown(now, cref);
                return;
            }
            let body = match self.media_sdp(now, cref, Side::B, m.body(), !late) {
                Ok(b) => b,
                Err(r) => {
                    // B answered with SDP that cannot be anchored: end B's dialog, refuse A.
                    if late {
                        self.send_ack(cref, Side::B, m.cseq().seq, None);
                    }
                    self.send_in_dialog(now, cref, Side::B, Method::Bye, None, None);
                    self.reject_a(now, cref, r.code, r.reason);
                    self.free_call(cref);
                    return;
                }
            };
            self.counters.calls_answered += 1;
            self.relay_invite_response(now, cref, status, m, body.as_deref());
            self.key_dialog(cref, Side::B);
            self.start_session_timer(now, cref);
            return;
        }
        // 3xx..6xx.
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        let out_trunk = call.out_trunk;
        if (status == 401 || status == 407) && !call.auth_tried && !call.cancelled {
            let creds = cfg.trunks[out_trunk].credentials.clone();
            let hdr = if status == 401 {
                HeaderName::WwwAuthenticate
            } else {
                HeaderName::ProxyAuthenticate
            };
            if let (Some(creds), Some(ch), Some((_, inv))) =
                (creds, m.header(hdr), call.b_invite.clone())
                && let Ok(inv) = Message::parse(inv)
                && let StartLine::Request { uri, .. } = inv.start_line()
            {
                let cnonce = self.token();
                if let (Ok(ch), Ok(uri)) = (std::str::from_utf8(ch), std::str::from_utf8(uri))
                    && let Ok(ch) = Challenge::parse(ch)
                {
                    let v = rdigest::authorization(
                        &ch,
                        &rdigest::ClientRequest {
                            username: &creds.username,
                            password: &creds.password,
                            method: "INVITE",
                            uri,
                            cnonce: &cnonce,
                            nc: 1,
                        },
                    );
                    let name = if status == 401 {
                        HeaderName::Authorization
                    } else {
                        HeaderName::ProxyAuthorization
                    };
                    let Some(call) = self.call_mut(cref) else {
                        return;
                    };
                    call.auth_tried = true;
                    call.b_auth = Some((name, v));
                    call.b_invite = None;
                    if let Some(u) = self.uses.get_mut(&txn) {
                        u.role = Role::Own;
                    }
                    self.counters.auth_retries += 1;
                    let Some(call) = self.call_ref(cref) else {
                        return;
                    };
                    if let Some(a) = call.a_invite.as_ref().map(|(_, b)| b.clone())
                        && let Ok(am) = Message::parse(a)
                    {
                        self.send_b_invite(now, cref, &am);
                    }
                    return;
                }
            }
        }
        let failover = self.cfg.trunks[out_trunk].failover_codes.contains(&status);
        if failover && status < 600 {
            let dest = self.uses.get(&txn).map(|u| u.dest);
            if let Some(d) = dest {
                self.mark_target_failure(cref, d);
            }
            let reason = m.reason().unwrap_or(b"Service Unavailable").to_vec();
            self.b_attempt_failed(now, cref, txn, status, &reason);
            return;
        }
        let reason = m.reason().unwrap_or(b"Error").to_vec();
        let retry = m.header_by_name(b"Retry-After").map(<[u8]>::to_vec);
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        call.b_invite = None;
        if let Some(u) = self.uses.get_mut(&txn) {
            u.role = Role::Own;
        }
        let mut code = status;
        if self.forward_failed(now, cref, &mut code) {
            return;
        }
        let reason = if code == status {
            reason
        } else {
            b"Temporarily Unavailable".to_vec()
        };
        let status = code;
        match retry {
            Some(r) => self.reject_a_with(now, cref, status, &reason, &[(b"Retry-After", &r)]),
            None => self.reject_a(now, cref, status, &reason),
        }
        self.free_call(cref);
    }

    fn b_dialog_from(&mut self, cref: CallRef, status: u16, m: &Message<Bytes>) {
        let to_tag = m.to().and_then(|t| t.tag()).unwrap_or_default();
        if to_tag.is_empty() && status < 200 {
            return;
        }
        let contact = m.contacts().next().map(|c| lossy(c.uri.raw));
        let rr: Vec<String> = m
            .record_routes()
            .map(|r| format!("<{}>", lossy(r.uri.raw)))
            .collect();
        let rr_refs: Vec<&str> = rr.iter().map(String::as_str).collect();
        let to_tag = lossy(to_tag);
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        let resp = DialogResponse {
            status,
            to_tag: &to_tag,
            contact: contact.as_deref(),
            record_route: &rr_refs,
        };
        match &mut call.b.dialog {
            Some(d) if d.id.remote_tag == to_tag => {
                let _ = d.on_invite_response(&resp);
            }
            _ => {
                let local_uri = format!("sip:{}@tollgate", call.calling);
                let remote_uri = format!("sip:{}@{}", call.called, call.b.dest);
                let req = UacRequest {
                    call_id: &call.b.call_id,
                    local_tag: &call.b.local_tag,
                    local_uri: &local_uri,
                    remote_uri: &remote_uri,
                    cseq: call.b_cseq,
                    secure: false,
                };
                if let Ok(d) = Dialog::uac(&req, &resp) {
                    call.b.dialog = Some(d);
                }
            }
        }
    }

    /// Relays B's 18x/2xx for the INVITE to A, creating A's dialog (our tag) on the way.
    /// Relays B's response to A's INVITE; `sdp` replaces B's body (the anchored SDP) when given.
    fn relay_invite_response(
        &mut self,
        now: Instant,
        cref: CallRef,
        status: u16,
        m: &Message<Bytes>,
        sdp: Option<&[u8]>,
    ) {
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        let Some((a_txn, a_inv)) = call.a_invite.clone() else {
            return;
        };
        let Ok(ainv) = Message::parse(a_inv) else {
            return;
        };
        let a_tag = call.a.local_tag.clone();
        let (local_idx, flow) = (call.a.flow.local, call.a.flow);
        let local = self
            .locals
            .get(usize::from(local_idx))
            .map_or(SocketAddr::from(([127, 0, 0, 1], 5060)), |l| l.addr);
        let contact = build::contact_value(flow.transport, local);
        let session = self.call_ref(cref).and_then(|c| c.session);
        let a_supports_timer = ainv
            .tokens(HeaderName::Supported)
            .any(|t| t.eq_ignore_ascii_case(b"timer"));
        self.buf.clear();
        {
            let reason = m.reason().unwrap_or(b"OK");
            let mut b = MessageBuilder::reply_to(
                &mut self.buf,
                &ainv,
                status,
                reason,
                Some(a_tag.as_bytes()),
            );
            b.header(HeaderName::Contact, contact.as_bytes());
            if status >= 200 {
                b.header(HeaderName::Allow, build::ALLOW);
                if let Some(se) = session
                    && a_supports_timer
                {
                    let v = format!("{};refresher=uas", se.as_secs());
                    b.header(HeaderName::SessionExpires, v.as_bytes());
                    b.header(HeaderName::Require, b"timer");
                }
            }
            let body = sdp.unwrap_or(m.body());
            if !body.is_empty()
                && let Some(ct) = m.header(HeaderName::ContentType)
            {
                b.header(HeaderName::ContentType, ct);
            }
            b.finish(body);
        }
        let bytes = Bytes::copy_from_slice(&self.buf);
        let _ = self.txns.send_response(
            now,
            a_txn,
            status,
            bytes.clone(),
            a_tag.as_bytes(),
            &mut self.actions,
        );
        // A's dialog.
        if self.call_ref(cref).is_some_and(|c| c.a.dialog.is_none()) {
            let contact = ainv.contacts().next().map(|c| lossy(c.uri.raw));
            let rr: Vec<String> = ainv
                .record_routes()
                .map(|r| format!("<{}>", lossy(r.uri.raw)))
                .collect();
            let rr_refs: Vec<&str> = rr.iter().map(String::as_str).collect();
            let from_tag = lossy(ainv.from().and_then(|f| f.tag()).unwrap_or_default());
            let from_uri = lossy(ainv.from().map(|f| f.uri.raw).unwrap_or_default());
            let to_uri = lossy(ainv.to().map(|f| f.uri.raw).unwrap_or_default());
            let call_id = lossy(ainv.call_id());
            let req = UasRequest {
                call_id: &call_id,
                remote_tag: &from_tag,
                remote_uri: &from_uri,
                local_uri: &to_uri,
                cseq: ainv.cseq().seq,
                contact: contact.as_deref(),
                record_route: &rr_refs,
                secure: false,
            };
            if let Ok(d) = Dialog::uas(&req, &a_tag, status >= 200)
                && let Some(call) = self.call_mut(cref)
            {
                call.a.dialog = Some(d);
            }
        }
        if status >= 200 {
            let Some(call) = self.call_mut(cref) else {
                return;
            };
            if let Some(d) = &mut call.a.dialog {
                d.confirm();
            }
            call.a_invite = None;
            if flow.transport == Transport::Udp {
                call.a.pending_2xx = Some(Retx {
                    txn: a_txn,
                    bytes,
                    next: now + T1,
                    interval: T1,
                    give_up: now + T1 * 64,
                });
                self.timers
                    .push(Reverse((now + T1, TimerEv::Retx2xx(cref, Side::A))));
            }
            self.key_dialog(cref, Side::A);
        }
    }

    fn key_dialog(&mut self, cref: CallRef, side: Side) {
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        let leg = call.leg(side);
        if leg.keyed {
            return;
        }
        leg.keyed = true;
        let key = dialog_key(leg.call_id.as_bytes(), leg.local_tag.as_bytes());
        self.dialogs.insert(key.into_boxed_slice(), (cref, side));
    }

    /// ACK for the 2xx to our INVITE on `side` with CSeq `cseq` (the initial INVITE or a re-INVITE).
    fn send_ack(&mut self, cref: CallRef, side: Side, cseq: u32, body: Option<(&[u8], &[u8])>) {
        let branch = format!("z9hG4bK{}", self.token());
        let locals = &self.locals;
        let Some(call) = self
            .calls
            .get_mut(cref.idx as usize)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == cref.generation)
        else {
            return;
        };
        let leg = call.leg(side);
        let Some(d) = &leg.dialog else { return };
        let target = d.request_target();
        let (flow, dest) = (leg.flow, leg.dest);
        let local = locals
            .get(usize::from(flow.local))
            .map_or(SocketAddr::from(([127, 0, 0, 1], 5060)), |l| l.addr);
        let via = build::via_value(flow.transport, local, &branch);
        let from = format!("<{}>;tag={}", d.local_uri, d.id.local_tag);
        let to = if d.id.remote_tag.is_empty() {
            format!("<{}>", d.remote_uri)
        } else {
            format!("<{}>;tag={}", d.remote_uri, d.id.remote_tag)
        };
        self.buf.clear();
        build::ack_2xx(
            &mut self.buf,
            &target.request_uri,
            &via,
            &from,
            &to,
            &d.id.call_id,
            cseq,
            &target.route,
            body,
        );
        let bytes = Bytes::copy_from_slice(&self.buf);
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        call.leg(side).last_ack = Some((cseq, bytes.clone()));
        self.out.push_back(Transmit { flow, dest, bytes });
    }

    // ---- in-dialog ----

    fn on_ack(&mut self, now: Instant, msg: &Message<Bytes>) {
        let Some(tag) = msg.to().and_then(|t| t.tag()) else {
            return;
        };
        let Some(&(cref, side)) = self.dialogs.get(&dialog_key(msg.call_id(), tag)[..]) else {
            return;
        };
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        let leg = call.leg(side);
        // Over UDP an ACK without a pending 2xx is a retransmission; over TCP/TLS no 2xx is pending at all.
        if leg.pending_2xx.take().is_none() && leg.flow.transport == Transport::Udp {
            return;
        }
        // The ACK for the initial 2xx with a late offer carries A's answer: B gets it in our ACK.
        if side == Side::A
            && call.late_offer
            && call.b.last_ack.is_none()
            && let Some(d) = &call.b.dialog
        {
            let cseq = d.local_cseq.unwrap_or(1);
            self.ack_with_answer(now, cref, Side::A, cseq, msg);
            return;
        }
        // The ACK that answers the other leg's offer (made in its 2xx to an offerless re-INVITE).
        if let Some((other, cseq)) = call.reinvite_ack
            && other == side.other()
        {
            call.reinvite_ack = None;
            self.ack_with_answer(now, cref, side, cseq, msg);
        }
    }

    /// Our ACK (CSeq `cseq`) to the leg opposite `from`, carrying the answer `from` put in its ACK, anchored.
    /// An answer that cannot be anchored leaves the other leg with an unanswered offer: the call ends.
    fn ack_with_answer(
        &mut self,
        now: Instant,
        cref: CallRef,
        from: Side,
        cseq: u32,
        msg: &Message<Bytes>,
    ) {
        let ct = msg
            .header(HeaderName::ContentType)
            .unwrap_or(b"application/sdp")
            .to_vec();
        let (body, refused) = match self.media_sdp(now, cref, from, msg.body(), true) {
            Ok(Some(b)) => (b, false),
            Ok(None) => (msg.body().to_vec(), false),
            Err(_) => (Vec::new(), true),
        };
        let b = (!body.is_empty()).then_some((&ct[..], &body[..]));
        self.send_ack(cref, from.other(), cseq, b);
        if refused {
            self.teardown(now, cref);
        }
    }

    fn in_dialog(&mut self, now: Instant, id: TxnId, msg: &Message<Bytes>, method: Method<'_>) {
        let tag = msg.to().and_then(|t| t.tag()).unwrap_or_default();
        let Some(&(cref, side)) = self.dialogs.get(&dialog_key(msg.call_id(), tag)[..]) else {
            self.respond_simple(now, id, msg, 481, b"Call/Transaction Does Not Exist", &[]);
            return;
        };
        let m = lossy(method.as_bytes());
        let Some(call) = self.call_mut(cref) else {
            self.respond_simple(now, id, msg, 481, b"Call/Transaction Does Not Exist", &[]);
            return;
        };
        if let Some(d) = &mut call.leg(side).dialog
            && d.check_remote_cseq(&m, msg.cseq().seq).is_err()
        {
            self.respond_simple(
                now,
                id,
                msg,
                500,
                b"Server Internal Error",
                &[(b"Retry-After", b"1")],
            );
            return;
        }
        match method {
            Method::Bye => {
                self.respond_simple(now, id, msg, 200, b"OK", &[]);
                self.send_in_dialog(now, cref, side.other(), Method::Bye, None, None);
                self.free_call(cref);
            }
            Method::Invite
            | Method::Update
            | Method::Info
            | Method::Refer
            | Method::Notify
            | Method::Message
            | Method::Options => {
                if let Some(u) = self.uses.get_mut(&id) {
                    u.role = Role::RelayServer {
                        side,
                        req: msg.buffer().clone(),
                    };
                }
                if let Some(c) = msg.contacts().next()
                    && matches!(method, Method::Invite | Method::Update)
                    && let Some(call) = self.call_mut(cref)
                    && let Some(d) = &mut call.leg(side).dialog
                {
                    d.refresh_target(&lossy(c.uri.raw));
                }
                self.send_in_dialog(now, cref, side.other(), method, Some(msg), Some(id));
            }
            Method::Extension(_) => {
                self.counters.not_implemented += 1;
                self.respond_simple(
                    now,
                    id,
                    msg,
                    501,
                    b"Not Implemented",
                    &[(b"Allow", build::ALLOW)],
                )
            }
            _ => self.respond_simple(
                now,
                id,
                msg,
                405,
                b"Method Not Allowed",
                &[(b"Allow", build::ALLOW)],
            ),
        }
    }

    /// A request on leg `side` within its dialog: relayed from `src` (its headers and body), or our own
    /// (BYE, session refresh UPDATE). `server` is the transaction on the other leg to answer with the result.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        cref: CallRef,
        side: Side,
        method: Method<'_>,
        src: Option<&Message<Bytes>>,
        server: Option<TxnId>,
    ) {
        // A relayed offer (re-INVITE/UPDATE with SDP) is anchored; one that cannot be gets 488 back.
        let mut sdp: Option<Vec<u8>> = None;
        if let Some(s) = src
            && matches!(method, Method::Invite | Method::Update)
        {
            match self.media_sdp(now, cref, side.other(), s.body(), false) {
                Ok(b) => sdp = b,
                Err(r) => {
                    if let Some(sv) = server {
                        self.relay_final_error(now, sv, r.code, r.reason);
                    }
                    return;
                }
            }
        }
        let cfg = self.cfg.clone();
        let branch = format!("z9hG4bK{}", self.token());
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        let trunk = match side {
            Side::A => call.in_trunk,
            Side::B => call.out_trunk,
        };
        let leg = call.leg(side);
        let (flow, dest) = (leg.flow, leg.dest);
        let Some(d) = &mut leg.dialog else {
            if let Some(s) = server {
                self.relay_final_error(now, s, 481, b"Call/Transaction Does Not Exist");
            }
            return;
        };
        let Ok(cseq) = d.next_local_cseq() else {
            return;
        };
        let target = d.request_target();
        let from = format!("<{}>;tag={}", d.local_uri, d.id.local_tag);
        let to = if d.id.remote_tag.is_empty() {
            format!("<{}>", d.remote_uri)
        } else {
            format!("<{}>;tag={}", d.remote_uri, d.id.remote_tag)
        };
        let call_id = d.id.call_id.clone();
        let local = self
            .locals
            .get(usize::from(flow.local))
            .map_or(SocketAddr::from(([127, 0, 0, 1], 5060)), |l| l.addr);
        let via = build::via_value(flow.transport, local, &branch);
        let mut out = std::mem::take(&mut self.buf);
        {
            let mut b = MessageBuilder::request(&mut out, method, target.request_uri.as_bytes());
            let mf = src
                .and_then(|s| s.max_forwards())
                .map_or(70, |m| m.saturating_sub(1).min(70));
            b.header(HeaderName::Via, via.as_bytes())
                .header_u64(HeaderName::MaxForwards, u64::from(mf))
                .header(HeaderName::From, from.as_bytes())
                .header(HeaderName::To, to.as_bytes())
                .header(HeaderName::CallId, call_id.as_bytes())
                .cseq(cseq, method);
            for r in &target.route {
                b.header(HeaderName::Route, r.as_bytes());
            }
            if matches!(
                method,
                Method::Invite
                    | Method::Update
                    | Method::Refer
                    | Method::Notify
                    | Method::Subscribe
            ) {
                let c = build::contact_value(flow.transport, local);
                b.header(HeaderName::Contact, c.as_bytes());
            }
            if let Some(s) = src {
                let headers = &cfg.trunks[trunk].headers;
                for h in s.headers() {
                    let pass = match h.name {
                        HeaderName::ReferTo
                        | HeaderName::ReferredBy
                        | HeaderName::Event
                        | HeaderName::Reason
                        | HeaderName::Subject => true,
                        HeaderName::Other => {
                            h.raw_name.eq_ignore_ascii_case(b"Subscription-State")
                                || h.raw_name.eq_ignore_ascii_case(b"Content-Disposition")
                                || h.raw_name.eq_ignore_ascii_case(b"Info-Package")
                                || headers.allows(std::str::from_utf8(h.raw_name).unwrap_or(""))
                        }
                        _ => false,
                    };
                    if pass && !build::is_core_header(h.name, h.raw_name) {
                        b.raw_header(h.raw_name, h.value);
                    }
                }
                let body = sdp.as_deref().unwrap_or(s.body());
                if !body.is_empty()
                    && let Some(ct) = s.header(HeaderName::ContentType)
                {
                    b.header(HeaderName::ContentType, ct);
                }
                b.finish(body);
            } else {
                if method == Method::Bye
                    && let Some(r) = self.bye_reason
                {
                    b.header(HeaderName::Reason, r);
                }
                if method == Method::Update
                    && let Some(se) = self.call_ref(cref).and_then(|c| c.session)
                {
                    let v = format!("{};refresher=uac", se.as_secs());
                    b.header(HeaderName::SessionExpires, v.as_bytes());
                }
                b.finish(b"");
            }
        }
        let bytes = Bytes::copy_from_slice(&out);
        self.buf = out;
        let req = ClientRequest {
            method: method.as_bytes(),
            branch: branch.as_bytes(),
            bytes,
            dest: Dest {
                transport: flow.transport,
                addr: dest,
            },
        };
        let Ok(id) = self.txns.start_client(now, req, &mut self.actions) else {
            return;
        };
        let role = match (server, method) {
            (Some(s), _) => Role::RelayClient {
                call: cref,
                side,
                server: s,
            },
            (None, Method::Update) => Role::Refresh(cref),
            _ => Role::Own,
        };
        self.uses.insert(id, TxnUse { flow, dest, role });
    }

    fn relay_final_error(&mut self, now: Instant, server: TxnId, code: u16, reason: &[u8]) {
        let Some(u) = self.uses.get(&server) else {
            return;
        };
        let Role::RelayServer { req, .. } = &u.role else {
            return;
        };
        let Ok(m) = Message::parse(req.clone()) else {
            return;
        };
        self.buf.clear();
        build::simple_response(&mut self.buf, &m, code, reason, None, &[]);
        let bytes = Bytes::copy_from_slice(&self.buf);
        let _ = self
            .txns
            .send_response(now, server, code, bytes, b"", &mut self.actions);
    }

    /// The other leg answered a relayed in-dialog request: relay the answer back.
    fn on_relay_response(
        &mut self,
        now: Instant,
        cref: CallRef,
        side: Side,
        server: TxnId,
        status: u16,
        m: &Message<Bytes>,
    ) {
        if status == 100 {
            return;
        }
        let is_invite = m.cseq().method == Method::Invite;
        if (200..300).contains(&status) && is_invite {
            let offerless = self.uses.get(&server).is_some_and(|u| match &u.role {
                Role::RelayServer { req, .. } => {
                    Message::parse(req.clone()).is_ok_and(|r| r.body().is_empty())
                }
                _ => false,
            });
            if offerless && !m.body().is_empty() {
                // Its 2xx is an offer: the answer comes in the originator's ACK, and so goes in ours.
                if let Some(call) = self.call_mut(cref) {
                    call.reinvite_ack = Some((side, m.cseq().seq));
                }
            } else {
                // We ACK the other leg's 2xx ourselves; the originator's ACK only stops our retransmissions.
                self.send_ack(cref, side, m.cseq().seq, None);
            }
        }
        if (200..300).contains(&status)
            && let Some(c) = m.contacts().next()
            && let Some(call) = self.call_mut(cref)
            && let Some(d) = &mut call.leg(side).dialog
        {
            d.refresh_target(&lossy(c.uri.raw));
        }
        let Some(u) = self.uses.get(&server) else {
            return;
        };
        let Role::RelayServer {
            req, side: orig, ..
        } = &u.role
        else {
            return;
        };
        let orig = *orig;
        let Ok(rq) = Message::parse(req.clone()) else {
            return;
        };
        let flow = u.flow;
        let sdp_method = matches!(m.cseq().method, Method::Invite | Method::Update);
        let mut sdp: Option<Vec<u8>> = None;
        if sdp_method && (200..300).contains(&status) {
            // An answer to the relayed offer, or (offerless re-INVITE) an offer of its own.
            let answer = !rq.body().is_empty();
            sdp = self
                .media_sdp(now, cref, side, m.body(), answer)
                .unwrap_or(Some(Vec::new()));
        } else if sdp_method && status >= 300 && !rq.body().is_empty() {
            self.media_offer_failed(now, cref);
        } else if sdp_method && !m.body().is_empty() && self.media_anchored(cref) {
            // Provisional SDP inside a dialog is not anchored: never relay peer addresses.
            sdp = Some(Vec::new());
        }
        let local = self
            .locals
            .get(usize::from(flow.local))
            .map_or(SocketAddr::from(([127, 0, 0, 1], 5060)), |l| l.addr);
        self.buf.clear();
        {
            let reason = m.reason().unwrap_or(b"OK");
            let mut b = MessageBuilder::reply_to(&mut self.buf, &rq, status, reason, None);
            if (200..300).contains(&status)
                && matches!(m.cseq().method, Method::Invite | Method::Update)
            {
                let c = build::contact_value(flow.transport, local);
                b.header(HeaderName::Contact, c.as_bytes());
            }
            if let Some(r) = m.header_by_name(b"Retry-After") {
                b.raw_header(b"Retry-After", r);
            }
            let body = sdp.as_deref().unwrap_or(m.body());
            if !body.is_empty()
                && let Some(ct) = m.header(HeaderName::ContentType)
            {
                b.header(HeaderName::ContentType, ct);
            }
            b.finish(body);
        }
        let bytes = Bytes::copy_from_slice(&self.buf);
        let _ = self
            .txns
            .send_response(now, server, status, bytes.clone(), b"", &mut self.actions);
        if (200..300).contains(&status) && is_invite && flow.transport == Transport::Udp {
            if let Some(call) = self.call_mut(cref) {
                call.leg(orig).pending_2xx = Some(Retx {
                    txn: server,
                    bytes,
                    next: now + T1,
                    interval: T1,
                    give_up: now + T1 * 64,
                });
            }
            self.timers
                .push(Reverse((now + T1, TimerEv::Retx2xx(cref, orig))));
        }
    }

    // ---- timers ----

    fn fire(&mut self, now: Instant, at: Instant, ev: TimerEv) {
        match ev {
            TimerEv::Retx2xx(cref, side) => {
                let Some(call) = self.call_mut(cref) else {
                    return;
                };
                let leg = call.leg(side);
                let Some(r) = &mut leg.pending_2xx else {
                    return;
                };
                if r.next != at {
                    return;
                }
                if now >= r.give_up {
                    leg.pending_2xx = None;
                    self.teardown(now, cref);
                    return;
                }
                r.interval = (r.interval * 2).min(T2);
                r.next = now + r.interval;
                let (txn, bytes, next) = (r.txn, r.bytes.clone(), r.next);
                let _ = self
                    .txns
                    .send_response(now, txn, 200, bytes, b"", &mut self.actions);
                self.timers
                    .push(Reverse((next, TimerEv::Retx2xx(cref, side))));
            }
            TimerEv::TargetTimeout(cref) => {
                let Some(call) = self.call_ref(cref) else {
                    return;
                };
                if call.target_deadline != Some(at) || call.b_provisional {
                    return;
                }
                let Some((txn, _)) = call.b_invite.clone() else {
                    return;
                };
                let dest = call.b.dest;
                self.mark_target_failure(cref, dest);
                self.b_attempt_failed(now, cref, txn, 408, b"Request Timeout");
            }
            TimerEv::SessionRefresh(cref) => {
                let Some(call) = self.call_mut(cref) else {
                    return;
                };
                if call.refresh_at != Some(at) {
                    return;
                }
                let Some(se) = call.session else { return };
                let next = now + se / 2;
                call.refresh_at = Some(next);
                self.send_in_dialog(now, cref, Side::A, Method::Update, None, None);
                self.send_in_dialog(now, cref, Side::B, Method::Update, None, None);
                self.timers
                    .push(Reverse((next, TimerEv::SessionRefresh(cref))));
            }
            TimerEv::Ping { trunk, target } => self.ping(now, trunk, target),
            TimerEv::ForwardRing(cref) => self.forward_ring_timeout(now, cref, at),
        }
    }

    fn start_session_timer(&mut self, now: Instant, cref: CallRef) {
        let Some(call) = self.call_mut(cref) else {
            return;
        };
        let Some(se) = call.session else { return };
        let at = now + se / 2;
        call.refresh_at = Some(at);
        self.timers
            .push(Reverse((at, TimerEv::SessionRefresh(cref))));
    }

    fn ping(&mut self, now: Instant, trunk: usize, target: usize) {
        let Some(ts) = self.trunks.get(trunk) else {
            return;
        };
        let Some(t) = ts.targets.get(target).copied() else {
            return;
        };
        let interval = Duration::from_secs(u64::from(
            self.cfg.trunks[trunk].health.ping_interval_s.max(1),
        ));
        self.timers
            .push(Reverse((now + interval, TimerEv::Ping { trunk, target })));
        if ts.health[target].in_flight {
            return;
        }
        let branch = format!("z9hG4bK{}", self.token());
        let tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.cfg.node.name);
        let (local_idx, local) = self.local_for(t.transport, t.addr);
        let uri = format!("sip:{}", t.addr);
        self.buf.clear();
        {
            let via = build::via_value(t.transport, local, &branch);
            let from = format!("<sip:tollgate@{local}>;tag={tag}");
            let to = format!("<{uri}>");
            let mut b = MessageBuilder::request(&mut self.buf, Method::Options, uri.as_bytes());
            b.header(HeaderName::Via, via.as_bytes())
                .header_u64(HeaderName::MaxForwards, 70)
                .header(HeaderName::From, from.as_bytes())
                .header(HeaderName::To, to.as_bytes())
                .header(HeaderName::CallId, call_id.as_bytes())
                .cseq(1, Method::Options);
            b.finish(b"");
        }
        let req = ClientRequest {
            method: b"OPTIONS",
            branch: branch.as_bytes(),
            bytes: Bytes::copy_from_slice(&self.buf),
            dest: Dest {
                transport: t.transport,
                addr: t.addr,
            },
        };
        if let Ok(id) = self.txns.start_client(now, req, &mut self.actions) {
            self.trunks[trunk].health[target].in_flight = true;
            self.uses.insert(
                id,
                TxnUse {
                    flow: Flow {
                        transport: t.transport,
                        local: local_idx,
                        conn: None,
                    },
                    dest: t.addr,
                    role: Role::Ping { trunk, target },
                },
            );
        }
    }

    fn ping_result(&mut self, trunk: usize, target: usize, ok: bool) {
        let Some(hc) = self.cfg.trunks.get(trunk).map(|t| t.health) else {
            return;
        };
        let Some(h) = self
            .trunks
            .get_mut(trunk)
            .and_then(|t| t.health.get_mut(target))
        else {
            return;
        };
        h.in_flight = false;
        if ok {
            h.ok_streak += 1;
            h.fail_streak = 0;
            if !h.up && h.ok_streak >= hc.up_after.max(1) {
                h.up = true;
                tracing::info!(trunk, target, "target up");
            }
        } else {
            h.fail_streak += 1;
            h.ok_streak = 0;
            if h.up && h.fail_streak >= hc.down_after.max(1) {
                h.up = false;
                tracing::warn!(trunk, target, "target down");
            }
        }
    }

    // ---- call lifetime ----

    /// Ends both legs: BYE to each confirmed dialog, error to A if unanswered, CANCEL to B if ringing.
    fn teardown(&mut self, now: Instant, cref: CallRef) {
        let Some(call) = self.call_ref(cref) else {
            return;
        };
        let a_confirmed = call.a.dialog.is_some() && call.a_invite.is_none();
        let b_confirmed = call.b.dialog.is_some() && call.b_invite.is_none();
        if call.a_invite.is_some() {
            self.reject_a(now, cref, 408, b"Request Timeout");
        } else if a_confirmed {
            self.send_in_dialog(now, cref, Side::A, Method::Bye, None, None);
        }
        if b_confirmed {
            self.send_in_dialog(now, cref, Side::B, Method::Bye, None, None);
        } else if let Some(call) = self.call_mut(cref)
            && call.b_invite.is_some()
        {
            call.cancelled = true;
            self.cancel_b(now, cref);
            return;
        }
        self.free_call(cref);
    }

    fn call_ref(&self, r: CallRef) -> Option<&Call> {
        self.calls
            .get(r.idx as usize)?
            .as_ref()
            .filter(|c| c.generation == r.generation)
    }

    fn call_mut(&mut self, r: CallRef) -> Option<&mut Call> {
        self.calls
            .get_mut(r.idx as usize)?
            .as_mut()
            .filter(|c| c.generation == r.generation)
    }

    fn free_call(&mut self, r: CallRef) {
        if self.call_ref(r).is_none() {
            return;
        }
        let Some(mut call) = self.calls.get_mut(r.idx as usize).and_then(Option::take) else {
            return;
        };
        self.media_close(&mut call);
        for leg in [&call.a, &call.b] {
            if leg.keyed {
                self.dialogs
                    .remove(&dialog_key(leg.call_id.as_bytes(), leg.local_tag.as_bytes())[..]);
            }
        }
        for t in [call.in_trunk, call.out_trunk] {
            self.admission.release(trunk_id(t));
        }
        self.record_end(&call);
        self.active_calls -= 1;
        self.free.push(r.idx);
    }

    /// A random token for tags, branches and Call-IDs (xorshift64*; unpredictable enough for identifiers,
    /// not a secret).
    fn token(&mut self) -> String {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let mut s = String::with_capacity(16);
        let _ = write!(s, "{v:016x}");
        s
    }
}

fn dialog_key(call_id: &[u8], local_tag: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(call_id.len() + local_tag.len() + 1);
    k.extend_from_slice(call_id);
    k.push(0);
    k.extend_from_slice(local_tag);
    k
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// sent-by of the first Via value: `host[:port]` (the part before the first `;`, after the protocol).
fn sent_by(via: &[u8]) -> &[u8] {
    let first = via.split(|&b| b == b',').next().unwrap_or_default();
    let after = first
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .and_then(|i| first.get(i..))
        .unwrap_or_default()
        .trim_ascii_start();
    let end = after.iter().position(|&b| b == b';').unwrap_or(after.len());
    after.get(..end).unwrap_or_default().trim_ascii()
}
