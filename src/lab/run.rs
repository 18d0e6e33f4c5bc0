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
use super::report::{Direction, LabReport, Latency};
use super::topo::{self, Topo};
use super::ua::{CallState, CarrierCall, CloudUas, DIALED, TRANSLATED, UacAction, dtmf_packet};
use crate::loadgen::generator::{GenConfig, Pace, run_gen};
use crate::loadgen::sink::{SinkConfig, run_sink_signalled, set_rcvbuf};
use crate::loadgen::transform::{PacketTransform, Plain};
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

#[derive(Debug, Clone)]
pub struct LabOptions {
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
}

const SIP_PORT: u16 = 5060;
const CLOUD_SIP_PORT: u16 = 5080;
const MEDIA_BASE: u16 = 20000;
const SSRC_BASE: u32 = 0x7a11_0000;
const DTMF_SSRC_BASE: u32 = 0x7d00_0000;
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
    let t = Topo::new("", 77)?;
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
    let mut cfg = render(&addrs, mode, true, &std::process::id().to_string());
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
    let mut sbc = start_sbc(opts, &t, &cfg_path, &workdir)?;
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
        ),
        calls: Vec::new(),
        invited_at: Vec::new(),
        pdd: Vec::new(),
        buf: vec![0u8; 65536],
    };
    for i in 0..opts.calls {
        let local = SocketAddr::new(IpAddr::V4(t.carrier_ip), SIP_PORT);
        let media = SocketAddr::new(IpAddr::V4(t.carrier_ip), MEDIA_BASE + 2 * i as u16);
        lab.calls.push(CarrierCall::new(i, local, sbc_sip, media));
    }
    let mut report = LabReport {
        mode_requested: format!("{:?}", opts.mode).to_lowercase(),
        media_mode,
        calls_attempted: opts.calls,
        dialed: DIALED.to_owned(),
        hold_s: opts.hold.as_secs_f64(),
        workdir: workdir.display().to_string(),
        ..LabReport::default()
    };

    lab.place_calls();
    let answered: Vec<usize> = (0..lab.calls.len())
        .filter(|&i| lab.calls[i].state == CallState::Answered)
        .collect();
    report.calls_answered = answered.len();
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
        let media = lab.media(&pairs, &t)?;
        report.dtmf_sent = media.dtmf_sent;
        report.dtmf_received = media.dtmf_received;
        report.carrier_to_cloud = media.to_cloud;
        report.cloud_to_carrier = media.to_carrier;
        report.latency = media.latency;
    }
    report.interrupted = stop.load(Ordering::Relaxed);
    report.calls_ended_cleanly = lab.hang_up(&answered);
    sbc.stop();
    drop(t);
    report.check(opts.max_loss_pct);
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
    stop: &'a AtomicBool,
    carrier_sip: UdpSocket,
    cloud_sip: UdpSocket,
    uas: CloudUas,
    calls: Vec<CarrierCall>,
    invited_at: Vec<Instant>,
    pdd: Vec<f64>,
    buf: Vec<u8>,
}

struct MediaResult {
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
                if std::env::var_os("TOLLGATE_LAB_TRACE").is_some() {
                    eprintln!("cloud -> {from}:\n{r}");
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

    /// DTMF, then audio both ways through the SBC for `hold`, measured by the sink.
    fn media(&mut self, pairs: &[(usize, usize)], t: &Topo) -> Result<MediaResult, String> {
        let n = pairs.len();
        // Sockets: for pair k, carrier media C_k and cloud media D_k, each connected to the SBC's address
        // for it (tollgate answers from the port it advertised: symmetric RTP).
        let mut carrier = Vec::with_capacity(n);
        let mut cloud = Vec::with_capacity(n);
        let mut cloud_keys = Vec::with_capacity(n);
        for &(i, j) in pairs {
            let c = &self.calls[i];
            let sbc_c = c.sbc_media.as_ref().ok_or("answer without media")?.addr;
            let cs = bind_in(&t.carrier, c.media)?;
            cs.connect(sbc_c).map_err(|e| e.to_string())?;
            let d = &self.uas.calls[j];
            let ds = bind_in(&t.cloud, d.media)?;
            ds.connect(d.sbc_media.addr).map_err(|e| e.to_string())?;
            let (suite, inline) = d.sbc_media.crypto.clone().ok_or("no SRTP key offered")?;
            let theirs = MasterKey::from_sdes_inline(suite, &inline).map_err(|e| e.to_string())?;
            for s in [&cs, &ds] {
                set_rcvbuf(s, 1 << 20).map_err(|e| e.to_string())?;
            }
            carrier.push(cs);
            cloud.push(ds);
            cloud_keys.push((theirs, d.key.clone()));
        }

        // DTMF: one digit per call, start/update/end (end sent three times, RFC 4733 2.5.1.4), on its own
        // SSRC; the cloud unprotects with the key tollgate offered and checks the payload type and digit.
        progress(self.opts, "dtmf: sending one RFC 4733 digit per call\n");
        let mut dtmf_received = 0;
        for (k, &(_, j)) in pairs.iter().enumerate() {
            let pt = self.uas.calls[j]
                .sbc_media
                .dtmf_pt
                .unwrap_or(super::ua::DTMF_PT);
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
            let mut ctx = SrtpContext::new(
                cloud_keys[k].0.suite(),
                &cloud_keys[k].0,
                SrtpConfig::default(),
            )
            .map_err(|e| e.to_string())?;
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
                if let Ok(plain) = ctx.unprotect_rtp(&mut b, len)
                    && plain >= 16
                    && b[1] & 0x7f == pt
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

        // Audio: streams 0..n carrier -> cloud (plain out, SRTP in), n..2n cloud -> carrier (SRTP out,
        // plain in). The sink's socket k receives stream k.
        let clone = |s: &UdpSocket| s.try_clone().map_err(|e| e.to_string());
        let mut gen_socks = Vec::with_capacity(2 * n);
        let mut sink_socks = Vec::with_capacity(2 * n);
        let mut txs: Vec<Box<dyn PacketTransform>> = Vec::with_capacity(2 * n);
        let mut rxs: Vec<Box<dyn PacketTransform>> = Vec::with_capacity(2 * n);
        let srtp = |k: &MasterKey| -> Result<Box<dyn PacketTransform>, String> {
            Ok(Box::new(
                SrtpContext::new(k.suite(), k, SrtpConfig::default()).map_err(|e| e.to_string())?,
            ))
        };
        for k in 0..n {
            gen_socks.push(clone(&carrier[k])?);
            sink_socks.push(clone(&cloud[k])?);
            txs.push(Box::new(Plain));
            rxs.push(srtp(&cloud_keys[k].0)?);
        }
        for k in 0..n {
            gen_socks.push(clone(&cloud[k])?);
            sink_socks.push(clone(&carrier[k])?);
            txs.push(srtp(&cloud_keys[k].1)?);
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
            dtmf_sent: n,
            dtmf_received,
            to_cloud: direction(0..n, true),
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
