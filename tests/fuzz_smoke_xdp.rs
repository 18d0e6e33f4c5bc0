//! Stable stand-in for the `xdp_rewrite` fuzz target: the seed corpus (valid frames of every shape the XDP
//! program redirects) plus 30,000 deterministic mutations through the same check function.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tollgate::fastpath::xdp::fuzzing::check_rewrite;
use tollgate::fastpath::xdp::rewrite::{ipv4_header_checksum, parse_udp, udp_checksum};

fn seed(v6: bool, vlan: bool, opts: usize, payload: usize, zero_csum: bool) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = if v6 {
        (
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(),
        )
    } else {
        (
            Ipv4Addr::new(10, 0, 0, 2).into(),
            Ipv4Addr::new(10, 0, 0, 1).into(),
        )
    };
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    }
    let mut u = vec![0x0f, 0xa0, 0x75, 0x30];
    u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..payload).map(|i| (i * 7) as u8));
    if !zero_csum {
        let c = udp_checksum(s, d, &u);
        u[6..8].copy_from_slice(&c.to_be_bytes());
    }
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let ihl = 20 + opts;
            let mut ip = vec![0x40 | (ihl / 4) as u8, 0];
            ip.extend_from_slice(&((ihl + u.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            ip.extend(std::iter::repeat_n(1u8, opts));
            let c = ipv4_header_checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(u.len() as u16).to_be_bytes());
            f.extend_from_slice(&[17, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => unreachable!(),
    }
    f.extend_from_slice(&u);
    f
}

#[test]
fn seeds_and_mutations() {
    let mut seeds = Vec::new();
    for v6 in [false, true] {
        for vlan in [false, true] {
            for (opts, payload, zero) in [
                (0, 0, false),
                (0, 172, false),
                (8, 20, false),
                (40, 3, true),
                (0, 1400, false),
            ] {
                if v6 && opts > 0 {
                    continue;
                }
                seeds.push(seed(v6, vlan, opts, payload, zero && !v6));
            }
        }
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // The checked-in corpus (first byte = rewrite selector, rest = frame).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/xdp_rewrite");
    for e in std::fs::read_dir(&dir).expect("corpus dir") {
        let data = std::fs::read(e.expect("entry").path()).expect("read seed");
        check_rewrite(&data);
        let (_, frame) = data.split_first().expect("non-empty seed");
        assert!(
            parse_udp(frame).is_ok(),
            "seed is a frame the XDP program redirects"
        );
        seeds.push(frame.to_vec());
    }
    for s in &seeds {
        for sel in 0..=255u8 {
            let mut d = vec![sel];
            d.extend_from_slice(s);
            check_rewrite(&d);
        }
    }
    for _ in 0..30_000 {
        let s = &seeds[(rnd() as usize) % seeds.len()];
        let mut d = vec![rnd() as u8];
        d.extend_from_slice(s);
        for _ in 0..1 + rnd() % 4 {
            let k = (rnd() as usize) % d.len();
            d[k] = rnd() as u8;
        }
        if rnd() % 4 == 0 {
            let keep = (rnd() as usize) % (d.len() + 1);
            d.truncate(keep);
        }
        check_rewrite(&d);
    }
}
