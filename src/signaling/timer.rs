//! Hierarchical timer wheel with millisecond resolution.
//!
//! Six levels of 64 slots cover 64^6 ms (~2 200 years), so every deadline has a slot and no overflow list is
//! needed. A deadline sits at the level of the highest bit in which it differs from the wheel's clock; when the
//! clock reaches a higher-level slot its entries cascade down. Insert and cancel are O(1): entries live in a
//! slab addressed by the token, cancel only frees the slab entry and decrements the slot's live count (the
//! stale reference in the slot's list is skipped when the slot is drained). Per-level occupancy bitmaps give the
//! next deadline without scanning slots. Steady state allocates nothing: slot lists and the slab keep their
//! capacity.

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = (SLOTS as u64) - 1;

/// Identifies one armed timer. A token stays unique after its timer fired or was cancelled (the generation
/// changes), so cancelling a stale token is a harmless no-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerToken {
    index: u32,
    generation: u32,
}

impl TimerToken {
    /// A stable 64-bit form, e.g. to store the token in a plain integer field.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// Inverse of [`TimerToken::to_u64`].
    pub fn from_u64(v: u64) -> Self {
        Self {
            index: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline: u64,
    data: u64,
    generation: u32,
    /// `level * SLOTS + slot` while armed in the wheel, `NONE` while free or on the due list.
    slot: u16,
    armed: bool,
}

const NONE: u16 = u16::MAX;

#[derive(Debug, Clone, Copy)]
struct SlotRef {
    index: u32,
    generation: u32,
}

/// The wheel. Time is a `u64` count of milliseconds from an origin chosen by the caller (the loop uses the
/// milliseconds since it started).
#[derive(Debug)]
pub struct TimerWheel {
    /// Every deadline `<= elapsed` has been moved to `due` or fired.
    elapsed: u64,
    entries: Vec<Entry>,
    free: Vec<u32>,
    slots: Vec<Vec<SlotRef>>,
    live: Vec<u32>,
    occupied: [u64; LEVELS],
    /// Timers whose deadline was already reached when they were set.
    due: Vec<SlotRef>,
    scratch: Vec<SlotRef>,
    armed: usize,
}

impl Default for TimerWheel {
    fn default() -> Self {
        Self::new()
    }
}

impl TimerWheel {
    /// An empty wheel whose clock starts at 0.
    pub fn new() -> Self {
        Self {
            elapsed: 0,
            entries: Vec::new(),
            free: Vec::new(),
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            live: vec![0; LEVELS * SLOTS],
            occupied: [0; LEVELS],
            due: Vec::new(),
            scratch: Vec::new(),
            armed: 0,
        }
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.armed
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.armed == 0
    }

    /// The wheel's clock: the last time passed to [`TimerWheel::advance`].
    pub fn now(&self) -> u64 {
        self.elapsed
    }

    /// Arms a timer for `deadline` (ms) carrying `data`, returned when it fires.
    pub fn insert(&mut self, deadline: u64, data: u64) -> TimerToken {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    deadline: 0,
                    data: 0,
                    generation: 0,
                    slot: NONE,
                    armed: false,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let generation = {
            let e = &mut self.entries[index as usize];
            e.deadline = deadline;
            e.data = data;
            e.armed = true;
            e.slot = NONE;
            e.generation
        };
        self.armed += 1;
        self.place(SlotRef { index, generation });
        TimerToken { index, generation }
    }

    /// Disarms a timer. Returns false if it had already fired or been cancelled.
    pub fn cancel(&mut self, token: TimerToken) -> bool {
        let Some(e) = self.entries.get_mut(token.index as usize) else {
            return false;
        };
        if !e.armed || e.generation != token.generation {
            return false;
        }
        let slot = e.slot;
        Self::release(e);
        self.free.push(token.index);
        self.armed -= 1;
        if slot != NONE {
            let s = slot as usize;
            self.live[s] -= 1;
            if self.live[s] == 0 {
                self.slots[s].clear();
                self.occupied[s / SLOTS] &= !(1u64 << (s % SLOTS));
            }
        }
        true
    }

    /// The earliest time at which [`TimerWheel::advance`] may have something to fire: exact for level 0, the
    /// start of the slot (a lower bound) for higher levels, whose entries then cascade.
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.due.is_empty() {
            return Some(self.elapsed);
        }
        (0..LEVELS).find_map(|level| self.next_slot(level).map(|(_, start)| start))
    }

    /// Moves the clock to `now` and calls `fire(token, data)` for each timer whose deadline is `<= now`, in
    /// deadline order (timers set with a past deadline first). The callback cannot touch the wheel; collect
    /// and act after.
    pub fn advance(&mut self, now: u64, mut fire: impl FnMut(TimerToken, u64)) {
        loop {
            if !self.due.is_empty() {
                let mut due = std::mem::take(&mut self.due);
                for r in due.drain(..) {
                    self.fire_ref(r, &mut fire);
                }
                self.due = due;
            }
            let Some((level, slot, start)) = self.earliest_slot() else {
                break;
            };
            if start > now {
                break;
            }
            self.elapsed = self.elapsed.max(start);
            let s = level * SLOTS + slot;
            self.occupied[level] &= !(1u64 << slot);
            self.live[s] = 0;
            let mut list = std::mem::take(&mut self.scratch);
            std::mem::swap(&mut list, &mut self.slots[s]);
            for r in list.drain(..) {
                let Some(e) = self.entries.get_mut(r.index as usize) else {
                    continue;
                };
                if !e.armed || e.generation != r.generation || e.slot as usize != s {
                    continue;
                }
                e.slot = NONE;
                if e.deadline <= now && level == 0 {
                    self.fire_ref(r, &mut fire);
                } else {
                    self.place(r);
                }
            }
            self.scratch = list;
        }
        self.elapsed = self.elapsed.max(now);
    }

    fn fire_ref(&mut self, r: SlotRef, fire: &mut impl FnMut(TimerToken, u64)) {
        let Some(e) = self.entries.get_mut(r.index as usize) else {
            return;
        };
        if !e.armed || e.generation != r.generation {
            return;
        }
        let data = e.data;
        Self::release(e);
        self.free.push(r.index);
        self.armed -= 1;
        fire(
            TimerToken {
                index: r.index,
                generation: r.generation,
            },
            data,
        );
    }

    fn release(e: &mut Entry) {
        e.armed = false;
        e.slot = NONE;
        e.generation = e.generation.wrapping_add(1);
    }

    fn place(&mut self, r: SlotRef) {
        let Some(e) = self.entries.get_mut(r.index as usize) else {
            return;
        };
        if e.deadline <= self.elapsed {
            e.slot = NONE;
            self.due.push(r);
            return;
        }
        let level = level_for(self.elapsed, e.deadline);
        let slot = ((e.deadline >> (level as u32 * SLOT_BITS)) & SLOT_MASK) as usize;
        let s = level * SLOTS + slot;
        e.slot = s as u16;
        self.slots[s].push(r);
        self.live[s] += 1;
        self.occupied[level] |= 1u64 << slot;
    }

    fn earliest_slot(&self) -> Option<(usize, usize, u64)> {
        (0..LEVELS).find_map(|level| {
            self.next_slot(level)
                .map(|(slot, start)| (level, slot, start))
        })
    }

    /// Next occupied slot of `level` at or after the clock's position, with the time it starts.
    fn next_slot(&self, level: usize) -> Option<(usize, u64)> {
        let occ = self.occupied[level];
        if occ == 0 {
            return None;
        }
        let shift = level as u32 * SLOT_BITS;
        let pos = ((self.elapsed >> shift) & SLOT_MASK) as u32;
        // Occupied slots at this level are all at or after the clock's slot within the current
        // higher-level block, so rotating to the clock's position finds the nearest one.
        let rotated = occ.rotate_right(pos);
        let dist = u64::from(rotated.trailing_zeros());
        let slot = ((u64::from(pos) + dist) & SLOT_MASK) as usize;
        let level_range = 1u64 << (shift + SLOT_BITS);
        let block_start = self.elapsed & !(level_range - 1);
        let mut start = block_start + ((slot as u64) << shift);
        if start < block_start + ((u64::from(pos)) << shift) {
            start += level_range;
        }
        Some((slot, start.max(self.elapsed)))
    }
}

fn level_for(elapsed: u64, deadline: u64) -> usize {
    let masked = (elapsed ^ deadline) | SLOT_MASK;
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic generator so tests need no extra crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn fires_in_deadline_order_across_levels() {
        let mut w = TimerWheel::new();
        let mut rng = Lcg(7);
        let mut expected = Vec::new();
        for i in 0..5000u64 {
            let d = match i % 4 {
                0 => rng.next() % 64,
                1 => rng.next() % 5000,
                2 => rng.next() % 300_000,
                _ => rng.next() % 40_000_000,
            };
            w.insert(d, d);
            expected.push(d);
        }
        expected.sort_unstable();
        let mut fired = Vec::new();
        let mut t = 0u64;
        while let Some(next) = w.next_deadline() {
            assert!(next >= t, "next deadline went backwards");
            t = next;
            w.advance(t, |_, data| fired.push((t, data)));
        }
        assert_eq!(fired.len(), expected.len());
        for (at, d) in &fired {
            assert!(*at >= *d, "fired early: at {at} deadline {d}");
            assert_eq!(*at, *d, "fired late: at {at} deadline {d}");
        }
        let order: Vec<u64> = fired.iter().map(|f| f.1).collect();
        assert_eq!(order, expected);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_prevents_firing_and_stale_cancel_is_noop() {
        let mut w = TimerWheel::new();
        let mut tokens = Vec::new();
        for i in 0..2000u64 {
            tokens.push(w.insert(10 + i * 7, i));
        }
        let mut cancelled = 0;
        for (i, t) in tokens.iter().enumerate() {
            if i % 3 == 0 {
                assert!(w.cancel(*t));
                assert!(!w.cancel(*t));
                cancelled += 1;
            }
        }
        assert_eq!(w.len(), 2000 - cancelled);
        let mut fired = Vec::new();
        w.advance(1_000_000, |_, d| fired.push(d));
        assert_eq!(fired.len(), 2000 - cancelled);
        assert!(fired.iter().all(|d| d % 3 != 0));
        assert!(fired.windows(2).all(|p| p[0] < p[1]));
        // Tokens of fired timers are stale now, and slab slots get reused with a new generation.
        assert!(!w.cancel(tokens[1]));
        let t = w.insert(2_000_000, 99);
        assert!(!w.cancel(tokens[1]) || t != tokens[1]);
        assert!(w.cancel(t));
    }

    #[test]
    fn cancelled_slot_does_not_pull_next_deadline_early() {
        let mut w = TimerWheel::new();
        let a = w.insert(5, 1);
        w.insert(100, 2);
        assert_eq!(w.next_deadline(), Some(5));
        w.cancel(a);
        // Level 1 holds the 100 ms timer: the lower bound is its slot start (64), never the cancelled 5.
        let next = w.next_deadline().unwrap();
        assert!((64..=100).contains(&next), "{next}");
        let mut fired = Vec::new();
        w.advance(next, |_, d| fired.push(d));
        assert!(fired.is_empty());
        assert_eq!(w.next_deadline(), Some(100));
        w.advance(100, |_, d| fired.push(d));
        assert_eq!(fired, vec![2]);
    }

    #[test]
    fn past_deadline_fires_on_next_advance() {
        let mut w = TimerWheel::new();
        w.advance(1000, |_, _| {});
        w.insert(10, 1);
        w.insert(1000, 2);
        assert_eq!(w.next_deadline(), Some(1000));
        let mut fired = Vec::new();
        w.advance(1000, |_, d| fired.push(d));
        assert_eq!(fired, vec![1, 2]);
    }

    #[test]
    fn token_roundtrips_through_u64() {
        let mut w = TimerWheel::new();
        let t = w.insert(3, 0);
        assert_eq!(TimerToken::from_u64(t.to_u64()), t);
    }
}
