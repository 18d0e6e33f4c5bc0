//! Stable stand-in for the cargo-fuzz targets `sdp_parse` and `rtp_rtcp_wire`: the seed corpus
//! plus bounded random and mutated inputs through the same check functions.

use tollgate::fuzzing::media::{rtp_rtcp_wire, sdp_parse};

fn seeds(dir: &str) -> Vec<Vec<u8>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<_> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

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

/// Byte flips, inserts, deletes, truncation, splices of interesting tokens.
fn mutate(r: &mut Rng, input: &[u8], tokens: &[&[u8]]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + r.below(4) {
        match r.below(6) {
            0 if !v.is_empty() => {
                let i = r.below(v.len());
                v[i] ^= 1 << r.below(8);
            }
            1 => {
                let i = r.below(v.len() + 1);
                v.insert(i, r.next() as u8);
            }
            2 if !v.is_empty() => {
                let i = r.below(v.len());
                v.remove(i);
            }
            3 => v.truncate(r.below(v.len() + 1)),
            4 => {
                let t = tokens[r.below(tokens.len())];
                let i = r.below(v.len() + 1);
                v.splice(i..i, t.iter().copied());
            }
            _ if !v.is_empty() => {
                let i = r.below(v.len());
                v[i] = [0, 0xff, b'\n', b'\r', b'=', b':', b' ', b'/', b'0'][r.below(9)];
            }
            _ => {}
        }
    }
    v
}

#[test]
fn sdp_parse_smoke() {
    let seeds = seeds("tests/data/sdp");
    let tokens: &[&[u8]] = &[
        b"\r\nm=audio 0 RTP/AVP 0",
        b"\r\nc=IN IP4 0.0.0.0",
        b"\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:",
        b"\r\na=rtpmap:96 telephone-event/8000",
        b"\r\na=rtcp:",
        b"\r\na=sendonly",
        b"\r\na=rtcp-mux",
        b"65535",
        b"/",
    ];
    let mut r = Rng(0x1234_5678_9abc_def1);
    for s in &seeds {
        sdp_parse(s);
    }
    for _ in 0..3000 {
        let s = &seeds[r.below(seeds.len())];
        sdp_parse(&mutate(&mut r, s, tokens));
    }
    for _ in 0..500 {
        let n = r.below(200);
        let v: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
        sdp_parse(&v);
    }
}

#[test]
fn rtp_rtcp_wire_smoke() {
    let seeds = seeds("tests/data/wire");
    let tokens: &[&[u8]] = &[
        &[0x80, 0xc8],
        &[0x90],
        &[0xbe, 0xde, 0xff, 0xff],
        &[0x81, 0x00],
        &[0x86, 0xdd],
        &[0xff; 4],
    ];
    let mut r = Rng(0x0fed_cba9_8765_4321);
    for s in &seeds {
        rtp_rtcp_wire(s);
    }
    for _ in 0..4000 {
        let s = &seeds[r.below(seeds.len())];
        rtp_rtcp_wire(&mutate(&mut r, s, tokens));
    }
    for _ in 0..1000 {
        let n = r.below(80);
        let v: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
        rtp_rtcp_wire(&v);
    }
}
