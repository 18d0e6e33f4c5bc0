//! IPv4/IPv6 + UDP headers as the packet-socket scheme sees them: parse what the kernel hands the AF_PACKET
//! socket (starting at the IP header), and build the headers the raw socket transmits (IP_HDRINCL).
//!
//! Only what a media relay needs: no IPv4 options on transmit, no IPv6 extension headers (the receive filter
//! does not accept them either), no fragments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const IPPROTO_UDP: u8 = 17;
pub const IPV4_HDR: usize = 20;
pub const IPV6_HDR: usize = 40;
pub const UDP_HDR: usize = 8;
/// Room to leave in front of a payload for the largest header we build (IPv6 + UDP).
pub const MAX_TX_HDR: usize = IPV6_HDR + UDP_HDR;

/// Why a received frame is not a UDP datagram the relay can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("shorter than its headers")]
    Short,
    #[error("not IPv4 or IPv6")]
    Version,
    #[error("not UDP")]
    NotUdp,
    #[error("IP fragment")]
    Fragment,
    #[error("inconsistent IP/UDP length")]
    Length,
}

/// Why headers could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("source and destination are of different address families")]
    FamilyMismatch,
    #[error("no room in front of the payload or payload past the buffer")]
    NoRoom,
    #[error("datagram too large for one IP packet")]
    TooBig,
}

/// A parsed IP+UDP datagram: addresses and where the payload sits in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Offset of the UDP header in the frame.
    pub udp_off: usize,
    /// Offset of the payload in the frame.
    pub payload_off: usize,
    pub payload_len: usize,
    /// UDP checksum field as received (0 = none, IPv4 only).
    pub csum: u16,
    /// IPv4 TOS / IPv6 traffic class, carried over to the forwarded packet (DSCP marking of RTP).
    pub tos: u8,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// Parse a frame that starts at the IP header (AF_PACKET SOCK_DGRAM delivers exactly that). Trailing bytes
/// past the IP total length (link-layer padding) are ignored.
pub fn parse_ip_udp(frame: &[u8]) -> Result<UdpDatagram, ParseError> {
    let first = *frame.first().ok_or(ParseError::Short)?;
    let (src_ip, dst_ip, udp_off, ip_end, tos) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < IPV4_HDR || frame.len() < ihl {
                return Err(ParseError::Short);
            }
            let total = usize::from(be16(frame, 2).ok_or(ParseError::Short)?);
            if total < ihl + UDP_HDR || total > frame.len() {
                return Err(ParseError::Length);
            }
            if frame.get(9) != Some(&IPPROTO_UDP) {
                return Err(ParseError::NotUdp);
            }
            if be16(frame, 6).ok_or(ParseError::Short)? & 0x3fff != 0 {
                return Err(ParseError::Fragment);
            }
            let s = array::<4>(frame, 12).ok_or(ParseError::Short)?;
            let d = array::<4>(frame, 16).ok_or(ParseError::Short)?;
            let tos = frame.get(1).copied().unwrap_or(0);
            (
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                ihl,
                total,
                tos,
            )
        }
        6 => {
            if frame.len() < IPV6_HDR + UDP_HDR {
                return Err(ParseError::Short);
            }
            if frame.get(6) != Some(&IPPROTO_UDP) {
                return Err(ParseError::NotUdp);
            }
            let plen = usize::from(be16(frame, 4).ok_or(ParseError::Short)?);
            let total = IPV6_HDR + plen;
            if plen < UDP_HDR || total > frame.len() {
                return Err(ParseError::Length);
            }
            let s = array::<16>(frame, 8).ok_or(ParseError::Short)?;
            let d = array::<16>(frame, 24).ok_or(ParseError::Short)?;
            let tc = (be16(frame, 0).ok_or(ParseError::Short)? >> 4) as u8;
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                IPV6_HDR,
                total,
                tc,
            )
        }
        _ => return Err(ParseError::Version),
    };
    let sport = be16(frame, udp_off).ok_or(ParseError::Short)?;
    let dport = be16(frame, udp_off + 2).ok_or(ParseError::Short)?;
    let ulen = usize::from(be16(frame, udp_off + 4).ok_or(ParseError::Short)?);
    let csum = be16(frame, udp_off + 6).ok_or(ParseError::Short)?;
    if ulen < UDP_HDR || udp_off + ulen > ip_end {
        return Err(ParseError::Length);
    }
    Ok(UdpDatagram {
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        udp_off,
        payload_off: udp_off + UDP_HDR,
        payload_len: ulen - UDP_HDR,
        csum,
        tos,
    })
}

/// One's-complement sum of `data` (as big-endian 16-bit words, odd byte padded) added to `acc`, unfolded.
pub fn sum_be(data: &[u8], mut acc: u64) -> u64 {
    let mut add = |v: u64| {
        let (s, carry) = acc.overflowing_add(v);
        acc = s + u64::from(carry);
    };
    // 64-bit words: the end-around-carry sum of 64-bit big-endian words folds to the same 16-bit sum.
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        add(w.try_into().map(u64::from_be_bytes).unwrap_or(0));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        add(u64::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [b] = rest.remainder() {
        add(u64::from(*b) << 8);
    }
    acc
}

/// Fold an unfolded sum to 16 bits.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, udp_len: usize) -> u64 {
    let acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum_be(&d.octets(), sum_be(&s.octets(), 0)),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum_be(&d.octets(), sum_be(&s.octets(), 0)),
        _ => 0,
    };
    acc + u64::from(IPPROTO_UDP) + udp_len as u64
}

/// The UDP checksum of a datagram whose UDP header (checksum field zero) and payload are `udp`.
pub fn udp_checksum(src: IpAddr, dst: IpAddr, udp: &[u8]) -> u16 {
    let c = !fold(sum_be(udp, pseudo_sum(src, dst, udp.len())));
    // 0 means "no checksum" in IPv4 and is forbidden in IPv6: transmit all-ones instead (RFC 768/8200).
    if c == 0 { 0xffff } else { c }
}

/// Check the received UDP checksum in software. A zero checksum is accepted for IPv4 (sender sent none) and
/// rejected for IPv6.
pub fn udp_checksum_ok(frame: &[u8], d: &UdpDatagram) -> bool {
    if d.csum == 0 {
        return d.src.is_ipv4();
    }
    let udp_len = UDP_HDR + d.payload_len;
    match frame.get(d.udp_off..d.udp_off + udp_len) {
        Some(udp) => fold(sum_be(udp, pseudo_sum(d.src.ip(), d.dst.ip(), udp_len))) == 0xffff,
        None => false,
    }
}

/// Write IP and UDP headers immediately in front of `buf[payload_off..payload_off + payload_len]` and return
/// the offset where the packet starts. IPv4: identification 0 and header checksum 0, which the kernel fills in
/// for IP_HDRINCL raw sockets; the UDP checksum is computed here.
pub fn write_headers(
    buf: &mut [u8],
    payload_off: usize,
    payload_len: usize,
    src: SocketAddr,
    dst: SocketAddr,
    tos: u8,
) -> Result<usize, BuildError> {
    let hdr = match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => IPV4_HDR + UDP_HDR,
        (IpAddr::V6(_), IpAddr::V6(_)) => IPV6_HDR + UDP_HDR,
        _ => return Err(BuildError::FamilyMismatch),
    };
    let udp_len = UDP_HDR + payload_len;
    if hdr + payload_len > 0xffff {
        return Err(BuildError::TooBig);
    }
    let start = payload_off.checked_sub(hdr).ok_or(BuildError::NoRoom)?;
    let end = payload_off + payload_len;
    let pkt = buf.get_mut(start..end).ok_or(BuildError::NoRoom)?;
    let udp_off = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (hdr + payload_len) as u16;
            let ip: [u8; IPV4_HDR] = {
                let mut h = [0u8; IPV4_HDR];
                h[0] = 0x45;
                h[1] = tos;
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[8] = 64;
                h[9] = IPPROTO_UDP;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                h
            };
            pkt[..IPV4_HDR].copy_from_slice(&ip);
            IPV4_HDR
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = [0u8; IPV6_HDR];
            let vtc = 0x6000_0000u32 | (u32::from(tos) << 20);
            h[0..4].copy_from_slice(&vtc.to_be_bytes());
            h[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            h[6] = IPPROTO_UDP;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            pkt[..IPV6_HDR].copy_from_slice(&h);
            IPV6_HDR
        }
        _ => return Err(BuildError::FamilyMismatch),
    };
    let udp = &mut pkt[udp_off..];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let c = udp_checksum(src.ip(), dst.ip(), udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 style reference: 16-bit words, folded at the end.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for w in data.chunks(2) {
            let v = u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]);
            acc += u32::from(v);
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn sum_matches_16_bit_reference_for_all_lengths() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(151) ^ 0xa5) as u8)
            .collect();
        for len in 0..data.len() {
            assert_eq!(
                fold(sum_be(&data[..len], 0)),
                reference_sum(&data[..len]),
                "len {len}"
            );
        }
        let ones = [0xffu8; 64];
        assert_eq!(fold(sum_be(&ones, 0)), 0xffff);
    }

    /// A hand-built datagram 10.0.0.1:40000 -> 10.0.0.2:5004, payload "hello\n", checksum field zero.
    fn known_v4() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x22, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 0, 0, 1,
            10, 0, 0, 2, 0x9c, 0x40, 0x13, 0x8c, 0x00, 0x0e, 0x00, 0x00,
        ];
        p.extend_from_slice(b"hello\n");
        p
    }

    #[test]
    fn checksum_of_known_datagram() {
        // Hand computation: pseudo 0a00+0001+0a00+0002+0011+000e, udp 9c40+138c+000e, payload
        // 6865+6c6c+6f0a = 0x224c8 -> 0x24ca -> !0xdb35.
        let p = known_v4();
        let c = udp_checksum(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            &p[20..],
        );
        let manual: u32 = 0x0a00
            + 0x0001
            + 0x0a00
            + 0x0002
            + 0x0011
            + 0x000e
            + 0x9c40
            + 0x138c
            + 0x000e
            + 0x6865
            + 0x6c6c
            + 0x6f0a;
        let folded = ((manual & 0xffff) + (manual >> 16)) as u16;
        assert_eq!(c, !folded);
        let mut with = p.clone();
        with[26..28].copy_from_slice(&c.to_be_bytes());
        let d = parse_ip_udp(&with).unwrap();
        assert!(udp_checksum_ok(&with, &d));
        with[30] ^= 1;
        assert!(!udp_checksum_ok(&with, &d));
    }

    #[test]
    fn parse_v4() {
        let mut p = known_v4();
        p.extend_from_slice(&[0; 6]); // link-layer padding past the IP total length
        let d = parse_ip_udp(&p).unwrap();
        assert_eq!(d.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(d.dst, "10.0.0.2:5004".parse().unwrap());
        assert_eq!((d.udp_off, d.payload_off, d.payload_len), (20, 28, 6));
        assert_eq!(&p[d.payload_off..d.payload_off + d.payload_len], b"hello\n");
    }

    #[test]
    fn parse_rejects_bad_frames() {
        let p = known_v4();
        assert_eq!(parse_ip_udp(&[]), Err(ParseError::Short));
        assert_eq!(parse_ip_udp(&p[..10]), Err(ParseError::Short));
        let mut q = p.clone();
        q[9] = 6;
        assert_eq!(parse_ip_udp(&q), Err(ParseError::NotUdp));
        let mut q = p.clone();
        q[6] = 0x20; // more fragments
        assert_eq!(parse_ip_udp(&q), Err(ParseError::Fragment));
        let mut q = p.clone();
        q[3] = 0xff; // total length past the frame
        assert_eq!(parse_ip_udp(&q), Err(ParseError::Length));
        let mut q = p.clone();
        q[25] = 0x40; // UDP length past the IP packet
        assert_eq!(parse_ip_udp(&q), Err(ParseError::Length));
        let mut q = p.clone();
        q[0] = 0x75;
        assert_eq!(parse_ip_udp(&q), Err(ParseError::Version));
        let mut q = p;
        q[0] = 0x44; // IHL 16 bytes
        assert_eq!(parse_ip_udp(&q), Err(ParseError::Short));
    }

    #[test]
    fn parse_never_panics_on_truncations_and_mutations() {
        let p = known_v4();
        for len in 0..p.len() {
            let _ = parse_ip_udp(&p[..len]);
        }
        for i in 0..p.len() {
            for v in [0u8, 0x0f, 0x46, 0x60, 0xff] {
                let mut q = p.clone();
                q[i] = v;
                if let Ok(d) = parse_ip_udp(&q) {
                    let _ = udp_checksum_ok(&q, &d);
                }
            }
        }
    }

    #[test]
    fn build_then_parse_round_trips_v4_and_v6() {
        for (src, dst) in [
            ("192.0.2.1:30000", "198.51.100.7:40002"),
            ("[2001:db8::1]:30000", "[2001:db8:1::7]:40002"),
        ] {
            let src: SocketAddr = src.parse().unwrap();
            let dst: SocketAddr = dst.parse().unwrap();
            let mut buf = [0u8; 256];
            let off = 100;
            for (i, b) in buf[off..off + 33].iter_mut().enumerate() {
                *b = i as u8;
            }
            let start = write_headers(&mut buf, off, 33, src, dst, 0xb8).unwrap();
            let frame = &buf[start..off + 33];
            let d = parse_ip_udp(frame).unwrap();
            assert_eq!((d.src, d.dst, d.payload_len, d.tos), (src, dst, 33, 0xb8));
            assert_ne!(d.csum, 0);
            assert!(udp_checksum_ok(frame, &d));
            assert_eq!(&frame[d.payload_off..], &buf[off..off + 33]);
        }
    }

    #[test]
    fn build_refuses_what_it_cannot_do() {
        let mut buf = [0u8; 64];
        let v4: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(
            write_headers(&mut buf, 40, 4, v4, v6, 0),
            Err(BuildError::FamilyMismatch)
        );
        assert_eq!(
            write_headers(&mut buf, 10, 4, v4, v4, 0),
            Err(BuildError::NoRoom)
        );
        assert_eq!(
            write_headers(&mut buf, 40, 40, v4, v4, 0),
            Err(BuildError::NoRoom)
        );
        assert_eq!(
            write_headers(&mut buf, 40, 4, v6, v6, 0),
            Err(BuildError::NoRoom)
        );
        assert_eq!(
            write_headers(&mut buf, 40, 70000, v4, v4, 0),
            Err(BuildError::TooBig)
        );
    }
}
