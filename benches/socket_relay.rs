//! System benchmark: packets/s one pinned media worker relays across network namespaces, packet-socket
//! scheme vs a plain per-port-socket recvmmsg/sendmmsg relay (the driver's fallback), same run, same
//! generator, same sink. Writes target/bench-report/socket_relay.md.
//!
//! carrier ns: sendmmsg generator pinned to CPU0 (8 flows, 200-byte IPv4 packets)
//!   -> sbc ns: one worker pinned to CPU1 (static relay) -> cloud ns: raw-table DROP, counted on the veth.
//!
//! Run (root): `cargo bench --bench socket_relay` (BENCH_SECS=5 per point by default).

#[path = "../hwtests/common/mod.rs"]
mod common;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    RelayCmd, StaticRelay, Topo, in_ns, is_root, make_realtime, rule_packets, snmp,
    thread_schedstat,
};
use tollgate::fastpath::socket::DropReason;
use tollgate::fastpath::socket::{Scheme, SocketMedia, SocketMediaConfig, StatsSnapshot};

const FLOWS: u16 = 8;
const PAYLOAD: usize = 172; // 200-byte IPv4 packets, as in notes/xdp-on-this-machine.md section 6
const GEN_BATCH: usize = 32;

struct Point {
    offered_pps: Option<u64>,
    sent: u64,
    received: u64,
    secs: f64,
    worker_cpu_pct: f64,
    worker_wait_ms: f64,
    stats: StatsSnapshot,
    kernel_drops: u64,
}

impl Point {
    fn loss(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            1.0 - self.received as f64 / self.sent as f64
        }
    }
}

/// Paced sendmmsg flood from one socket, round-robin over the flows' destinations, for `secs`.
fn generate(
    sock: &UdpSocket,
    dsts: &[SocketAddr],
    pps: Option<u64>,
    secs: f64,
    stop: &AtomicBool,
) -> u64 {
    let payload = [0x80u8; PAYLOAD];
    let addrs: Vec<(libc::sockaddr_in, u32)> = dsts
        .iter()
        .map(|d| {
            let SocketAddr::V4(v4) = d else {
                panic!("IPv4 only")
            };
            // SAFETY: plain data.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (sin, size_of::<libc::sockaddr_in>() as u32)
        })
        .collect();
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: PAYLOAD,
    };
    // SAFETY: plain data, filled below.
    let mut msgs: Vec<libc::mmsghdr> = (0..GEN_BATCH)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (i, m) in msgs.iter_mut().enumerate() {
        let (sin, len) = &addrs[i % addrs.len()];
        m.msg_hdr.msg_name = (sin as *const libc::sockaddr_in) as *mut _;
        m.msg_hdr.msg_namelen = *len;
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let start = Instant::now();
    let end = Duration::from_secs_f64(secs);
    let mut sent: u64 = 0;
    loop {
        let el = start.elapsed();
        if el >= end || stop.load(Ordering::Relaxed) {
            break;
        }
        let want = match pps {
            Some(r) => ((el.as_secs_f64() * r as f64) as u64)
                .saturating_sub(sent)
                .min(GEN_BATCH as u64) as usize,
            None => GEN_BATCH,
        };
        if want == 0 {
            // Ahead of schedule: yield the core (the softirq work of our own sends runs on it too).
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        // SAFETY: `msgs` point at live `addrs`, `iov` and `payload`.
        let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), want as u32, 0) };
        if r > 0 {
            sent += r as u64;
        }
    }
    sent
}

fn run_point(
    t: &Topo,
    media: &SocketMedia<RelayCmd>,
    gen_sock: &UdpSocket,
    dsts: &[SocketAddr],
    pps: Option<u64>,
    secs: f64,
) -> Point {
    let rx0 = rule_packets(t, &t.cloud, "raw", "PREROUTING");
    let st0 = StatsSnapshot::sum(&media.all_stats());
    let sched0 = thread_schedstat("tg-media-0").unwrap_or_default();
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let sent = std::thread::scope(|s| {
        s.spawn(|| {
            let _ = core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
            if rt_level() >= 2 {
                let param = libc::sched_param { sched_priority: 10 };
                // SAFETY: plain syscall on the calling thread with a valid parameter.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            }
            generate(gen_sock, dsts, pps, secs, &stop)
        })
        .join()
        .unwrap()
    });
    let secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300)); // drain what is in flight
    let sched1 = thread_schedstat("tg-media-0").unwrap_or_default();
    let st1 = StatsSnapshot::sum(&media.all_stats());
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let mut stats = st1;
    stats.rx_packets = d(st1.rx_packets, st0.rx_packets);
    stats.tx_packets = d(st1.tx_packets, st0.tx_packets);
    stats.rx_syscalls = d(st1.rx_syscalls, st0.rx_syscalls);
    stats.tx_syscalls = d(st1.tx_syscalls, st0.tx_syscalls);
    stats.idle_waits = d(st1.idle_waits, st0.idle_waits);
    for (a, b) in stats.drops.iter_mut().zip(st0.drops) {
        *a = a.saturating_sub(b);
    }
    Point {
        offered_pps: pps,
        sent,
        received: d(rule_packets(t, &t.cloud, "raw", "PREROUTING"), rx0),
        secs,
        worker_cpu_pct: sched1.0.saturating_sub(sched0.0).as_secs_f64() / secs * 100.0,
        worker_wait_ms: sched1.1.saturating_sub(sched0.1).as_secs_f64() * 1000.0,
        kernel_drops: d(st1.kernel_drops, st0.kernel_drops),
        stats,
    }
}

struct ModeResult {
    name: &'static str,
    points: Vec<Point>,
    rcvbuf_errors: u64,
    rt: bool,
}

fn bench_mode(
    t: &Topo,
    name: &'static str,
    scheme: Scheme,
    max_port: u16,
    secs: f64,
    rates: &[u64],
) -> ModeResult {
    let cfg = SocketMediaConfig {
        addrs: vec![t.sbc_carrier_ip, t.sbc_cloud_ip],
        port_min: 30000,
        port_max: max_port,
        cores: vec![1],
        scheme,
        rule_tag: "bench".into(),
        ..Default::default()
    };
    let media = in_ns(&t.sbc, || {
        SocketMedia::start(&cfg, |_| StaticRelay::new(30000, max_port))
    })
    .expect("start driver");
    let rt = rt_level() >= 1 && make_realtime("tg-media-0", 10);
    let mut dsts = Vec::new();
    for i in 0..FLOWS {
        let local = SocketAddr::new(t.sbc_carrier_ip, 30000 + 2 * i);
        let cmd = RelayCmd::Add {
            local,
            from: SocketAddr::new(t.sbc_cloud_ip, 31000 + 2 * i),
            to: SocketAddr::new(t.cloud_ip, 7000 + 2 * i),
        };
        media.try_send(0, cmd).expect("queue");
        dsts.push(local);
    }
    let gen_sock = in_ns(&t.carrier, || {
        let s = UdpSocket::bind(SocketAddr::new(t.carrier_ip, 5000)).expect("bind generator");
        let v: libc::c_int = 8 << 20;
        // SAFETY: valid socket and option.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&v as *const i32).cast(),
                4,
            );
        }
        s
    });
    std::thread::sleep(Duration::from_millis(50));
    let _warm = run_point(t, &media, &gen_sock, &dsts, Some(20_000), 1.0);
    let ebuf0 = snmp(&t.sbc, "Udp", "RcvbufErrors");
    let mut points = Vec::new();
    let mut lossy = 0;
    for &r in rates {
        let p = run_point(t, &media, &gen_sock, &dsts, Some(r), secs);
        eprintln!(
            "{name:>14} {:>7} pps offered: sent {:>8.0}/s relayed {:>8.0}/s loss {:.4}%",
            r,
            p.sent as f64 / p.secs,
            p.received as f64 / p.secs,
            p.loss() * 100.0
        );
        lossy = if p.loss() > 0.01 { lossy + 1 } else { 0 };
        points.push(p);
        if lossy >= 2 {
            break;
        }
    }
    let p = run_point(t, &media, &gen_sock, &dsts, None, secs);
    eprintln!(
        "{name:>14} unpaced: sent {:>8.0}/s relayed {:>8.0}/s loss {:.4}%",
        p.sent as f64 / p.secs,
        p.received as f64 / p.secs,
        p.loss() * 100.0
    );
    points.push(p);
    let rcvbuf_errors = snmp(&t.sbc, "Udp", "RcvbufErrors") - ebuf0;
    media.stop().expect("stop");
    ModeResult {
        name,
        points,
        rcvbuf_errors,
        rt,
    }
}

/// BENCH_RT: 0 = everything SCHED_OTHER, 1 (default) = the media worker SCHED_FIFO, 2 = worker and generator.
/// On a shared VM the worker otherwise spends most of a point waiting for a CPU (see the runqueue column).
fn rt_level() -> u32 {
    std::env::var("BENCH_RT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn drops(s: &StatsSnapshot) -> String {
    let v: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| s.dropped(**r) > 0)
        .map(|r| format!("{} {}", r.name(), s.dropped(*r)))
        .collect();
    if v.is_empty() {
        "0".into()
    } else {
        v.join(", ")
    }
}

fn report(results: &[ModeResult], secs: f64) -> String {
    let mut s = String::new();
    s.push_str("# Kernel-socket media relay: packets/s on one pinned worker\n\n");
    s.push_str(&format!(
        "carrier ns (sendmmsg generator, CPU0, {FLOWS} flows, 200-byte IPv4 packets) -> sbc ns (1 media worker, CPU1, \
         static port-map relay) -> cloud ns (raw-table DROP sink counting UDP from the relay). Receive buffers: 8 MiB \
         per packet socket; 1 MiB per UDP socket in the per-port baseline. {secs} s per point, one \
         warm-up second per scheme. Loss = 1 - received/sent. `cargo bench --bench socket_relay`.\n\n"
    ));
    for r in results {
        let best = r
            .points
            .iter()
            .filter(|p| p.offered_pps.is_some() && p.loss() < 0.001)
            .map(|p| p.received as f64 / p.secs)
            .fold(0.0, f64::max);
        s.push_str(&format!("## {}\n\nhighest relayed rate at < 0.1 % loss: **{:.0} pps**; socket-queue drops over the run: UdpRcvbufErrors {}, packet-socket drops {}\n\n", r.name, best, r.rcvbuf_errors, r.points.iter().map(|p| p.kernel_drops).sum::<u64>()));
        s.push_str(&format!(
            "worker scheduling: {}\n\n",
            match (r.rt, rt_level()) {
                (false, _) => "worker SCHED_OTHER, generator SCHED_OTHER",
                (true, 1) => "worker SCHED_FIFO 10, generator SCHED_OTHER (BENCH_RT=1)",
                (true, _) => "worker and generator SCHED_FIFO 10 (BENCH_RT=2)",
            }
        ));
        s.push_str("| offered pps | sent pps | relayed pps | loss | worker CPU | worker runqueue wait | pkts/rx syscall | pkts/tx syscall | idle waits | driver/handler drops |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for p in &r.points {
            let per = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            s.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.3} % | {:.0} % | {:.0} ms | {:.1} | {:.1} | {} | {} |\n",
                p.offered_pps
                    .map_or("unpaced".to_string(), |r| r.to_string()),
                p.sent as f64 / p.secs,
                p.received as f64 / p.secs,
                p.loss() * 100.0,
                p.worker_cpu_pct,
                p.worker_wait_ms,
                per(p.stats.rx_packets, p.stats.rx_syscalls),
                per(p.stats.tx_packets, p.stats.tx_syscalls),
                p.stats.idle_waits,
                drops(&p.stats),
            ));
        }
        s.push('\n');
    }
    s
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "socket_relay: system benchmark, run with `cargo bench --bench socket_relay` (root)"
        );
        return;
    }
    if !is_root() {
        println!("socket_relay: skipped, needs root (network namespaces, packet sockets)");
        return;
    }
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let rates = [50_000, 100_000, 150_000, 200_000, 250_000, 300_000];
    let t = Topo::new("bn", 95).expect("topology");
    // Sink: count and drop exactly the relayed datagrams (UDP from the SBC's cloud-side address).
    let relay_src = t.sbc_cloud_ip.to_string();
    t.exec(
        &t.cloud,
        &[
            "iptables",
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-s",
            &relay_src,
            "-p",
            "udp",
            "-j",
            "DROP",
        ],
    )
    .expect("sink rule");
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let results = vec![
        bench_mode(
            &t,
            "packet socket (AF_PACKET fanout rx + raw tx, 20,000 ports)",
            Scheme::PacketSocket,
            49999,
            secs,
            &rates,
        ),
        bench_mode(
            &t,
            "baseline: per-port UDP sockets, recvmmsg/sendmmsg (1,100 ports)",
            Scheme::PerPortSockets,
            31099,
            secs,
            &rates,
        ),
    ];
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut text = report(&results, secs);
    text.push_str(&format!(
        "Background load (/proc/loadavg) before: `{}`, after: `{}`. The VM's 2 vCPUs are shared: rows where \
         the sent rate is below the offered rate are generator-limited (CPU0 starved), not relay-limited.\n",
        load_before.trim(),
        load_after.trim()
    ));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report");
    std::fs::create_dir_all(&dir).expect("report dir");
    let path = dir.join("socket_relay.md");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write report");
    println!("{text}\nwritten to {}", path.display());
}
