//! Check function shared by the `xdp_rewrite` fuzz target (fuzz/fuzz_targets/xdp_rewrite.rs, nightly
//! cargo-fuzz) and the stable smoke test (tests/fuzz_smoke_xdp.rs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::rewrite::{
    IPV4_HDR_LEN, L2Header, MacAddr, Payload, Rewrite, UdpLayout, ipv4_header_checksum, parse_udp,
    rewrite_udp, udp_checksum,
};

fn addrs(frame: &[u8], l: &UdpLayout) -> Option<(IpAddr, IpAddr)> {
    let ip = frame.get(l.l3_off..l.l4_off)?;
    if l.v6 {
        let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
        let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
        Some((IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d))))
    } else {
        let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
        let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
        Some((IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d))))
    }
}

/// Whether the UDP checksum verifies (`None`: IPv4 datagram sent without checksum).
fn udp_ok(frame: &[u8], l: &UdpLayout) -> Option<bool> {
    let (s, d) = addrs(frame, l)?;
    let udp = frame.get(l.l4_off..l.frame_len())?;
    let stored = u16::from_be_bytes([*udp.get(6)?, *udp.get(7)?]);
    if stored == 0 && !l.v6 {
        return None;
    }
    Some(udp_checksum(s, d, udp) == stored)
}

/// Parses `data[1..]` as a frame and, when it parses, rewrites it with parameters chosen by `data[0]`;
/// panics if a rewritten frame does not parse, carries the wrong addresses, or breaks a checksum that was
/// valid before (or that the rewrite computed from scratch).
pub fn check_rewrite(data: &[u8]) {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let Ok(layout) = parse_udp(frame) else { return };
    let ip_was_ok = layout.v6
        || frame
            .get(layout.l3_off..layout.l4_off)
            .is_some_and(|h| ipv4_header_checksum(h) == 0);
    let udp_was = udp_ok(frame, &layout);
    let v6_out = sel & 1 != 0;
    let vlan = (sel & 2 != 0).then_some(0x0123);
    let replaced = sel & 4 != 0;
    let (src, dst) = if v6_out {
        (
            SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 31000)),
            SocketAddr::from((
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(sel)),
                5004,
            )),
        )
    } else {
        (
            SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 31000)),
            SocketAddr::from((Ipv4Addr::new(198, 51, 100, sel), 5004)),
        )
    };
    let rw = Rewrite {
        l2: L2Header {
            dst: MacAddr([2, 0, 0, 0, 0, 1]),
            src: MacAddr([2, 0, 0, 0, 0, 2]),
            vlan_tci: vlan,
        },
        src,
        dst,
    };
    let mut buf = frame.to_vec();
    buf.resize(frame.len() + 64, 0);
    let payload = if replaced {
        Payload::Replaced {
            len: layout.payload_len + usize::from(sel >> 4),
        }
    } else {
        Payload::Unchanged
    };
    let Ok(n) = rewrite_udp(&mut buf, &layout, &rw, payload) else {
        return;
    };
    let out = buf.get(..n).expect("length within buffer");
    let l = parse_udp(out).expect("a rewritten frame parses");
    assert_eq!(l.v6, v6_out);
    assert_eq!(l.l3_off, rw.l2.len());
    assert_eq!(addrs(out, &l), Some((src.ip(), dst.ip())));
    let rebuilt = v6_out != layout.v6 || rw.l2.len() != layout.l3_off;
    if !l.v6 && (ip_was_ok || rebuilt) {
        assert_eq!(
            ipv4_header_checksum(
                &out[l.l3_off..l.l3_off + (l.l4_off - l.l3_off).max(IPV4_HDR_LEN)]
            ),
            0
        );
    }
    match udp_ok(out, &l) {
        Some(ok) => {
            if rebuilt || replaced || udp_was == Some(true) || (udp_was.is_none() && l.v6) {
                assert!(ok, "UDP checksum verifies after rewrite");
            }
        }
        None => assert!(
            !rebuilt && !replaced && udp_was.is_none(),
            "checksum dropped only if it was absent"
        ),
    }
}
