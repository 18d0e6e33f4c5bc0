//! Shared setup of the pipeline bench and the callgrind example: 1,000 RTP->RTP flows and
//! batches of 32 G.711 packets spread across them, plus a baseline relay over std's HashMap.

use super::flow::{FlowCmd, FlowEntry, FlowKey, FlowTag, LatchMode, Leg, PayloadMap, StreamKind};
use super::pipeline::{Forward, NoSrtp, Pipeline, RxPacket, Verdict};
use super::wire::rtp::RtpPacket;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub const FLOWS: usize = 1000;
pub const BATCH: usize = 32;
/// A G.711 20 ms packet: 12-byte header + 160 bytes.
pub const PKT_LEN: usize = 172;
pub const BUF_LEN: usize = 256;

pub fn local(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 20000 + 2 * i as u16)
}

pub fn remote(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 250) as u8 + 1)),
        40000 + i as u16,
    )
}

pub fn entry(i: usize) -> FlowEntry {
    FlowEntry {
        key: FlowKey::new(local(i)),
        kind: StreamKind::Rtp,
        expected_remote: remote(i),
        latch: LatchMode::LatchOnFirst,
        srtp_in: None,
        srtp_out: None,
        egress_local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)), 30000 + 2 * i as u16),
        egress_remote: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            50000 + i as u16,
        ),
        link: None,
        payloads: vec![
            PayloadMap {
                pt_in: 0,
                pt_out: 0,
                clock_rate: 8000,
                telephone_event: false,
            },
            PayloadMap {
                pt_in: 101,
                pt_out: 96,
                clock_rate: 8000,
                telephone_event: true,
            },
        ],
        tag: FlowTag {
            call: i as u64,
            leg: Leg::A,
            stream: 0,
        },
        peer: None,
        timeout: 30_000_000_000,
        hold_timeout: 3_600_000_000_000,
        on_hold: false,
        rtcp_egress: None,
        peer_rtcp: None,
    }
}

pub fn pipeline() -> Pipeline<NoSrtp> {
    let mut p = Pipeline::new(FLOWS * 2, NoSrtp);
    let mut ev = Vec::new();
    for i in 0..FLOWS {
        p.apply(FlowCmd::Add(Box::new(entry(i))), 0, &mut ev);
    }
    p
}

/// Packet buffers: `n` packets, packet k belongs to flow `(k * 617) % FLOWS` (a stride that
/// visits every flow and defeats sequential cache prefetch).
pub fn buffers(n: usize) -> Vec<(usize, Vec<u8>)> {
    (0..n)
        .map(|k| {
            let f = (k * 617) % FLOWS;
            let mut b = vec![0u8; BUF_LEN];
            b[0] = 0x80;
            b[8..12].copy_from_slice(&(f as u32).to_be_bytes());
            (f, b)
        })
        .collect()
}

pub fn rx_batch(bufs: &mut [(usize, Vec<u8>)]) -> Vec<RxPacket<'_>> {
    bufs.iter_mut()
        .map(|(f, b)| RxPacket {
            buf: &mut b[..],
            len: PKT_LEN,
            local: local(*f),
            src: remote(*f),
        })
        .collect()
}

/// Advances sequence number and timestamp as a sender would (same cost in both variants).
pub fn advance(batch: &mut [RxPacket<'_>], seq: u16) {
    for p in batch {
        p.buf[2..4].copy_from_slice(&seq.to_be_bytes());
        p.buf[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    }
}

/// The baseline: the same relay decisions over `std::collections::HashMap` (SipHash) keyed by
/// `SocketAddr`, PT map as a list scan, plain per-flow counters.
pub struct NaiveFlow {
    expected: SocketAddr,
    egress_local: SocketAddr,
    egress_remote: SocketAddr,
    pt_map: Vec<(u8, u8)>,
    packets: u64,
    bytes: u64,
    max_seq: u16,
}

pub struct NaiveRelay {
    flows: HashMap<SocketAddr, NaiveFlow>,
}

impl NaiveRelay {
    pub fn new() -> Self {
        let mut flows = HashMap::with_capacity(FLOWS * 2);
        for i in 0..FLOWS {
            let e = entry(i);
            flows.insert(
                e.key.local,
                NaiveFlow {
                    expected: e.expected_remote,
                    egress_local: e.egress_local,
                    egress_remote: e.egress_remote,
                    pt_map: e.payloads.iter().map(|p| (p.pt_in, p.pt_out)).collect(),
                    packets: 0,
                    bytes: 0,
                    max_seq: 0,
                },
            );
        }
        NaiveRelay { flows }
    }

    pub fn process_batch(&mut self, pkts: &mut [RxPacket<'_>], out: &mut [Verdict]) -> usize {
        let mut n = 0;
        for (p, o) in pkts.iter_mut().zip(out.iter_mut()) {
            *o = match self.flows.get_mut(&p.local) {
                None => Verdict::Drop(super::pipeline::DropReason::NoFlow),
                Some(f) => match RtpPacket::new_checked(&mut p.buf[..p.len]) {
                    Err(_) => Verdict::Drop(super::pipeline::DropReason::Malformed),
                    Ok(_) if p.src != f.expected => {
                        Verdict::Drop(super::pipeline::DropReason::SourceMismatch)
                    }
                    Ok(mut r) => {
                        let pt = r.payload_type();
                        if let Some(&(_, out_pt)) = f.pt_map.iter().find(|(i, _)| *i == pt)
                            && out_pt != pt
                        {
                            r.set_payload_type(out_pt);
                        }
                        f.max_seq = f.max_seq.max(r.sequence_number());
                        f.packets += 1;
                        f.bytes += p.len as u64;
                        Verdict::Forward(Forward {
                            src: f.egress_local,
                            dst: f.egress_remote,
                            len: p.len,
                            link: None,
                        })
                    }
                },
            };
            n += 1;
        }
        n
    }
}

impl Default for NaiveRelay {
    fn default() -> Self {
        Self::new()
    }
}
