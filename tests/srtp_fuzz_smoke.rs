//! Stable stand-in for `cargo fuzz run srtp_unprotect`: the seed corpus plus a bounded number of
//! random and mutated inputs through the same check function as the fuzz target. The seeds live in
//! `fuzz/seeds/srtp_unprotect` (`fuzz/corpus` is git-ignored): `cargo fuzz run srtp_unprotect fuzz/seeds/srtp_unprotect`.

use std::time::{Duration, Instant};

use tollgate::srtp::fuzzing::{check_unprotect, seed};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/srtp_unprotect");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    // Valid packets for every suite selector, RTP and RTCP, MKI on and off, near the seq wrap.
    for sel in [0u8, 1, 2, 3, 4, 5, 6, 7, 0x46, 0x80, 0x86, 0xc7] {
        for (rtcp, seq, len) in [
            (false, 65535u16, 160usize),
            (false, 3, 0),
            (true, 0, 24),
            (false, 1000, 1200),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            out.push(seed(sel, rtcp, seq, &payload));
        }
    }
    out
}

#[test]
fn seeds_and_mutations_hold_the_invariants() {
    let seeds = corpus();
    assert!(seeds.len() >= 48);
    for s in &seeds {
        check_unprotect(s);
    }
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let start = Instant::now();
    let mut runs = 0;
    while runs < 6000 && start.elapsed() < Duration::from_secs(12) {
        let base = &seeds[(rng.next() % seeds.len() as u64) as usize];
        let mut input = base.clone();
        match rng.next() % 6 {
            // Bit flips anywhere but the selector byte.
            0 | 1 => {
                for _ in 0..1 + rng.next() % 4 {
                    if input.len() > 1 {
                        let at = 1 + (rng.next() % (input.len() as u64 - 1)) as usize;
                        input[at] ^= 1 << (rng.next() % 8);
                    }
                }
            }
            2 => input.truncate((rng.next() % (input.len() as u64 + 1)) as usize),
            3 => input.extend((0..rng.next() % 40).map(|_| rng.next() as u8)),
            // Header fields that drive parsing: CC, X bit, extension length.
            4 if input.len() > 2 => input[1] = rng.next() as u8,
            _ => {
                let len = (rng.next() % 300) as usize;
                input = (0..len).map(|_| rng.next() as u8).collect();
            }
        }
        check_unprotect(&input);
        runs += 1;
    }
    assert!(runs >= 500, "only {runs} inputs in the time budget");
}
