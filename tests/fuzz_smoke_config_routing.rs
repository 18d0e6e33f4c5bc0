//! Stable stand-in for cargo-fuzz: runs the config/routing fuzz checks over their seed corpus plus a bounded
//! number of deterministic mutations (same functions as fuzz/fuzz_targets/*).

#[path = "../fuzz/checks/config_load.rs"]
mod config_load;
#[path = "../fuzz/checks/digest_header.rs"]
mod digest_header;
#[path = "../fuzz/checks/number_normalise.rs"]
mod number_normalise;

use std::path::Path;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens that steer mutations towards the grammar's interesting corners.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b",",
    b"=",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\n",
    b"'''",
    b"${",
    b"$1",
    b"(",
    b"*",
    b"+",
    b"/33",
    b"::",
    b"\xff",
    b"Digest ",
    b"nc=",
    b"qop=auth",
    b"[[trunk]]",
    b"name = \"x\"",
    b"0",
    b"00",
    b"011",
];

fn mutate(rng: &mut Rng, seed: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 => v.truncate(at),
            3 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(64)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
        }
    }
    v
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {name}");
    out
}

fn smoke(name: &str, iterations: usize, run: fn(&[u8])) {
    let seeds = corpus(name);
    for s in &seeds {
        run(s);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..iterations {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed, &seeds);
        run(&input);
    }
}

#[test]
fn digest_header_smoke() {
    smoke("digest_header", 20_000, digest_header::run);
}

#[test]
fn config_load_smoke() {
    smoke("config_load", 1_500, config_load::run);
}

#[test]
fn number_normalise_smoke() {
    smoke("number_normalise", 20_000, number_normalise::run);
}
