//! The XDP program against the Rust parser, without any interface: frames are run through the loaded
//! program with BPF_PROG_TEST_RUN and the per-reason counters say how far it got. A frame must reach the
//! flow table (and there find its entry) exactly when `rewrite::parse_udp` accepts it and its destination
//! is a flow: the worker never gets a frame it cannot parse, and never misses one it could.
//! Root only: `cargo test --test xdp_program`.

#[path = "xdpcommon/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::skip_unless_root;
use tollgate::fastpath::xdp::loader::{FlowValue, XdpCounters, XdpProgram};
use tollgate::fastpath::xdp::rewrite::parse_udp;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn flows() -> [SocketAddr; 2] {
    [
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 30000)),
        SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 30000)),
    ]
}

/// The destination of a frame `parse_udp` accepted.
fn dst(frame: &[u8]) -> Option<SocketAddr> {
    let l = parse_udp(frame).ok()?;
    let port = u16::from_be_bytes([frame[l.l4_off + 2], frame[l.l4_off + 3]]);
    let ip: IpAddr = if l.v6 {
        Ipv6Addr::from(<[u8; 16]>::try_from(&frame[l.l3_off + 24..l.l3_off + 40]).ok()?).into()
    } else {
        Ipv4Addr::from(<[u8; 4]>::try_from(&frame[l.l3_off + 16..l.l3_off + 20]).ok()?).into()
    };
    Some(SocketAddr::new(ip, port))
}

fn delta(a: &XdpCounters, b: &XdpCounters) -> XdpCounters {
    XdpCounters {
        passed: b.passed - a.passed,
        redirected: b.redirected - a.redirected,
        not_ip: b.not_ip - a.not_ip,
        not_udp: b.not_udp - a.not_udp,
        no_flow: b.no_flow - a.no_flow,
        fragment: b.fragment - a.fragment,
        malformed: b.malformed - a.malformed,
        no_xsk: b.no_xsk - a.no_xsk,
        flow_drop: b.flow_drop - a.flow_drop,
    }
}

/// Runs one frame; returns whether the program matched a flow (it then stops at `no_xsk`: test runs come
/// from the loopback interface, which has no socket) and checks the bookkeeping.
fn run(p: &XdpProgram, frame: &[u8]) -> bool {
    let before = p.read_counters().unwrap();
    let action = p
        .test_run(frame)
        .unwrap_or_else(|e| panic!("test_run {frame:02x?}: {e}"));
    let d = delta(&before, &p.read_counters().unwrap());
    assert_eq!(action, XDP_PASS, "{frame:02x?}");
    assert_eq!(d.passed, 1, "{d:?}");
    let reasons = d.not_ip + d.not_udp + d.no_flow + d.fragment + d.malformed + d.no_xsk;
    assert_eq!(reasons, 1, "exactly one pass reason: {d:?}");
    d.no_xsk == 1
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/xdp_rewrite");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("corpus")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap()[1..].to_vec())
        .collect();
    v.sort();
    v
}

#[test]
fn program_and_parser_agree() {
    if skip_unless_root("program_and_parser_agree") {
        return;
    }
    let mut p = XdpProgram::load().expect("load");
    for f in flows() {
        p.insert_flow(f, FlowValue::default()).unwrap();
    }
    let seeds = corpus();
    for s in &seeds {
        assert!(run(&p, s), "seed matches a flow");
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut matched, mut total) = (0, 0);
    for _ in 0..4000 {
        let mut f = seeds[(rnd() as usize) % seeds.len()].clone();
        // Mutate header bytes mostly: that is where the parsers can disagree.
        for _ in 0..1 + rnd() % 3 {
            let k = (rnd() as usize) % f.len().min(80);
            f[k] = rnd() as u8;
        }
        if rnd() % 4 == 0 {
            let keep = 14 + (rnd() as usize) % (f.len() - 13);
            f.truncate(keep);
        }
        let expect = dst(&f).is_some_and(|d| flows().contains(&d));
        assert_eq!(
            run(&p, &f),
            expect,
            "program and parse_udp disagree on {f:02x?}"
        );
        matched += usize::from(expect);
        total += 1;
    }
    // The mutations must exercise both outcomes for the comparison to mean something.
    assert!(
        matched > 100 && matched < total - 100,
        "{matched} of {total} matched"
    );
}

#[test]
fn blocked_flows_are_dropped_and_others_pass() {
    if skip_unless_root("blocked_flows_are_dropped_and_others_pass") {
        return;
    }
    let mut p = XdpProgram::load().expect("load");
    let [v4, _] = flows();
    let seed = corpus()
        .into_iter()
        .find(|f| dst(f) == Some(v4))
        .expect("an IPv4 seed");
    p.insert_flow(
        v4,
        FlowValue {
            flags: FlowValue::DROP,
            worker: 0,
        },
    )
    .unwrap();
    let before = p.read_counters().unwrap();
    assert_eq!(p.test_run(&seed).unwrap(), XDP_DROP);
    assert_eq!(delta(&before, &p.read_counters().unwrap()).flow_drop, 1);
    assert!(p.remove_flow(v4).unwrap());
    let before = p.read_counters().unwrap();
    assert_eq!(p.test_run(&seed).unwrap(), XDP_PASS);
    assert_eq!(delta(&before, &p.read_counters().unwrap()).no_flow, 1);
}
