//! The seam between the kernel-socket driver and the per-packet pipeline.
//!
//! The driver owns the buffers and the syscalls; the handler (the media pipeline, or a test relay) only sees
//! a batch of received UDP payloads with their addresses and answers one [`Verdict`] per packet. The handler
//! may rewrite the payload in place and grow it up to [`RxPacket::capacity`] (SRTP adds a tag).

use std::net::SocketAddr;
use std::time::Instant;

/// One received UDP datagram, borrowed from the driver's buffer for the duration of one batch.
#[derive(Debug)]
pub struct RxPacket<'a> {
    /// The media address it was sent to (one of ours): the flow key.
    pub local: SocketAddr,
    /// The address it came from.
    pub remote: SocketAddr,
    /// The buffer from the payload's first byte to the end of the driver's slot.
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> RxPacket<'a> {
    /// `buf` starts at the payload and runs to the end of the slot; `len <= buf.len()`.
    pub(crate) fn new(
        local: SocketAddr,
        remote: SocketAddr,
        buf: &'a mut [u8],
        len: usize,
    ) -> Self {
        let len = len.min(buf.len());
        Self {
            local,
            remote,
            buf,
            len,
        }
    }

    /// The UDP payload as received (or as last rewritten by the handler, up to the received length).
    pub fn payload(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Received payload length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty UDP datagram.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole writable area: the payload followed by spare room; a handler that grows the packet writes
    /// here and returns the new length in [`Verdict::Forward`].
    pub fn buf_mut(&mut self) -> &mut [u8] {
        self.buf
    }

    /// Largest payload length a [`Verdict::Forward`] may carry for this packet.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// Why a handler refused a packet (counted per worker, see [`super::WorkerStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerDrop {
    /// No flow is programmed for the local address (yet).
    NoFlow,
    /// The source does not match the flow's (latched) remote address.
    SourceMismatch,
    /// The payload is not what the flow expects (not RTP/RTCP, too short).
    Malformed,
    /// SRTP/SRTCP authentication or replay check failed.
    Crypto,
    /// Policy: the flow is on hold, rate-limited, or similar.
    Policy,
}

/// What to do with one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send `len` bytes of the (possibly rewritten) payload from our media address `from` to `to`.
    Forward {
        from: SocketAddr,
        to: SocketAddr,
        len: usize,
    },
    /// Drop it, counted under the reason.
    Drop(HandlerDrop),
}

/// The per-packet pipeline, one instance per worker (it owns that worker's flow table and per-flow state).
///
/// Both methods run on the worker's pinned thread, between and during batches: they must not block, lock or
/// allocate on the packet path.
pub trait PacketHandler: Send + 'static {
    /// Commands from the control plane (flow programming). The driver drains the worker's queue between
    /// batches and hands each command here, in order.
    type Cmd: Send + 'static;

    /// Apply one control-plane command.
    fn apply_command(&mut self, cmd: Self::Cmd);

    /// Decide every packet of a batch: `out[i]` is the verdict for `pkts[i]`; `out.len() == pkts.len()`.
    /// The driver initialises `out` to `Verdict::Drop(HandlerDrop::NoFlow)`.
    fn handle_batch(&mut self, now: Instant, pkts: &mut [RxPacket<'_>], out: &mut [Verdict]);
}
