//! Timer values (RFC 3261 table 4, RFC 6026) and the per-transaction timer slots.
use std::time::{Duration, Instant};

/// Timer base values. T1/T2/T4 as in RFC 3261 17.1.1.1; everything else derives from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (default 500 ms). [`TxnTable::new`](super::TxnTable::new) clamps every value to at most
    /// one hour and T1 to at least 1 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (default 5 s).
    pub t4: Duration,
    /// Timer D over unreliable transports: how long a Completed INVITE client transaction absorbs
    /// final-response retransmissions (RFC 3261: at least 32 s; default 32 s).
    pub timer_d: Duration,
    /// Delay before an INVITE server transaction asks for a 100 Trying if the TU has not responded
    /// (RFC 3261 17.2.1: 200 ms; zero asks at once when the INVITE arrives).
    pub trying_delay: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            trying_delay: Duration::from_millis(200),
        }
    }
}

impl TimerConfig {
    /// Make the values usable: 1 ms <= T1 <= 1 h, T1 <= T2, and every value at most 1 h, so doubling timers
    /// always advance and `Instant + 64*T1` cannot overflow.
    pub(crate) fn sanitized(mut self) -> Self {
        const MAX: Duration = Duration::from_secs(3600);
        self.t1 = self.t1.clamp(Duration::from_millis(1), MAX);
        self.t2 = self.t2.clamp(self.t1, MAX);
        self.t4 = self.t4.min(MAX);
        self.timer_d = self.timer_d.min(MAX);
        self.trying_delay = self.trying_delay.min(MAX);
        self
    }

    /// 64*T1: timers B, F, H, J, L, M and the CANCEL guard.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Names of the timers, for [`crate::sip::txn::Action::Timeout`] and introspection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerName {
    /// INVITE client request retransmit (doubles, no cap).
    A,
    /// INVITE client transaction timeout (64*T1).
    B,
    /// INVITE client wait for response retransmits in Completed.
    D,
    /// Non-INVITE client request retransmit (doubles, capped at T2).
    E,
    /// Non-INVITE client transaction timeout (64*T1).
    F,
    /// INVITE server final response retransmit (doubles, capped at T2).
    G,
    /// INVITE server wait for ACK (64*T1).
    H,
    /// INVITE server wait for ACK retransmits in Confirmed (T4).
    I,
    /// Non-INVITE server wait for request retransmits in Completed (64*T1).
    J,
    /// Non-INVITE client wait for response retransmits in Completed (T4).
    K,
    /// INVITE server Accepted state (RFC 6026, 64*T1).
    L,
    /// INVITE client Accepted state (RFC 6026, 64*T1).
    M,
    /// INVITE server: ask for a 100 Trying if the TU is silent.
    Trying,
    /// INVITE client after a CANCEL was sent: give up 64*T1 later without a final response (RFC 3261 9.1).
    CancelGuard,
}

/// Slot for the retransmission timer (A, E, G).
pub(crate) const RETX: usize = 0;
/// Slot for the lifetime timer (B, D, F, H, I, J, K, L, M).
pub(crate) const LIFE: usize = 1;
/// Slot for the auxiliary timer (Trying, CancelGuard).
pub(crate) const AUX: usize = 2;
pub(crate) const SLOTS: usize = 3;

/// A transaction's armed timers. The table keeps a heap of (deadline, txn, slot) entries and treats an entry as
/// live only if the slot still holds that deadline, so cancelling or re-arming never searches the heap.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    pub slots: [Option<(Instant, TimerName)>; SLOTS],
    /// Bit per slot armed since the table last pushed heap entries.
    pub dirty: u8,
}

impl Timers {
    pub fn arm(&mut self, slot: usize, at: Instant, name: TimerName) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some((at, name));
            self.dirty |= 1 << slot;
        }
    }

    pub fn cancel(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = None;
            self.dirty &= !(1 << slot);
        }
    }

    /// Take the timer in `slot` if it is due exactly at `at` (i.e. the heap entry is not stale).
    pub fn take_if(&mut self, slot: usize, at: Instant) -> Option<TimerName> {
        let s = self.slots.get_mut(slot)?;
        match *s {
            Some((deadline, name)) if deadline == at => {
                *s = None;
                Some(name)
            }
            _ => None,
        }
    }
}
