//! Per-worker counters: one cache-padded block per worker, written only by that worker (plain load+store,
//! no read-modify-write), read by anyone with relaxed loads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use super::handler::HandlerDrop;

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Handler: no flow for the local address.
    NoFlow,
    /// Handler: source does not match the flow.
    SourceMismatch,
    /// Handler: payload not acceptable.
    HandlerMalformed,
    /// Handler: SRTP/SRTCP check failed.
    Crypto,
    /// Handler: policy.
    Policy,
    /// Driver: not a well-formed IP/UDP datagram.
    Malformed,
    /// Driver: UDP checksum wrong.
    BadChecksum,
    /// Driver: larger than a buffer slot.
    Truncated,
    /// Driver: forward between different address families, or to a family without a transmit socket.
    FamilyMismatch,
    /// Driver: handler returned a length past the buffer.
    TooBig,
    /// Driver: the kernel refused to send it (no route, buffer full after retries, ...).
    TxError,
}

impl DropReason {
    pub const COUNT: usize = 11;
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::NoFlow,
        Self::SourceMismatch,
        Self::HandlerMalformed,
        Self::Crypto,
        Self::Policy,
        Self::Malformed,
        Self::BadChecksum,
        Self::Truncated,
        Self::FamilyMismatch,
        Self::TooBig,
        Self::TxError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::NoFlow => "no_flow",
            Self::SourceMismatch => "source_mismatch",
            Self::HandlerMalformed => "handler_malformed",
            Self::Crypto => "crypto",
            Self::Policy => "policy",
            Self::Malformed => "malformed",
            Self::BadChecksum => "bad_checksum",
            Self::Truncated => "truncated",
            Self::FamilyMismatch => "family_mismatch",
            Self::TooBig => "too_big",
            Self::TxError => "tx_error",
        }
    }
}

impl From<HandlerDrop> for DropReason {
    fn from(d: HandlerDrop) -> Self {
        match d {
            HandlerDrop::NoFlow => Self::NoFlow,
            HandlerDrop::SourceMismatch => Self::SourceMismatch,
            HandlerDrop::Malformed => Self::HandlerMalformed,
            HandlerDrop::Crypto => Self::Crypto,
            HandlerDrop::Policy => Self::Policy,
        }
    }
}

/// Batch-size histogram buckets: 1, 2–3, 4–7, 8–15, 16–31, 32–63, 64+.
pub const BATCH_BUCKETS: usize = 7;

fn bucket(n: usize) -> usize {
    (usize::BITS - n.max(1).leading_zeros() - 1).min(BATCH_BUCKETS as u32 - 1) as usize
}

#[derive(Default, Debug)]
struct Counters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_syscalls: AtomicU64,
    tx_syscalls: AtomicU64,
    idle_waits: AtomicU64,
    commands: AtomicU64,
    kernel_drops: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
    batches: [AtomicU64; BATCH_BUCKETS],
}

/// One worker's counters.
#[derive(Default, Debug)]
pub struct WorkerStats(CachePadded<Counters>);

/// Single-writer increment: the owning worker is the only writer, so load+store is exact and avoids a locked
/// instruction.
#[inline]
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerStats {
    pub(crate) fn rx(&self, packets: usize, bytes: usize) {
        add(&self.0.rx_packets, packets as u64);
        add(&self.0.rx_bytes, bytes as u64);
        add(&self.0.batches[bucket(packets)], 1);
    }
    pub(crate) fn tx(&self, packets: usize, bytes: usize) {
        add(&self.0.tx_packets, packets as u64);
        add(&self.0.tx_bytes, bytes as u64);
    }
    pub(crate) fn rx_syscall(&self) {
        add(&self.0.rx_syscalls, 1);
    }
    pub(crate) fn tx_syscall(&self) {
        add(&self.0.tx_syscalls, 1);
    }
    pub(crate) fn idle_wait(&self) {
        add(&self.0.idle_waits, 1);
    }
    pub(crate) fn commands(&self, n: usize) {
        add(&self.0.commands, n as u64);
    }
    pub(crate) fn kernel_drops(&self, n: u64) {
        add(&self.0.kernel_drops, n);
    }
    pub(crate) fn dropped(&self, why: DropReason, n: usize) {
        if let Some(c) = self.0.drops.get(why as usize) {
            add(c, n as u64);
        }
    }

    /// A consistent-enough copy for reporting (each field is read once, relaxed).
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &*self.0;
        StatsSnapshot {
            rx_packets: c.rx_packets.load(Relaxed),
            rx_bytes: c.rx_bytes.load(Relaxed),
            tx_packets: c.tx_packets.load(Relaxed),
            tx_bytes: c.tx_bytes.load(Relaxed),
            rx_syscalls: c.rx_syscalls.load(Relaxed),
            tx_syscalls: c.tx_syscalls.load(Relaxed),
            idle_waits: c.idle_waits.load(Relaxed),
            commands: c.commands.load(Relaxed),
            kernel_drops: c.kernel_drops.load(Relaxed),
            drops: std::array::from_fn(|i| c.drops[i].load(Relaxed)),
            batches: std::array::from_fn(|i| c.batches[i].load(Relaxed)),
        }
    }
}

/// Plain copy of a worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Datagrams received (accepted by the socket, before validation).
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Datagrams handed to the kernel for transmission.
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// recvmmsg / epoll_wait calls.
    pub rx_syscalls: u64,
    /// sendmmsg calls.
    pub tx_syscalls: u64,
    /// Times the worker blocked in poll/epoll with nothing to do.
    pub idle_waits: u64,
    /// Control-plane commands applied.
    pub commands: u64,
    /// Packets the kernel dropped before the worker saw them (socket queue full).
    pub kernel_drops: u64,
    /// Indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Receive batch-size histogram (see [`BATCH_BUCKETS`]).
    pub batches: [u64; BATCH_BUCKETS],
}

impl StatsSnapshot {
    pub fn dropped(&self, why: DropReason) -> u64 {
        self.drops.get(why as usize).copied().unwrap_or(0)
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Sum of several workers.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a StatsSnapshot>) -> StatsSnapshot {
        let mut t = StatsSnapshot::default();
        for s in all {
            t.rx_packets += s.rx_packets;
            t.rx_bytes += s.rx_bytes;
            t.tx_packets += s.tx_packets;
            t.tx_bytes += s.tx_bytes;
            t.rx_syscalls += s.rx_syscalls;
            t.tx_syscalls += s.tx_syscalls;
            t.idle_waits += s.idle_waits;
            t.commands += s.commands;
            t.kernel_drops += s.kernel_drops;
            for (a, b) in t.drops.iter_mut().zip(s.drops) {
                *a += b;
            }
            for (a, b) in t.batches.iter_mut().zip(s.batches) {
                *a += b;
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_buckets() {
        let b: Vec<usize> = [0, 1, 2, 3, 4, 7, 8, 31, 32, 63, 64, 1000]
            .iter()
            .map(|&n| bucket(n))
            .collect();
        assert_eq!(b, [0, 0, 1, 1, 2, 2, 3, 4, 5, 5, 6, 6]);
    }

    #[test]
    fn counters_add_up() {
        let s = WorkerStats::default();
        s.rx(3, 300);
        s.rx(64, 6400);
        s.tx(2, 200);
        s.dropped(DropReason::BadChecksum, 1);
        s.dropped(HandlerDrop::NoFlow.into(), 2);
        let snap = s.snapshot();
        assert_eq!(
            (snap.rx_packets, snap.rx_bytes, snap.tx_packets),
            (67, 6700, 2)
        );
        assert_eq!(snap.dropped(DropReason::BadChecksum), 1);
        assert_eq!(snap.dropped(DropReason::NoFlow), 2);
        assert_eq!(snap.total_drops(), 3);
        assert_eq!(snap.batches[1] + snap.batches[6], 2);
        assert!(std::mem::align_of::<WorkerStats>() >= 64);
    }
}
