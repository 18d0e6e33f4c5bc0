//! Media port allocator: even RTP port, RTCP on +1, released pairs quarantined so that late packets
//! of an old call never reach a new one. O(1) allocate and release: a FIFO of free pairs ordered by
//! release time, so the head is always the pair that left quarantine first.

use super::flow::Nanos;
use std::collections::VecDeque;

/// An RTP port (even) and its RTCP port (`rtp + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortPair {
    pub rtp: u16,
    pub rtcp: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Every pair is in use or quarantined (the B2BUA answers 503).
    #[error("media ports exhausted ({in_use} in use, {quarantined} quarantined)")]
    Exhausted { in_use: usize, quarantined: usize },
    #[error("port range {0}..={1} holds no even/odd pair")]
    EmptyRange(u16, u16),
    #[error("port {0} is not an allocated RTP port of this allocator")]
    NotAllocated(u16),
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub total: usize,
    pub in_use: usize,
    pub allocations: u64,
    pub releases: u64,
    pub exhausted: u64,
}

#[derive(Debug)]
pub struct PortAllocator {
    first: u16,
    quarantine: Nanos,
    /// (pair index, time it was released).
    free: VecDeque<(u16, Nanos)>,
    in_use: Vec<bool>,
    counters: PortCounters,
}

impl PortAllocator {
    /// Pairs start at the first even port of `lo..=hi` and end where `rtp + 1 <= hi`.
    pub fn new(lo: u16, hi: u16, quarantine: Nanos) -> Result<Self, PortError> {
        // Port 0 is not a port; an odd start moves up to the next even port.
        let start = lo.max(2);
        let first = match start % 2 {
            0 => start,
            _ => start.checked_add(1).ok_or(PortError::EmptyRange(lo, hi))?,
        };
        if u32::from(first) + 1 > u32::from(hi) {
            return Err(PortError::EmptyRange(lo, hi));
        }
        let pairs = (u32::from(hi) - u32::from(first)).div_ceil(2) as usize;
        let free = (0..pairs as u16).map(|i| (i, 0)).collect::<VecDeque<_>>();
        Ok(PortAllocator {
            first,
            quarantine,
            free,
            in_use: vec![false; pairs],
            counters: PortCounters {
                total: pairs,
                ..PortCounters::default()
            },
        })
    }

    /// Takes the pair released longest ago, if its quarantine is over at `now`.
    pub fn allocate(&mut self, now: Nanos) -> Result<PortPair, PortError> {
        match self.free.front() {
            Some(&(idx, released))
                if released == 0 || now.saturating_sub(released) >= self.quarantine =>
            {
                self.free.pop_front();
                if let Some(u) = self.in_use.get_mut(usize::from(idx)) {
                    *u = true;
                }
                self.counters.in_use += 1;
                self.counters.allocations += 1;
                let rtp = self.first + 2 * idx;
                Ok(PortPair { rtp, rtcp: rtp + 1 })
            }
            _ => {
                self.counters.exhausted += 1;
                Err(PortError::Exhausted {
                    in_use: self.counters.in_use,
                    quarantined: self.free.len(),
                })
            }
        }
    }

    /// Returns a pair (by its RTP port); it becomes allocatable again after the quarantine.
    pub fn release(&mut self, rtp: u16, now: Nanos) -> Result<(), PortError> {
        let off = rtp
            .checked_sub(self.first)
            .ok_or(PortError::NotAllocated(rtp))?;
        if off % 2 != 0 {
            return Err(PortError::NotAllocated(rtp));
        }
        let idx = off / 2;
        match self.in_use.get_mut(usize::from(idx)) {
            Some(u) if *u => *u = false,
            _ => return Err(PortError::NotAllocated(rtp)),
        }
        // A zero release time means "never used"; a caller clock at 0 must still quarantine.
        self.free.push_back((idx, now.max(1)));
        self.counters.in_use -= 1;
        self.counters.releases += 1;
        Ok(())
    }

    pub fn counters(&self) -> PortCounters {
        self.counters
    }

    /// Pairs allocatable at `now` would need a scan; this is the free+quarantined count.
    pub fn not_in_use(&self) -> usize {
        self.free.len()
    }
}
