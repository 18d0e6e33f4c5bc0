use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// 802.1Q-tagged Ethernet + IPv4 + UDP + RTP (PCMU, 160 bytes of 0xff). Checksums computed
/// independently (Python, RFC 1071): IPv4 0x3ae7, UDP 0xee01.
fn capture_v4() -> Vec<u8> {
    let hdr = "02000000000202000000000181000064080045b800c81234400040113ae7c000020ac63364149c404e2000b4ee01\
               808003e80002710011223344";
    let mut f = hex(hdr);
    f.extend(std::iter::repeat_n(0xffu8, 160));
    f
}

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|c| c.is_ascii_hexdigit()).collect();
    s.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn parses_tagged_ipv4_udp_rtp_capture() {
    let f = capture_v4();
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    assert_eq!(eth.vlan_id(), Some(100));
    assert_eq!(eth.ethertype(), EtherType::Ipv4);
    assert_eq!(eth.src_addr(), [2, 0, 0, 0, 0, 1]);
    assert_eq!(eth.header_len(), 18);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 0, 2, 10));
    assert_eq!(ip.dst_addr(), Ipv4Addr::new(198, 51, 100, 20));
    assert_eq!(ip.protocol(), ipv4::PROTO_UDP);
    assert_eq!(ip.checksum(), 0x3ae7);
    assert!(ip.verify_checksum());
    assert!(ip.dont_frag() && !ip.is_fragment());
    assert_eq!(ip.dscp_ecn(), 0xb8);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (40000, 20000));
    assert_eq!(udp.checksum(), 0xee01);
    assert!(udp.verify_checksum(ip.src_addr().into(), ip.dst_addr().into()));
    assert!(!udp.verify_checksum(Ipv4Addr::new(192, 0, 2, 11).into(), ip.dst_addr().into()));
    let rtp = RtpPacket::new_checked_plain(udp.payload()).unwrap();
    assert_eq!(rtp.version(), 2);
    assert!(rtp.marker());
    assert_eq!(rtp.payload_type(), 0);
    assert_eq!(rtp.sequence_number(), 1000);
    assert_eq!(rtp.timestamp(), 160_000);
    assert_eq!(rtp.ssrc(), 0x1122_3344);
    assert_eq!(rtp.header_len(), 12);
    assert_eq!(rtp.payload().len(), 160);
}

#[test]
fn known_ipv4_header_checksum() {
    // The classic RFC 1071 worked example header (checksum 0xb861).
    let h = hex("450000730000400040110000c0a80001c0a800c7");
    let mut b = h.clone();
    b.resize(0x73, 0);
    let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
    p.fill_checksum();
    assert_eq!(p.checksum(), 0xb861);
    assert!(p.verify_checksum());
}

#[test]
fn fill_checksums_reproduce_capture() {
    let f = capture_v4();
    let mut g = f.clone();
    {
        let mut ip = Ipv4Packet::new_checked(&mut g[18..]).unwrap();
        ip.set_checksum(0);
        ip.fill_checksum();
        let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
        let mut udp = UdpPacket::new_checked(ip.payload_mut()).unwrap();
        udp.set_checksum(0);
        udp.fill_checksum(s, d);
    }
    assert_eq!(f, g);
}

#[test]
fn ipv6_udp_checksum() {
    let f = capture_v4();
    let udp_v4 = &f[18 + 20..];
    let mut pkt = vec![0u8; 40];
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut pkt[..]);
        ip.set_version_tc_flow(0, 0x12345);
        ip.set_payload_len(udp_v4.len() as u16);
        ip.set_next_header(17);
        ip.set_hop_limit(64);
        ip.set_src_addr("2001:db8::1".parse().unwrap());
        ip.set_dst_addr("2001:db8::2".parse().unwrap());
    }
    pkt.extend_from_slice(udp_v4);
    let mut ip = Ipv6Packet::new_checked(&mut pkt[..]).unwrap();
    assert_eq!(ip.flow_label(), 0x12345);
    let s: Ipv6Addr = ip.src_addr();
    let d: Ipv6Addr = ip.dst_addr();
    let mut udp = UdpPacket::new_checked(ip.payload_mut()).unwrap();
    udp.set_src_port(30000);
    udp.set_dst_port(30002);
    udp.fill_checksum(s.into(), d.into());
    assert_eq!(udp.checksum(), 0x7edd, "independently computed");
    assert!(udp.verify_checksum(s.into(), d.into()));
}

/// xorshift64*: deterministic property-test input without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn addr(&mut self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::from(
                (u128::from(self.next()) << 64) | u128::from(self.next()),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.next() as u32))
        }
    }
}

#[test]
fn incremental_update_equals_full_recompute() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..5000 {
        let v6 = i % 2 == 1;
        let len = 8 + (r.next() % 300) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
        let (s0, d0) = (r.addr(v6), r.addr(v6));
        let mut u = UdpPacket::new_unchecked(&mut d[..]);
        u.set_len(len as u16);
        u.fill_checksum(s0, d0);
        let (s1, d1) = (r.addr(v6), r.addr(v6));
        let (sp, dp) = (r.next() as u16, r.next() as u16);
        u.rewrite_incremental((s0, d0), (s1, d1), sp, dp);
        let inc = u.checksum();
        assert!(u.verify_checksum(s1, d1), "case {i}");
        u.fill_checksum(s1, d1);
        // 0x0000 and 0xffff are the same ones'-complement value; UDP transmits 0xffff.
        assert_eq!(inc, u.checksum(), "case {i}");
        // RFC 1624 on the IPv4 header after a TTL/address change.
        let mut h = [0u8; 20];
        for b in h.iter_mut() {
            *b = r.next() as u8;
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut h[..]);
        ip.set_version_and_header_len(20);
        ip.set_total_len(20);
        ip.fill_checksum();
        let old_src = ip.src_addr();
        let new_src = Ipv4Addr::from(r.next() as u32);
        let c = checksum::update_bytes(ip.checksum(), &old_src.octets(), &new_src.octets());
        ip.set_src_addr(new_src);
        ip.set_checksum(c);
        assert!(ip.verify_checksum(), "ipv4 case {i}");
    }
}

#[test]
fn zero_udp_checksum_over_ipv4_stays_zero() {
    let mut d = [0u8; 20];
    let mut u = UdpPacket::new_unchecked(&mut d[..]);
    u.set_len(20);
    let a: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
    assert!(u.verify_checksum(a, a));
    u.rewrite_incremental((a, a), (a, a), 1, 2);
    assert_eq!(u.checksum(), 0);
    assert_eq!((u.src_port(), u.dst_port()), (1, 2));
}

#[test]
fn rtp_with_csrc_extension_and_padding() {
    // V=2 P=1 X=1 CC=2, M=0 PT=96, seq 0xffff, ts 1, ssrc 2, csrc 3,4, ext profile 0xbede len 1.
    let mut b = hex("b2 60 ffff 00000001 00000002 00000003 00000004 bede0001 10aa0000");
    b.extend_from_slice(&[1, 2, 3, 0, 0, 3]);
    let p = RtpPacket::new_checked_plain(&b[..]).unwrap();
    assert!(p.padding() && p.extension());
    assert_eq!(p.csrc_count(), 2);
    assert_eq!(p.csrc(1), Some(4));
    assert_eq!(p.csrc(2), None);
    assert_eq!(
        p.extension_header(),
        Some((0xbede, &[0x10, 0xaa, 0, 0][..]))
    );
    assert_eq!(p.header_len(), 12 + 8 + 8);
    assert_eq!(p.padding_len(), 3);
    assert_eq!(p.payload(), &[1, 2, 3]);
    let mut c = b.clone();
    let mut q = RtpPacket::new_checked(&mut c[..]).unwrap();
    q.set_payload_type(101);
    q.set_marker(true);
    q.set_sequence_number(7);
    assert_eq!(
        (q.payload_type(), q.marker(), q.sequence_number()),
        (101, true, 7)
    );
    // Bad padding count, truncated extension, wrong version.
    let mut bad = b.clone();
    *bad.last_mut().unwrap() = 200;
    assert_eq!(
        RtpPacket::new_checked_plain(&bad[..]).err(),
        Some(WireError::Malformed)
    );
    assert_eq!(
        RtpPacket::new_checked(&b[..22]).err(),
        Some(WireError::Truncated)
    );
    assert_eq!(
        RtpPacket::new_checked(&[0x40u8; 12][..]).err(),
        Some(WireError::Malformed)
    );
    assert!(rtp::is_rtcp(&[0x80, 200]) && !rtp::is_rtcp(&[0x80, 0x80]));
}

#[test]
fn rtcp_compound_sr_sdes_bye() {
    // SR with one report block, SDES with one CNAME chunk, BYE.
    let b = hex(
        "81c8000c 11223344 e1234567 89abcdef 00010000 00000064 00003e80 \
         55667788 05000010 0001ffff 00000020 12345678 00000100 \
         81ca0003 11223344 01047573 65720000 \
         81cb0001 11223344",
    );
    assert_eq!(RtcpCompound::validate(&b), Ok(3));
    let pkts: Vec<_> = RtcpCompound::new(&b).map(|p| p.unwrap()).collect();
    assert_eq!(pkts[0].packet_type(), RtcpType::SenderReport);
    assert_eq!(pkts[0].ssrc(), Some(0x1122_3344));
    let (ntp, rtp_ts, pc, oc) = pkts[0].sender_info().unwrap();
    assert_eq!(
        (ntp, rtp_ts, pc, oc),
        (0xe123_4567_89ab_cdef, 0x10000, 100, 16000)
    );
    let rb = pkts[0].report_block(0).unwrap();
    assert_eq!(rb.ssrc(), 0x5566_7788);
    assert_eq!(rb.fraction_lost(), 5);
    assert_eq!(rb.cumulative_lost(), 16);
    assert_eq!(rb.extended_highest_seq(), 0x1ffff);
    assert_eq!(rb.jitter(), 32);
    assert!(pkts[0].report_block(1).is_none());
    assert_eq!(pkts[1].packet_type(), RtcpType::SourceDescription);
    assert_eq!(pkts[1].ssrc(), Some(0x1122_3344));
    assert_eq!(pkts[2].packet_type(), RtcpType::Goodbye);
    // Length beyond the buffer; first packet not SR/RR.
    assert_eq!(
        RtcpCompound::validate(&b[..b.len() - 2]),
        Err(WireError::Truncated)
    );
    assert_eq!(
        RtcpCompound::validate(&b[52 + 16..]),
        Err(WireError::Malformed)
    );
}

#[test]
fn telephone_event_payload() {
    let b = hex("05 8a 0320");
    let e = TelephoneEvent::new_checked(&b[..]).unwrap();
    assert_eq!(
        (e.event(), e.end(), e.volume(), e.duration()),
        (5, true, 10, 800)
    );
    assert_eq!(dtmf::dtmf_char(11), Some('#'));
    assert_eq!(dtmf::dtmf_char(12), Some('A'));
    assert_eq!(dtmf::dtmf_char(17), None);
    let mut w = [0u8; 4];
    let mut t = TelephoneEvent::new_unchecked(&mut w[..]);
    t.set_event(5);
    t.set_end_volume(true, 10);
    t.set_duration(800);
    assert_eq!(&w[..], &b[..]);
    assert!(TelephoneEvent::new_checked(&b[..3]).is_err());
}

#[test]
fn ethernet_untagged_and_setters() {
    let mut f = capture_v4();
    f.drain(12..16);
    let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
    assert_eq!(e.vlan_id(), None);
    assert_eq!(e.header_len(), 14);
    assert_eq!(e.ethertype(), EtherType::Ipv4);
    e.set_dst_addr([1, 2, 3, 4, 5, 6]);
    assert_eq!(e.dst_addr(), [1, 2, 3, 4, 5, 6]);
    assert!(
        Ipv4Packet::new_checked(e.payload())
            .unwrap()
            .verify_checksum()
    );
    assert!(EthernetFrame::new_checked(&[0u8; 13][..]).is_err());
    let mut short_tag = [0u8; 16];
    short_tag[12] = 0x81;
    assert!(EthernetFrame::new_checked(&short_tag[..]).is_err());
}

#[test]
fn ipv4_with_options() {
    // IHL 6: one 4-byte option (NOP NOP NOP EOL), total 24 + 8 (UDP header only).
    let mut b = hex("46000020 abcd0000 40110000 0a000001 0a000002 01010100 1f40 0fa0 0008 0000");
    let mut ip = Ipv4Packet::new_checked(&mut b[..]).unwrap();
    assert_eq!(ip.header_len(), 24);
    assert_eq!(ip.options(), &[1, 1, 1, 0]);
    ip.fill_checksum();
    assert!(ip.verify_checksum());
    assert_eq!(ip.payload().len(), 8);
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((u.src_port(), u.dst_port()), (8000, 4000));
    // IHL below 5, total length beyond the buffer, fragments.
    assert_eq!(
        Ipv4Packet::new_checked(&hex("44000014 00000000 40110000 0a000001 0a000002")[..]).err(),
        Some(WireError::Malformed)
    );
    assert_eq!(
        Ipv4Packet::new_checked(&hex("45000030 00000000 40110000 0a000001 0a000002")[..]).err(),
        Some(WireError::Truncated)
    );
    let frag = hex("45000014 00002001 40110000 0a000001 0a000002");
    assert!(Ipv4Packet::new_checked(&frag[..]).unwrap().is_fragment());
}
