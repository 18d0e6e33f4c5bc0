//! The `tollgate lab` driver: builds the topology, starts tollgate in the SBC namespace, places the calls
//! with the lab UAs, runs the audio through the load generator and sink, hangs up and fills the report.
//! All SIP is handled on this thread; the audio runs on two more (generator and sink).
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::config::{LabAddrs, render};
use super::flood::{Flood, FloodStats};
use super::report::FloodReport;
use super::report::{Direction, LabReport, Latency};
use super::topo::{self, Topo};
use super::ua::{CallState, CarrierCall, CloudUas, DIALED, TRANSLATED, UacAction, dtmf_packet};
use crate::loadgen::generator::{GenConfig, Pace, run_gen};
use crate::loadgen::sink::{SinkConfig, run_sink_signalled, set_rcvbuf};
use crate::loadgen::transform::{PacketTransform, Plain};
use crate::mgmt::ctl::{CtlReply, CtlRequest};
use crate::sip::Message;
use crate::srtp::{Config as SrtpConfig, MasterKey, SrtpContext};

/// How the media plane should run in the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LabMode {
    /// XDP where it attaches, else sockets (tollgate says which).
    Auto,
    /// AF_XDP, failing if it cannot attach.
    Xdp,
    /// Kernel sockets.
    Socket,
}

/// What sits in the SBC namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Relay {
    /// tollgate itself, with SIP through its B2BUA.
    Tollgate,
    /// rtpengine (Debian `rtpengine`, userspace forwarding), calls set up over its ng protocol: the
    /// media baseline, same sockets, generator and sink.
    Rtpengine,
}

#[derive(Debug, Clone)]
pub struct LabOptions {
    pub relay: Relay,
    /// SRTP toward the cloud (RTP <-> SRTP interworking) or plain RTP both sides.
    pub cloud_srtp: bool,
    pub calls: usize,
    /// Calls placed per second.
    pub rate: f64,
    /// How long the audio runs once every call is up.
    pub hold: Duration,
    pub mode: LabMode,
    /// The tollgate binary to start in the SBC namespace.
    pub binary: PathBuf,
    /// Live counters on stderr.
    pub progress: bool,
    /// Loss above this fails the run.
    pub max_loss_pct: f64,
    /// Flood the SBC from outside every ACL while the calls are placed and talk, for at most this long.
    pub flood: Option<Duration>,
}

const SIP_PORT: u16 = 5060;
/// rtpengine's ng control port inside the SBC namespace.
const RTPENGINE_NG: u16 = 22222;
const CLOUD_SIP_PORT: u16 = 5080;
const MEDIA_BASE: u16 = 20000;
const SSRC_BASE: u32 = 0x7a11_0000;
const DTMF_SSRC_BASE: u32 = 0x7d00_0000;
/// RFC 3261 T1: the first INVITE retransmission interval over UDP.
const T1: Duration = Duration::from_millis(500);
/// Time for one call's final answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

struct Sbc {
    child: Child,
    log: PathBuf,
}

impl Sbc {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (drain; no calls are left) and a bounded wait, then SIGKILL.
    fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sbc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn bind_in(ns: &str, addr: SocketAddr) -> Result<UdpSocket, String> {
    Topo::in_ns(ns, || UdpSocket::bind(addr))?.map_err(|e| format!("bind {addr} in {ns}: {e}"))
}

/// Runs the lab. `stop` (Ctrl-C) ends the call phase early; everything is still hung up and removed.
pub fn run(opts: &LabOptions, stop: &AtomicBool) -> Result<LabReport, String> {
    if !topo::is_root() {
        return Err("tollgate lab needs root (network namespaces)".to_owned());
    }
    let _ = topo::sweep_stale();
    let workdir = std::env::temp_dir().join(format!("tollgate-lab-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).map_err(|e| format!("{}: {e}", workdir.display()))?;
    let mut t = Topo::new("", 77)?;
    if opts.flood.is_some() && opts.relay == Relay::Tollgate {
        t.add_flooder()?;
    }
    let mut report = match opts.relay {
        Relay::Tollgate => run_tollgate(opts, stop, &t, &workdir)?,
        Relay::Rtpengine => run_rtpengine(opts, stop, &t, &workdir)?,
    };
    drop(t);
    report.check(opts.max_loss_pct);
    Ok(report)
}

fn run_tollgate(
    opts: &LabOptions,
    stop: &AtomicBool,
    t: &Topo,
    workdir: &Path,
) -> Result<LabReport, String> {
    let addrs = LabAddrs {
        carrier_ip: t.carrier_ip,
        sbc_carrier_ip: t.sbc_carrier_ip,
        sbc_cloud_ip: t.sbc_cloud_ip,
        cloud_ip: t.cloud_ip,
        cloud_sip_port: CLOUD_SIP_PORT,
    };
    let mode = match opts.mode {
        LabMode::Auto | LabMode::Xdp => "xdp",
        LabMode::Socket => "socket",
    };
    let mut cfg = render(
        &addrs,
        mode,
        opts.cloud_srtp,
        &std::process::id().to_string(),
    );
    if opts.mode == LabMode::Xdp {
        cfg = cfg.replace("mode = \"xdp\"\n", "mode = \"xdp\"\nxdp_required = true\n");
    }
    let cfg_path = workdir.join("tollgate.toml");
    std::fs::write(&cfg_path, &cfg).map_err(|e| format!("{}: {e}", cfg_path.display()))?;

    let carrier_sip = bind_in(
        &t.carrier,
        SocketAddr::new(IpAddr::V4(t.carrier_ip), SIP_PORT),
    )?;
    let cloud_sip = bind_in(
        &t.cloud,
        SocketAddr::new(IpAddr::V4(t.cloud_ip), CLOUD_SIP_PORT),
    )?;
    for s in [&carrier_sip, &cloud_sip] {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let sbc_sip = SocketAddr::new(IpAddr::V4(t.sbc_carrier_ip), SIP_PORT);
    let mut sbc = start_sbc(opts, t, &cfg_path, workdir)?;
    wait_up(&mut sbc, &carrier_sip, sbc_sip)?;
    let media_mode = media_mode(&sbc.log_text());
    progress(opts, &format!("tollgate is up, media mode {media_mode}\n"));

    let mut lab = Lab {
        opts,
        stop,
        carrier_sip,
        cloud_sip,
        uas: CloudUas::new(
            SocketAddr::new(IpAddr::V4(t.cloud_ip), CLOUD_SIP_PORT),
            SocketAddr::new(IpAddr::V4(t.cloud_ip), MEDIA_BASE),
            opts.cloud_srtp,
        ),
        relay_pid: sbc.child.id(),
        calls: Vec::new(),
        invited_at: Vec::new(),
        retransmits: Vec::new(),
        invites_retransmitted: 0,
        pdd: Vec::new(),
        buf: vec![0u8; 65536],
    };
    for i in 0..opts.calls {
        let local = SocketAddr::new(IpAddr::V4(t.carrier_ip), SIP_PORT);
        let media = SocketAddr::new(IpAddr::V4(t.carrier_ip), MEDIA_BASE + 2 * i as u16);
        lab.calls.push(CarrierCall::new(i, local, sbc_sip, media));
    }
    let mut report = LabReport {
        relay: "tollgate".to_owned(),
        sip: true,
        cloud_srtp: opts.cloud_srtp,
        mode_requested: format!("{:?}", opts.mode).to_lowercase(),
        media_mode,
        calls_attempted: opts.calls,
        dialed: DIALED.to_owned(),
        hold_s: opts.hold.as_secs_f64(),
        workdir: workdir.display().to_string(),
        ..LabReport::default()
    };

    // The flood runs through call placement and the audio: new calls must get through it, live ones survive it.
    let rss_before = rss_kb(lab.relay_pid);
    let flood = match (opts.flood, &t.flooder) {
        (Some(max), Some((ns, ip))) => {
            progress(
                opts,
                &format!("flooding {sbc_sip} from {ip} for at most {max:?}\n"),
            );
            Some(Flood::start(
                ns,
                SocketAddr::new(IpAddr::V4(*ip), SIP_PORT),
                sbc_sip,
                max,
            )?)
        }
        _ => None,
    };

    lab.place_calls();
    let answered: Vec<usize> = (0..lab.calls.len())
        .filter(|&i| lab.calls[i].state == CallState::Answered)
        .collect();
    report.calls_answered = answered.len();
    report.invites_retransmitted = lab.invites_retransmitted;
    let mut failures: HashMap<u16, usize> = HashMap::new();
    for c in &lab.calls {
        if let CallState::Failed(code) = c.state {
            *failures.entry(code).or_default() += 1;
        }
    }
    report.calls_failed = failures.values().sum();
    let mut f: Vec<(u16, usize)> = failures.into_iter().collect();
    f.sort();
    report.failures = f;
    let mut pdd = lab.pdd.clone();
    pdd.sort_by(f64::total_cmp);
    report.pdd_ms_p50 = pdd.get(pdd.len() / 2).copied().unwrap_or(0.0);
    report.pdd_ms_max = pdd.last().copied().unwrap_or(0.0);

    let mut seen: Vec<String> = lab.uas.calls.iter().map(|c| c.ruri_user.clone()).collect();
    seen.sort();
    seen.dedup();
    report.cloud_received = seen;
    report.calls_translated = lab
        .uas
        .calls
        .iter()
        .filter(|c| c.ruri_user == TRANSLATED)
        .count();

    // Pair each answered carrier call with the cloud's view of it through the X- header the carrier set.
    let mut pairs = Vec::new();
    for &i in &answered {
        let cloud = lab
            .uas
            .calls
            .iter()
            .position(|c| c.x_context.as_deref() == Some(i.to_string().as_str()));
        if let Some(j) = cloud {
            pairs.push((i, j));
        }
    }
    report.x_header_passed = pairs.len();

    if !pairs.is_empty() && !stop.load(Ordering::Relaxed) {
        let legs = lab.legs_from_sip(&pairs)?;
        let media = lab.media(&legs, t)?;
        report.dtmf_sent = media.dtmf_sent;
        report.dtmf_received = media.dtmf_received;
        report.carrier_to_cloud = media.to_cloud;
        report.cloud_to_carrier = media.to_carrier;
        report.latency = media.latency;
        report.relay_cpu_pct = media.relay_cpu_pct;
    }
    if let Some(f) = flood {
        let stats = f.stop();
        report.flood = Some(flood_report(
            stats,
            t,
            &cfg_path,
            rss_before,
            rss_kb(lab.relay_pid),
        ));
    }
    report.interrupted = stop.load(Ordering::Relaxed);
    report.calls_ended_cleanly = lab.hang_up(&answered);
    sbc.stop();
    Ok(report)
}

/// Resident memory of `pid` in KiB (`VmRSS`), 0 when unreadable.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What the flood did to tollgate, asked over its control socket (bans and counters) and `/proc` (memory).
fn flood_report(
    stats: FloodStats,
    t: &Topo,
    cfg_path: &Path,
    rss_before: u64,
    rss_after: u64,
) -> FloodReport {
    let flooder = t
        .flooder
        .as_ref()
        .map(|f| f.1.to_string())
        .unwrap_or_default();
    let mut r = FloodReport {
        packets: stats.packets,
        send_errors: stats.errors,
        seconds: stats.seconds,
        rate_pps: stats.rate_pps(),
        flooder: flooder.clone(),
        rss_kb_before: rss_before,
        rss_kb_after: rss_after,
        ..FloodReport::default()
    };
    let sock = match crate::config::load_file(cfg_path) {
        Ok(c) => c.mgmt.control_socket,
        Err(e) => {
            r.ctl_error = Some(e.to_string());
            return r;
        }
    };
    match crate::mgmt::ctl::request(&sock, &CtlRequest::BanList) {
        Ok(CtlReply::Bans(b)) => r.banned = b.iter().any(|b| b.addr == flooder),
        Ok(other) => r.ctl_error = Some(format!("ban list: {other:?}")),
        Err(e) => r.ctl_error = Some(format!("{}: {e}", sock.display())),
    }
    if let Ok(CtlReply::Stats(s)) = crate::mgmt::ctl::request(&sock, &CtlRequest::Stats) {
        let n = |k: &str| s.get(k).copied().unwrap_or(0.0) as u64;
        r.sbc_dropped = n("b2bua.guard_dropped") + n("b2bua.acl_dropped");
        r.sbc_rejected = n("b2bua.acl_rejected") + n("b2bua.guard_rejected");
    }
    r
}

/// The same media phase through rtpengine in the SBC namespace: calls set up over ng (offer from the
/// carrier, answer from the cloud, `direction` carrier -> cloud, SRTP toward the cloud when asked), no SIP.
fn run_rtpengine(
    opts: &LabOptions,
    stop: &AtomicBool,
    t: &Topo,
    workdir: &Path,
) -> Result<LabReport, String> {
    use crate::loadgen::ng::{NgClient, Value};
    let conf = workdir.join("rtpengine.conf");
    std::fs::write(
        &conf,
        format!(
            "[rtpengine]\ntable = -1\ninterface = carrier/{};cloud/{}\nlisten-ng = 127.0.0.1:{RTPENGINE_NG}\n\
             foreground = true\nlog-stderr = true\nlog-level = 4\nport-min = 30000\nport-max = 39999\n\
             timeout = 120\ndelete-delay = 0\n",
            t.sbc_carrier_ip, t.sbc_cloud_ip
        ),
    )
    .map_err(|e| format!("{}: {e}", conf.display()))?;
    let log = workdir.join("rtpengine.log");
    let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new("ip")
        .args(["netns", "exec", &t.sbc, "rtpengine"])
        .arg(format!("--config-file={}", conf.display()))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting rtpengine (apt-get install rtpengine-daemon): {e}"))?;
    let mut relay = Sbc { child, log };
    let ng = SocketAddr::from(([127, 0, 0, 1], RTPENGINE_NG));
    let mut client = None;
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && client.is_none() {
        if let Ok(Some(st)) = relay.child.try_wait() {
            return Err(format!("rtpengine exited ({st}):\n{}", relay.log_text()));
        }
        if let Ok(Ok(mut c)) =
            Topo::in_ns(&t.sbc, || NgClient::connect(ng, Duration::from_millis(300)))
            && c.ping().is_ok()
        {
            client = Some(c);
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut client =
        client.ok_or_else(|| format!("rtpengine did not answer ng ping:\n{}", relay.log_text()))?;
    progress(opts, "rtpengine is up (userspace forwarding)\n");

    let mut legs = Vec::with_capacity(opts.calls);
    let mut failed = 0;
    let sdp = |ip: std::net::Ipv4Addr, port: u16, key: Option<&MasterKey>| {
        let (proto, crypto) = match key {
            Some(k) => (
                "RTP/SAVP",
                format!(
                    "a=crypto:1 {} {}\r\n",
                    k.suite().sdes_name(),
                    k.to_sdes_inline()
                ),
            ),
            None => ("RTP/AVP", String::new()),
        };
        format!(
            "v=0\r\no=lab 1 1 IN IP4 {ip}\r\ns=lab\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} {proto} 0 {pt}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:{pt} telephone-event/8000\r\n\
             a=ptime:20\r\na=sendrecv\r\n{crypto}",
            pt = super::ua::DTMF_PT
        )
    };
    for i in 0..opts.calls {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let port = MEDIA_BASE + 2 * i as u16;
        let call_id = format!("lab-rtpe-{i}");
        let mut extra = vec![("direction", Value::list_of_str(&["carrier", "cloud"]))];
        if opts.cloud_srtp {
            extra.push(("transport-protocol", Value::str("RTP/SAVP")));
        }
        let leg = (|| -> Result<MediaLeg, String> {
            let to_cloud = client
                .offer_with(&call_id, "car", &sdp(t.carrier_ip, port, None), extra)
                .map_err(|e| e.to_string())?;
            let to_cloud = super::ua::sdp_media(to_cloud.as_bytes())?;
            let cloud_key = match &to_cloud.crypto {
                Some((suite, _)) if to_cloud.savp => {
                    Some(MasterKey::generate(*suite).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            let relay_key = match &to_cloud.crypto {
                Some((suite, params)) if to_cloud.savp => {
                    Some(MasterKey::from_sdes_inline(*suite, params).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            let to_carrier = client
                .answer(
                    &call_id,
                    "car",
                    "cld",
                    &sdp(t.cloud_ip, port, cloud_key.as_ref()),
                )
                .map_err(|e| e.to_string())?;
            let to_carrier = super::ua::sdp_media(to_carrier.as_bytes())?;
            Ok(MediaLeg {
                carrier_media: SocketAddr::new(IpAddr::V4(t.carrier_ip), port),
                carrier_peer: to_carrier.addr,
                cloud_media: SocketAddr::new(IpAddr::V4(t.cloud_ip), port),
                cloud_peer: to_cloud.addr,
                relay_key,
                cloud_key,
                cloud_dtmf_pt: to_cloud.dtmf_pt.unwrap_or(super::ua::DTMF_PT),
            })
        })();
        match leg {
            Ok(l) => legs.push(l),
            Err(e) => {
                failed += 1;
                progress(opts, &format!("rtpengine call {i}: {e}\n"));
            }
        }
    }
    let carrier_sip = bind_in(
        &t.carrier,
        SocketAddr::new(IpAddr::V4(t.carrier_ip), SIP_PORT),
    )?;
    let cloud_sip = bind_in(
        &t.cloud,
        SocketAddr::new(IpAddr::V4(t.cloud_ip), CLOUD_SIP_PORT),
    )?;
    for s in [&carrier_sip, &cloud_sip] {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let mut lab = Lab {
        opts,
        relay_pid: relay.child.id(),
        stop,
        carrier_sip,
        cloud_sip,
        uas: CloudUas::new(
            SocketAddr::new(IpAddr::V4(t.cloud_ip), CLOUD_SIP_PORT),
            SocketAddr::new(IpAddr::V4(t.cloud_ip), MEDIA_BASE),
            opts.cloud_srtp,
        ),
        calls: Vec::new(),
        invited_at: Vec::new(),
        retransmits: Vec::new(),
        invites_retransmitted: 0,
        pdd: Vec::new(),
        buf: vec![0u8; 65536],
    };
    let mut report = LabReport {
        relay: "rtpengine".to_owned(),
        sip: false,
        cloud_srtp: opts.cloud_srtp,
        mode_requested: "rtpengine".to_owned(),
        media_mode: "rtpengine-userspace".to_owned(),
        calls_attempted: legs.len() + failed,
        calls_answered: legs.len(),
        calls_failed: failed,
        hold_s: opts.hold.as_secs_f64(),
        workdir: workdir.display().to_string(),
        ..LabReport::default()
    };
    if !legs.is_empty() && !stop.load(Ordering::Relaxed) {
        let media = lab.media(&legs, t)?;
        report.dtmf_sent = media.dtmf_sent;
        report.dtmf_received = media.dtmf_received;
        report.carrier_to_cloud = media.to_cloud;
        report.cloud_to_carrier = media.to_carrier;
        report.latency = media.latency;
        report.relay_cpu_pct = media.relay_cpu_pct;
    }
    report.interrupted = stop.load(Ordering::Relaxed);
    let refused = crate::loadgen::ng::delete_calls(&mut client, legs.len(), "lab-rtpe");
    report.calls_ended_cleanly = legs.len().saturating_sub(refused);
    relay.stop();
    Ok(report)
}

fn progress(opts: &LabOptions, s: &str) {
    if opts.progress {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(s.as_bytes());
        let _ = e.flush();
    }
}

fn start_sbc(opts: &LabOptions, t: &Topo, cfg: &Path, workdir: &Path) -> Result<Sbc, String> {
    let log = workdir.join("tollgate.log");
    let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new("ip")
        .args(["netns", "exec", &t.sbc])
        .arg(&opts.binary)
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", opts.binary.display()))?;
    Ok(Sbc { child, log })
}

/// Up when tollgate answers the carrier's OPTIONS; an exit before that is an error with the log.
fn wait_up(sbc: &mut Sbc, s: &UdpSocket, to: SocketAddr) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    let local = s.local_addr().map_err(|e| e.to_string())?;
    let mut n = 0;
    while Instant::now() < end {
        if let Ok(Some(st)) = sbc.child.try_wait() {
            return Err(format!(
                "tollgate exited ({st}) before answering:\n{}",
                sbc.log_text()
            ));
        }
        n += 1;
        let opt = format!(
            "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKup{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:lab@{ip}>;tag=up\r\nTo: <sip:{to}>\r\nCall-ID: lab-up-{n}\r\nCSeq: {n} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            ip = local.ip()
        );
        let _ = s.send_to(opt.as_bytes(), to);
        let wait = Instant::now() + Duration::from_millis(200);
        while Instant::now() < wait {
            match s.recv_from(&mut buf) {
                Ok((k, _)) if buf[..k].starts_with(b"SIP/2.0 200") => return Ok(()),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    Err(format!(
        "tollgate did not answer OPTIONS within 20 s:\n{}",
        sbc.log_text()
    ))
}

/// utime + stime of a process in clock ticks (all its threads), from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14, 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Percent of one core used between two samples `wall` apart.
fn cpu_pct(a: Option<u64>, b: Option<u64>, wall: Duration) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    match (a, b) {
        (Some(a), Some(b)) if wall > Duration::ZERO => {
            100.0 * (b.saturating_sub(a) as f64 / hz) / wall.as_secs_f64()
        }
        _ => 0.0,
    }
}

/// What tollgate's "media anchored" log line says (`Xdp`, `Socket`), or `bypass`/`unknown`.
pub fn media_mode(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("media anchored"))
        .and_then(|l| l.split("mode=").nth(1))
        .and_then(|m| m.split_whitespace().next())
        .map_or_else(
            || "unknown".to_owned(),
            |m| m.trim_matches('"').to_ascii_lowercase(),
        )
}

struct Lab<'a> {
    opts: &'a LabOptions,
    /// The process relaying the media, whose CPU time the audio phase measures.
    relay_pid: u32,
    stop: &'a AtomicBool,
    carrier_sip: UdpSocket,
    cloud_sip: UdpSocket,
    uas: CloudUas,
    calls: Vec<CarrierCall>,
    invited_at: Vec<Instant>,
    /// INVITE retransmissions per call, and in all.
    retransmits: Vec<u32>,
    invites_retransmitted: u64,
    pdd: Vec<f64>,
    buf: Vec<u8>,
}

/// One call's media as the audio phase needs it, whoever set it up (SIP through tollgate, or ng for
/// rtpengine).
struct MediaLeg {
    carrier_media: SocketAddr,
    /// The relay's address toward the carrier.
    carrier_peer: SocketAddr,
    cloud_media: SocketAddr,
    cloud_peer: SocketAddr,
    /// The relay's SRTP key toward the cloud, the cloud's own key; `None` for plain RTP.
    relay_key: Option<MasterKey>,
    cloud_key: Option<MasterKey>,
    cloud_dtmf_pt: u8,
}

struct MediaResult {
    relay_cpu_pct: f64,
    dtmf_sent: usize,
    dtmf_received: usize,
    to_cloud: Direction,
    to_carrier: Direction,
    latency: Latency,
}

impl Lab<'_> {
    /// Serves both SIP sockets until nothing is waiting: the cloud UAS answers requests, the carrier's
    /// calls consume responses (and send their ACKs).
    fn pump(&mut self) -> bool {
        let mut any = false;
        while let Ok((n, from)) = self.cloud_sip.recv_from(&mut self.buf) {
            any = true;
            let Ok(msg) = Message::parse(&self.buf[..n]) else {
                continue;
            };
            for r in self.uas.on_request(&msg) {
                if let Err(e) = self.cloud_sip.send_to(r.as_bytes(), from) {
                    eprintln!("cloud send to {from}: {e}");
                }
            }
        }
        while let Ok((n, from)) = self.carrier_sip.recv_from(&mut self.buf) {
            any = true;
            let Ok(msg) = Message::parse(&self.buf[..n]) else {
                continue;
            };
            if msg.is_request() {
                // In-dialog requests from the SBC (none expected in the lab): answer 200 so nothing hangs.
                let local = self.carrier_sip.local_addr().unwrap_or(from);
                let r = super::ua::reply(&msg, "200 OK", "", local, "");
                let _ = self.carrier_sip.send_to(r.as_bytes(), from);
                continue;
            }
            let cid = msg.call_id();
            let Some(i) = self.calls.iter().position(|c| c.call_id.as_bytes() == cid) else {
                continue;
            };
            let sbc = self.calls[i].sbc;
            match self.calls[i].on_response(&msg) {
                UacAction::Nothing | UacAction::Ended => {}
                UacAction::Send(m) | UacAction::Failed(_, m) => {
                    let _ = self.carrier_sip.send_to(m.as_bytes(), sbc);
                }
                UacAction::Answered(ack) => {
                    let _ = self.carrier_sip.send_to(ack.as_bytes(), sbc);
                    if let Some(t0) = self.invited_at.get(i) {
                        self.pdd.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
        }
        any
    }

    fn idle(&mut self) {
        if !self.pump() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn place_calls(&mut self) {
        let start = Instant::now();
        let gap = Duration::from_secs_f64(1.0 / self.opts.rate.max(0.01));
        let mut next = 0usize;
        let mut last_print = Instant::now();
        loop {
            let interrupted = self.stop.load(Ordering::Relaxed);
            if !interrupted && next < self.calls.len() && start.elapsed() >= gap * next as u32 {
                let inv = self.calls[next].invite();
                let _ = self
                    .carrier_sip
                    .send_to(inv.as_bytes(), self.calls[next].sbc);
                self.invited_at.push(Instant::now());
                self.retransmits.push(0);
                next += 1;
            }
            self.idle();
            for (i, t0) in self.invited_at.iter().enumerate() {
                let c = &mut self.calls[i];
                if matches!(c.state, CallState::Inviting | CallState::Ringing)
                    && t0.elapsed() > ANSWER_TIMEOUT
                {
                    c.state = CallState::Failed(408);
                }
                // Timer A over UDP: the same INVITE again at 0.5, 1.5, 3.5, 7.5 s until something answers.
                let sent = self.retransmits.get(i).copied().unwrap_or(0);
                if c.state == CallState::Inviting
                    && !c.heard
                    && sent < 4
                    && t0.elapsed() >= T1 * ((1u32 << (sent + 1)) - 1)
                {
                    let _ = self.carrier_sip.send_to(c.invite().as_bytes(), c.sbc);
                    if let Some(r) = self.retransmits.get_mut(i) {
                        *r += 1;
                    }
                    self.invites_retransmitted += 1;
                }
            }
            let open = self.calls[..next]
                .iter()
                .filter(|c| matches!(c.state, CallState::Inviting | CallState::Ringing))
                .count();
            if last_print.elapsed() > Duration::from_millis(250) {
                last_print = Instant::now();
                progress(self.opts, &format!("\rcalls: {}", self.call_counts(next)));
            }
            if open == 0 && (next == self.calls.len() || interrupted) {
                break;
            }
        }
        // Unsent calls (Ctrl-C) count as not attempted.
        self.calls.truncate(next);
        progress(self.opts, &format!("\rcalls: {}\n", self.call_counts(next)));
    }

    fn call_counts(&self, placed: usize) -> String {
        let answered = self
            .calls
            .iter()
            .filter(|c| c.state == CallState::Answered)
            .count();
        let failed = self
            .calls
            .iter()
            .filter(|c| matches!(c.state, CallState::Failed(_)))
            .count();
        format!(
            "{placed}/{} placed, {answered} answered, {failed} failed",
            self.calls.len()
        )
    }

    /// The media legs of the answered calls, from what the SIP exchange said.
    fn legs_from_sip(&self, pairs: &[(usize, usize)]) -> Result<Vec<MediaLeg>, String> {
        let mut legs = Vec::with_capacity(pairs.len());
        for &(i, j) in pairs {
            let c = &self.calls[i];
            let d = &self.uas.calls[j];
            let relay_key = match &d.sbc_media.crypto {
                Some((suite, params)) if d.sbc_media.savp => {
                    Some(MasterKey::from_sdes_inline(*suite, params).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            legs.push(MediaLeg {
                carrier_media: c.media,
                carrier_peer: c.sbc_media.as_ref().ok_or("answer without media")?.addr,
                cloud_media: d.media,
                cloud_peer: d.sbc_media.addr,
                relay_key,
                cloud_key: d.key.clone(),
                cloud_dtmf_pt: d.sbc_media.dtmf_pt.unwrap_or(super::ua::DTMF_PT),
            });
        }
        Ok(legs)
    }

    /// DTMF, then audio both ways through the relay for `hold`, measured by the sink.
    fn media(&mut self, legs: &[MediaLeg], t: &Topo) -> Result<MediaResult, String> {
        let n = legs.len();
        // Sockets: for leg k, carrier media C_k and cloud media D_k, each connected to the relay's address
        // for it (the relay sends from the port it advertised: symmetric RTP).
        let mut carrier = Vec::with_capacity(n);
        let mut cloud = Vec::with_capacity(n);
        for l in legs {
            let cs = bind_in(&t.carrier, l.carrier_media)?;
            cs.connect(l.carrier_peer).map_err(|e| e.to_string())?;
            let ds = bind_in(&t.cloud, l.cloud_media)?;
            ds.connect(l.cloud_peer).map_err(|e| e.to_string())?;
            for s in [&cs, &ds] {
                set_rcvbuf(s, 1 << 20).map_err(|e| e.to_string())?;
            }
            carrier.push(cs);
            cloud.push(ds);
        }
        let transform = |k: Option<&MasterKey>| -> Result<Box<dyn PacketTransform>, String> {
            Ok(match k {
                Some(k) => Box::new(
                    SrtpContext::new(k.suite(), k, SrtpConfig::default())
                        .map_err(|e| e.to_string())?,
                ),
                None => Box::new(Plain),
            })
        };

        // DTMF: one digit per call, start/update/end (end sent three times, RFC 4733 2.5.1.4), on its own
        // SSRC; the cloud unprotects with the relay's key and checks the payload type and digit.
        progress(self.opts, "dtmf: sending one RFC 4733 digit per call\n");
        let mut dtmf_received = 0;
        for (k, l) in legs.iter().enumerate() {
            let digit = (k % 10) as u8;
            let ssrc = DTMF_SSRC_BASE + k as u32;
            for (seq, (end, dur)) in [
                (false, 160),
                (false, 320),
                (true, 480),
                (true, 480),
                (true, 480),
            ]
            .into_iter()
            .enumerate()
            {
                let p = dtmf_packet(ssrc, seq as u16, 1600, super::ua::DTMF_PT, digit, end, dur);
                let _ = carrier[k].send(&p);
            }
            let mut rx = transform(l.relay_key.as_ref())?;
            cloud[k]
                .set_read_timeout(Some(Duration::from_millis(20)))
                .map_err(|e| e.to_string())?;
            let end = Instant::now() + Duration::from_millis(500);
            let mut got = false;
            let mut b = [0u8; 256];
            while Instant::now() < end && !got {
                self.pump();
                let Ok(len) = cloud[k].recv(&mut b) else {
                    continue;
                };
                if let Ok(plain) = rx.unprotect(&mut b, len)
                    && plain >= 16
                    && b[1] & 0x7f == l.cloud_dtmf_pt
                    && b[12] == digit
                {
                    got = true;
                }
            }
            if got {
                dtmf_received += 1;
            }
        }
        // Late DTMF retransmissions must not reach the sink.
        std::thread::sleep(Duration::from_millis(50));
        for s in &cloud {
            let _ = s.set_nonblocking(true);
            let mut b = [0u8; 2048];
            while s.recv(&mut b).is_ok() {}
            let _ = s.set_nonblocking(false);
        }

        // Audio: streams 0..n carrier -> cloud (plain out, the relay's SRTP in), n..2n cloud -> carrier
        // (the cloud's SRTP out, plain in). The sink's socket k receives stream k.
        let clone = |s: &UdpSocket| s.try_clone().map_err(|e| e.to_string());
        let mut gen_socks = Vec::with_capacity(2 * n);
        let mut sink_socks = Vec::with_capacity(2 * n);
        let mut txs: Vec<Box<dyn PacketTransform>> = Vec::with_capacity(2 * n);
        let mut rxs: Vec<Box<dyn PacketTransform>> = Vec::with_capacity(2 * n);
        for (k, l) in legs.iter().enumerate() {
            gen_socks.push(clone(&carrier[k])?);
            sink_socks.push(clone(&cloud[k])?);
            txs.push(Box::new(Plain));
            rxs.push(transform(l.relay_key.as_ref())?);
        }
        for (k, l) in legs.iter().enumerate() {
            gen_socks.push(clone(&cloud[k])?);
            sink_socks.push(clone(&carrier[k])?);
            txs.push(transform(l.cloud_key.as_ref())?);
            rxs.push(Box::new(Plain));
        }
        let gen_cfg = GenConfig {
            pace: Pace::Paced {
                pps_per_stream: 50,
                jitter_us: 0,
            },
            duration: self.opts.hold,
            payload_len: crate::loadgen::wire::G711_PAYLOAD,
            ssrc_base: SSRC_BASE,
            core: None,
        };
        let sink_cfg = SinkConfig {
            streams: 2 * n,
            ssrc_base: SSRC_BASE,
            max_duration: self.opts.hold + Duration::from_secs(30),
            core: None,
            count_only: false,
        };
        let stop_gen = AtomicBool::new(false);
        let stop_sink = AtomicBool::new(false);
        let ready = AtomicBool::new(false);
        let started = Instant::now();
        let cpu0 = cpu_ticks(self.relay_pid);
        let mut relay_cpu = 0.0;
        let (g, k) = std::thread::scope(|sc| {
            let sink = sc
                .spawn(|| run_sink_signalled(&sink_socks, &mut rxs, &sink_cfg, &stop_sink, &ready));
            while !ready.load(Ordering::Acquire) && !sink.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let gen_thread = sc.spawn(|| run_gen(&gen_socks, &mut txs, &gen_cfg, &stop_gen));
            let mut last = Instant::now();
            while !gen_thread.is_finished() {
                if self.stop.load(Ordering::Relaxed) {
                    stop_gen.store(true, Ordering::Relaxed);
                }
                self.idle();
                if last.elapsed() > Duration::from_millis(500) {
                    last = Instant::now();
                    progress(
                        self.opts,
                        &format!(
                            "\raudio: {:.1}/{:.1} s, {n} calls, 50 packets/s each way",
                            started.elapsed().as_secs_f64(),
                            self.opts.hold.as_secs_f64()
                        ),
                    );
                }
            }
            let g = gen_thread.join();
            let cpu1 = cpu_ticks(self.relay_pid);
            relay_cpu = cpu_pct(cpu0, cpu1, started.elapsed());
            let grace = Instant::now() + Duration::from_millis(200);
            while Instant::now() < grace {
                self.idle();
            }
            stop_sink.store(true, Ordering::Relaxed);
            (g, sink.join())
        });
        progress(self.opts, "\n");
        let g = g.map_err(|_| "generator thread panicked")?;
        let k = k.map_err(|_| "sink thread panicked")?;

        let direction = |range: std::ops::Range<usize>, srtp_in: bool| {
            let mut d = Direction {
                streams: range.len(),
                ..Direction::default()
            };
            let mut jitter_sum = 0.0;
            for s in range.clone() {
                let st = &k.per_stream[s];
                let sent = g.sent_per_stream.get(s).copied().unwrap_or(0);
                d.sent += sent;
                d.received += st.unique();
                d.duplicates += st.duplicates;
                d.bad_payload += st.bad_payload;
                d.srtp_auth_failures += st.auth_failures;
                if srtp_in {
                    d.srtp_authenticated += st.received;
                }
                let jit = st.jitter_ns / 1e6;
                jitter_sum += jit;
                d.jitter_ms_max = d.jitter_ms_max.max(jit);
            }
            d.lost = d.sent.saturating_sub(d.received);
            d.loss_pct = if d.sent == 0 {
                0.0
            } else {
                100.0 * d.lost as f64 / d.sent as f64
            };
            d.jitter_ms_mean = if range.is_empty() {
                0.0
            } else {
                jitter_sum / range.len() as f64
            };
            d
        };
        let latency = k
            .latency
            .as_ref()
            .map(|l| Latency {
                packets: l.count,
                p50_us: l.p50_us,
                p99_us: l.p99_us,
                p999_us: l.p999_us,
                max_us: l.max_us,
            })
            .unwrap_or_default();
        Ok(MediaResult {
            relay_cpu_pct: relay_cpu,
            dtmf_sent: n,
            dtmf_received,
            to_cloud: direction(0..n, legs.iter().any(|l| l.relay_key.is_some())),
            to_carrier: direction(n..2 * n, false),
            latency,
        })
    }

    /// BYE every answered call and wait (bounded) for the 200s; returns how many ended cleanly.
    fn hang_up(&mut self, answered: &[usize]) -> usize {
        for &i in answered {
            let bye = self.calls[i].bye();
            let _ = self.carrier_sip.send_to(bye.as_bytes(), self.calls[i].sbc);
        }
        let end = Instant::now() + Duration::from_secs(5);
        let done = |calls: &[CarrierCall]| {
            answered
                .iter()
                .filter(|&&i| calls[i].state == CallState::Ended)
                .count()
        };
        while Instant::now() < end && done(&self.calls) < answered.len() {
            self.idle();
        }
        // The cloud must have received each BYE too.
        let cloud_byes = self.uas.calls.iter().filter(|c| c.bye_received).count();
        done(&self.calls).min(cloud_byes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_mode_is_read_from_the_log_line() {
        let log = "2026-12-06T03:00:00Z  INFO tollgate::app: media anchored mode=Xdp workers=1 carrier=10.77.1.1\n";
        assert_eq!(media_mode(log), "xdp");
        assert_eq!(media_mode("nothing"), "unknown");
    }
}
