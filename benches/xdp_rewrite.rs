//! Per-packet cost of the egress header rewrite: RFC 1624 incremental checksum patching (what the worker
//! does) against recomputing the IPv4 header and UDP checksums from scratch (the baseline), on a 200-byte
//! IPv4 RTP packet and a 1200-byte IPv6 one. `cargo bench --bench xdp_rewrite -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::fastpath::xdp::rewrite::{
    L2Header, MacAddr, Payload, Rewrite, UdpLayout, ipv4_header_checksum, parse_udp, rewrite_udp,
    udp_checksum,
};

fn frame(v6: bool, payload: usize) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = if v6 {
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9).into(),
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1).into(),
        )
    } else {
        (
            Ipv4Addr::new(203, 0, 113, 9).into(),
            Ipv4Addr::new(192, 0, 2, 1).into(),
        )
    };
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    let mut u = vec![0x9c, 0x40, 0x75, 0x30];
    u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..payload).map(|i| i as u8));
    let c = udp_checksum(s, d, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, 0xb8];
            ip.extend_from_slice(&((20 + u.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
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

/// The baseline: same field writes, checksums recomputed over the header and the whole datagram.
fn rewrite_full(buf: &mut [u8], l: &UdpLayout, rw: &Rewrite) -> usize {
    buf[0..6].copy_from_slice(&rw.l2.dst.0);
    buf[6..12].copy_from_slice(&rw.l2.src.0);
    match (rw.src.ip(), rw.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let h = &mut buf[l.l3_off..l.l4_off];
            h[8] -= 1;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            h[10..12].copy_from_slice(&[0, 0]);
            let c = ipv4_header_checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let h = &mut buf[l.l3_off..l.l4_off];
            h[7] -= 1;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
        }
        _ => unreachable!(),
    }
    let end = l.frame_len();
    let u = &mut buf[l.l4_off..end];
    u[0..2].copy_from_slice(&rw.src.port().to_be_bytes());
    u[2..4].copy_from_slice(&rw.dst.port().to_be_bytes());
    u[6..8].copy_from_slice(&[0, 0]);
    let c = udp_checksum(rw.src.ip(), rw.dst.ip(), u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    end
}

fn bench(c: &mut Criterion) {
    let l2 = L2Header {
        dst: MacAddr([2, 0, 0, 0, 1, 1]),
        src: MacAddr([2, 0, 0, 0, 2, 2]),
        vlan_tci: None,
    };
    let cases = [
        (
            "ipv4_200B",
            frame(false, 172),
            Rewrite {
                l2,
                src: SocketAddr::from((Ipv4Addr::new(198, 51, 100, 1), 31000)),
                dst: SocketAddr::from((Ipv4Addr::new(198, 51, 100, 77), 5004)),
            },
        ),
        (
            "ipv6_1200B",
            frame(true, 1152),
            Rewrite {
                l2,
                src: SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1), 31000)),
                dst: SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 77), 5004)),
            },
        ),
    ];
    let mut g = c.benchmark_group("xdp_rewrite");
    for (name, f, rw) in &cases {
        let l = parse_udp(f).unwrap();
        // TTL is refreshed every iteration so the rewrite never runs out of it.
        let ttl_off = l.l3_off + if l.v6 { 7 } else { 8 };
        let mut buf = f.clone();
        g.bench_function(format!("{name}/parse+incremental"), |b| {
            b.iter(|| {
                buf[ttl_off] = 64;
                let l = parse_udp(black_box(&buf)).unwrap();
                black_box(rewrite_udp(&mut buf, &l, rw, Payload::Unchanged).unwrap())
            })
        });
        let mut buf = f.clone();
        g.bench_function(format!("{name}/parse+full_recompute"), |b| {
            b.iter(|| {
                buf[ttl_off] = 64;
                let l = parse_udp(black_box(&buf)).unwrap();
                black_box(rewrite_full(&mut buf, &l, rw))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
