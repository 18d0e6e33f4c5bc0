//! RFC 3550 receive statistics: extended sequence numbers and loss (A.1, A.3) and interarrival
//! jitter (A.8), plus RFC 4733 end-of-event detection. Plain integer state owned by one worker.

use super::flow::Nanos;

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

#[derive(Debug, Clone, Default)]
pub(crate) struct RtpRx {
    started: bool,
    ssrc: u32,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u64,
    /// Loss accumulated over earlier sequence epochs (SSRC change or resync).
    lost_before: i64,
    have_transit: bool,
    transit: i32,
    /// Jitter scaled by 16 (A.8 integer form).
    jitter16: u32,
    clock: u32,
}

impl RtpRx {
    /// Updates loss and jitter for an accepted packet. `clock` is the RTP clock rate of its PT (0
    /// when unknown: no jitter), `arrival_us` the arrival time on a per-flow microsecond clock.
    pub(crate) fn on_packet(
        &mut self,
        ssrc: u32,
        seq: u16,
        ts: u32,
        clock: u32,
        arrival_us: u64,
        jitter: bool,
    ) {
        if !self.started || ssrc != self.ssrc {
            self.lost_before += self.lost_in_epoch();
            *self = RtpRx {
                lost_before: self.lost_before,
                jitter16: self.jitter16,
                ..RtpRx::default()
            };
            self.start(ssrc, seq);
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta == 0 {
                self.received += 1; // duplicate: counted, makes `lost` go down as in A.3
            } else if delta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_seq = seq;
                self.received += 1;
            } else if delta <= u16::MAX - MAX_MISORDER {
                // A jump too large to be loss: the sender restarted its sequence.
                self.lost_before += self.lost_in_epoch();
                self.start(ssrc, seq);
            } else {
                self.received += 1; // late or reordered packet
            }
        }
        if !jitter || clock == 0 {
            return;
        }
        if clock != self.clock {
            self.clock = clock;
            self.have_transit = false;
        }
        let arrival = (arrival_us.wrapping_mul(u64::from(clock)) / 1_000_000) as u32;
        let transit = arrival.wrapping_sub(ts) as i32;
        if self.have_transit {
            let d = transit.wrapping_sub(self.transit).unsigned_abs();
            // J += (|D| - J) / 16, kept scaled by 16 (RFC 3550 A.8).
            self.jitter16 = self
                .jitter16
                .wrapping_add(d)
                .wrapping_sub(self.jitter16.wrapping_add(8) >> 4);
        }
        self.transit = transit;
        self.have_transit = true;
    }

    fn start(&mut self, ssrc: u32, seq: u16) {
        self.started = true;
        self.ssrc = ssrc;
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.cycles = 0;
        self.received = 1;
    }

    fn lost_in_epoch(&self) -> i64 {
        if !self.started {
            return 0;
        }
        let ext_max = u64::from(self.cycles) + u64::from(self.max_seq);
        let expected = ext_max as i64 - i64::from(self.base_seq) + 1;
        expected - self.received as i64
    }

    pub(crate) fn lost(&self) -> i64 {
        self.lost_before + self.lost_in_epoch()
    }

    pub(crate) fn jitter(&self) -> u32 {
        self.jitter16 >> 4
    }

    pub(crate) fn jitter_us(&self) -> u32 {
        if self.clock == 0 {
            return 0;
        }
        (u64::from(self.jitter()) * 1_000_000 / u64::from(self.clock)) as u32
    }

    pub(crate) fn ssrc(&self) -> u32 {
        self.ssrc
    }
}

/// What the DTMF tracker decided for one telephone-event packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DtmfDone {
    pub event: u8,
    pub duration: u16,
    pub end: bool,
}

/// Reports each telephone event once: at its first end packet (the end packet is sent three times),
/// or, if no end packet arrives, when the next event (new timestamp) starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct DtmfTracker {
    active: bool,
    reported: bool,
    ts: u32,
    event: u8,
    duration: u16,
}

impl DtmfTracker {
    /// Returns up to two completed events: a previous unended one, and this one if it ended.
    pub(crate) fn on_event(
        &mut self,
        ts: u32,
        event: u8,
        end: bool,
        duration: u16,
    ) -> [Option<DtmfDone>; 2] {
        let mut out = [None, None];
        if !self.active || ts != self.ts {
            if self.active && !self.reported {
                out[0] = Some(DtmfDone {
                    event: self.event,
                    duration: self.duration,
                    end: false,
                });
            }
            *self = DtmfTracker {
                active: true,
                reported: false,
                ts,
                event,
                duration,
            };
        }
        self.duration = self.duration.max(duration);
        if end && !self.reported {
            self.reported = true;
            out[1] = Some(DtmfDone {
                event: self.event,
                duration: self.duration,
                end: true,
            });
        }
        out
    }
}

/// Per-flow microsecond clock from the caller's nanoseconds, relative to the flow's creation so
/// the jitter arithmetic cannot overflow.
pub(crate) fn arrival_us(now: Nanos, created: Nanos) -> u64 {
    now.saturating_sub(created) / 1000
}
