//! The interface the B2BUA plugs into: the loop calls a [`SipHandler`] with bytes, events and time, and the
//! handler acts through [`Io`](super::Io).

use std::net::SocketAddr;
use std::time::Instant;

use super::dns::{DnsAnswer, DnsError, DnsRequestId};
use super::event_loop::Io;
use super::stream::StreamBuf;
use super::timer::TimerToken;

/// A bound UDP or TCP listening socket, numbered in the order it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u16);

/// One stream connection. Ids are not reused while anything could still hold them (slot + generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// A stable 64-bit form, e.g. to carry a connection in a timer's `data`. A forged or stale value only
    /// ever names a dead connection (the generation will not match).
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// Inverse of [`ConnId::to_u64`].
    pub fn from_u64(v: u64) -> Self {
        Self {
            index: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

/// SIP transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP: needs a layer factory (`SigLoop::set_tls_layer`, e.g. `tls::tls_layer_factory`).
    Tls,
}

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (read returned 0).
    PeerClosed,
    /// No bytes in either direction for the configured idle time.
    Idle,
    /// A message or TLS handshake begun did not complete within the message timeout (slowloris).
    MessageTimeout,
    /// The handler called `Io::close`, or the loop stopped.
    Local,
    /// Unconsumed received bytes or unsent bytes passed the per-connection limit.
    BufferLimit,
    /// The outbound connect failed (errno).
    ConnectFailed(i32),
    /// A read or write failed (errno).
    IoError(i32),
    /// The stream layer (e.g. TLS) failed.
    LayerError,
}

/// Connection life-cycle events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    /// Accepted on a TCP listener.
    Accepted { listener: ListenerId },
    /// An outbound connection opened by `Io::send_stream_to` is established.
    Connected,
    /// The connection is gone; its id is dead from now on. Unsent bytes are dropped.
    Closed(CloseReason),
}

/// What the B2BUA implements. Every call runs on the signaling thread with the loop's `now`; the handler must
/// not block. Bytes passed in are only valid during the call.
pub trait SipHandler {
    /// Messages other threads send with `LoopHandle::send` (control socket, management, reload).
    type Message: Send + 'static;

    /// One UDP datagram received on `listener` from `src`.
    fn on_datagram(
        &mut self,
        now: Instant,
        listener: ListenerId,
        src: SocketAddr,
        data: &[u8],
        io: &mut Io<'_>,
    );

    /// New bytes arrived on `conn`; `buf` holds everything not consumed yet. Take whole messages from the
    /// front (e.g. [`StreamBuf::next_frame`]) and leave a partial one; the loop closes the connection when
    /// unconsumed bytes pass the configured limit.
    fn on_stream_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        buf: &mut StreamBuf,
        io: &mut Io<'_>,
    );

    /// A connection was accepted, connected, or closed.
    fn on_conn_event(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        event: ConnEvent,
        io: &mut Io<'_>,
    );

    /// A timer set through `Io::set_timer` fired; `data` is the value given when it was set.
    fn on_timer(&mut self, now: Instant, token: TimerToken, data: u64, io: &mut Io<'_>);

    /// A DNS query submitted with `Io::resolve` finished.
    fn on_dns(
        &mut self,
        now: Instant,
        req: DnsRequestId,
        result: Result<DnsAnswer, DnsError>,
        io: &mut Io<'_>,
    );

    /// A message from another thread.
    fn on_message(&mut self, now: Instant, msg: Self::Message, io: &mut Io<'_>);
}
