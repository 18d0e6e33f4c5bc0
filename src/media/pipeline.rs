//! The per-packet relay pipeline of one media worker.
//!
//! Per packet: look up the flow by the local address, check or latch the source, SRTP unprotect,
//! statistics and DTMF detection, payload type rewrite, SRTP protect, and a `Forward` verdict
//! telling the driver which address pair to send from/to. The worker's `FlowTable` is only ever
//! written by its worker; `FlowCmd`s are applied between batches. Nothing here allocates, locks or
//! writes shared memory per packet (counters are flushed once per batch to the worker's own
//! cache-padded atomics).

use super::flow::{
    FlowCmd, FlowEntry, FlowKey, FlowTag, LatchMode, LinkEgress, MediaEvent, Nanos, SrtpKeying,
    StreamKind, StreamStats,
};
use super::queue::{CommandQueue, EventQueue};
use super::rxstats::{DtmfTracker, RtpRx, arrival_us};
use super::stats::{CountersSnapshot, WorkerCounters};
use super::wire::dtmf::{TelephoneEvent, dtmf_char};
use super::wire::rtp::{RtpPacket, is_rtcp};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

/// Errors of an SRTP transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("authentication failed")]
    Auth,
    #[error("replayed packet")]
    Replay,
    #[error("malformed packet")]
    Malformed,
    #[error("no tailroom for the authentication tag")]
    BufferTooSmall,
    #[error("unsupported suite or bad key")]
    Key,
}

/// One direction's SRTP/SRTCP context as the pipeline sees it. `buf` is the whole buffer (with
/// tailroom for protect), `len` the packet length in it; the new length is returned.
pub trait SrtpTransform {
    fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError>;
    fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError>;
    fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError>;
    fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError>;
}

/// Builds contexts from SDES keying (called when a command is applied, never per packet).
pub trait SrtpFactory {
    type Transform: SrtpTransform;
    fn create(&mut self, keying: &SrtpKeying) -> Result<Self::Transform, SrtpError>;
}

/// For RTP-only deployments and benches: every SRTP flow is refused (`srtp_unavailable`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSrtp;

/// Uninhabited: `NoSrtp` never builds a context.
#[derive(Debug)]
pub enum NoTransform {}

impl SrtpTransform for NoTransform {
    fn unprotect_rtp(&mut self, _: &mut [u8], _: usize) -> Result<usize, SrtpError> {
        match *self {}
    }
    fn protect_rtp(&mut self, _: &mut [u8], _: usize) -> Result<usize, SrtpError> {
        match *self {}
    }
    fn unprotect_rtcp(&mut self, _: &mut [u8], _: usize) -> Result<usize, SrtpError> {
        match *self {}
    }
    fn protect_rtcp(&mut self, _: &mut [u8], _: usize) -> Result<usize, SrtpError> {
        match *self {}
    }
}

impl SrtpFactory for NoSrtp {
    type Transform = NoTransform;
    fn create(&mut self, _: &SrtpKeying) -> Result<NoTransform, SrtpError> {
        Err(SrtpError::Key)
    }
}

/// Why a packet was dropped; also the index into the per-worker drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// No flow at the destination address (possibly not programmed yet).
    NoFlow = 0,
    /// Not RTP/RTCP version 2 or truncated.
    Malformed = 1,
    /// Source differs from the latched or expected address.
    SourceMismatch = 2,
    /// SRTP/SRTCP authentication or replay check failed.
    SrtpUnprotect = 3,
    SrtpProtect = 4,
    /// The flow needs SRTP but its context could not be built.
    SrtpUnavailable = 5,
    /// No remote address to send to (not known yet, or on hold with 0.0.0.0).
    NoRemote = 6,
}

impl DropReason {
    pub const COUNT: usize = 7;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::NoFlow,
        DropReason::Malformed,
        DropReason::SourceMismatch,
        DropReason::SrtpUnprotect,
        DropReason::SrtpProtect,
        DropReason::SrtpUnavailable,
        DropReason::NoRemote,
    ];

    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NoFlow => "no_flow",
            DropReason::Malformed => "malformed",
            DropReason::SourceMismatch => "source_mismatch",
            DropReason::SrtpUnprotect => "srtp_unprotect",
            DropReason::SrtpProtect => "srtp_protect",
            DropReason::SrtpUnavailable => "srtp_unavailable",
            DropReason::NoRemote => "no_remote",
        }
    }
}

/// Send `len` bytes of the buffer from `src` (our local address) to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub len: usize,
    pub link: Option<LinkEgress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward(Forward),
    Drop(DropReason),
}

/// One received UDP payload: `buf[..len]` is the packet, the rest is tailroom for SRTP tags.
#[derive(Debug)]
pub struct RxPacket<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
    /// Our address the packet was sent to (the flow key).
    pub local: SocketAddr,
    /// Where it came from.
    pub src: SocketAddr,
}

/// Receives events from the pipeline.
pub trait EventSink {
    fn event(&mut self, ev: MediaEvent);
}

impl EventSink for Vec<MediaEvent> {
    fn event(&mut self, ev: MediaEvent) {
        self.push(ev);
    }
}

impl EventSink for Arc<EventQueue> {
    fn event(&mut self, ev: MediaEvent) {
        self.push(ev);
    }
}

/// FxHash-style multiply-rotate over the one or two words of a `FlowKey`: a few cycles per
/// lookup, and keys are our own addresses, so no attacker chooses them.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FlowHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(SEED);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BuildFlowHasher;

impl BuildHasher for BuildFlowHasher {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher(0)
    }
}

/// Payload types a flow keeps inline (a call negotiates a handful).
const MAX_PTS: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct PtSlot {
    pt_in: u8,
    pt_out: u8,
    telephone_event: bool,
    clock_rate: u32,
}

/// A flow's per-packet state: `repr(C)` keeps the fields every packet touches together in the
/// first cache lines; rarely read state follows and the full configuration stays boxed.
#[repr(C)]
struct FlowState<X> {
    kind: StreamKind,
    latch: LatchMode,
    srtp_broken: bool,
    timed_out: bool,
    npts: u8,
    expected_remote: SocketAddr,
    latched: Option<SocketAddr>,
    egress_local: SocketAddr,
    egress_remote: SocketAddr,
    packets: u64,
    bytes: u64,
    last_rx: Nanos,
    created: Nanos,
    pts: [PtSlot; MAX_PTS],
    rx: RtpRx,
    link: Option<LinkEgress>,
    rtcp_egress: Option<(SocketAddr, SocketAddr)>,
    srtp_in: Option<X>,
    srtp_out: Option<X>,
    dropped: u64,
    dtmf: DtmfTracker,
    entry: Box<FlowEntry>,
}

impl<X> FlowState<X> {
    fn stats(&self) -> StreamStats {
        StreamStats {
            packets: self.packets,
            bytes: self.bytes,
            lost: self.rx.lost(),
            jitter: self.rx.jitter(),
            jitter_us: self.rx.jitter_us(),
            last_ssrc: self.rx.ssrc(),
            last_rx: self.last_rx,
            dropped: self.dropped,
        }
    }

    fn load_payloads(&mut self) {
        let mut n = 0;
        for p in self.entry.payloads.iter().take(MAX_PTS) {
            if let Some(slot) = self.pts.get_mut(n) {
                *slot = PtSlot {
                    pt_in: p.pt_in & 0x7f,
                    pt_out: p.pt_out & 0x7f,
                    telephone_event: p.telephone_event,
                    clock_rate: p.clock_rate,
                };
                n += 1;
            }
        }
        self.npts = n as u8;
    }

    #[inline]
    fn payload(&self, pt: u8) -> Option<&PtSlot> {
        self.pts
            .iter()
            .take(usize::from(self.npts))
            .find(|p| p.pt_in == pt)
    }
}

/// A worker's flows: an open-addressing index (hashbrown, preallocated) into a slab of states,
/// so the timeout scan can walk slots with a cursor.
struct FlowTable<X> {
    index: hashbrown::HashMap<FlowKey, u32, BuildFlowHasher>,
    slots: Vec<Option<FlowState<X>>>,
    free: Vec<u32>,
}

impl<X> FlowTable<X> {
    fn with_capacity(n: usize) -> Self {
        FlowTable {
            index: hashbrown::HashMap::with_capacity_and_hasher(n, BuildFlowHasher),
            slots: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
        }
    }

    fn get_idx(&self, key: &FlowKey) -> Option<u32> {
        self.index.get(key).copied()
    }

    fn slot_mut(&mut self, idx: u32) -> Option<&mut FlowState<X>> {
        self.slots.get_mut(idx as usize).and_then(|s| s.as_mut())
    }

    fn insert(&mut self, key: FlowKey, st: FlowState<X>) {
        if let Some(i) = self.get_idx(&key) {
            if let Some(s) = self.slots.get_mut(i as usize) {
                *s = Some(st);
            }
            return;
        }
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = Some(st);
                }
                i
            }
            None => {
                self.slots.push(Some(st));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
    }

    fn remove(&mut self, key: &FlowKey) -> Option<FlowState<X>> {
        let i = self.index.remove(key)?;
        let st = self.slots.get_mut(i as usize).and_then(Option::take);
        self.free.push(i);
        st
    }
}

/// The media pipeline of one worker. `F` builds SRTP contexts (the integrator's
/// `srtp::SrtpContext` behind [`SrtpFactory`]).
pub struct Pipeline<F: SrtpFactory> {
    table: FlowTable<F::Transform>,
    factory: F,
    counters: Arc<WorkerCounters>,
    pending: CountersSnapshot,
    latency: hdrhistogram::Histogram<u64>,
    timeout_cursor: usize,
    stats_cursor: usize,
}

impl<F: SrtpFactory> Pipeline<F> {
    /// A pipeline whose flow table is preallocated for `capacity` flows.
    pub fn new(capacity: usize, factory: F) -> Self {
        // 1 ns .. 10 s, 2 significant digits: a few KiB, allocated once here.
        let latency = hdrhistogram::Histogram::new_with_bounds(1, 10_000_000_000, 2)
            .expect("constant histogram bounds are valid");
        Pipeline {
            table: FlowTable::with_capacity(capacity),
            factory,
            counters: Arc::new(WorkerCounters::new()),
            pending: CountersSnapshot::default(),
            latency,
            timeout_cursor: 0,
            stats_cursor: 0,
        }
    }

    /// The counters to hand to the metrics thread.
    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.counters)
    }

    pub fn flow_count(&self) -> usize {
        self.table.index.len()
    }

    pub fn flow_stats(&self, key: &FlowKey) -> Option<StreamStats> {
        let i = self.table.get_idx(key)?;
        self.table
            .slots
            .get(i as usize)?
            .as_ref()
            .map(FlowState::stats)
    }

    /// The address a flow has latched, if any.
    pub fn latched(&self, key: &FlowKey) -> Option<SocketAddr> {
        let i = self.table.get_idx(key)?;
        self.table.slots.get(i as usize)?.as_ref()?.latched
    }

    /// The remote address a flow currently sends to.
    pub fn egress_remote(&self, key: &FlowKey) -> Option<SocketAddr> {
        let i = self.table.get_idx(key)?;
        Some(
            self.table
                .slots
                .get(i as usize)?
                .as_ref()?
                .entry
                .egress_remote,
        )
    }

    fn build_state(&mut self, entry: FlowEntry, now: Nanos) -> FlowState<F::Transform> {
        let mut broken = false;
        let mut mk = |k: &Option<SrtpKeying>, f: &mut F| match k {
            Some(k) => match f.create(k) {
                Ok(x) => Some(x),
                Err(_) => {
                    broken = true;
                    None
                }
            },
            None => None,
        };
        let srtp_in = mk(&entry.srtp_in, &mut self.factory);
        let srtp_out = mk(&entry.srtp_out, &mut self.factory);
        let mut st = FlowState {
            kind: entry.kind,
            latch: entry.latch,
            srtp_broken: broken,
            timed_out: false,
            npts: 0,
            expected_remote: entry.expected_remote,
            latched: None,
            egress_local: entry.egress_local,
            egress_remote: entry.egress_remote,
            pts: [PtSlot::default(); MAX_PTS],
            rx: RtpRx::default(),
            packets: 0,
            bytes: 0,
            last_rx: now,
            created: now,
            dropped: 0,
            dtmf: DtmfTracker::default(),
            rtcp_egress: entry.rtcp_egress,
            link: entry.link,
            srtp_in,
            srtp_out,
            entry: Box::new(entry),
        };
        st.load_payloads();
        st
    }

    /// Applies one command (between batches). Removal emits the flow's final `Stats`.
    pub fn apply(&mut self, cmd: FlowCmd, now: Nanos, events: &mut impl EventSink) {
        self.pending.commands += 1;
        match cmd {
            FlowCmd::Add(e) => {
                let key = e.key;
                let st = self.build_state(*e, now);
                self.table.insert(key, st);
            }
            FlowCmd::Update(e) => {
                let key = e.key;
                let old = self.table.remove(&key);
                let st = match old {
                    None => self.build_state(*e, now),
                    Some(old) => self.updated_state(old, *e, now),
                };
                self.table.insert(key, st);
            }
            FlowCmd::Remove(key) => match self.table.remove(&key) {
                Some(st) => events.event(MediaEvent::Stats {
                    key,
                    tag: st.entry.tag,
                    stats: st.stats(),
                }),
                None => self.pending.command_errors += 1,
            },
        }
        self.counters.set_flows(self.table.index.len() as u64);
    }

    fn updated_state(
        &mut self,
        old: FlowState<F::Transform>,
        e: FlowEntry,
        now: Nanos,
    ) -> FlowState<F::Transform> {
        let same_in = old.entry.srtp_in == e.srtp_in;
        let same_out = old.entry.srtp_out == e.srtp_out;
        let same_remote = old.entry.expected_remote == e.expected_remote;
        let mut st = self.build_state(e, now);
        // Keep ROC/replay state of unchanged keys: rebuilding would reject the next packets.
        if same_in && !old.srtp_broken {
            st.srtp_in = old.srtp_in;
        }
        if same_out && !old.srtp_broken {
            st.srtp_out = old.srtp_out;
        }
        st.srtp_broken = (st.entry.srtp_in.is_some() && st.srtp_in.is_none())
            || (st.entry.srtp_out.is_some() && st.srtp_out.is_none());
        if same_remote {
            st.latched = old.latched;
        }
        // A latched peer address learned in this worker outlives a config refresh that did not
        // move the far end.
        if old.entry.egress_remote == st.entry.egress_remote {
            st.egress_remote = old.egress_remote;
            st.entry.egress_remote = old.egress_remote;
        }
        st.rx = old.rx;
        st.dtmf = old.dtmf;
        st.packets = old.packets;
        st.bytes = old.bytes;
        st.dropped = old.dropped;
        st.created = old.created;
        // A changed configuration (resume from hold, new remote) restarts the timeout clock.
        st.last_rx = now;
        st.timed_out = false;
        st
    }

    /// Applies up to `max` queued commands; returns how many.
    pub fn drain_commands(
        &mut self,
        q: &CommandQueue,
        max: usize,
        now: Nanos,
        events: &mut impl EventSink,
    ) -> usize {
        let mut n = 0;
        while n < max {
            match q.pop() {
                Some(c) => self.apply(c, now, events),
                None => break,
            }
            n += 1;
        }
        self.flush_counters();
        n
    }

    /// Processes a batch; `out[i]` receives the verdict of `pkts[i]` (up to `out.len()` packets).
    /// Returns the number of verdicts written. Counters are published once per batch.
    pub fn process_batch(
        &mut self,
        now: Nanos,
        pkts: &mut [RxPacket<'_>],
        out: &mut [Verdict],
        events: &mut impl EventSink,
    ) -> usize {
        let mut n = 0;
        for (p, o) in pkts.iter_mut().zip(out.iter_mut()) {
            self.process_one(now, p, events, o);
            n += 1;
        }
        self.flush_counters();
        n
    }

    /// Processes one packet and publishes counters (prefer `process_batch`).
    pub fn process(
        &mut self,
        now: Nanos,
        pkt: &mut RxPacket<'_>,
        events: &mut impl EventSink,
    ) -> Verdict {
        let mut v = Verdict::Drop(DropReason::NoFlow);
        self.process_one(now, pkt, events, &mut v);
        self.flush_counters();
        v
    }

    fn flush_counters(&mut self) {
        self.counters.add_batch(&self.pending);
        self.pending = CountersSnapshot::default();
    }

    fn count_drop(&mut self, r: DropReason) {
        if let Some(d) = self.pending.drops.get_mut(r as usize) {
            *d += 1;
        }
    }

    /// Writes the verdict in place: a `Forward` is ~100 bytes, and returning it by value through
    /// the layers cost more instructions than the rest of the relay decision.
    #[inline]
    fn process_one(
        &mut self,
        now: Nanos,
        pkt: &mut RxPacket<'_>,
        events: &mut impl EventSink,
        out: &mut Verdict,
    ) {
        self.pending.rx_packets += 1;
        self.pending.rx_bytes += pkt.len as u64;
        let key = FlowKey { local: pkt.local };
        let Some(st) = self
            .table
            .get_idx(&key)
            .and_then(|i| self.table.slot_mut(i))
        else {
            self.count_drop(DropReason::NoFlow);
            *out = Verdict::Drop(DropReason::NoFlow);
            return;
        };
        match Self::relay(st, now, pkt, events, &mut self.pending, out) {
            Ok(latched) => {
                if latched {
                    self.on_latched(key, pkt.src);
                }
                self.pending.forwarded += 1;
                if let Verdict::Forward(f) = out {
                    self.pending.forwarded_bytes += f.len as u64;
                }
            }
            Err(reason) => {
                st.dropped += 1;
                self.count_drop(reason);
                *out = Verdict::Drop(reason);
            }
        }
    }

    fn on_latched(&mut self, key: FlowKey, addr: SocketAddr) {
        self.pending.latched += 1;
        let Some(st) = self
            .table
            .get_idx(&key)
            .and_then(|i| self.table.slot_mut(i))
        else {
            return;
        };
        let (kind, peer, peer_rtcp) = (st.kind, st.entry.peer, st.entry.peer_rtcp);
        if let Some(p) = peer
            .and_then(|p| self.table.get_idx(&p))
            .and_then(|i| self.table.slot_mut(i))
        {
            match (kind, p.kind, p.rtcp_egress.as_mut()) {
                (StreamKind::Rtcp, StreamKind::RtpRtcpMux, Some(e)) => e.1 = addr,
                _ => {
                    p.egress_remote = addr;
                    p.entry.egress_remote = addr;
                }
            }
        }
        if let Some(q) = peer_rtcp
            .and_then(|p| self.table.get_idx(&p))
            .and_then(|i| self.table.slot_mut(i))
        {
            q.egress_remote = addr;
            q.entry.egress_remote = addr;
        }
    }

    /// The per-packet work on one flow. Returns the forward decision and a newly latched address.
    #[inline]
    fn relay(
        st: &mut FlowState<F::Transform>,
        now: Nanos,
        pkt: &mut RxPacket<'_>,
        events: &mut impl EventSink,
        counters: &mut CountersSnapshot,
        out: &mut Verdict,
    ) -> Result<bool, DropReason> {
        let src = pkt.src;
        let buf = &mut pkt.buf[..];
        let mut len = pkt.len.min(buf.len());
        let pkt = buf.get(..len).ok_or(DropReason::Malformed)?;
        let rtcp = match st.kind {
            StreamKind::Rtp => false,
            StreamKind::Rtcp => true,
            StreamKind::RtpRtcpMux => is_rtcp(pkt),
        };
        if rtcp {
            if pkt.len() < 8 || pkt[0] >> 6 != 2 {
                return Err(DropReason::Malformed);
            }
        } else if RtpPacket::new_checked(pkt).is_err() {
            return Err(DropReason::Malformed);
        }

        let mut latch_now = false;
        match st.latch {
            LatchMode::Off => {}
            LatchMode::Strict => {
                if src != st.expected_remote {
                    return Err(DropReason::SourceMismatch);
                }
            }
            LatchMode::LatchOnFirst => match st.latched {
                Some(l) if l != src => return Err(DropReason::SourceMismatch),
                Some(_) => {}
                None => latch_now = true,
            },
        }
        if st.srtp_broken {
            return Err(DropReason::SrtpUnavailable);
        }

        if let Some(x) = st.srtp_in.as_mut() {
            let r = if rtcp {
                x.unprotect_rtcp(buf, len)
            } else {
                x.unprotect_rtp(buf, len)
            };
            len = r.map_err(|_| DropReason::SrtpUnprotect)?;
            if len > buf.len() {
                return Err(DropReason::SrtpUnprotect);
            }
        }
        // Only now is the source proven (authenticated when SRTP): latch it.
        if latch_now {
            st.latched = Some(src);
            events.event(MediaEvent::Latched {
                key: st.entry.key,
                addr: src,
                tag: st.entry.tag,
            });
        }

        st.packets += 1;
        st.bytes += len as u64;
        st.last_rx = now;
        st.timed_out = false;

        if !rtcp {
            let plain = buf.get_mut(..len).ok_or(DropReason::Malformed)?;
            // The header was validated before unprotect and SRTP leaves it untouched; the view's
            // accessors are bounds-checked, so no second validation pass is needed.
            let mut rtp = RtpPacket::new_unchecked(plain);
            let pt = rtp.payload_type();
            let (clock, te, pt_out) = match st.payload(pt) {
                Some(p) => (p.clock_rate, p.telephone_event, p.pt_out),
                None => (0, false, pt),
            };
            st.rx.on_packet(
                rtp.ssrc(),
                rtp.sequence_number(),
                rtp.timestamp(),
                clock,
                arrival_us(now, st.created),
                !te,
            );
            if te && let Ok(ev) = TelephoneEvent::new_checked(rtp.payload()) {
                let done = st
                    .dtmf
                    .on_event(rtp.timestamp(), ev.event(), ev.end(), ev.duration());
                for d in done.into_iter().flatten() {
                    if let Some(digit) = dtmf_char(d.event) {
                        let duration_ms = (u32::from(d.duration) * 1000)
                            .checked_div(clock)
                            .unwrap_or(0);
                        counters.dtmf_events += 1;
                        events.event(MediaEvent::Dtmf {
                            call: st.entry.tag.call,
                            leg: st.entry.tag.leg,
                            digit,
                            duration_ms,
                            end: d.end,
                        });
                    }
                }
            }
            if pt_out != pt {
                rtp.set_payload_type(pt_out);
            }
        }

        if let Some(x) = st.srtp_out.as_mut() {
            let r = if rtcp {
                x.protect_rtcp(buf, len)
            } else {
                x.protect_rtp(buf, len)
            };
            len = r.map_err(|_| DropReason::SrtpProtect)?;
            if len > buf.len() {
                return Err(DropReason::SrtpProtect);
            }
        }

        let (src_local, dst) = match (rtcp, st.rtcp_egress) {
            (true, Some(e)) => e,
            _ => (st.egress_local, st.egress_remote),
        };
        if dst.ip().is_unspecified() || dst.port() == 0 {
            return Err(DropReason::NoRemote);
        }
        *out = Verdict::Forward(Forward {
            src: src_local,
            dst,
            len,
            link: st.link,
        });
        Ok(latch_now)
    }

    /// Checks up to `budget` flow slots for media timeout (hold-aware) from a rotating cursor, so a
    /// worker spends bounded time per call; each flow times out once until media resumes.
    pub fn poll_timeouts(
        &mut self,
        now: Nanos,
        budget: usize,
        events: &mut impl EventSink,
    ) -> usize {
        let n = self.table.slots.len();
        if n == 0 {
            return 0;
        }
        let mut fired = 0;
        for _ in 0..budget.min(n) {
            self.timeout_cursor = (self.timeout_cursor + 1) % n;
            if let Some(Some(st)) = self.table.slots.get_mut(self.timeout_cursor) {
                let limit = if st.entry.on_hold {
                    st.entry.hold_timeout
                } else {
                    st.entry.timeout
                };
                if limit > 0 && !st.timed_out && now.saturating_sub(st.last_rx) >= limit {
                    st.timed_out = true;
                    fired += 1;
                    events.event(MediaEvent::Timeout {
                        key: st.entry.key,
                        tag: st.entry.tag,
                    });
                }
            }
        }
        self.pending.timeouts += fired as u64;
        self.flush_counters();
        fired
    }

    /// Emits `Stats` for up to `budget` flows from a rotating cursor.
    pub fn emit_stats(&mut self, budget: usize, events: &mut impl EventSink) {
        let n = self.table.slots.len();
        for _ in 0..budget.min(n) {
            self.stats_cursor = (self.stats_cursor + 1) % n;
            if let Some(Some(st)) = self.table.slots.get(self.stats_cursor) {
                events.event(MediaEvent::Stats {
                    key: st.entry.key,
                    tag: st.entry.tag,
                    stats: st.stats(),
                });
            }
        }
    }

    /// Records the processing latency of `count` packets that each took `nanos`.
    pub fn record_latency(&mut self, nanos: u64, count: u64) {
        let v = nanos.clamp(1, self.latency.high());
        // Recording inside the bounds cannot fail.
        let _ = self.latency.record_n(v, count);
    }

    pub fn latency(&self) -> &hdrhistogram::Histogram<u64> {
        &self.latency
    }

    /// Resets the latency histogram (after the owner copied it for export).
    pub fn reset_latency(&mut self) {
        self.latency.reset();
    }

    /// The flow tag of a key (for drivers that log).
    pub fn tag(&self, key: &FlowKey) -> Option<FlowTag> {
        let i = self.table.get_idx(key)?;
        Some(self.table.slots.get(i as usize)?.as_ref()?.entry.tag)
    }
}
