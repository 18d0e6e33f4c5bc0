//! Media anchoring for the B2BUA: each call's SDP offer/answer goes through an `sdp::MediaSession` that
//! puts tollgate's media addresses and ports into both legs' SDP, and the negotiated streams become flow
//! entries handed to the media plane through a `media::FlowSink` (DESIGN.md "The flow"). Workers report
//! back through [`B2bua::on_media_event`]: RTP timeouts end the call, stats feed `/calls` and the CDR.
//!
//! Sans-IO like the rest of the B2BUA: ports come from a `media::PortAllocator` owned here, key bytes
//! from the OS RNG, and the sink is whatever the binary wires (the `mediaplane::FanoutSink`) or a test's
//! collector. In `bypass` mode no anchor is set and SDP crosses unchanged.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{B2bua, CallRef, Phase, Side};
use crate::config::{self, InterfaceRole};
use crate::media::PortAllocator;
use crate::media::flow::{
    FlowCmd, FlowKey, FlowSink, FlowTag, LatchMode, Leg, MediaEvent, StreamStats,
};
use crate::mgmt::snapshot::StreamInfo;
use crate::sdp::{
    Codec, CodecPref, CryptoSuite, FlowOptions, KeySource, LegPolicy, MediaSession, PortSource,
    SdpError, SrtpPolicy,
};
use crate::sip::txn::Transport;
use crate::stats::cdr::{self, CodecImpairment};

/// One of our media addresses: where flows are keyed and packets leave from (`local`), and what SDP
/// announces (`sdp`: differs behind 1:1 NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaAddr {
    pub local: IpAddr,
    pub sdp: IpAddr,
}

/// What the media side counts (exported with the B2BUA counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediaCounters {
    /// Calls refused 503 because no media port pair was free.
    pub ports_exhausted: u64,
    /// Offers or answers refused (488 to the offerer, or the call ended) with the reason logged.
    pub sdp_refused: u64,
    pub flows_added: u64,
    pub flows_updated: u64,
    pub flows_removed: u64,
    /// Commands the sink could not take (a worker queue was full): logged, the call goes on.
    pub sink_errors: u64,
    pub latched: u64,
    pub timeouts: u64,
    pub dtmf_events: u64,
}

/// The B2BUA's media state shared by all calls.
pub struct MediaAnchor {
    sink: Box<dyn FlowSink + Send>,
    /// One allocator per distinct local media address (a port is unique per address).
    allocators: Vec<(IpAddr, PortAllocator)>,
    carrier: MediaAddr,
    cloud: MediaAddr,
    base: Instant,
    counters: MediaCounters,
}

/// Key bytes from the OS CSPRNG (SDES master keys).
struct OsKeys;

impl KeySource for OsKeys {
    fn fill(&mut self, out: &mut [u8]) {
        if let Err(e) = getrandom::fill(out) {
            // Without entropy no key may be issued; panicking here is the only safe answer and cannot
            // happen on a running Linux (getrandom(2) blocks until the pool is ready).
            panic!("OS random number generator failed: {e}");
        }
    }
}

/// `PortSource` over the anchor's allocators for one call's two legs.
struct Ports<'a> {
    allocators: &'a mut [(IpAddr, PortAllocator)],
    /// Allocator index of leg A and leg B.
    leg: [usize; 2],
    now: u64,
}

fn li(l: Leg) -> usize {
    match l {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl PortSource for Ports<'_> {
    fn allocate(&mut self, leg: Leg) -> Result<u16, SdpError> {
        self.allocators[self.leg[li(leg)]]
            .1
            .allocate(self.now)
            .map(|p| p.rtp)
            .map_err(|_| SdpError::PortsExhausted)
    }

    fn release(&mut self, leg: Leg, rtp_port: u16) {
        let _ = self.allocators[self.leg[li(leg)]]
            .1
            .release(rtp_port, self.now);
    }
}

/// One call's media: the offer/answer state and the flows installed for it.
pub(super) struct CallMedia {
    session: MediaSession,
    /// Allocator index per leg.
    alloc: [usize; 2],
    /// The trunk the B policy was built for (a forward's fallback route changes it).
    b_trunk: usize,
    /// A's offer as B receives it (resent unchanged on failover and auth retries).
    pub(super) offer_b: Option<Vec<u8>>,
    installed: Vec<FlowKey>,
    /// Latest worker stats per flow (direction = the leg the flow receives from).
    stats: Vec<(FlowTag, StreamStats)>,
}

/// Why media refused a call or an offer: the status for the offerer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    pub code: u16,
    pub reason: &'static [u8],
}

fn sdp_codec(c: config::Codec) -> Codec {
    match c {
        config::Codec::Pcmu => Codec::Pcmu,
        config::Codec::Pcma => Codec::Pcma,
        config::Codec::G722 => Codec::G722,
        config::Codec::Opus => Codec::Opus,
        config::Codec::G729 => Codec::G729,
        config::Codec::TelephoneEvent => Codec::TelephoneEvent,
    }
}

fn sdp_suite(s: config::SrtpSuite) -> CryptoSuite {
    match s {
        config::SrtpSuite::AesCm128HmacSha1_80 => CryptoSuite::AesCm128HmacSha1_80,
        config::SrtpSuite::AesCm128HmacSha1_32 => CryptoSuite::AesCm128HmacSha1_32,
        config::SrtpSuite::AeadAes128Gcm => CryptoSuite::AeadAes128Gcm,
        config::SrtpSuite::AeadAes256Gcm => CryptoSuite::AeadAes256Gcm,
    }
}

fn refusal(e: &SdpError) -> Refusal {
    match e {
        SdpError::PortsExhausted => Refusal {
            code: 503,
            reason: b"Service Unavailable",
        },
        _ => Refusal {
            code: 488,
            reason: b"Not Acceptable Here",
        },
    }
}

/// The call handle in flow tags: slot and generation, so a late event never reaches a reused slot.
fn handle(r: CallRef) -> u64 {
    (u64::from(r.idx) << 32) | u64::from(r.generation)
}

fn cref_of(h: u64) -> CallRef {
    CallRef {
        idx: (h >> 32) as u32,
        generation: h as u32,
    }
}

fn side_leg(s: Side) -> Leg {
    match s {
        Side::A => Leg::A,
        Side::B => Leg::B,
    }
}

impl MediaAnchor {
    /// Anchors media on `carrier` (the leg toward the inbound trunk) and `cloud` (toward the outbound
    /// trunk) with ports `port_min..=port_max` per address, released ports quarantined for `quarantine`.
    pub fn new(
        sink: Box<dyn FlowSink + Send>,
        carrier: MediaAddr,
        cloud: MediaAddr,
        port_min: u16,
        port_max: u16,
        quarantine: Duration,
        now: Instant,
    ) -> Result<MediaAnchor, crate::media::PortError> {
        let q = quarantine.as_nanos() as u64;
        let mut allocators = vec![(carrier.local, PortAllocator::new(port_min, port_max, q)?)];
        if cloud.local != carrier.local {
            allocators.push((cloud.local, PortAllocator::new(port_min, port_max, q)?));
        }
        Ok(MediaAnchor {
            sink,
            allocators,
            carrier,
            cloud,
            base: now,
            counters: MediaCounters::default(),
        })
    }

    /// The carrier and cloud addresses from `[media]` for `mode` socket/xdp: each role's interface
    /// address (`public_address` in SDP), or `fallback` (the first SIP listener's address) for a role
    /// without an interface.
    pub fn addrs_from_config(m: &config::Media, fallback: IpAddr) -> (MediaAddr, MediaAddr) {
        let pick = |role: InterfaceRole| {
            let i = m
                .interfaces
                .iter()
                .find(|i| i.role == role && i.address.is_some())
                .or_else(|| m.interfaces.iter().find(|i| i.address.is_some()));
            let local = i.and_then(|i| i.address).unwrap_or(fallback);
            let sdp = i.and_then(|i| i.public_address).unwrap_or(local);
            MediaAddr { local, sdp }
        };
        (pick(InterfaceRole::Carrier), pick(InterfaceRole::Cloud))
    }

    pub fn counters(&self) -> MediaCounters {
        self.counters
    }

    /// Ports in use over all media addresses.
    pub fn ports_in_use(&self) -> usize {
        self.allocators
            .iter()
            .map(|(_, a)| a.counters().in_use)
            .sum()
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn alloc_of(&self, ip: IpAddr) -> usize {
        self.allocators
            .iter()
            .position(|(a, _)| *a == ip)
            .unwrap_or(0)
    }

    fn apply(&mut self, cmd: FlowCmd) {
        let kind = match &cmd {
            FlowCmd::Add(_) => 0,
            FlowCmd::Update(_) => 1,
            FlowCmd::Remove(_) => 2,
        };
        match self.sink.apply(cmd) {
            Ok(()) => match kind {
                0 => self.counters.flows_added += 1,
                1 => self.counters.flows_updated += 1,
                _ => self.counters.flows_removed += 1,
            },
            Err(e) => {
                self.counters.sink_errors += 1;
                tracing::warn!(error = %e, "media flow command not delivered");
            }
        }
    }
}

impl B2bua {
    /// Anchor media through `anchor` (modes socket and xdp). Without it SDP crosses unchanged (bypass).
    pub fn set_media(&mut self, anchor: MediaAnchor) {
        self.media = Some(anchor);
    }

    pub fn media_counters(&self) -> Option<MediaCounters> {
        self.media.as_ref().map(MediaAnchor::counters)
    }

    fn leg_policy(&self, trunk: usize, addr: MediaAddr, tls: bool) -> LegPolicy {
        let t = &self.cfg.trunks[trunk];
        LegPolicy {
            media_addr: addr.sdp,
            codecs: t
                .codecs
                .iter()
                .map(|c| CodecPref::new(sdp_codec(*c)))
                .collect(),
            srtp: match t.srtp.policy {
                config::SrtpPolicy::Off => SrtpPolicy::Off,
                config::SrtpPolicy::Optional => SrtpPolicy::Optional,
                config::SrtpPolicy::Required => SrtpPolicy::Required,
            },
            srtp_suites: t.srtp.suites.iter().map(|s| sdp_suite(*s)).collect(),
            sdes_allowed: tls || t.srtp.allow_sdes_without_tls,
            rtcp_mux: true,
            ptime: (t.ptime_ms > 0).then_some(u32::from(t.ptime_ms)),
            origin_username: "tollgate".into(),
        }
    }

    /// A fresh media session for the call's current trunks.
    fn new_call_media(&self, cref: CallRef) -> Option<CallMedia> {
        let anchor = self.media.as_ref()?;
        let call = self.call_ref(cref)?;
        let a_tls = call.a.flow.transport == Transport::Tls;
        // SDES keys cross B only when every target of the trunk is reached over TLS.
        let b_tls =
            !call.targets.is_empty() && call.targets.iter().all(|t| t.transport == Transport::Tls);
        let pa = self.leg_policy(call.in_trunk, anchor.carrier, a_tls);
        let pb = self.leg_policy(call.out_trunk, anchor.cloud, b_tls);
        Some(CallMedia {
            session: MediaSession::new(pa, pb),
            alloc: [
                anchor.alloc_of(anchor.carrier.local),
                anchor.alloc_of(anchor.cloud.local),
            ],
            b_trunk: call.out_trunk,
            offer_b: None,
            installed: Vec::new(),
            stats: Vec::new(),
        })
    }

    /// Runs `f` with the call's media session and a port source; `None` when the call has no media.
    fn with_session<R>(
        &mut self,
        now: Instant,
        cref: CallRef,
        f: impl FnOnce(&mut MediaSession, &mut Ports<'_>, &mut OsKeys) -> R,
    ) -> Option<R> {
        let anchor = self.media.as_mut()?;
        let t = anchor.nanos(now);
        let call = self
            .calls
            .get_mut(cref.idx as usize)?
            .as_mut()
            .filter(|c| c.generation == cref.generation)?;
        let cm = call.media.as_mut()?;
        let mut ports = Ports {
            allocators: &mut anchor.allocators,
            leg: cm.alloc,
            now: t,
        };
        Some(f(&mut cm.session, &mut ports, &mut OsKeys))
    }

    /// New call: set up its media session and turn A's offer (if any) into the offer for B. `Err` is
    /// the status to refuse A with.
    pub(super) fn media_on_new_call(
        &mut self,
        now: Instant,
        cref: CallRef,
        a_body: &[u8],
    ) -> Result<(), Refusal> {
        let Some(cm) = self.new_call_media(cref) else {
            return Ok(());
        };
        if let Some(c) = self.call_mut(cref) {
            c.media = Some(cm);
        }
        if a_body.is_empty() {
            return Ok(());
        }
        match self.with_session(now, cref, |s, p, k| s.offer(Leg::A, a_body, p, k)) {
            Some(Ok(offer)) => {
                if let Some(cm) = self.call_mut(cref).and_then(|c| c.media.as_mut()) {
                    cm.offer_b = Some(offer);
                }
                Ok(())
            }
            Some(Err(e)) => Err(self.media_refused(cref, "offer from caller", &e)),
            None => Ok(()),
        }
    }

    fn media_refused(&mut self, cref: CallRef, what: &str, e: &SdpError) -> Refusal {
        let call_id = self.call_ref(cref).map(|c| c.b.call_id.clone());
        if let Some(a) = self.media.as_mut() {
            if matches!(e, SdpError::PortsExhausted) {
                a.counters.ports_exhausted += 1;
            } else {
                a.counters.sdp_refused += 1;
            }
        }
        tracing::warn!(call = call_id.as_deref().unwrap_or("?"), error = %e, "SDP {what} refused");
        refusal(e)
    }

    /// Before (re)sending the INVITE to B: when the outbound trunk changed since the offer was made (a
    /// forward fell back to the normal route), the B leg's policy changes, so the offer is made again.
    pub(super) fn media_retarget(
        &mut self,
        now: Instant,
        cref: CallRef,
        a_body: &[u8],
    ) -> Result<(), Refusal> {
        let changed = self
            .call_ref(cref)
            .and_then(|c| c.media.as_ref().map(|m| m.b_trunk != c.out_trunk))
            .unwrap_or(false);
        if !changed {
            return Ok(());
        }
        self.with_session(now, cref, |s, p, _| s.close(p));
        if let Some(c) = self.call_mut(cref) {
            c.media = None;
        }
        self.media_on_new_call(now, cref, a_body)
    }

    /// The call anchors media (not bypass).
    pub(super) fn media_anchored(&self, cref: CallRef) -> bool {
        self.call_ref(cref).is_some_and(|c| c.media.is_some())
    }

    /// The body to put in the INVITE to B: the anchored offer, or A's body unchanged.
    pub(super) fn media_offer_b<'a>(&'a self, cref: CallRef, a_body: &'a [u8]) -> &'a [u8] {
        self.call_ref(cref)
            .and_then(|c| c.media.as_ref())
            .and_then(|m| m.offer_b.as_deref())
            .unwrap_or(a_body)
    }

    /// SDP from `from`: an offer (`answer == false`: INVITE, re-INVITE, UPDATE, or B's 2xx to an INVITE
    /// without SDP) or the answer to the offer the other leg made. Returns the body for the other leg;
    /// an answer programs the flows. `Ok(None)`: no body, or the call does not anchor media.
    pub(super) fn media_sdp(
        &mut self,
        now: Instant,
        cref: CallRef,
        from: Side,
        body: &[u8],
        answer: bool,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        if body.is_empty() {
            return Ok(None);
        }
        let leg = side_leg(from);
        let r = self.with_session(now, cref, |s, p, k| {
            if answer {
                s.answer(leg, body, p, k)
            } else {
                s.offer(leg, body, p, k)
            }
        });
        match r {
            None => Ok(None),
            Some(Ok(b)) => {
                if answer {
                    self.media_program(cref);
                }
                Ok(Some(b))
            }
            Some(Err(e)) => {
                let what = if answer { "answer" } else { "offer" };
                Err(self.media_refused(cref, what, &e))
            }
        }
    }

    /// The peer refused the offer we relayed (3xx-6xx): release what it allocated.
    pub(super) fn media_offer_failed(&mut self, now: Instant, cref: CallRef) {
        self.with_session(now, cref, |s, p, _| s.offer_failed(p));
    }

    /// Sends the call's flows to the media plane: `Add` for new local addresses, `Update` for the ones
    /// already there (keeps counters, SRTP contexts and latching), `Remove` for the ones gone.
    fn media_program(&mut self, cref: CallRef) {
        let (rtp_timeout, hold_timeout, strict) = (
            u64::from(self.cfg.media.rtp_timeout_s) * 1_000_000_000,
            u64::from(self.cfg.media.hold_timeout_s) * 1_000_000_000,
            self.cfg.media.strict_latching,
        );
        let Some(anchor) = self.media.as_mut() else {
            return;
        };
        let Some(call) = self
            .calls
            .get_mut(cref.idx as usize)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == cref.generation)
        else {
            return;
        };
        let Some(cm) = call.media.as_mut() else {
            return;
        };
        let latch = if strict {
            LatchMode::Strict
        } else {
            LatchMode::LatchOnFirst
        };
        let opts = FlowOptions {
            call: handle(cref),
            latch_a: latch,
            latch_b: latch,
            timeout: rtp_timeout,
            hold_timeout,
        };
        let (carrier, cloud) = (anchor.carrier, anchor.cloud);
        let to_local = |ip: IpAddr| {
            if ip == carrier.sdp {
                carrier.local
            } else if ip == cloud.sdp {
                cloud.local
            } else {
                ip
            }
        };
        let mut keys = Vec::new();
        for st in cm.session.streams() {
            for mut e in st.flow_entries(&opts) {
                // SDP carries the public address; flows live on the local one.
                e.key.local.set_ip(to_local(e.key.local.ip()));
                e.egress_local.set_ip(to_local(e.egress_local.ip()));
                if let Some(p) = e.peer.as_mut() {
                    p.local.set_ip(to_local(p.local.ip()));
                }
                if let Some(p) = e.peer_rtcp.as_mut() {
                    p.local.set_ip(to_local(p.local.ip()));
                }
                if let Some((l, _)) = e.rtcp_egress.as_mut() {
                    l.set_ip(to_local(l.ip()));
                }
                let key = e.key;
                let cmd = if cm.installed.contains(&key) {
                    FlowCmd::Update(Box::new(e))
                } else {
                    FlowCmd::Add(Box::new(e))
                };
                anchor.apply(cmd);
                keys.push(key);
            }
        }
        for old in std::mem::take(&mut cm.installed) {
            if !keys.contains(&old) {
                anchor.apply(FlowCmd::Remove(old));
            }
        }
        cm.installed = keys;
    }

    /// Call teardown (from `free_call`): flows removed, ports back to the allocator (quarantined).
    pub(super) fn media_close(&mut self, call: &mut super::Call) {
        let now = self.last_now;
        let Some(anchor) = self.media.as_mut() else {
            return;
        };
        let Some(cm) = call.media.as_mut() else {
            return;
        };
        for k in std::mem::take(&mut cm.installed) {
            anchor.apply(FlowCmd::Remove(k));
        }
        let t = anchor.nanos(now);
        let mut ports = Ports {
            allocators: &mut anchor.allocators,
            leg: cm.alloc,
            now: t,
        };
        cm.session.close(&mut ports);
    }

    /// An event from a media worker.
    pub fn on_media_event(&mut self, now: Instant, ev: MediaEvent) {
        self.last_now = now;
        match ev {
            MediaEvent::Latched { addr, tag, .. } => {
                if let Some(a) = self.media.as_mut() {
                    a.counters.latched += 1;
                }
                if let Some(c) = self.call_ref(cref_of(tag.call)) {
                    tracing::debug!(call = %c.b.call_id, leg = ?tag.leg, %addr, "media latched");
                }
            }
            MediaEvent::Dtmf {
                call, leg, digit, ..
            } => {
                if let Some(a) = self.media.as_mut() {
                    a.counters.dtmf_events += 1;
                }
                if let Some(c) = self.call_ref(cref_of(call)) {
                    tracing::info!(call = %c.b.call_id, ?leg, %digit, "DTMF");
                }
            }
            MediaEvent::Stats { tag, stats, .. } => {
                if let Some(cm) = self
                    .call_mut(cref_of(tag.call))
                    .and_then(|c| c.media.as_mut())
                {
                    match cm.stats.iter_mut().find(|(t, _)| *t == tag) {
                        Some(s) => s.1 = stats,
                        None => cm.stats.push((tag, stats)),
                    }
                }
            }
            MediaEvent::Timeout { tag, .. } => {
                let cref = cref_of(tag.call);
                let Some(c) = self.call_ref(cref) else {
                    return;
                };
                if c.phase != Phase::Answered {
                    return;
                }
                tracing::info!(call = %c.b.call_id, leg = ?tag.leg, "no RTP: ending the call");
                if let Some(a) = self.media.as_mut() {
                    a.counters.timeouts += 1;
                }
                self.ops.ending_reason = Some("media timeout");
                self.bye_reason = Some(b"Q.850;cause=16;text=\"media timeout\"");
                self.teardown(now, cref);
                self.drain(now, None);
                self.bye_reason = None;
                self.ops.ending_reason = None;
            }
        }
    }

    /// The calls view of one leg's media: codec, SRTP suite, and per stream our address, the peer's, and
    /// what the workers counted in (from this leg) and out (toward it).
    pub(super) fn media_leg_info(
        call: &super::Call,
        side: Side,
    ) -> (Option<String>, Option<String>, Vec<StreamInfo>) {
        let Some(cm) = call.media.as_ref() else {
            return (None, None, Vec::new());
        };
        let leg = side_leg(side);
        let streams = cm.session.streams();
        let codec = streams
            .iter()
            .flat_map(|s| s.payloads.iter())
            .find(|p| p.codec != Codec::TelephoneEvent)
            .map(|p| p.codec.encoding_name().to_owned());
        let srtp = streams
            .iter()
            .find_map(|s| s.leg(leg).srtp_tx.as_ref())
            .map(|k| k.suite.clone());
        let stat = |from: Leg, i: usize| {
            cm.stats
                .iter()
                .filter(|(t, _)| t.leg == from && usize::from(t.stream) == i)
                .fold(StreamStats::default(), |mut acc, (_, s)| {
                    acc.packets += s.packets;
                    acc.bytes += s.bytes;
                    acc.lost += s.lost;
                    acc.jitter_us = acc.jitter_us.max(s.jitter_us);
                    acc
                })
        };
        let info = streams
            .iter()
            .filter(|s| s.active)
            .map(|s| {
                let l = s.leg(leg);
                let (rx, tx) = (stat(leg, s.index), stat(leg.other(), s.index));
                StreamInfo {
                    media: "audio".into(),
                    local: std::net::SocketAddr::new(l.local_addr, l.local_rtp_port).to_string(),
                    remote: l.remote_rtp.map_or_else(String::new, |a| a.to_string()),
                    packets_in: rx.packets,
                    packets_out: tx.packets,
                    bytes_in: rx.bytes,
                    bytes_out: tx.bytes,
                    lost: rx.lost.max(0) as u64,
                    jitter_ms: f64::from(rx.jitter_us) / 1000.0,
                }
            })
            .collect();
        (codec, srtp, info)
    }

    /// Per-direction media stats of a call for its CDR and the calls view: (leg the flow receives
    /// from, codec, srtp in use, stats).
    pub(super) fn media_streams(call: &super::Call) -> Vec<cdr::StreamStats> {
        let Some(cm) = call.media.as_ref() else {
            return Vec::new();
        };
        cm.stats
            .iter()
            .map(|(tag, s)| {
                let st = cm.session.streams().get(usize::from(tag.stream));
                let codec = st
                    .and_then(|s| s.payloads.iter().find(|p| p.codec != Codec::TelephoneEvent))
                    .map_or("?", |p| p.codec.encoding_name());
                let srtp = st.is_some_and(|s| {
                    let l = s.leg(tag.leg);
                    l.srtp_rx.is_some() || s.leg(tag.leg.other()).srtp_tx.is_some()
                });
                let lost = s.lost.max(0) as u64;
                let jitter_ms = f64::from(s.jitter_us) / 1000.0;
                let loss_pct = if s.packets + lost == 0 {
                    0.0
                } else {
                    lost as f64 * 100.0 / (s.packets + lost) as f64
                };
                let imp = if codec == "G729" {
                    CodecImpairment::G729
                } else {
                    CodecImpairment::G711
                };
                cdr::StreamStats {
                    direction: match tag.leg {
                        Leg::A => "inbound->outbound".into(),
                        Leg::B => "outbound->inbound".into(),
                    },
                    codec: codec.into(),
                    srtp,
                    packets: s.packets,
                    bytes: s.bytes,
                    lost,
                    jitter_ms,
                    rtt_ms: None,
                    mos: cdr::mos_estimate(loss_pct, jitter_ms, 0.0, imp),
                }
            })
            .collect()
    }
}
