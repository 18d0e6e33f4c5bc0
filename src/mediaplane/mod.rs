//! The media plane: the media pipeline wired to a driver (AF_XDP or kernel sockets), as the binary runs it.
//!
//! [`MediaPlane::start`] tries XDP when asked (and falls back to kernel sockets with a logged reason unless
//! XDP is required), starts one worker per configured core, each with its own `media::Pipeline` (SRTP
//! contexts from [`srtp::SdesFactory`]), and returns the [`FanoutSink`] the signaling side programs flows
//! through (`media::FlowSink`): every worker's [`CommandQueue`] first, then, in XDP mode, the BPF `flows`
//! map ([`xdp::BpfFlowMap`]); on removal the map first (DESIGN.md, "Order of programming"). Workers report
//! [`MediaEvent`](crate::media::MediaEvent)s into one [`EventQueue`].
//!
//! Which worker sees a flow: the entry goes to every worker, so the choice is the driver's alone. Socket
//! mode: `destination port % workers` (the packet sockets' fanout program, see `fastpath::socket`). XDP
//! mode: worker `i` serves receive queue `i` of every configured interface, and the NIC's RSS picks the
//! queue. Either way all packets of one flow land on one worker, so per-flow state needs no lock.
//!
//! This module may use `media`, `srtp` and `fastpath`; it knows flows, not calls.

pub mod socket;
pub mod srtp;
pub mod worker;
pub mod xdp;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fastpath::socket::{Scheme, SocketMedia, SocketMediaConfig, SocketMediaError};
use crate::fastpath::xdp::{
    BindMode, ModePolicy, NeighThread, PortSpec, WorkerConfig, WorkerHandle, XdpError, XdpProgram,
    spawn_worker,
};
use crate::media::{CommandQueue, CountersSnapshot, EventQueue, FanoutSink, WorkerCounters};

pub use socket::{SocketHandler, Tick};
pub use srtp::SdesFactory;
pub use xdp::{BpfFlowMap, XdpHandler};

/// Which driver to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaMode {
    /// AF_XDP (falls back to `Socket` unless `xdp_required`).
    Xdp,
    #[default]
    Socket,
}

/// The driver that actually runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveMode {
    Xdp,
    Socket,
}

/// Settings of the media plane (the binary fills them from `[media]`).
#[derive(Debug, Clone)]
pub struct MediaPlaneConfig {
    pub mode: MediaMode,
    /// In XDP mode, fail instead of falling back to sockets.
    pub xdp_required: bool,
    /// Interfaces XDP attaches to (worker `i` serves queue `i` of each). Unused in socket mode.
    pub interfaces: Vec<String>,
    /// Our media addresses (socket mode's packet filter; flows in XDP mode may use any local address).
    pub addrs: Vec<IpAddr>,
    /// One worker per core, pinned.
    pub cores: Vec<usize>,
    pub port_min: u16,
    pub port_max: u16,
    /// Flow-table slots preallocated per worker.
    pub flows_per_worker: usize,
    /// Bounded command queue per worker and the shared event queue.
    pub cmd_queue: usize,
    pub event_queue: usize,
    /// How often idle socket workers are woken to apply commands and check media timeouts.
    pub tick: Duration,
    /// Socket mode: scheme and netfilter chain tag (one per instance in a namespace).
    pub socket_scheme: Scheme,
    pub rule_tag: String,
    /// XDP mode: attach policy, bind mode, UMEM frames per worker.
    pub xdp_attach: ModePolicy,
    pub xdp_bind: BindMode,
    pub xdp_frames: u32,
    /// Worker `i` beats `heartbeats[i]` (watchdog and `/health`); none: not watched.
    pub heartbeats: Vec<crate::ops::notify::Heartbeat>,
}

impl Default for MediaPlaneConfig {
    fn default() -> Self {
        MediaPlaneConfig {
            mode: MediaMode::Socket,
            xdp_required: false,
            interfaces: Vec::new(),
            addrs: Vec::new(),
            cores: vec![0],
            port_min: 30000,
            port_max: 49999,
            flows_per_worker: 8192,
            cmd_queue: 4096,
            event_queue: 16384,
            tick: Duration::from_millis(50),
            socket_scheme: Scheme::Auto,
            rule_tag: "tollgate".into(),
            xdp_attach: ModePolicy::Auto,
            xdp_bind: BindMode::Auto,
            xdp_frames: 8192,
            heartbeats: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaPlaneError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("XDP required but unavailable: {0}")]
    XdpRequired(String),
    #[error("socket media driver: {0}")]
    Socket(#[from] SocketMediaError),
}

/// Driver-level counters of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverCounters {
    Socket(crate::fastpath::socket::StatsSnapshot),
    Xdp(crate::fastpath::xdp::WorkerCounters),
}

/// One worker's counters: the pipeline's and the driver's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub pipeline: CountersSnapshot,
    pub driver: DriverCounters,
}

struct XdpDriver {
    // Field order = drop order: workers, then the program (detach), then the neighbour thread.
    workers: Vec<WorkerHandle<XdpHandler>>,
    prog: XdpProgram,
    _neigh: NeighThread,
}

#[allow(clippy::large_enum_variant)] // one per plane, never moved on a hot path
enum Driver {
    Socket(SocketMedia<Tick>),
    Xdp(XdpDriver),
}

/// The running media plane. Dropping it stops the workers (as [`MediaPlane::stop`] does).
pub struct MediaPlane {
    driver: Option<Driver>,
    events: Arc<EventQueue>,
    pipeline_counters: Vec<Arc<WorkerCounters>>,
    fallback_reason: Option<String>,
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

fn queues(cfg: &MediaPlaneConfig) -> Vec<Arc<CommandQueue>> {
    (0..cfg.cores.len().max(1))
        .map(|_| Arc::new(CommandQueue::new(cfg.cmd_queue.max(1))))
        .collect()
}

fn start_xdp(
    cfg: &MediaPlaneConfig,
    qs: &[Arc<CommandQueue>],
    events: &Arc<EventQueue>,
    base: Instant,
) -> Result<(XdpDriver, Vec<Arc<WorkerCounters>>, BpfFlowMap), String> {
    if cfg.interfaces.is_empty() {
        return Err("no interfaces configured for XDP".into());
    }
    let s = |e: XdpError| e.to_string();
    let mut prog = XdpProgram::load().map_err(s)?;
    for iface in &cfg.interfaces {
        let mode = prog.attach(iface, cfg.xdp_attach).map_err(s)?;
        tracing::info!(iface, ?mode, "XDP program attached");
    }
    let neigh = NeighThread::start().map_err(|e| format!("neighbour table: {e}"))?;
    let mut workers = Vec::with_capacity(qs.len());
    let mut counters = Vec::with_capacity(qs.len());
    for (i, q) in qs.iter().enumerate() {
        let handler = XdpHandler::new(cfg.flows_per_worker, q.clone(), events.clone(), base)
            .with_heartbeat(cfg.heartbeats.get(i).cloned());
        counters.push(handler.counters_handle());
        let wcfg = WorkerConfig {
            ports: cfg
                .interfaces
                .iter()
                .map(|iface| PortSpec {
                    iface: iface.clone(),
                    queue: i as u32,
                })
                .collect(),
            core: cfg.cores.get(i).copied(),
            frames: cfg.xdp_frames,
            bind: cfg.xdp_bind,
            ..WorkerConfig::default()
        };
        // On error the already spawned workers stop when `workers` drops, before `prog` detaches.
        workers.push(spawn_worker(wcfg, handler, &mut prog, neigh.table()).map_err(s)?);
    }
    let map = BpfFlowMap::new(prog.flows_clone().map_err(s)?);
    Ok((
        XdpDriver {
            workers,
            prog,
            _neigh: neigh,
        },
        counters,
        map,
    ))
}

impl MediaPlane {
    /// Starts the workers in the calling thread's network namespace. Returns the plane and the one
    /// [`FanoutSink`] for the signaling side (a single producer: the sink's all-or-nothing fan-out relies
    /// on it).
    pub fn start(cfg: &MediaPlaneConfig) -> Result<(MediaPlane, FanoutSink), MediaPlaneError> {
        if cfg.cores.is_empty() {
            return Err(MediaPlaneError::Config("no media cores configured".into()));
        }
        let events = Arc::new(EventQueue::new(cfg.event_queue.max(1)));
        let base = Instant::now();
        let qs = queues(cfg);
        let mut fallback_reason = None;
        if cfg.mode == MediaMode::Xdp {
            match start_xdp(cfg, &qs, &events, base) {
                Ok((driver, counters, map)) => {
                    let sink = FanoutSink::with_map(qs, Box::new(map));
                    let plane = MediaPlane {
                        driver: Some(Driver::Xdp(driver)),
                        events,
                        pipeline_counters: counters,
                        fallback_reason: None,
                        ticker: None,
                    };
                    return Ok((plane, sink));
                }
                Err(e) if cfg.xdp_required => return Err(MediaPlaneError::XdpRequired(e)),
                Err(e) => {
                    tracing::warn!(reason = %e, "XDP unavailable, media runs on kernel sockets");
                    fallback_reason = Some(e);
                }
            }
        }
        let scfg = SocketMediaConfig {
            addrs: cfg.addrs.clone(),
            port_min: cfg.port_min,
            port_max: cfg.port_max,
            cores: cfg.cores.clone(),
            scheme: cfg.socket_scheme,
            rule_tag: cfg.rule_tag.clone(),
            ..SocketMediaConfig::default()
        };
        let mut counters = Vec::with_capacity(qs.len());
        let sm = SocketMedia::start(&scfg, |w| {
            let q = qs
                .get(w)
                .cloned()
                .unwrap_or_else(|| Arc::new(CommandQueue::new(1)));
            let h = SocketHandler::new(cfg.flows_per_worker, q, events.clone(), base)
                .with_heartbeat(cfg.heartbeats.get(w).cloned());
            counters.push(h.counters());
            h
        })?;
        let senders: Vec<_> = (0..sm.workers()).filter_map(|w| sm.sender(w)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let tick = cfg.tick.max(Duration::from_millis(1));
        let ticker = std::thread::Builder::new()
            .name("tg-media-tick".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    for s in &senders {
                        // A full channel already holds a tick.
                        let _ = s.try_send(Tick);
                    }
                }
            })
            .map_err(|e| MediaPlaneError::Socket(SocketMediaError::Spawn(e)))?;
        let sink = FanoutSink::new(qs);
        Ok((
            MediaPlane {
                driver: Some(Driver::Socket(sm)),
                events,
                pipeline_counters: counters,
                fallback_reason,
                ticker: Some((stop, ticker)),
            },
            sink,
        ))
    }

    pub fn mode(&self) -> ActiveMode {
        match self.driver {
            Some(Driver::Xdp(_)) => ActiveMode::Xdp,
            _ => ActiveMode::Socket,
        }
    }

    /// Why XDP was asked for but not used.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The workers' events (latched, timeout, DTMF, stats); the signaling side pops them.
    pub fn events(&self) -> Arc<EventQueue> {
        self.events.clone()
    }

    pub fn workers(&self) -> usize {
        self.pipeline_counters.len()
    }

    /// Counters of every worker, in worker order.
    pub fn counters(&self) -> Vec<WorkerSnapshot> {
        let driver: Vec<DriverCounters> = match &self.driver {
            Some(Driver::Socket(s)) => s
                .all_stats()
                .into_iter()
                .map(DriverCounters::Socket)
                .collect(),
            Some(Driver::Xdp(x)) => x
                .workers
                .iter()
                .map(|w| DriverCounters::Xdp(w.stats().read()))
                .collect(),
            None => Vec::new(),
        };
        self.pipeline_counters
            .iter()
            .zip(driver)
            .map(|(p, d)| WorkerSnapshot {
                pipeline: p.snapshot(),
                driver: d,
            })
            .collect()
    }

    /// The XDP steering program's counters (XDP mode only).
    pub fn xdp_counters(&self) -> Option<crate::fastpath::xdp::XdpCounters> {
        match &self.driver {
            Some(Driver::Xdp(x)) => x.prog.read_counters().ok(),
            _ => None,
        }
    }

    /// Stops the workers, joins them, detaches XDP / removes the socket driver's rule.
    pub fn stop(mut self) -> Result<(), MediaPlaneError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), MediaPlaneError> {
        if let Some((stop, t)) = self.ticker.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = t.join();
        }
        match self.driver.take() {
            Some(Driver::Socket(s)) => s.stop()?,
            Some(Driver::Xdp(mut x)) => {
                for w in x.workers.drain(..) {
                    let _ = w.stop();
                }
                drop(x);
            }
            None => {}
        }
        Ok(())
    }
}

impl Drop for MediaPlane {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "stopping the media plane");
        }
    }
}
