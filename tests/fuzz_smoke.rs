//! Stable stand-in for the cargo-fuzz targets in `fuzz/`: the same check functions over the seed corpus
//! (RFC 4475/5118 torture messages) and 20,000 deterministic mutations of it (byte flips, inserted SIP
//! delimiters, truncations, splices, duplicated and deleted ranges).

#[path = "../fuzz/src/reference.rs"]
mod reference;

use tollgate::sip::fuzzing::{check_framer, check_parse};

const MUTATIONS: usize = 20_000;

fn seeds() -> Vec<Vec<u8>> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut out = Vec::new();
    for dir in ["tests/data/rfc4475", "tests/data/rfc5118"] {
        let mut paths: Vec<_> = std::fs::read_dir(format!("{root}/{dir}"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "dat" || x == "sip"))
            .collect();
        paths.sort();
        out.extend(paths.into_iter().map(|p| std::fs::read(p).unwrap()));
    }
    assert!(out.len() >= 60);
    out
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r\n ",
    b" ",
    b"\t",
    b",",
    b";",
    b":",
    b"\"",
    b"\\",
    b"<",
    b">",
    b"@",
    b"%",
    b"%0",
    b"[",
    b"]",
    b"[::1]",
    b"=",
    b"?",
    b"/",
    b"0",
    b"4294967296",
    b"99999999999999999999",
    b"\r\n\r\n",
    b"Content-Length: 10\r\n",
    b"l: 0\r\n",
    b"Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\n",
    b"tag=",
    b";branch=",
    b"SIP/2.0",
    b"sips:",
    b"tel:+1",
    b"\0",
    b"\xff",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(len + 1);
                v.splice(i..i, t.iter().copied());
            }
            2 => v.truncate(rng.below(len + 1)),
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, chunk);
            }
            5 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(32)).min(len);
                v.drain(a..b);
            }
            _ if len > 0 => {
                // Flip the case of a byte (header names are case-insensitive, methods are not).
                let i = rng.below(len);
                v[i] ^= 0x20;
            }
            _ => {}
        }
    }
    v
}

fn run_all(data: &[u8]) {
    check_parse(data);
    check_framer(data);
    reference::check_diff(data);
}

#[test]
fn seed_corpus() {
    for s in seeds() {
        run_all(&s);
    }
}

#[test]
fn mutated_corpus() {
    let seeds = seeds();
    let mut rng = Rng(0x7011_6a7e_5eed_0001);
    let started = std::time::Instant::now();
    for i in 0..MUTATIONS {
        let input = mutate(&mut rng, &seeds);
        let r = std::panic::catch_unwind(|| run_all(&input));
        if r.is_err() {
            panic!(
                "mutation {i} failed; input: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
    eprintln!("{MUTATIONS} mutations in {:?}", started.elapsed());
}
