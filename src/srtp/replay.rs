//! Sliding replay window over packet indices (RFC 3711 section 3.3.2), as a fixed bitmap.

/// Widest window supported, in packets.
pub const MAX_REPLAY_WINDOW: usize = 1024;
const WORDS: usize = MAX_REPLAY_WINDOW / 64;

/// Bit `d` set means index `top - d` was accepted. Only the first `ceil(size / 64)` words are used,
/// so the common 128-packet window touches two words per packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            top: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    /// A window whose highest accepted index is `top` and nothing else seen.
    pub(crate) fn starting_at(top: u64) -> ReplayWindow {
        let mut w = ReplayWindow {
            top,
            bits: [0; WORDS],
        };
        w.bits[0] = 1;
        w
    }

    /// Highest index accepted so far.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// True if `index` is new and not older than `size` packets below the top.
    pub(crate) fn check(&self, index: u64, size: usize) -> bool {
        if index > self.top {
            return true;
        }
        let delta = self.top - index;
        if delta >= size as u64 {
            return false;
        }
        let word = self
            .bits
            .get((delta / 64) as usize)
            .copied()
            .unwrap_or(u64::MAX);
        word & (1u64 << (delta % 64)) == 0
    }

    /// Records `index` as accepted; call only after `check` passed and the packet authenticated.
    pub(crate) fn accept(&mut self, index: u64, size: usize) {
        let words = size.div_ceil(64).min(WORDS);
        if index > self.top {
            self.shift(index - self.top, words);
            self.top = index;
            self.bits[0] |= 1;
        } else {
            let delta = self.top - index;
            if let Some(w) = self.bits.get_mut((delta / 64) as usize) {
                *w |= 1u64 << (delta % 64);
            }
        }
    }

    /// Moves every recorded bit `by` positions further from the top.
    fn shift(&mut self, by: u64, words: usize) {
        if by >= (words * 64) as u64 {
            self.bits[..words].fill(0);
            return;
        }
        let ws = (by / 64) as usize;
        let bs = (by % 64) as u32;
        for i in (0..words).rev() {
            let hi = i
                .checked_sub(ws)
                .and_then(|s| self.bits.get(s))
                .map_or(0, |w| w << bs);
            let lo = if bs == 0 {
                0
            } else {
                i.checked_sub(ws + 1)
                    .and_then(|s| self.bits.get(s))
                    .map_or(0, |w| w >> (64 - bs))
            };
            self.bits[i] = hi | lo;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: a set of accepted indices and the plain rule "new, and within size of the max".
    fn check_against_model(size: usize, seq: &[u64]) {
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut first = true;
        for &i in seq {
            let max = seen.iter().next_back().copied();
            let expect = !seen.contains(&i) && max.is_none_or(|m| i > m || m - i < size as u64);
            let got = if first { true } else { w.check(i, size) };
            assert_eq!(got, expect, "size {size} index {i}");
            if got {
                if first {
                    w = ReplayWindow::starting_at(i);
                    first = false;
                } else {
                    w.accept(i, size);
                }
                seen.insert(i);
            }
        }
    }

    #[test]
    fn matches_model_for_many_sizes_and_orders() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for size in [1, 63, 64, 65, 128, 200, 1024] {
            let mut seq = Vec::new();
            let mut base = 1000u64;
            for _ in 0..4000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly forward, sometimes back inside or beyond the window, sometimes big jumps.
                match x % 10 {
                    0..=5 => base += 1 + x % 3,
                    6 | 7 => seq.push(base.saturating_sub((x >> 8) % (size as u64 + 10))),
                    8 => base += (x >> 8) % 2000,
                    _ => seq.push(base),
                }
                seq.push(base);
            }
            check_against_model(size, &seq);
        }
    }

    #[test]
    fn edge_of_window() {
        let mut w = ReplayWindow::starting_at(500);
        assert!(w.check(500 - 127, 128));
        assert!(!w.check(500 - 128, 128));
        assert!(!w.check(500, 128));
        w.accept(373, 128);
        assert!(!w.check(373, 128));
        w.accept(501, 128);
        assert!(!w.check(373, 128), "373 is now outside the window");
        assert!(w.check(374, 128));
    }
}
