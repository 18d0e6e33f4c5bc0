//! Tests of the flow model, queues, port allocator and pipeline.

use super::pipeline::EventSink;
use super::*;
use std::net::SocketAddr;
use std::sync::Arc;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// A toy SRTP: XOR the payload with a key byte and append a 4-byte additive tag, so that
/// authentication failure, growth on protect and key identity are all observable.
struct XorSrtp(u8);

impl XorSrtp {
    fn tag(b: &[u8]) -> [u8; 4] {
        let s = b
            .iter()
            .fold(0u32, |a, &x| a.wrapping_mul(31).wrapping_add(u32::from(x)));
        s.to_be_bytes()
    }
    fn protect(&self, hdr: usize, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if buf.len() < len + 4 || len < hdr {
            return Err(SrtpError::BufferTooSmall);
        }
        for b in &mut buf[hdr..len] {
            *b ^= self.0;
        }
        let t = Self::tag(&buf[..len]);
        buf[len..len + 4].copy_from_slice(&t);
        Ok(len + 4)
    }
    fn unprotect(&self, hdr: usize, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len < hdr + 4 {
            return Err(SrtpError::Malformed);
        }
        let n = len - 4;
        if Self::tag(&buf[..n]) != buf[n..len] {
            return Err(SrtpError::Auth);
        }
        for b in &mut buf[hdr..n] {
            *b ^= self.0;
        }
        Ok(n)
    }
}

impl SrtpTransform for XorSrtp {
    fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.unprotect(12, buf, len)
    }
    fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.protect(12, buf, len)
    }
    fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.unprotect(8, buf, len)
    }
    fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.protect(8, buf, len)
    }
}

struct XorFactory;
impl SrtpFactory for XorFactory {
    type Transform = XorSrtp;
    fn create(&mut self, k: &SrtpKeying) -> Result<XorSrtp, SrtpError> {
        match (k.suite.as_str(), k.inline_key.as_bytes().first()) {
            ("TEST_XOR", Some(&b)) => Ok(XorSrtp(b)),
            _ => Err(SrtpError::Key),
        }
    }
}

fn entry(local: &str, egress_local: &str, remote_expected: &str, egress_remote: &str) -> FlowEntry {
    FlowEntry {
        key: FlowKey::new(sa(local)),
        kind: StreamKind::Rtp,
        expected_remote: sa(remote_expected),
        latch: LatchMode::Off,
        srtp_in: None,
        srtp_out: None,
        egress_local: sa(egress_local),
        egress_remote: sa(egress_remote),
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
            call: 7,
            leg: Leg::A,
            stream: 0,
        },
        peer: None,
        timeout: SEC,
        hold_timeout: 10 * SEC,
        on_hold: false,
        rtcp_egress: None,
        peer_rtcp: None,
    }
}

fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
    b[2..4].copy_from_slice(&seq.to_be_bytes());
    b[4..8].copy_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// Runs one packet through `p` with 64 bytes of tailroom; returns the verdict and output bytes.
fn run<F: SrtpFactory>(
    p: &mut Pipeline<F>,
    now: u64,
    local: &str,
    src: &str,
    pkt: &[u8],
    ev: &mut Vec<MediaEvent>,
) -> (Verdict, Vec<u8>) {
    let mut buf = pkt.to_vec();
    buf.resize(pkt.len() + 64, 0);
    let mut rx = RxPacket {
        buf: &mut buf,
        len: pkt.len(),
        local: sa(local),
        src: sa(src),
    };
    let v = p.process(now, &mut rx, ev);
    let n = match v {
        Verdict::Forward(f) => f.len,
        Verdict::Drop(_) => pkt.len(),
    };
    (v, buf[..n].to_vec())
}

#[test]
fn forwards_with_egress_addresses_and_counts_no_flow() {
    let mut p = Pipeline::new(16, NoSrtp);
    let mut ev = Vec::new();
    p.apply(
        FlowCmd::Add(Box::new(entry(
            "10.0.0.1:20000",
            "10.0.1.1:30000",
            "192.0.2.10:4000",
            "198.51.100.20:5004",
        ))),
        0,
        &mut ev,
    );
    let pkt = rtp(0, 1, 160, &[0xff; 160]);
    let (v, out) = run(
        &mut p,
        MS,
        "10.0.0.1:20000",
        "192.0.2.10:4000",
        &pkt,
        &mut ev,
    );
    assert_eq!(
        v,
        Verdict::Forward(Forward {
            src: sa("10.0.1.1:30000"),
            dst: sa("198.51.100.20:5004"),
            len: 172,
            link: None
        })
    );
    assert_eq!(out, pkt);
    let (v, _) = run(
        &mut p,
        MS,
        "10.0.0.1:20002",
        "192.0.2.10:4000",
        &pkt,
        &mut ev,
    );
    assert_eq!(v, Verdict::Drop(DropReason::NoFlow));
    let (v, _) = run(
        &mut p,
        MS,
        "10.0.0.1:20000",
        "192.0.2.10:4000",
        &pkt[..5],
        &mut ev,
    );
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    let c = p.counters().snapshot();
    assert_eq!((c.rx_packets, c.forwarded, c.forwarded_bytes), (3, 1, 172));
    assert_eq!(c.drop_count(DropReason::NoFlow), 1);
    assert_eq!(c.drop_count(DropReason::Malformed), 1);
    assert_eq!(c.flows, 1);
}

#[test]
fn latches_nat_rewritten_source_and_updates_peer() {
    let mut p = Pipeline::new(16, NoSrtp);
    let mut ev = Vec::new();
    let mut a = entry(
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "192.0.2.10:4000",
        "198.51.100.20:5004",
    );
    a.latch = LatchMode::LatchOnFirst;
    a.peer = Some(FlowKey::new(sa("10.0.1.1:30000")));
    let mut b = entry(
        "10.0.1.1:30000",
        "10.0.0.1:20000",
        "198.51.100.20:5004",
        "192.0.2.10:4000",
    );
    b.tag.leg = Leg::B;
    p.apply(FlowCmd::Add(Box::new(a)), 0, &mut ev);
    p.apply(FlowCmd::Add(Box::new(b)), 0, &mut ev);
    let pkt = rtp(0, 1, 160, &[0xff; 160]);
    // The SDP said 192.0.2.10:4000, the NAT rewrote the port.
    let (v, _) = run(
        &mut p,
        MS,
        "10.0.0.1:20000",
        "203.0.113.5:61000",
        &pkt,
        &mut ev,
    );
    assert!(matches!(v, Verdict::Forward(_)));
    let key = FlowKey::new(sa("10.0.0.1:20000"));
    assert_eq!(
        ev,
        vec![MediaEvent::Latched {
            key,
            addr: sa("203.0.113.5:61000"),
            tag: FlowTag {
                call: 7,
                leg: Leg::A,
                stream: 0
            }
        }]
    );
    assert_eq!(p.latched(&key), Some(sa("203.0.113.5:61000")));
    // B's media now goes to the latched address at once.
    let (v, _) = run(
        &mut p,
        2 * MS,
        "10.0.1.1:30000",
        "198.51.100.20:5004",
        &pkt,
        &mut ev,
    );
    match v {
        Verdict::Forward(f) => assert_eq!(f.dst, sa("203.0.113.5:61000")),
        other => panic!("{other:?}"),
    }
    // Another source after latching is dropped and counted.
    let (v, _) = run(
        &mut p,
        3 * MS,
        "10.0.0.1:20000",
        "203.0.113.9:61000",
        &pkt,
        &mut ev,
    );
    assert_eq!(v, Verdict::Drop(DropReason::SourceMismatch));
    assert_eq!(
        p.counters()
            .snapshot()
            .drop_count(DropReason::SourceMismatch),
        1
    );
    assert_eq!(p.counters().snapshot().latched, 1);
}

#[test]
fn strict_mode_drops_other_sources() {
    let mut p = Pipeline::new(16, NoSrtp);
    let mut ev = Vec::new();
    let mut a = entry(
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "192.0.2.10:4000",
        "198.51.100.20:5004",
    );
    a.latch = LatchMode::Strict;
    p.apply(FlowCmd::Add(Box::new(a)), 0, &mut ev);
    let pkt = rtp(0, 1, 160, &[0xff; 160]);
    let (v, _) = run(
        &mut p,
        MS,
        "10.0.0.1:20000",
        "203.0.113.5:61000",
        &pkt,
        &mut ev,
    );
    assert_eq!(v, Verdict::Drop(DropReason::SourceMismatch));
    let (v, _) = run(
        &mut p,
        MS,
        "10.0.0.1:20000",
        "192.0.2.10:4000",
        &pkt,
        &mut ev,
    );
    assert!(matches!(v, Verdict::Forward(_)));
    assert!(ev.is_empty(), "strict mode never latches: {ev:?}");
}

fn dtmf(event: u8, end: bool, duration: u16) -> Vec<u8> {
    let mut d = vec![event, if end { 0x80 | 10 } else { 10 }, 0, 0];
    d[2..4].copy_from_slice(&duration.to_be_bytes());
    d
}

#[test]
fn dtmf_event_once_with_mapped_pt() {
    let mut p = Pipeline::new(16, NoSrtp);
    let mut ev = Vec::new();
    p.apply(
        FlowCmd::Add(Box::new(entry(
            "10.0.0.1:20000",
            "10.0.1.1:30000",
            "192.0.2.10:4000",
            "198.51.100.20:5004",
        ))),
        0,
        &mut ev,
    );
    let mut seq = 10;
    let mut send =
        |p: &mut Pipeline<NoSrtp>, ev: &mut Vec<MediaEvent>, ts: u32, payload: Vec<u8>| {
            seq += 1;
            let (v, out) = run(
                p,
                MS * u64::from(seq),
                "10.0.0.1:20000",
                "192.0.2.10:4000",
                &rtp(101, seq, ts, &payload),
                ev,
            );
            assert!(matches!(v, Verdict::Forward(_)));
            assert_eq!(
                out[1] & 0x7f,
                96,
                "telephone-event PT 101 on leg A is 96 on leg B"
            );
        };
    for d in [160, 320, 480] {
        send(&mut p, &mut ev, 8000, dtmf(5, false, d));
    }
    for _ in 0..3 {
        send(&mut p, &mut ev, 8000, dtmf(5, true, 800));
    }
    assert_eq!(
        ev,
        vec![MediaEvent::Dtmf {
            call: 7,
            leg: Leg::A,
            digit: '5',
            duration_ms: 100,
            end: true
        }]
    );
    // A '#' whose end packets were lost is reported when the next event starts.
    ev.clear();
    send(&mut p, &mut ev, 16000, dtmf(11, false, 160));
    send(&mut p, &mut ev, 24000, dtmf(1, false, 160));
    assert_eq!(
        ev,
        vec![MediaEvent::Dtmf {
            call: 7,
            leg: Leg::A,
            digit: '#',
            duration_ms: 20,
            end: false
        }]
    );
    // Voice PT 0 is not rewritten.
    let (_, out) = run(
        &mut p,
        SEC,
        "10.0.0.1:20000",
        "192.0.2.10:4000",
        &rtp(0, 99, 0, &[0; 160]),
        &mut ev,
    );
    assert_eq!(out[1], 0);
}

#[test]
fn loss_and_jitter_hand_checked() {
    let mut p = Pipeline::new(16, NoSrtp);
    let mut ev = Vec::new();
    let e = entry(
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "192.0.2.10:4000",
        "198.51.100.20:5004",
    );
    let key = e.key;
    p.apply(FlowCmd::Add(Box::new(e)), 0, &mut ev);
    let send = |p: &mut Pipeline<NoSrtp>, seq: u16, ts: u32, at_ns: u64| {
        run(
            p,
            at_ns,
            "10.0.0.1:20000",
            "192.0.2.10:4000",
            &rtp(0, seq, ts, &[0; 160]),
            &mut Vec::new(),
        );
    };
    // 20 ms packets with matching timestamps: transit constant, jitter 0; seq 4 lost.
    send(&mut p, 1, 0, 20 * MS);
    send(&mut p, 2, 160, 40 * MS);
    send(&mut p, 3, 320, 60 * MS);
    send(&mut p, 5, 640, 100 * MS);
    let s = p.flow_stats(&key).unwrap();
    assert_eq!((s.packets, s.lost, s.jitter), (4, 1, 0));
    // seq 6 arrives 10 ms (80 units) late: J = 0 + (80 - 0)/16 = 5.
    send(&mut p, 6, 800, 130 * MS);
    assert_eq!(p.flow_stats(&key).unwrap().jitter, 5);
    // seq 7 on time again: |D| = 80, J = 5.0 + (80 - 5.0)/16 = 9.6875 -> 9 (A.8 integer form 155/16).
    send(&mut p, 7, 960, 140 * MS);
    let s = p.flow_stats(&key).unwrap();
    assert_eq!(s.jitter, 9);
    assert_eq!(s.jitter_us, 1125);
    // Wrap: 65534, 65535, 0 lost, 1 -> one more loss; then a new SSRC starts a new epoch.
    p.apply(FlowCmd::Remove(key), SEC, &mut ev);
    let mut e2 = entry(
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "192.0.2.10:4000",
        "198.51.100.20:5004",
    );
    e2.payloads.clear();
    p.apply(FlowCmd::Add(Box::new(e2)), SEC, &mut ev);
    for (i, seq) in [65534u16, 65535, 1, 2].into_iter().enumerate() {
        send(&mut p, seq, 160 * i as u32, SEC + 20 * MS * i as u64);
    }
    let s = p.flow_stats(&key).unwrap();
    assert_eq!(
        (s.packets, s.lost, s.jitter),
        (4, 1, 0),
        "unknown PT: no clock, no jitter"
    );
}

#[test]
fn update_and_remove_between_batches() {
    let mut p = Pipeline::new(16, NoSrtp);
    let mut ev = Vec::new();
    let e = entry(
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "192.0.2.10:4000",
        "198.51.100.20:5004",
    );
    let key = e.key;
    let q = CommandQueue::new(8);
    q.push(FlowCmd::Add(Box::new(e.clone()))).unwrap();
    assert_eq!(p.drain_commands(&q, 64, 0, &mut ev), 1);
    let pkt = rtp(0, 1, 160, &[1; 160]);
    let mut bufs: Vec<Vec<u8>> = (0..4)
        .map(|_| {
            let mut b = pkt.clone();
            b.resize(256, 0);
            b
        })
        .collect();
    let mut batch: Vec<RxPacket<'_>> = bufs
        .iter_mut()
        .map(|b| RxPacket {
            buf: &mut b[..],
            len: pkt.len(),
            local: key.local,
            src: sa("192.0.2.10:4000"),
        })
        .collect();
    let mut out = [Verdict::Drop(DropReason::NoFlow); 4];
    assert_eq!(p.process_batch(MS, &mut batch, &mut out, &mut ev), 4);
    assert!(
        out.iter()
            .all(|v| matches!(v, Verdict::Forward(f) if f.dst == sa("198.51.100.20:5004")))
    );
    // Re-INVITE moved the far end: Update keeps counters, changes the destination.
    let mut moved = e.clone();
    moved.egress_remote = sa("198.51.100.30:6000");
    q.push(FlowCmd::Update(Box::new(moved))).unwrap();
    p.drain_commands(&q, 64, 2 * MS, &mut ev);
    assert_eq!(
        p.process_batch(3 * MS, &mut batch[..1], &mut out, &mut ev),
        1
    );
    assert!(matches!(out[0], Verdict::Forward(f) if f.dst == sa("198.51.100.30:6000")));
    assert_eq!(p.flow_stats(&key).unwrap().packets, 5);
    q.push(FlowCmd::Remove(key)).unwrap();
    p.drain_commands(&q, 64, 4 * MS, &mut ev);
    assert!(matches!(ev.last(), Some(MediaEvent::Stats { stats, .. }) if stats.packets == 5));
    p.process_batch(5 * MS, &mut batch[..1], &mut out, &mut ev);
    assert_eq!(out[0], Verdict::Drop(DropReason::NoFlow));
    assert_eq!(p.flow_count(), 0);
    assert_eq!(p.counters().snapshot().commands, 3);
}

#[test]
fn hold_aware_timeouts_fire_once() {
    let mut p = Pipeline::new(16, NoSrtp);
    let mut ev = Vec::new();
    let a = entry(
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "192.0.2.10:4000",
        "198.51.100.20:5004",
    );
    let mut held = entry(
        "10.0.0.1:20002",
        "10.0.1.1:30002",
        "192.0.2.10:4002",
        "198.51.100.20:5006",
    );
    held.on_hold = true;
    let (ka, kh) = (a.key, held.key);
    p.apply(FlowCmd::Add(Box::new(a)), 0, &mut ev);
    p.apply(FlowCmd::Add(Box::new(held)), 0, &mut ev);
    ev.clear();
    assert_eq!(p.poll_timeouts(SEC / 2, 100, &mut ev), 0);
    assert_eq!(p.poll_timeouts(SEC + 1, 100, &mut ev), 1);
    assert!(matches!(ev[0], MediaEvent::Timeout { key, .. } if key == ka));
    assert_eq!(p.poll_timeouts(2 * SEC, 100, &mut ev), 0, "fires once");
    // Media resumes, re-arms.
    run(
        &mut p,
        3 * SEC,
        "10.0.0.1:20000",
        "192.0.2.10:4000",
        &rtp(0, 1, 0, &[0; 20]),
        &mut ev,
    );
    assert_eq!(p.poll_timeouts(3 * SEC + SEC / 2, 100, &mut ev), 0);
    ev.clear();
    assert_eq!(p.poll_timeouts(10 * SEC + 1, 100, &mut ev), 2);
    assert!(
        ev.iter()
            .any(|e| matches!(e, MediaEvent::Timeout { key, .. } if *key == kh))
    );
    // A bounded budget walks the table in steps.
    let mut q = Pipeline::new(16, NoSrtp);
    for i in 0..10u16 {
        let mut e = entry(
            "10.0.0.1:20000",
            "10.0.1.1:30000",
            "192.0.2.10:4000",
            "198.51.100.20:5004",
        );
        e.key = FlowKey::new(SocketAddr::new(e.key.local.ip(), 20000 + 2 * i));
        q.apply(FlowCmd::Add(Box::new(e)), 0, &mut ev);
    }
    let fired: usize = (0..5)
        .map(|_| q.poll_timeouts(2 * SEC, 2, &mut Vec::new()))
        .sum();
    assert_eq!(fired, 10);
    assert_eq!(q.counters().snapshot().timeouts, 10);
}

#[test]
fn srtp_in_and_out_with_auth_before_latch() {
    let mut p = Pipeline::new(16, XorFactory);
    let mut ev = Vec::new();
    let mut e = entry(
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "192.0.2.10:4000",
        "198.51.100.20:5004",
    );
    e.latch = LatchMode::LatchOnFirst;
    e.srtp_in = Some(SrtpKeying {
        suite: "TEST_XOR".into(),
        inline_key: "A".into(),
    });
    e.srtp_out = Some(SrtpKeying {
        suite: "TEST_XOR".into(),
        inline_key: "B".into(),
    });
    p.apply(FlowCmd::Add(Box::new(e)), 0, &mut ev);
    let plain = rtp(101, 1, 0, &dtmf(3, true, 160));
    let mut prot = plain.clone();
    prot.resize(plain.len() + 4, 0);
    XorSrtp(b'A').protect_rtp(&mut prot, plain.len()).unwrap();
    // A forged packet from elsewhere fails authentication and must not latch.
    let mut forged = prot.clone();
    forged[14] ^= 1;
    let (v, _) = run(
        &mut p,
        MS,
        "10.0.0.1:20000",
        "203.0.113.66:1",
        &forged,
        &mut ev,
    );
    assert_eq!(v, Verdict::Drop(DropReason::SrtpUnprotect));
    assert!(ev.is_empty());
    let (v, out) = run(
        &mut p,
        MS,
        "10.0.0.1:20000",
        "192.0.2.10:4000",
        &prot,
        &mut ev,
    );
    assert!(matches!(v, Verdict::Forward(f) if f.len == plain.len() + 4));
    let mut back = out.clone();
    let n = XorSrtp(b'B').unprotect_rtp(&mut back, out.len()).unwrap();
    let mut expect = plain.clone();
    expect[1] = 96;
    assert_eq!(
        &back[..n],
        &expect[..],
        "unprotected with A, PT mapped, protected with B"
    );
    assert!(matches!(ev[0], MediaEvent::Latched { .. }));
    assert!(matches!(
        ev[1],
        MediaEvent::Dtmf {
            digit: '3',
            end: true,
            ..
        }
    ));
    // A flow whose keys the factory refuses drops instead of forwarding in clear.
    let mut bad = entry(
        "10.0.0.1:20002",
        "10.0.1.1:30002",
        "192.0.2.10:4002",
        "198.51.100.20:5006",
    );
    bad.srtp_out = Some(SrtpKeying {
        suite: "NOPE".into(),
        inline_key: "x".into(),
    });
    p.apply(FlowCmd::Add(Box::new(bad)), 0, &mut ev);
    let (v, _) = run(
        &mut p,
        MS,
        "10.0.0.1:20002",
        "192.0.2.10:4002",
        &plain,
        &mut ev,
    );
    assert_eq!(v, Verdict::Drop(DropReason::SrtpUnavailable));
}

#[test]
fn rtcp_mux_demultiplexes() {
    let mut p = Pipeline::new(16, XorFactory);
    let mut ev = Vec::new();
    let mut e = entry(
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "192.0.2.10:4000",
        "198.51.100.20:5004",
    );
    e.kind = StreamKind::RtpRtcpMux;
    e.srtp_out = Some(SrtpKeying {
        suite: "TEST_XOR".into(),
        inline_key: "K".into(),
    });
    p.apply(FlowCmd::Add(Box::new(e)), 0, &mut ev);
    // An RR (PT 201): must take the RTCP path (8-byte clear header), not the RTP one.
    let rr = vec![0x80, 201, 0, 1, 0x11, 0x22, 0x33, 0x44];
    let (v, out) = run(
        &mut p,
        MS,
        "10.0.0.1:20000",
        "192.0.2.10:4000",
        &rr,
        &mut ev,
    );
    assert!(matches!(v, Verdict::Forward(f) if f.len == 12));
    let mut back = out.clone();
    assert_eq!(XorSrtp(b'K').unprotect_rtcp(&mut back, 12), Ok(8));
    assert_eq!(&back[..8], &rr[..]);
    assert_eq!(
        p.flow_stats(&FlowKey::new(sa("10.0.0.1:20000")))
            .unwrap()
            .last_ssrc,
        0,
        "no RTP stats from RTCP"
    );
}

#[test]
fn latency_histogram_records() {
    let mut p = Pipeline::new(1, NoSrtp);
    p.record_latency(250, 32);
    p.record_latency(0, 1);
    assert_eq!(p.latency().len(), 33);
    assert!(p.latency().value_at_quantile(0.5) >= 249);
    p.reset_latency();
    assert_eq!(p.latency().len(), 0);
}

#[test]
fn ports_even_pairs_quarantine_and_exhaustion() {
    let mut a = PortAllocator::new(20001, 20008, 5 * SEC).unwrap();
    let got: Vec<_> = (0..3).map(|_| a.allocate(0).unwrap()).collect();
    assert_eq!(
        got,
        vec![
            PortPair {
                rtp: 20002,
                rtcp: 20003
            },
            PortPair {
                rtp: 20004,
                rtcp: 20005
            },
            PortPair {
                rtp: 20006,
                rtcp: 20007
            }
        ]
    );
    assert!(matches!(
        a.allocate(0),
        Err(PortError::Exhausted {
            in_use: 3,
            quarantined: 0
        })
    ));
    a.release(20004, SEC).unwrap();
    assert_eq!(a.release(20004, SEC), Err(PortError::NotAllocated(20004)));
    assert_eq!(a.release(20005, SEC), Err(PortError::NotAllocated(20005)));
    assert_eq!(a.release(100, SEC), Err(PortError::NotAllocated(100)));
    assert!(matches!(
        a.allocate(3 * SEC),
        Err(PortError::Exhausted {
            in_use: 2,
            quarantined: 1
        })
    ));
    assert_eq!(
        a.allocate(6 * SEC),
        Ok(PortPair {
            rtp: 20004,
            rtcp: 20005
        })
    );
    let c = a.counters();
    assert_eq!(
        (c.total, c.in_use, c.allocations, c.releases, c.exhausted),
        (3, 3, 4, 1, 2)
    );
    assert!(PortAllocator::new(3, 3, 0).is_err());
    assert!(PortAllocator::new(65535, 65535, 0).is_err());
    assert_eq!(
        PortAllocator::new(0, 65535, 0).unwrap().counters().total,
        32767
    );
}

struct RecMap(Arc<std::sync::Mutex<Vec<String>>>, Vec<Arc<CommandQueue>>);
impl FlowMap for RecMap {
    fn insert(&mut self, e: &FlowEntry) -> Result<(), FlowSinkError> {
        let queued: usize = self.1.iter().map(|q| q.len()).sum();
        self.0
            .lock()
            .unwrap()
            .push(format!("insert {} after {queued} queued", e.key.local));
        Ok(())
    }
    fn remove(&mut self, k: &FlowKey) -> Result<(), FlowSinkError> {
        let queued: usize = self.1.iter().map(|q| q.len()).sum();
        self.0
            .lock()
            .unwrap()
            .push(format!("remove {} after {queued} queued", k.local));
        Ok(())
    }
}

#[test]
fn fanout_programs_every_worker_first_and_is_all_or_nothing() {
    let qs: Vec<_> = (0..3).map(|_| Arc::new(CommandQueue::new(2))).collect();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut sink = FanoutSink::with_map(qs.clone(), Box::new(RecMap(log.clone(), qs.clone())));
    let e = entry(
        "10.0.0.1:20000",
        "10.0.1.1:30000",
        "192.0.2.10:4000",
        "198.51.100.20:5004",
    );
    sink.apply(FlowCmd::Add(Box::new(e.clone()))).unwrap();
    sink.apply(FlowCmd::Remove(e.key)).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "insert 10.0.0.1:20000 after 3 queued".to_string(),
            "remove 10.0.0.1:20000 after 3 queued".to_string(),
        ]
    );
    // Fill worker 1 only: the next command goes nowhere.
    qs[0].pop();
    qs[2].pop();
    assert_eq!(
        sink.apply(FlowCmd::Remove(e.key)),
        Err(FlowSinkError::QueueFull { worker: 1 })
    );
    assert_eq!(
        qs.iter().map(|q| q.len()).collect::<Vec<_>>(),
        vec![1, 2, 1]
    );
    // Workers apply what they got.
    let mut p = Pipeline::new(4, NoSrtp);
    let mut ev = Vec::new();
    while let Some(c) = qs[1].pop() {
        p.apply(c, 0, &mut ev);
    }
    assert_eq!(p.flow_count(), 0);
    let eq = Arc::new(EventQueue::new(1));
    let mut s = eq.clone();
    s.event(MediaEvent::Timeout {
        key: e.key,
        tag: e.tag,
    });
    s.event(MediaEvent::Timeout {
        key: e.key,
        tag: e.tag,
    });
    assert_eq!(eq.dropped(), 1);
    assert!(eq.pop().is_some());
}

#[test]
fn command_slots_stay_small() {
    // Entries are boxed so a queue slot is one pointer plus the discriminant (Remove holds a key).
    assert!(
        std::mem::size_of::<FlowCmd>() <= 40,
        "{}",
        std::mem::size_of::<FlowCmd>()
    );
    assert!(
        std::mem::size_of::<MediaEvent>() <= 128,
        "{}",
        std::mem::size_of::<MediaEvent>()
    );
}
