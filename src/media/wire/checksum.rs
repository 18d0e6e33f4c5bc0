//! Internet checksum (RFC 1071) with pseudo-headers and RFC 1624 incremental updates.
//!
//! A relay rewrites addresses and ports of every packet; recomputing the UDP checksum over the whole
//! payload would touch every byte, so the fast path uses the incremental form and the tests prove it
//! equal to a full recompute.

use std::net::IpAddr;

/// Ones'-complement sum of `data` (not folded, not inverted), as 16-bit big-endian words.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold64(acc)
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Folds a 32-bit ones'-complement accumulator into 16 bits (not inverted).
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Combines partial sums.
pub fn combine(parts: &[u32]) -> u16 {
    let total: u64 = parts.iter().map(|&p| u64::from(p)).sum();
    fold(fold64(total))
}

/// Sum of the UDP/TCP pseudo-header for `proto` and upper-layer length `len`.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u32 {
    let mut acc = 0u64;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc += u64::from(sum(&s.octets())) + u64::from(sum(&d.octets()));
        }
        (s, d) => {
            acc += u64::from(sum(&ip6_octets(s))) + u64::from(sum(&ip6_octets(d)));
        }
    }
    acc += u64::from(proto);
    acc += u64::from(len >> 16) + u64::from(len & 0xffff);
    fold64(acc)
}

fn ip6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// RFC 1624 eqn. 3: new checksum after one 16-bit word of the covered data changed from `old` to `new`.
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// RFC 1624 update for an even-length, word-aligned field that changed from `old` to `new`
/// (an address, a port pair). Lengths must match; odd or mismatched lengths leave `check` unchanged.
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    if old.len() != new.len() || !old.len().is_multiple_of(2) {
        return check;
    }
    let mut acc = u64::from(!check);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold(fold64(acc))
}
