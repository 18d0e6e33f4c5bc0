//! Socket mode: the media pipeline as the kernel-socket driver's [`PacketHandler`].
//!
//! The driver's own per-worker channel carries only [`Tick`]s (from the plane's ticker thread, so an idle
//! worker still applies flow commands and notices media timeouts); flow commands travel in the worker's
//! [`crate::media::CommandQueue`], filled by the [`crate::media::FanoutSink`].

use std::sync::Arc;
use std::time::Instant;

use arrayvec::ArrayVec;

use super::worker::WorkerCore;
use crate::fastpath::socket::{HandlerDrop, PacketHandler, RxPacket, Verdict};
use crate::media::{self, CommandQueue, DropReason, EventQueue};

/// Packets handed to the pipeline at once (the driver's batch is split into chunks of this size).
const CHUNK: usize = 64;

/// Wakes an idle worker: drain commands, poll timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick;

/// One socket worker's handler.
pub struct SocketHandler {
    core: WorkerCore,
}

impl SocketHandler {
    pub fn new(
        capacity: usize,
        cmds: Arc<CommandQueue>,
        events: Arc<EventQueue>,
        base: Instant,
    ) -> Self {
        SocketHandler {
            core: WorkerCore::new(capacity, cmds, events, base),
        }
    }

    /// Beaten from housekeeping (every batch and every tick, throttled).
    pub fn with_heartbeat(mut self, h: Option<crate::ops::notify::Heartbeat>) -> Self {
        self.core.set_heartbeat(h);
        self
    }

    /// The pipeline's counters (for the metrics thread).
    pub fn counters(&self) -> Arc<media::WorkerCounters> {
        self.core.pipe.counters()
    }
}

pub(crate) fn handler_drop(r: DropReason) -> HandlerDrop {
    match r {
        DropReason::NoFlow => HandlerDrop::NoFlow,
        DropReason::SourceMismatch => HandlerDrop::SourceMismatch,
        DropReason::Malformed => HandlerDrop::Malformed,
        DropReason::SrtpUnprotect | DropReason::SrtpProtect => HandlerDrop::Crypto,
        DropReason::SrtpUnavailable | DropReason::NoRemote => HandlerDrop::Policy,
    }
}

impl PacketHandler for SocketHandler {
    type Cmd = Tick;

    fn apply_command(&mut self, _: Tick) {
        let now = self.core.nanos(Instant::now());
        self.core.drain(now);
        self.core.housekeeping(now);
    }

    fn handle_batch(&mut self, now: Instant, pkts: &mut [RxPacket<'_>], out: &mut [Verdict]) {
        let now = self.core.nanos(now);
        self.core.drain(now);
        for (pc, oc) in pkts.chunks_mut(CHUNK).zip(out.chunks_mut(CHUNK)) {
            // The pipeline works in the driver's buffer: no copy, SRTP grows into the slot's tailroom.
            let mut rx: ArrayVec<media::RxPacket<'_>, CHUNK> = ArrayVec::new();
            for p in pc.iter_mut() {
                let (local, src, len) = (p.local, p.remote, p.len());
                rx.push(media::RxPacket {
                    buf: p.buf_mut(),
                    len,
                    local,
                    src,
                });
            }
            let mut v = [media::Verdict::Drop(DropReason::NoFlow); CHUNK];
            let core = &mut self.core;
            let n = core
                .pipe
                .process_batch(now, &mut rx, &mut v, &mut core.events);
            for (o, v) in oc.iter_mut().zip(v.iter().take(n)) {
                *o = match *v {
                    media::Verdict::Forward(f) => Verdict::Forward {
                        from: f.src,
                        to: f.dst,
                        len: f.len,
                    },
                    media::Verdict::Drop(r) => Verdict::Drop(handler_drop(r)),
                };
            }
        }
        self.core.housekeeping(now);
    }
}
