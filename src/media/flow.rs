//! The flow model (DESIGN.md "The flow"): what a worker does with a packet arriving at one of our
//! local media addresses, the commands that program it and the events that come back.

use std::net::SocketAddr;

/// Monotonic nanoseconds from the caller's clock; the media code never reads a clock itself.
pub type Nanos = u64;

/// A flow is keyed by the local address the packet arrived at: `(local ip, local udp port)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub local: SocketAddr,
}

impl std::hash::Hash for FlowKey {
    // One or two integer writes instead of SocketAddr's field-by-field hash: the key is hashed per
    // packet and flowinfo/scope id never distinguish two of our media sockets.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match self.local {
            SocketAddr::V4(a) => {
                h.write_u64((u64::from(a.ip().to_bits()) << 16) | u64::from(a.port()))
            }
            SocketAddr::V6(a) => {
                h.write_u128(a.ip().to_bits());
                h.write_u16(a.port());
            }
        }
    }
}

impl FlowKey {
    pub fn new(local: SocketAddr) -> Self {
        FlowKey { local }
    }
}

/// Which side of the B2BUA a flow belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    A,
    B,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }
}

/// How the source address of arriving packets is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchMode {
    /// Accept any source, never learn: the remote address is the one from SDP.
    Off,
    /// Symmetric RTP: the first packet that passes all checks (SRTP authentication included)
    /// fixes the remote address; later packets from another source are dropped.
    LatchOnFirst,
    /// Accept only the expected remote address from SDP.
    Strict,
}

/// What arrives on a flow's local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Rtp,
    Rtcp,
    /// RTP and RTCP on one port (RFC 5761), told apart per packet.
    RtpRtcpMux,
}

/// SRTP keying for one direction, as negotiated by SDES: the suite name as written in `a=crypto`
/// and the base64 `inline:` key||salt. The SRTP engine builds its context from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeying {
    pub suite: String,
    pub inline_key: String,
}

/// One negotiated payload type: the number it arrives with, the number it leaves with, its RTP
/// clock rate and whether it is an RFC 4733 telephone-event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadMap {
    pub pt_in: u8,
    pub pt_out: u8,
    pub clock_rate: u32,
    pub telephone_event: bool,
}

/// Link-layer egress for the XDP driver (opaque to the pipeline, copied into each `Forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEgress {
    pub ifindex: u32,
    pub queue: u16,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
}

/// Identifies the call stream a flow belongs to, for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTag {
    /// The B2BUA's numeric call handle (not the SIP Call-ID, so events stay allocation-free).
    pub call: u64,
    /// The leg this flow receives from.
    pub leg: Leg,
    /// The m= line index.
    pub stream: u16,
}

/// What to do with packets arriving at `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub kind: StreamKind,
    /// The remote address the SDP announced for the sender (unspecified if not known yet).
    pub expected_remote: SocketAddr,
    pub latch: LatchMode,
    /// Unprotect arriving packets with this keying (the sender's key).
    pub srtp_in: Option<SrtpKeying>,
    /// Protect leaving packets with this keying (our key toward the other leg).
    pub srtp_out: Option<SrtpKeying>,
    /// Send from this local address (the other leg's flow key).
    pub egress_local: SocketAddr,
    /// Send to this remote address; an unspecified address drops (`no_remote`), e.g. on hold.
    pub egress_remote: SocketAddr,
    pub link: Option<LinkEgress>,
    /// Negotiated payload types; PTs not listed are forwarded unchanged.
    pub payloads: Vec<PayloadMap>,
    pub tag: FlowTag,
    /// The reverse flow (other leg's local address): when this flow latches, a reverse flow in the
    /// same worker starts sending to the latched address at once.
    pub peer: Option<FlowKey>,
    /// For an `RtpRtcpMux` flow whose other leg does not mux: where its RTCP leaves,
    /// `(our local address, remote address)`; `None` sends RTCP like RTP.
    pub rtcp_egress: Option<(SocketAddr, SocketAddr)>,
    /// For an `RtpRtcpMux` flow: the other leg's separate RTCP flow, whose egress follows this
    /// flow's latched address.
    pub peer_rtcp: Option<FlowKey>,
    /// No packet for this long emits `MediaEvent::Timeout`.
    pub timeout: Nanos,
    /// Timeout used while `on_hold` (a held stream sends little or nothing).
    pub hold_timeout: Nanos,
    pub on_hold: bool,
}

/// Commands from signaling to the workers. Entries are boxed so that a queue slot stays small.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowCmd {
    /// Insert (or replace, resetting state).
    Add(Box<FlowEntry>),
    /// Change configuration keeping counters, jitter state, SRTP contexts whose keys did not change
    /// and the latched address unless the expected remote changed. Inserts when absent.
    Update(Box<FlowEntry>),
    Remove(FlowKey),
}

impl FlowCmd {
    pub fn key(&self) -> FlowKey {
        match self {
            FlowCmd::Add(e) | FlowCmd::Update(e) => e.key,
            FlowCmd::Remove(k) => *k,
        }
    }
}

/// Per-flow receive statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub packets: u64,
    pub bytes: u64,
    /// RFC 3550 A.3 cumulative lost (expected - received; negative with duplicates).
    pub lost: i64,
    /// RFC 3550 A.8 interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Jitter in microseconds (using the clock rate of the last PT).
    pub jitter_us: u32,
    pub last_ssrc: u32,
    /// Caller clock at the last accepted packet (0 if none yet).
    pub last_rx: Nanos,
    pub dropped: u64,
}

/// Events from workers back to signaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    Latched {
        key: FlowKey,
        addr: SocketAddr,
        tag: FlowTag,
    },
    Timeout {
        key: FlowKey,
        tag: FlowTag,
    },
    /// One per telephone event: `end` is true when the end bit was seen, false when the event was
    /// closed by a following event without an end packet. `duration_ms` from the RTP clock rate.
    Dtmf {
        call: u64,
        leg: Leg,
        digit: char,
        duration_ms: u32,
        end: bool,
    },
    Stats {
        key: FlowKey,
        tag: FlowTag,
        stats: StreamStats,
    },
}

/// Why a command could not be handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowSinkError {
    #[error("command queue of worker {worker} is full")]
    QueueFull { worker: usize },
    #[error("flow map update failed: {0}")]
    Map(&'static str),
}

/// Where the signaling side sends flow commands; the binary wires it to socket or XDP workers.
pub trait FlowSink {
    fn apply(&mut self, cmd: FlowCmd) -> Result<(), FlowSinkError>;
}

/// Collects commands (tests, or a B2BUA dry run).
impl FlowSink for Vec<FlowCmd> {
    fn apply(&mut self, cmd: FlowCmd) -> Result<(), FlowSinkError> {
        self.push(cmd);
        Ok(())
    }
}
