//! The seam between the AF_XDP driver and the per-packet pipeline.
//!
//! The driver hands a batch of received frames to a [`FrameHandler`] and gets one [`Verdict`] per frame. The
//! handler may rewrite a frame in place (and grow it into the room after it, see [`FrameRef::buffer_mut`]).
//! The integrator implements this trait with the media pipeline; [`super::forwarder::StaticForwarder`] is a
//! complete handler for tests and benchmarks.

use super::neigh::{NeighSnapshot, NeighTable};
use super::rewrite::MacAddr;

/// Most frames handed to `handle_batch` at once.
pub const BATCH: usize = 64;

/// One received frame, owned by the handler for the duration of the call.
pub struct FrameRef<'a> {
    port: usize,
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> FrameRef<'a> {
    /// `buf` runs from the first byte of the packet to the end of its UMEM chunk; `len <= buf.len()`.
    pub fn new(port: usize, buf: &'a mut [u8], len: usize) -> Self {
        let len = len.min(buf.len());
        Self { port, buf, len }
    }

    /// Index (into [`BatchCtx::ports`]) of the port the frame arrived on.
    pub fn port(&self) -> usize {
        self.port
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn packet(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    pub fn packet_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
    /// The packet plus the free room after it in the chunk (for growing: SRTP tag, IPv4 -> IPv6).
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.buf
    }
    /// Largest length a `Verdict::Tx`/`Kernel` may give for this frame.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// What the driver does with a frame after the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Recycle the frame (counted as dropped).
    Drop,
    /// Transmit `len` bytes of the (rewritten) frame on port `port` (index into [`BatchCtx::ports`]).
    Tx { port: usize, len: usize },
    /// Send the IP packet inside the first `len` bytes of the frame through the kernel's IP output path (a
    /// raw socket): used when the next hop's MAC is not known yet, which makes the kernel resolve it. The
    /// Ethernet header is ignored; the IP and UDP headers must already be final.
    Kernel { len: usize },
}

/// A port (interface queue) the worker serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub iface: String,
    pub ifindex: u32,
    pub queue: u32,
    pub mac: MacAddr,
    /// Bound in zero-copy mode (else copy mode).
    pub zerocopy: bool,
}

/// Read-only context of one batch.
pub struct BatchCtx<'a> {
    pub ports: &'a [PortInfo],
    /// Next-hop MACs, loaded once for the batch.
    pub neigh: &'a NeighSnapshot,
    /// To ask for a missing next hop ([`NeighTable::watch`], cold path).
    pub neigh_table: &'a NeighTable,
}

impl BatchCtx<'_> {
    /// Index of the port on interface `ifindex`.
    pub fn port_of_ifindex(&self, ifindex: u32) -> Option<usize> {
        self.ports.iter().position(|p| p.ifindex == ifindex)
    }
}

/// The per-packet pipeline as the driver sees it. `frames.len() == out.len() <= BATCH`; every `out[i]` is
/// preset to `Verdict::Drop`.
pub trait FrameHandler: Send + 'static {
    /// Called when a worker turn found no frames (at most every 10 ms): flow commands and timeouts must not
    /// wait for the next packet, and the worker proves it is alive.
    fn idle(&mut self) {}

    fn handle_batch(
        &mut self,
        ctx: &BatchCtx<'_>,
        frames: &mut [FrameRef<'_>],
        out: &mut [Verdict],
    );
}
