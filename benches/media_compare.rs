//! System benchmark: the same calls' media through tollgate (AF_XDP and kernel-socket media planes) and
//! through rtpengine (Debian `rtpengine`, userspace forwarding), RTP -> RTP and RTP -> SRTP, in one run on
//! the `tollgate lab` topology (carrier, SBC and cloud namespaces joined by veth). Each point sets up N calls
//! (tollgate: real SIP through its B2BUA; rtpengine: ng offer/answer), runs 20 ms G.711 both ways with the
//! lab's generator and sink, and reads the relay's loss, one-way latency and CPU time (all its threads,
//! from /proc). The generator, sink and relay share the VM's two cores, so absolute CPU figures include
//! that contention; the comparison is the point.
//!
//! Run as root: `cargo bench --bench media_compare` (TOLLGATE_BENCH_SECS per point, default 5;
//! TOLLGATE_BENCH_CALLS, default "50 200 500"). Writes target/bench-report/media.md, media.json and the PNG plots
//! (media_throughput.png, media_latency.png; `benches/support/plot.rs`).
//! Under `cargo test` it runs one small point per relay as a smoke test and writes nothing.
#[path = "support/plot.rs"]
mod plot;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tollgate::lab::report::LabReport;
use tollgate::lab::run::{LabMode, LabOptions, Relay, run};

#[derive(serde::Serialize)]
struct Point {
    relay: String,
    srtp: bool,
    calls: usize,
    streams: usize,
    offered_pps: f64,
    sent: u64,
    received: u64,
    loss_pct: f64,
    latency_p50_us: f64,
    latency_p99_us: f64,
    latency_p999_us: f64,
    relay_cpu_pct: f64,
    /// Relay CPU per 1000 streams, percent of one core.
    cpu_pct_per_1000_streams: f64,
    passed: bool,
    problems: Vec<String>,
}

fn point(name: &str, r: &LabReport, calls: usize, hold: f64) -> Point {
    let sent = r.carrier_to_cloud.sent + r.cloud_to_carrier.sent;
    let received = r.carrier_to_cloud.received + r.cloud_to_carrier.received;
    let streams = 2 * r.calls_answered;
    Point {
        relay: name.to_owned(),
        srtp: r.cloud_srtp,
        calls,
        streams,
        offered_pps: sent as f64 / hold,
        sent,
        received,
        loss_pct: if sent == 0 {
            100.0
        } else {
            100.0 * sent.saturating_sub(received) as f64 / sent as f64
        },
        latency_p50_us: r.latency.p50_us,
        latency_p99_us: r.latency.p99_us,
        latency_p999_us: r.latency.p999_us,
        relay_cpu_pct: r.relay_cpu_pct,
        cpu_pct_per_1000_streams: if streams == 0 {
            0.0
        } else {
            r.relay_cpu_pct * 1000.0 / streams as f64
        },
        passed: r.passed(),
        problems: r.problems.clone(),
    }
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP media_compare: needs root (network namespaces, XDP)");
        return;
    }
    let bench = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("TOLLGATE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench { 5.0 } else { 1.0 });
    let steps: Vec<usize> = if bench {
        std::env::var("TOLLGATE_BENCH_CALLS")
            .unwrap_or_else(|_| "50 200 500".into())
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect()
    } else {
        vec![10]
    };
    let relays = [
        ("tollgate-xdp", Relay::Tollgate, LabMode::Xdp),
        ("tollgate-socket", Relay::Tollgate, LabMode::Socket),
        ("rtpengine", Relay::Rtpengine, LabMode::Auto),
    ];
    let stop = AtomicBool::new(false);
    let mut points = Vec::new();
    for srtp in [false, true] {
        for &calls in &steps {
            for (name, relay, mode) in relays {
                let opts = LabOptions {
                    relay,
                    cloud_srtp: srtp,
                    calls,
                    rate: 250.0,
                    hold: Duration::from_secs_f64(secs),
                    mode,
                    binary: env!("CARGO_BIN_EXE_tollgate").into(),
                    progress: false,
                    max_loss_pct: 0.1,
                    flood: None,
                };
                let r = match run(&opts, &stop) {
                    Ok(r) => r,
                    Err(e) => panic!("{name} srtp={srtp} calls={calls}: {e}"),
                };
                let p = point(name, &r, calls, secs);
                eprintln!(
                    "{name:<16} srtp={srtp:<5} calls={calls:<4} {:>7.0} pps  loss {:.3} %  p50 {:.0} us  p99 {:.0} us  cpu {:.1} %{}",
                    p.offered_pps,
                    p.loss_pct,
                    p.latency_p50_us,
                    p.latency_p99_us,
                    p.relay_cpu_pct,
                    if p.passed {
                        String::new()
                    } else {
                        format!("  FAILED {:?}", p.problems)
                    }
                );
                if !bench {
                    assert!(p.passed, "{name} srtp={srtp}: {:?}", p.problems);
                }
                points.push(p);
            }
        }
    }
    if !bench {
        return;
    }
    let mut md = String::from(
        "# media_compare: tollgate (XDP, socket) vs rtpengine, same topology, generator and sink, one run\n\n",
    );
    md.push_str(&format!(
        "{secs} s of 20 ms G.711 per point, both directions (2 streams per call, 50 packets/s each); carrier \
         plain RTP, cloud plain or SRTP (AES_CM_128_HMAC_SHA1_80). Relay CPU = utime+stime of the relay \
         process over the audio, % of one core. Machine: {} CPUs, kernel {}.\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    ));
    md.push_str("| relay | cloud | calls | pps | loss | p50 µs | p99 µs | p99.9 µs | relay CPU | CPU per 1000 streams |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for p in &points {
        md.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.3} % | {:.0} | {:.0} | {:.0} | {:.1} % | {:.1} % |\n",
            p.relay,
            if p.srtp { "SRTP" } else { "RTP" },
            p.calls,
            p.offered_pps,
            p.loss_pct,
            p.latency_p50_us,
            p.latency_p99_us,
            p.latency_p999_us,
            p.relay_cpu_pct,
            p.cpu_pct_per_1000_streams
        ));
    }
    md.push_str("\nHighest call count at < 0.1 % loss (of the steps run):\n\n");
    for srtp in [false, true] {
        for (name, _, _) in relays {
            let best = points
                .iter()
                .filter(|p| p.relay == name && p.srtp == srtp && p.loss_pct < 0.1)
                .map(|p| p.calls)
                .max();
            md.push_str(&format!(
                "- {name}, cloud {}: {}\n",
                if srtp { "SRTP" } else { "RTP" },
                best.map_or("none".to_owned(), |c| format!("{c} calls"))
            ));
        }
    }
    md.push_str("\nCommand: `cargo bench --bench media_compare` (as root)\n");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("media.md"), &md).unwrap();
    std::fs::write(
        dir.join("media.json"),
        serde_json::to_string_pretty(&points).unwrap(),
    )
    .unwrap();
    print!("{md}");
    match plot::all(&dir) {
        Ok(files) => files.iter().for_each(|f| println!("plot: {}", f.display())),
        Err(e) => eprintln!("no plots: {e}"),
    }
}
