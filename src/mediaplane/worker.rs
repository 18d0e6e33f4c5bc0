//! What both drivers' handlers share: one pipeline per worker, its command and event queues, the clock.

use std::sync::Arc;
use std::time::Instant;

use super::srtp::SdesFactory;
use crate::media::flow::Nanos;
use crate::media::{CommandQueue, EventQueue, Pipeline};

/// Commands applied per batch (or per tick) at most, so a burst of call setups cannot stall media.
pub const MAX_CMDS_PER_BATCH: usize = 256;
/// Flow slots checked for media timeout per housekeeping pass.
pub const TIMEOUT_BUDGET: usize = 512;
/// Housekeeping (timeouts) runs at most this often on a busy worker.
pub const HOUSEKEEPING_EVERY: Nanos = 20_000_000;

/// The pipeline of one worker plus its queues. Owned by the worker thread.
pub struct WorkerCore {
    pub pipe: Pipeline<SdesFactory>,
    pub cmds: Arc<CommandQueue>,
    pub events: Arc<EventQueue>,
    base: Instant,
    last_housekeeping: Nanos,
    /// The watchdog's and `/health`'s proof that this worker still turns (beaten from housekeeping).
    heartbeat: Option<crate::ops::notify::Heartbeat>,
}

impl WorkerCore {
    /// `base` is the plane's clock origin: every worker and the caller share it.
    pub fn new(
        capacity: usize,
        cmds: Arc<CommandQueue>,
        events: Arc<EventQueue>,
        base: Instant,
    ) -> Self {
        WorkerCore {
            pipe: Pipeline::new(capacity, SdesFactory::default()),
            cmds,
            events,
            base,
            last_housekeeping: 0,
            heartbeat: None,
        }
    }

    pub fn set_heartbeat(&mut self, h: Option<crate::ops::notify::Heartbeat>) {
        self.heartbeat = h;
    }

    pub fn nanos(&self, t: Instant) -> Nanos {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Applies queued flow commands (before a batch, so a packet sees every entry programmed before it).
    pub fn drain(&mut self, now: Nanos) {
        if !self.cmds.is_empty() {
            self.pipe
                .drain_commands(&self.cmds, MAX_CMDS_PER_BATCH, now, &mut self.events);
        }
    }

    /// Media-timeout polling, rate-limited.
    pub fn housekeeping(&mut self, now: Nanos) {
        if now.saturating_sub(self.last_housekeeping) >= HOUSEKEEPING_EVERY {
            self.last_housekeeping = now;
            if let Some(h) = &self.heartbeat {
                h.beat();
            }
            self.pipe
                .poll_timeouts(now, TIMEOUT_BUDGET, &mut self.events);
        }
    }
}
