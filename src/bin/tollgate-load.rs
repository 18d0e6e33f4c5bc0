//! `tollgate-load`: RTP/SRTP load generator and sink, rate search, and rtpengine call setup.
//! Human-readable output by default, one JSON object with `--json`.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use tollgate::loadgen::generator::{GenConfig, Pace};
use tollgate::loadgen::ng::{self, NgClient};
use tollgate::loadgen::run::{self, RunReport, SinkOn};
use tollgate::loadgen::search::{self, SearchConfig};
use tollgate::loadgen::sink::{SinkConfig, run_sink};
use tollgate::loadgen::spec::{self, SSRC_BASE, StreamSpec};
use tollgate::loadgen::transform::{DEFAULT_SUITE, PacketTransform, for_key};
use tollgate::loadgen::wire;
use tollgate::srtp::MasterKey;

#[derive(Parser)]
#[command(
    name = "tollgate-load",
    about = "RTP/SRTP load generator, sink, rate search and rtpengine driver"
)]
struct Cli {
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send streams (and, by default, receive what comes back on the same sockets).
    Gen(GenArgs),
    /// Receive and check streams on a range of ports.
    Sink(SinkArgs),
    /// Find the highest rate with loss below --max-loss (bounded).
    Search(SearchArgs),
    /// Set up N calls on rtpengine over ng and write a streams file.
    RtpengineSetup(SetupArgs),
    /// Delete calls set up by rtpengine-setup.
    RtpengineDelete(DeleteArgs),
}

#[derive(Args, Clone)]
struct Streams {
    /// Streams file (`bind dest txkey|- rxkey|- [label]` per line), e.g. from rtpengine-setup.
    #[arg(long, conflicts_with = "loopback")]
    streams: Option<PathBuf>,
    /// Self-contained loopback run with N streams: sink sockets in this process.
    #[arg(long)]
    loopback: Option<usize>,
    /// With --loopback: SRTP (AES_CM_128_HMAC_SHA1_80) with a random key.
    #[arg(long)]
    srtp: bool,
}

#[derive(Args, Clone)]
struct Rate {
    /// Packets per second per stream (paced; 50 = 20 ms ptime).
    #[arg(long, default_value_t = 50)]
    pps_per_stream: u32,
    /// Paced: add a uniform random delay of up to this many microseconds to each packet.
    #[arg(long, default_value_t = 0)]
    jitter_us: u32,
    /// Unpaced: total packets/s across all streams (0 = as fast as possible). Overrides pacing.
    #[arg(long)]
    unpaced_pps: Option<u64>,
    /// Unpaced: packets per stream visit, one sendmmsg.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Payload bytes after the RTP header.
    #[arg(long, default_value_t = wire::G711_PAYLOAD)]
    payload: usize,
}

#[derive(Args, Clone)]
struct Common {
    /// Seconds to send.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Core for the generator thread.
    #[arg(long)]
    gen_cpu: Option<usize>,
    /// Core for the sink thread.
    #[arg(long)]
    sink_cpu: Option<usize>,
    /// Count-only sink: tiny SO_RCVBUF, count kernel drops (for when reading is the bottleneck).
    #[arg(long)]
    count_only: bool,
    /// Don't receive at all.
    #[arg(long)]
    no_sink: bool,
    /// Milliseconds the sink keeps reading after the generator stops.
    #[arg(long, default_value_t = 300)]
    grace_ms: u64,
    /// Report this process's CPU (e.g. the relay under test) over the run, % of one core.
    #[arg(long)]
    watch_pid: Option<u32>,
}

#[derive(Args)]
struct GenArgs {
    #[command(flatten)]
    streams: Streams,
    /// AF_XDP transmit on this interface instead of sendmmsg (unpaced at --unpaced-pps, needs root).
    /// Stream binds/dests must be IPv4 addresses; receive with `tollgate-load sink` where the packets land.
    #[arg(long)]
    xsk_iface: Option<String>,
    #[arg(long, default_value_t = 0)]
    xsk_queue: u32,
    /// Next-hop MAC (aa:bb:cc:dd:ee:ff) for AF_XDP frames.
    #[arg(long)]
    dst_mac: Option<String>,
    #[command(flatten)]
    rate: Rate,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct SinkArgs {
    /// First port to listen on (127.0.0.1 unless --ip).
    #[arg(long)]
    listen_base: u16,
    /// Number of ports (and of sender streams expected).
    #[arg(long)]
    ports: usize,
    #[arg(long, default_value = "127.0.0.1")]
    ip: std::net::IpAddr,
    /// SDES key params (`inline:...`) to unprotect with.
    #[arg(long)]
    srtp_key: Option<String>,
    /// Seconds to listen.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long)]
    cpu: Option<usize>,
    #[arg(long)]
    count_only: bool,
}

#[derive(Args)]
struct SearchArgs {
    #[command(flatten)]
    streams: Streams,
    /// Search by calls on rtpengine at this ng address: each point sets up fresh calls (rate/100 calls,
    /// paced at 50 pps per stream), runs, deletes.
    #[arg(long)]
    rtpengine: Option<SocketAddr>,
    /// rtpengine mode: first local port.
    #[arg(long, default_value_t = 20000)]
    base: u16,
    #[arg(long, default_value_t = 10_000)]
    start: u64,
    #[arg(long, default_value_t = 1_000_000)]
    max: u64,
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    #[arg(long, default_value_t = 4)]
    bisect_steps: u32,
    #[arg(long, default_value_t = 0.001)]
    max_loss: f64,
    #[arg(long, default_value_t = 12)]
    max_points: u32,
    /// Seconds per point.
    #[arg(long, default_value_t = 3.0)]
    point_secs: f64,
    /// rtpengine mode: warm-up seconds before each point is measured.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long)]
    gen_cpu: Option<usize>,
    #[arg(long)]
    sink_cpu: Option<usize>,
    #[arg(long)]
    count_only: bool,
}

#[derive(Args)]
struct SetupArgs {
    #[arg(long, default_value = "127.0.0.1:2223")]
    ng: SocketAddr,
    #[arg(long)]
    calls: usize,
    #[arg(long, default_value = "tgl")]
    prefix: String,
    /// Leg A of call i binds base+4i, leg B base+4i+2.
    #[arg(long, default_value_t = 20000)]
    base: u16,
    /// Leg A offers SRTP (AES_CM_128_HMAC_SHA1_80); rtpengine bridges to plain RTP for leg B.
    #[arg(long)]
    srtp: bool,
    /// Streams file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct DeleteArgs {
    #[arg(long, default_value = "127.0.0.1:2223")]
    ng: SocketAddr,
    #[arg(long)]
    calls: usize,
    #[arg(long, default_value = "tgl")]
    prefix: String,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

fn pace(r: &Rate) -> Pace {
    match r.unpaced_pps {
        Some(total_pps) => Pace::Unpaced {
            total_pps,
            batch: r.batch,
        },
        None => Pace::Paced {
            pps_per_stream: r.pps_per_stream,
            jitter_us: r.jitter_us,
        },
    }
}

/// utime+stime of all threads of `pid`, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after ")": state is index 0, utime is stat field 14 -> index 11, stime 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no pointer arguments.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// A prepared workload: stream specs, their sockets, and where the sink reads.
struct Workload {
    specs: Vec<StreamSpec>,
    socks: Vec<UdpSocket>,
    sink_socks: Vec<UdpSocket>,
}

fn workload(s: &Streams, count_only: bool) -> Result<Workload> {
    let rcv = if count_only {
        run::COUNT_ONLY_RCVBUF
    } else {
        run::READ_RCVBUF
    };
    if let Some(n) = s.loopback {
        let key = if s.srtp {
            Some(MasterKey::generate(DEFAULT_SUITE).map_err(|e| anyhow::anyhow!("{e}"))?)
        } else {
            None
        };
        let sink_socks = (0..n)
            .map(|_| run::open_socket(([127, 0, 0, 1], 0).into(), None, rcv))
            .collect::<Result<Vec<_>, _>>()?;
        let specs: Vec<StreamSpec> = sink_socks
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Ok(StreamSpec {
                    bind: ([127, 0, 0, 1], 0).into(),
                    dest: k.local_addr()?,
                    tx_key: key.clone(),
                    rx_key: key.clone(),
                    label: format!("lo{i}"),
                })
            })
            .collect::<std::io::Result<_>>()?;
        let socks = run::open_streams(&specs, false)?;
        return Ok(Workload {
            specs,
            socks,
            sink_socks,
        });
    }
    let Some(path) = &s.streams else {
        bail!("give --streams FILE or --loopback N");
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let specs = spec::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
    let socks = run::open_streams(&specs, count_only)?;
    Ok(Workload {
        specs,
        socks,
        sink_socks: Vec::new(),
    })
}

fn run_workload(w: &Workload, gen_cfg: &GenConfig, c: &Common) -> Result<(RunReport, Option<f64>)> {
    let sink_cfg = SinkConfig {
        streams: w.specs.len(),
        ssrc_base: SSRC_BASE,
        max_duration: gen_cfg.duration + Duration::from_millis(c.grace_ms) + Duration::from_secs(5),
        core: c.sink_cpu,
        count_only: c.count_only,
    };
    let sink_on = if c.no_sink {
        SinkOn::None
    } else if w.sink_socks.is_empty() {
        SinkOn::StreamSockets
    } else {
        let rxs = w
            .specs
            .iter()
            .map(|s| for_key(s.rx_key.as_ref(), 2))
            .collect::<Result<Vec<Box<dyn PacketTransform>>, _>>()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        SinkOn::Sockets(&w.sink_socks, rxs)
    };
    let before = c.watch_pid.and_then(proc_cpu_ticks);
    let t0 = std::time::Instant::now();
    let rep = run::run(
        &w.specs,
        &w.socks,
        gen_cfg,
        &sink_cfg,
        sink_on,
        Duration::from_millis(c.grace_ms),
    )?;
    let cpu = match (before, c.watch_pid.and_then(proc_cpu_ticks)) {
        (Some(a), Some(b)) => {
            Some((b.saturating_sub(a)) as f64 / clk_tck() / t0.elapsed().as_secs_f64() * 100.0)
        }
        _ => None,
    };
    Ok((rep, cpu))
}

fn print_run(rep: &RunReport, cpu: Option<f64>, json: bool) {
    if json {
        println!("{}", json!({"run": rep, "watched_cpu_pct": cpu}));
        return;
    }
    let g = &rep.generator;
    let k = &rep.sink;
    println!(
        "sent {} ({:.0} pps over {:.2} s, pinned {}), send errors {}, protect errors {}",
        g.sent, g.pps, g.elapsed_s, g.pinned, g.send_errors, g.protect_errors
    );
    println!(
        "received {} (count-only {}, kernel-counted {}), loss {:.4} %, seq-lost {}, reordered {}, duplicates {}, bad payload {}, SRTP auth failures {}, other SRTP errors {}, unknown {}",
        k.received,
        k.count_only,
        k.kernel_counted,
        rep.loss * 100.0,
        k.lost,
        k.reordered,
        k.duplicates,
        k.bad_payload,
        k.auth_failures,
        k.srtp_errors,
        k.unknown
    );
    if let Some(l) = &k.latency {
        println!(
            "one-way latency: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us ({} samples)",
            l.p50_us, l.p99_us, l.p999_us, l.max_us, l.count
        );
    }
    if let Some(c) = cpu {
        println!("watched process CPU: {c:.1} % of one core");
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut m = [0u8; 6];
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() != 6 {
        bail!("bad MAC {s:?}");
    }
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC {s:?}"))?;
    }
    Ok(m)
}

fn cmd_gen_xsk(a: &GenArgs, iface: &str, json: bool) -> Result<()> {
    let Some(path) = &a.streams.streams else {
        bail!("--xsk-iface needs --streams FILE");
    };
    let specs = spec::parse(&std::fs::read_to_string(path)?)?;
    let v4 = |s: SocketAddr| match s {
        SocketAddr::V4(v) => Ok(v),
        SocketAddr::V6(_) => Err(anyhow::anyhow!("AF_XDP mode is IPv4 only")),
    };
    let streams = specs
        .iter()
        .map(|s| Ok((v4(s.bind)?, v4(s.dest)?)))
        .collect::<Result<Vec<_>>>()?;
    let src_mac = parse_mac(&std::fs::read_to_string(format!(
        "/sys/class/net/{iface}/address"
    ))?)?;
    let dst_mac = parse_mac(
        a.dst_mac
            .as_deref()
            .context("--xsk-iface needs --dst-mac")?,
    )?;
    let mut txs = specs
        .iter()
        .map(|s| for_key(s.tx_key.as_ref(), 2))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = tollgate::loadgen::xsk::XskGenConfig {
        iface: iface.to_string(),
        queue: a.xsk_queue,
        src_mac,
        dst_mac,
        streams,
        total_pps: a.rate.unpaced_pps.unwrap_or(0),
        duration: secs(a.common.duration),
        payload_len: a.rate.payload,
        ssrc_base: SSRC_BASE,
        core: a.common.gen_cpu,
        frames: 8192,
        ring: 2048,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let r = tollgate::loadgen::xsk::run_xsk_gen(&cfg, &mut txs, &stop)?;
    if json {
        println!("{}", json!({ "xsk_gen": r }));
    } else {
        println!(
            "AF_XDP sent {} ({:.0} pps over {:.2} s, pinned {}), completed {}, kick EAGAIN {}",
            r.sent, r.pps, r.elapsed_s, r.pinned, r.completed, r.kick_eagain
        );
    }
    Ok(())
}

fn cmd_gen(a: &GenArgs, json: bool) -> Result<()> {
    if let Some(iface) = &a.xsk_iface {
        return cmd_gen_xsk(a, iface, json);
    }
    let w = workload(&a.streams, a.common.count_only)?;
    let cfg = GenConfig {
        pace: pace(&a.rate),
        duration: secs(a.common.duration),
        payload_len: a.rate.payload,
        ssrc_base: SSRC_BASE,
        core: a.common.gen_cpu,
    };
    let (rep, cpu) = run_workload(&w, &cfg, &a.common)?;
    print_run(&rep, cpu, json);
    Ok(())
}

fn cmd_sink(a: &SinkArgs, json: bool) -> Result<()> {
    let key = a
        .srtp_key
        .as_deref()
        .map(|k| MasterKey::from_sdes_inline(DEFAULT_SUITE, k))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--srtp-key: {e}"))?;
    let rcv = if a.count_only {
        run::COUNT_ONLY_RCVBUF
    } else {
        run::READ_RCVBUF
    };
    let socks = (0..a.ports)
        .map(|i| {
            run::open_socket(
                SocketAddr::new(a.ip, a.listen_base.wrapping_add(i as u16)),
                None,
                rcv,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut rxs = (0..a.ports)
        .map(|_| for_key(key.as_ref(), a.ports.max(2)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = SinkConfig {
        streams: a.ports,
        ssrc_base: SSRC_BASE,
        max_duration: secs(a.duration),
        core: a.cpu,
        count_only: a.count_only,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rep = run_sink(&socks, &mut rxs, &cfg, &stop);
    if json {
        println!("{}", json!({ "sink": rep }));
    } else {
        println!(
            "received {} in {:.2} s: seq-lost {}, reordered {}, duplicates {}, bad payload {}, SRTP auth failures {}, unknown {}, kernel-counted {}",
            rep.received,
            rep.elapsed_s,
            rep.lost,
            rep.reordered,
            rep.duplicates,
            rep.bad_payload,
            rep.auth_failures,
            rep.unknown,
            rep.kernel_counted
        );
        if let Some(l) = &rep.latency {
            println!(
                "one-way latency: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us",
                l.p50_us, l.p99_us, l.p999_us
            );
        }
    }
    Ok(())
}

fn cmd_search(a: &SearchArgs, json: bool) -> Result<()> {
    let scfg = SearchConfig {
        start: a.start,
        max: a.max,
        factor: a.factor,
        bisect_steps: a.bisect_steps,
        max_loss: a.max_loss,
        max_points: a.max_points.min(40),
        max_total: Duration::from_secs_f64(
            (a.point_secs + a.warmup_secs + 2.0) * f64::from(a.max_points.min(40)),
        ),
    };
    let common = Common {
        duration: a.point_secs,
        gen_cpu: a.gen_cpu,
        sink_cpu: a.sink_cpu,
        count_only: a.count_only,
        no_sink: false,
        grace_ms: 300,
        watch_pid: None,
    };
    let result = if let Some(ngaddr) = a.rtpengine {
        let mut client = NgClient::connect(ngaddr, Duration::from_secs(2))?;
        client.ping()?;
        let mut point = 0usize;
        search::search(&scfg, |rate| -> Result<(f64, f64, f64)> {
            point += 1;
            let calls = (rate / 100).max(1) as usize;
            let prefix = format!("tgs{}-{point}", std::process::id());
            let specs = ng::setup_calls(&mut client, calls, &prefix, a.base, a.streams.srtp)?;
            let socks = run::open_streams(&specs, a.count_only)?;
            let w = Workload {
                specs,
                socks,
                sink_socks: Vec::new(),
            };
            let pace = Pace::Paced {
                pps_per_stream: 50,
                jitter_us: 0,
            };
            let mut cfg = GenConfig {
                pace,
                duration: secs(a.warmup_secs),
                payload_len: wire::G711_PAYLOAD,
                ssrc_base: SSRC_BASE,
                core: a.gen_cpu,
            };
            let warm = Common {
                no_sink: true,
                ..common.clone()
            };
            if a.warmup_secs > 0.0 {
                run_workload(&w, &cfg, &warm)?;
            }
            cfg.duration = secs(a.point_secs);
            let r = run_workload(&w, &cfg, &common);
            drop(w);
            ng::delete_calls(&mut client, calls, &prefix);
            let (r, _) = r?;
            let e = r.generator.elapsed_s.max(1e-9);
            if !json {
                eprintln!(
                    "  {} calls: sent {:.0} pps, loss {:.4} %",
                    calls,
                    r.generator.pps,
                    r.loss * 100.0
                );
            }
            Ok((r.generator.pps, r.sink.received as f64 / e, r.loss))
        })?
    } else {
        let w = workload(&a.streams, a.count_only)?;
        search::search(&scfg, |rate| -> Result<(f64, f64, f64)> {
            let cfg = GenConfig {
                pace: Pace::Unpaced {
                    total_pps: rate,
                    batch: a.batch,
                },
                duration: secs(a.point_secs),
                payload_len: wire::G711_PAYLOAD,
                ssrc_base: SSRC_BASE,
                core: a.gen_cpu,
            };
            let (r, _) = run_workload(&w, &cfg, &common)?;
            let e = r.generator.elapsed_s.max(1e-9);
            if !json {
                eprintln!(
                    "  {rate} pps offered: sent {:.0} pps, loss {:.4} %",
                    r.generator.pps,
                    r.loss * 100.0
                );
            }
            Ok((r.generator.pps, r.sink.received as f64 / e, r.loss))
        })?
    };
    if json {
        println!("{}", json!({ "search": result }));
    } else {
        for p in &result.points {
            println!(
                "offered {:>9} pps  sent {:>10.0}  received {:>10.0}  loss {:>8.4} %  {}",
                p.offered_pps,
                p.sent_pps,
                p.received_pps,
                p.loss * 100.0,
                if p.pass {
                    "pass"
                } else if p.loss < a.max_loss {
                    "FAIL (generator below 95 % of offered)"
                } else {
                    "FAIL (loss)"
                }
            );
        }
        match result.best {
            Some(b) => println!(
                "highest rate with loss < {:.3} %: {} pps offered ({:.0} received) [{}]",
                a.max_loss * 100.0,
                b.offered_pps,
                b.received_pps,
                result.stop
            ),
            None => println!("no rate passed [{}]", result.stop),
        }
    }
    Ok(())
}

fn cmd_setup(a: &SetupArgs, json: bool) -> Result<()> {
    let mut c = NgClient::connect(a.ng, Duration::from_secs(2))?;
    c.ping()?;
    let t0 = std::time::Instant::now();
    let specs = ng::setup_calls(&mut c, a.calls, &a.prefix, a.base, a.srtp)?;
    std::fs::write(&a.out, spec::format(&specs))
        .with_context(|| format!("writing {}", a.out.display()))?;
    if json {
        println!(
            "{}",
            json!({"calls": a.calls, "streams": specs.len(), "file": a.out, "setup_s": t0.elapsed().as_secs_f64()})
        );
    } else {
        println!(
            "set up {} calls ({} streams) in {:.2} s -> {}",
            a.calls,
            specs.len(),
            t0.elapsed().as_secs_f64(),
            a.out.display()
        );
    }
    Ok(())
}

fn cmd_delete(a: &DeleteArgs, json: bool) -> Result<()> {
    let mut c = NgClient::connect(a.ng, Duration::from_secs(2))?;
    let failed = ng::delete_calls(&mut c, a.calls, &a.prefix);
    if json {
        println!("{}", json!({"deleted": a.calls - failed, "failed": failed}));
    } else {
        println!("deleted {} calls, {} refused", a.calls - failed, failed);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Gen(a) => cmd_gen(a, cli.json),
        Cmd::Sink(a) => cmd_sink(a, cli.json),
        Cmd::Search(a) => cmd_search(a, cli.json),
        Cmd::RtpengineSetup(a) => cmd_setup(a, cli.json),
        Cmd::RtpengineDelete(a) => cmd_delete(a, cli.json),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
