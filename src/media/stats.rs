//! Per-worker counters: written only by their worker (plain load+store, no locked RMW), read by
//! the metrics thread with relaxed loads, padded so no other data shares their cache lines.

use super::pipeline::DropReason;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
struct Counters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
    commands: AtomicU64,
    command_errors: AtomicU64,
    latched: AtomicU64,
    dtmf_events: AtomicU64,
    timeouts: AtomicU64,
    flows: AtomicU64,
}

/// One worker's counters; share it as `Arc<WorkerCounters>` with the metrics thread.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    c: CachePadded<Counters>,
}

/// A plain copy of a worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    /// Indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    pub commands: u64,
    pub command_errors: u64,
    pub latched: u64,
    pub dtmf_events: u64,
    pub timeouts: u64,
    /// Gauge: flows in this worker's table.
    pub flows: u64,
}

impl CountersSnapshot {
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops.get(r as usize).copied().unwrap_or(0)
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

fn add(a: &AtomicU64, v: u64) {
    if v != 0 {
        a.store(a.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
    }
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl WorkerCounters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Only the owning worker may call this (single writer).
    pub(crate) fn add_batch(&self, d: &CountersSnapshot) {
        let c = &*self.c;
        add(&c.rx_packets, d.rx_packets);
        add(&c.rx_bytes, d.rx_bytes);
        add(&c.forwarded, d.forwarded);
        add(&c.forwarded_bytes, d.forwarded_bytes);
        for (a, v) in c.drops.iter().zip(d.drops.iter()) {
            add(a, *v);
        }
        add(&c.commands, d.commands);
        add(&c.command_errors, d.command_errors);
        add(&c.latched, d.latched);
        add(&c.dtmf_events, d.dtmf_events);
        add(&c.timeouts, d.timeouts);
    }

    pub(crate) fn set_flows(&self, n: u64) {
        self.c.flows.store(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let c = &*self.c;
        let mut drops = [0u64; DropReason::COUNT];
        for (d, a) in drops.iter_mut().zip(c.drops.iter()) {
            *d = get(a);
        }
        CountersSnapshot {
            rx_packets: get(&c.rx_packets),
            rx_bytes: get(&c.rx_bytes),
            forwarded: get(&c.forwarded),
            forwarded_bytes: get(&c.forwarded_bytes),
            drops,
            commands: get(&c.commands),
            command_errors: get(&c.command_errors),
            latched: get(&c.latched),
            dtmf_events: get(&c.dtmf_events),
            timeouts: get(&c.timeouts),
            flows: get(&c.flows),
        }
    }
}
