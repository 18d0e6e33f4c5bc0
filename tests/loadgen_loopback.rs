//! The generator and the sink against each other on 127.0.0.1: every packet arrives in order with latency
//! recorded; a dropped packet shows as loss, a tampered payload as bad payload, a tampered SRTP packet as an
//! authentication failure; count-only mode counts from the kernel's drop counter.

use std::net::UdpSocket;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tollgate::loadgen::generator::{GenConfig, Pace};
use tollgate::loadgen::run::{COUNT_ONLY_RCVBUF, READ_RCVBUF, SinkOn, open_socket, run};
use tollgate::loadgen::sink::{SinkConfig, run_sink};
use tollgate::loadgen::spec::{self, SSRC_BASE, StreamSpec};
use tollgate::loadgen::transform::{DEFAULT_SUITE, PacketTransform, for_key};
use tollgate::loadgen::wire::{self, Stamp};
use tollgate::srtp::MasterKey;

/// Sink sockets on ephemeral loopback ports, and stream specs that send to them.
fn topology(n: usize, key: Option<&MasterKey>, rcvbuf: usize) -> (Vec<UdpSocket>, Vec<StreamSpec>) {
    let sinks: Vec<UdpSocket> = (0..n)
        .map(|_| open_socket(([127, 0, 0, 1], 0).into(), None, rcvbuf).unwrap())
        .collect();
    let specs = sinks
        .iter()
        .enumerate()
        .map(|(i, s)| StreamSpec {
            bind: ([127, 0, 0, 1], 0).into(),
            dest: s.local_addr().unwrap(),
            tx_key: key.cloned(),
            rx_key: key.cloned(),
            label: format!("s{i}"),
        })
        .collect();
    (sinks, specs)
}

fn gen_cfg(pace: Pace, ms: u64) -> GenConfig {
    GenConfig {
        pace,
        duration: Duration::from_millis(ms),
        payload_len: wire::G711_PAYLOAD,
        ssrc_base: SSRC_BASE,
        core: Some(0),
    }
}

fn sink_cfg(n: usize, count_only: bool) -> SinkConfig {
    SinkConfig {
        streams: n,
        ssrc_base: SSRC_BASE,
        max_duration: Duration::from_secs(10),
        core: Some(1),
        count_only,
    }
}

fn rxs(specs: &[StreamSpec]) -> Vec<Box<dyn PacketTransform>> {
    specs
        .iter()
        .map(|s| for_key(s.rx_key.as_ref(), 2).unwrap())
        .collect()
}

#[test]
fn paced_streams_arrive_complete_and_in_order() {
    let n = 200;
    let (sinks, specs) = topology(n, None, READ_RCVBUF);
    let socks = tollgate::loadgen::run::open_streams(&specs, false).unwrap();
    let pace = Pace::Paced {
        pps_per_stream: 50,
        jitter_us: 0,
    };
    let r = run(
        &specs,
        &socks,
        &gen_cfg(pace, 1000),
        &sink_cfg(n, false),
        SinkOn::Sockets(&sinks, rxs(&specs)),
        Duration::from_millis(200),
    )
    .unwrap();
    // 1 s at 50 pps for 200 streams, within scheduling slack.
    assert!(
        r.generator.sent >= 9_000 && r.generator.sent <= 10_200,
        "sent {}",
        r.generator.sent
    );
    assert_eq!(r.generator.send_errors, 0);
    assert_eq!(r.sink.received, r.generator.sent);
    assert_eq!(r.sink.lost, 0);
    assert_eq!(
        r.sink.reordered + r.sink.duplicates + r.sink.bad_payload + r.sink.unknown,
        0
    );
    for (i, st) in r.sink.per_stream.iter().enumerate() {
        assert_eq!(st.received, r.generator.sent_per_stream[i], "stream {i}");
    }
    let lat = r.sink.latency.unwrap();
    assert_eq!(lat.count, r.sink.received);
    assert!(lat.p50_us > 0.0 && lat.p50_us <= lat.p99_us && lat.p99_us <= lat.p999_us);
}

#[test]
fn srtp_unpaced_streams_verify() {
    let n = 20;
    let key = MasterKey::generate(DEFAULT_SUITE).unwrap();
    let (sinks, specs) = topology(n, Some(&key), READ_RCVBUF);
    let socks = tollgate::loadgen::run::open_streams(&specs, false).unwrap();
    let pace = Pace::Unpaced {
        total_pps: 40_000,
        batch: 8,
    };
    let r = run(
        &specs,
        &socks,
        &gen_cfg(pace, 500),
        &sink_cfg(n, false),
        SinkOn::Sockets(&sinks, rxs(&specs)),
        Duration::from_millis(200),
    )
    .unwrap();
    assert!(r.generator.sent > 5_000, "sent {}", r.generator.sent);
    assert_eq!(r.generator.protect_errors, 0);
    assert_eq!(
        r.sink.auth_failures + r.sink.srtp_errors + r.sink.bad_payload,
        0
    );
    assert_eq!(r.sink.received, r.generator.sent);
    assert_eq!(r.sink.lost, 0);
}

/// Hand-made packets: seq 0,1,(2 dropped),3, a tampered 4, then 5 twice.
#[test]
fn drop_tamper_duplicate_and_auth_failure_are_detected() {
    for srtp in [false, true] {
        let key = MasterKey::generate(DEFAULT_SUITE).unwrap();
        let k = srtp.then_some(&key);
        let (sinks, specs) = topology(1, k, READ_RCVBUF);
        let tx = open_socket(([127, 0, 0, 1], 0).into(), Some(specs[0].dest), READ_RCVBUF).unwrap();
        let mut prot = for_key(k, 1).unwrap();
        let mut buf = [0u8; 512];
        for seq in [0u64, 1, 3, 4, 5] {
            let st = Stamp {
                stream: 0,
                ssrc: SSRC_BASE,
                seq,
                sent_ns: tollgate::loadgen::now_ns(),
            };
            let len = wire::write_packet(&mut buf, &st, 160).unwrap();
            let len = prot.protect(&mut buf, len).unwrap();
            if seq == 4 {
                buf[60] ^= 0x40;
            }
            tx.send(&buf[..len]).unwrap();
            if seq == 5 {
                tx.send(&buf[..len]).unwrap();
            }
        }
        let stop = AtomicBool::new(true); // already stopped: one bounded drain
        std::thread::sleep(Duration::from_millis(50));
        let mut rx = rxs(&specs);
        let r = run_sink(&sinks, &mut rx, &sink_cfg(1, false), &stop);
        let st = &r.per_stream[0];
        assert_eq!(st.duplicates, 1, "srtp={srtp}");
        if srtp {
            assert_eq!(st.auth_failures, 1);
            assert_eq!(st.bad_payload, 0);
        } else {
            assert_eq!(st.bad_payload, 1);
            assert_eq!(st.auth_failures, 0);
        }
        // 2 and the tampered 4 never arrived intact.
        assert_eq!(st.expected, 6);
        assert_eq!(st.lost(), 2, "srtp={srtp}");
        assert_eq!(r.lost, 2);
    }
}

/// Sum of the "dropped" column (second field, hex) of every CPU's row in /proc/net/softnet_stat.
fn softnet_dropped() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|f| u64::from_str_radix(f, 16).ok())
        .sum()
}

#[test]
fn count_only_counts_from_kernel_drops() {
    let n = 4;
    let (sinks, specs) = topology(n, None, COUNT_ONLY_RCVBUF);
    let socks = tollgate::loadgen::run::open_streams(&specs, false).unwrap();
    let backlog_before = softnet_dropped();
    let pace = Pace::Unpaced {
        total_pps: 20_000,
        batch: 4,
    };
    let r = run(
        &specs,
        &socks,
        &gen_cfg(pace, 300),
        &sink_cfg(n, true),
        SinkOn::Sockets(&sinks, rxs(&specs)),
        Duration::from_millis(100),
    )
    .unwrap();
    assert!(r.generator.sent > 1000);
    assert!(
        r.sink.kernel_counted > 0,
        "kernel counted nothing: {:?}",
        r.sink
    );
    // Loopback may also lose datagrams before the socket, in the per-CPU backlog (netdev_max_backlog),
    // which the socket's drop counter never sees: CI saw 5953 of 5999 with 46 such drops. Those are
    // counted machine-wide in /proc/net/softnet_stat, so the sink must account for everything else.
    let backlog_drops = softnet_dropped().saturating_sub(backlog_before);
    assert!(r.sink.received <= r.generator.sent, "{:?}", r.sink);
    assert!(
        r.sink.received + backlog_drops + r.generator.sent / 500 >= r.generator.sent,
        "count-only total {} + {backlog_drops} backlog drops of {} sent",
        r.sink.received,
        r.generator.sent
    );
    assert!(r.sink.latency.is_none() || r.sink.latency.as_ref().unwrap().count < r.generator.sent);
}

#[test]
fn spec_file_roundtrip_loopback_helper() {
    let s = spec::loopback(2, 0, 31000, None);
    assert_eq!(spec::parse(&spec::format(&s)).unwrap().len(), 2);
}
