//! Stable stand-in for cargo-fuzz for the management, admin and trace parsers: seed corpus plus bounded
//! deterministic mutations through the same functions as fuzz/fuzz_targets/{mgmt_input,admin_input,hep_decode}.rs.

#[path = "../fuzz/checks/admin_input.rs"]
mod admin_input;
#[path = "../fuzz/checks/hep_decode.rs"]
mod hep_decode;
#[path = "../fuzz/checks/mgmt_input.rs"]
mod mgmt_input;

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

const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b":",
    b",",
    b"\r\n",
    b" ",
    b"HTTP/1.1",
    b"/",
    b"?",
    b"HEP3",
    b"\0\0",
    b"\xff\xff",
    b"\"cmd\"",
    b"null",
    b"\xff",
    b"@SESSION@",
    b"@CSRF@",
    b"&",
    b"=",
    b"%2B",
    b";",
    b"Cookie: ",
    b"Content-Length: 9\r\n",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 => v.truncate(at),
            _ if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            _ => {}
        }
    }
    v
}

fn smoke(name: &str, iterations: usize, extra_seeds: Vec<Vec<u8>>, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "empty corpus {name}");
    seeds.extend(extra_seeds);
    for s in &seeds {
        run(s);
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..iterations {
        let i = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[i]);
        run(&input);
    }
}

#[test]
fn mgmt_input_smoke() {
    smoke("mgmt_input", 20_000, vec![], mgmt_input::run);
}

#[test]
fn admin_input_smoke() {
    smoke("admin_input", 5_000, vec![], admin_input::run);
}

#[test]
fn hep_decode_smoke() {
    // A real encoded packet as seed, so mutations explore the chunk walker.
    let mut pkt = Vec::new();
    let meta = tollgate::stats::hep::HepMeta {
        src: "[2001:db8::1]:5060".parse().unwrap(),
        dst: "[2001:db8::2]:5060".parse().unwrap(),
        ip_proto: 6,
        ts: std::time::SystemTime::UNIX_EPOCH,
        capture_id: 9,
        auth_key: Some("k"),
        correlation_id: Some("c"),
    };
    tollgate::stats::hep::encode(&meta, b"BYE sip:x SIP/2.0\r\n\r\n", &mut pkt).unwrap();
    smoke("hep_decode", 20_000, vec![pkt], hep_decode::run);
}
