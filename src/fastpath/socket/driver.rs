//! Lifecycle: open the sockets, install the drop rule, start pinned workers, stop them and clean up.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError, bounded};

use super::handler::PacketHandler;
use super::packet::{Common, PacketWorker};
use super::perport::{PerPortWorker, PortTable};
use super::rules::{DropRule, RuleError, RuleTools};
use super::stats::{StatsSnapshot, WorkerStats};
use super::{bpf, sys};

/// Which receive scheme to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// Packet sockets; per-port sockets (logged) if their prerequisites are missing.
    #[default]
    Auto,
    /// Packet sockets or fail.
    PacketSocket,
    /// One UDP socket per address and port (small ranges only).
    PerPortSockets,
}

/// The scheme actually running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveScheme {
    PacketSocket,
    PerPortSockets,
}

/// Driver configuration.
#[derive(Debug, Clone)]
pub struct SocketMediaConfig {
    /// Our media addresses (concrete, configured on an interface of the current network namespace).
    pub addrs: Vec<IpAddr>,
    /// Media port range, inclusive.
    pub port_min: u16,
    pub port_max: u16,
    /// One worker per entry, pinned to that core id; empty = one unpinned worker.
    pub cores: Vec<usize>,
    pub scheme: Scheme,
    /// Packets per recvmmsg/sendmmsg (1..=64).
    pub batch: usize,
    /// Longest an idle worker blocks before it looks at its command queue and the stop flag again.
    pub idle_wait: Duration,
    /// Receive (and raw transmit) buffer per packet socket.
    pub rcvbuf_bytes: usize,
    /// Receive buffer per UDP socket of the per-port fallback (a ceiling: memory is used only when queued).
    pub per_port_rcvbuf_bytes: usize,
    /// Capacity of each worker's command queue.
    pub cmd_queue: usize,
    /// Names the netfilter chain `TGMEDIA-<tag>`; one tag per running instance in a namespace.
    pub rule_tag: String,
    /// The iptables/ip6tables commands that install the chain.
    pub rule_tools: RuleTools,
}

impl Default for SocketMediaConfig {
    fn default() -> Self {
        SocketMediaConfig {
            addrs: Vec::new(),
            port_min: 30000,
            port_max: 49999,
            cores: Vec::new(),
            scheme: Scheme::Auto,
            batch: 64,
            idle_wait: Duration::from_millis(2),
            rcvbuf_bytes: 8 << 20,
            per_port_rcvbuf_bytes: 1 << 20,
            cmd_queue: 4096,
            rule_tag: "tollgate".into(),
            rule_tools: RuleTools::default(),
        }
    }
}

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum SocketMediaError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cBPF: {0}")]
    Bpf(#[from] bpf::BpfError),
    #[error("packet socket scheme: {0}")]
    Packet(io::Error),
    #[error("drop rule: {0}")]
    Rule(#[from] RuleError),
    #[error("per-port sockets: {0}")]
    PerPort(io::Error),
    #[error("per-port sockets need {need} descriptors, the hard limit is {limit}")]
    TooManyPorts { need: u64, limit: u64 },
    #[error("packet scheme unavailable ({packet}); per-port fallback failed too: {fallback}")]
    NoScheme { packet: String, fallback: String },
    #[error("spawning a worker: {0}")]
    Spawn(io::Error),
}

struct Worker<C> {
    thread: Option<JoinHandle<()>>,
    cmds: Sender<C>,
    stats: Arc<WorkerStats>,
}

/// The running kernel-socket media driver. Dropping it stops it (as [`SocketMedia::stop`] does).
pub struct SocketMedia<C: Send + 'static> {
    workers: Vec<Worker<C>>,
    stop: Arc<AtomicBool>,
    rule: Option<DropRule>,
    scheme: ActiveScheme,
    fallback_reason: Option<String>,
}

struct PacketSockets {
    rx: Vec<Vec<OwnedFd>>,
    tx4: Vec<OwnedFd>,
    tx6: Vec<OwnedFd>,
    rule: DropRule,
}

fn open_packet(cfg: &SocketMediaConfig, n: usize) -> Result<PacketSockets, SocketMediaError> {
    let v4: Vec<_> = cfg
        .addrs
        .iter()
        .filter_map(|a| {
            if let IpAddr::V4(a) = a {
                Some(*a)
            } else {
                None
            }
        })
        .collect();
    let v6: Vec<_> = cfg
        .addrs
        .iter()
        .filter_map(|a| {
            if let IpAddr::V6(a) = a {
                Some(*a)
            } else {
                None
            }
        })
        .collect();
    let mut rx: Vec<Vec<OwnedFd>> = (0..n).map(|_| Vec::new()).collect();
    let families: [(bool, u16); 2] = [
        (false, libc::ETH_P_IP as u16),
        (true, libc::ETH_P_IPV6 as u16),
    ];
    for (is6, ethertype) in families {
        let filter = match (is6, v4.is_empty(), v6.is_empty()) {
            (false, false, _) => bpf::ipv4_filter(&v4, cfg.port_min, cfg.port_max)?,
            (true, _, false) => bpf::ipv6_filter(&v6, cfg.port_min, cfg.port_max)?,
            _ => continue,
        };
        let fanout = bpf::fanout_by_dport(is6, n)?;
        let mut group = None;
        // Sockets join in worker order: the fanout program's index i is worker i.
        for w in rx.iter_mut() {
            let fd = sys::packet_socket(ethertype, &filter, cfg.idle_wait)
                .map_err(SocketMediaError::Packet)?;
            let _ = sys::set_rcvbuf(&fd, cfg.rcvbuf_bytes);
            match group {
                None => {
                    group =
                        Some(sys::create_fanout(&fd, &fanout).map_err(SocketMediaError::Packet)?)
                }
                Some(id) => sys::join_fanout(&fd, id).map_err(SocketMediaError::Packet)?,
            }
            w.push(fd);
        }
    }
    let mut tx4 = Vec::new();
    let mut tx6 = Vec::new();
    for _ in 0..n {
        if !v4.is_empty() {
            let fd = sys::raw_tx_socket(false).map_err(SocketMediaError::Packet)?;
            let _ = sys::set_sndbuf(&fd, cfg.rcvbuf_bytes);
            tx4.push(fd);
        }
        if !v6.is_empty() {
            let fd = sys::raw_tx_socket(true).map_err(SocketMediaError::Packet)?;
            let _ = sys::set_sndbuf(&fd, cfg.rcvbuf_bytes);
            tx6.push(fd);
        }
    }
    let rule = DropRule::install(
        &cfg.rule_tools,
        &cfg.rule_tag,
        &cfg.addrs,
        cfg.port_min,
        cfg.port_max,
    )?;
    Ok(PacketSockets { rx, tx4, tx6, rule })
}

fn open_per_port(cfg: &SocketMediaConfig) -> Result<PortTable, SocketMediaError> {
    let ports = u64::from(cfg.port_max - cfg.port_min) + 1;
    let need = ports * cfg.addrs.len() as u64;
    let (_, hard) = sys::nofile_limits();
    // Headroom for everything else the process opens (SIP sockets, logs, epoll, the workers' own fds).
    let limit = hard.saturating_sub(256);
    if need > limit {
        return Err(SocketMediaError::TooManyPorts { need, limit });
    }
    sys::raise_nofile(need + 512);
    PortTable::open(
        &cfg.addrs,
        cfg.port_min,
        cfg.port_max,
        cfg.rcvbuf_bytes.min(256 << 10),
    )
    .map_err(SocketMediaError::PerPort)
}

impl<C: Send + 'static> SocketMedia<C> {
    /// Open the sockets in the calling thread's network namespace, install the drop rule (packet scheme) and
    /// start one worker per configured core, each with its own handler from `make_handler(worker_index)`.
    pub fn start<H, F>(
        cfg: &SocketMediaConfig,
        mut make_handler: F,
    ) -> Result<Self, SocketMediaError>
    where
        H: PacketHandler<Cmd = C>,
        F: FnMut(usize) -> H,
    {
        if cfg.addrs.is_empty()
            || cfg
                .addrs
                .iter()
                .any(|a| a.is_unspecified() || a.is_multicast())
        {
            return Err(SocketMediaError::Config(
                "media addresses must be concrete unicast addresses".into(),
            ));
        }
        if cfg.port_min > cfg.port_max || cfg.port_min == 0 {
            return Err(SocketMediaError::Config(format!(
                "bad port range {}..={}",
                cfg.port_min, cfg.port_max
            )));
        }
        let n = cfg.cores.len().max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let (scheme, fallback_reason, mut packet, table) = match cfg.scheme {
            Scheme::PacketSocket => (
                ActiveScheme::PacketSocket,
                None,
                Some(open_packet(cfg, n)?),
                None,
            ),
            Scheme::PerPortSockets => (
                ActiveScheme::PerPortSockets,
                None,
                None,
                Some(Arc::new(open_per_port(cfg)?)),
            ),
            Scheme::Auto => match open_packet(cfg, n) {
                Ok(p) => (ActiveScheme::PacketSocket, None, Some(p), None),
                Err(e) => {
                    let why = e.to_string();
                    tracing::warn!(reason = %why, "packet-socket media scheme unavailable, falling back to per-port UDP sockets");
                    let t = open_per_port(cfg).map_err(|f| SocketMediaError::NoScheme {
                        packet: why.clone(),
                        fallback: f.to_string(),
                    })?;
                    (
                        ActiveScheme::PerPortSockets,
                        Some(why),
                        None,
                        Some(Arc::new(t)),
                    )
                }
            },
        };
        let mut me = SocketMedia {
            workers: Vec::with_capacity(n),
            stop: stop.clone(),
            rule: None,
            scheme,
            fallback_reason,
        };
        let (mut rx, mut tx4, mut tx6) = match packet.as_mut() {
            Some(p) => (
                std::mem::take(&mut p.rx).into_iter(),
                std::mem::take(&mut p.tx4).into_iter(),
                std::mem::take(&mut p.tx6).into_iter(),
            ),
            None => (
                Vec::new().into_iter(),
                Vec::new().into_iter(),
                Vec::new().into_iter(),
            ),
        };
        me.rule = packet.map(|p| p.rule);
        for i in 0..n {
            let (tx, cmds) = bounded(cfg.cmd_queue.max(1));
            let stats = Arc::new(WorkerStats::default());
            let common = Common {
                handler: make_handler(i),
                cmds,
                stats: stats.clone(),
                stop: stop.clone(),
                core: cfg.cores.get(i).map(|&id| core_affinity::CoreId { id }),
                batch: cfg.batch,
                idle_wait: cfg.idle_wait,
            };
            let builder = std::thread::Builder::new().name(format!("tg-media-{i}"));
            let spawned = match &table {
                Some(t) => {
                    let w = PerPortWorker {
                        common,
                        table: t.clone(),
                        index: i,
                        workers: n,
                    };
                    builder.spawn(move || w.run())
                }
                None => {
                    let w = PacketWorker {
                        common,
                        rx: rx.next().unwrap_or_default(),
                        tx4: tx4.next(),
                        tx6: tx6.next(),
                    };
                    builder.spawn(move || w.run())
                }
            };
            let thread = spawned.map_err(SocketMediaError::Spawn)?; // `me` drops: stops the started ones
            me.workers.push(Worker {
                thread: Some(thread),
                cmds: tx,
                stats,
            });
        }
        tracing::info!(scheme = ?me.scheme, workers = n, min = cfg.port_min, max = cfg.port_max, "socket media driver started");
        Ok(me)
    }

    pub fn scheme(&self) -> ActiveScheme {
        self.scheme
    }

    /// Why the packet scheme was not used, when `Scheme::Auto` fell back.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The worker that receives packets sent to `local` (destination port % workers, both schemes).
    pub fn worker_for(&self, local: SocketAddr) -> usize {
        bpf::worker_for_port(local.port(), self.workers.len())
    }

    /// Queue a command for one worker; gives it back if the queue is full or the worker is gone.
    pub fn try_send(&self, worker: usize, cmd: C) -> Result<(), C> {
        match self.workers.get(worker) {
            Some(w) => w.cmds.try_send(cmd).map_err(|e| match e {
                TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
            }),
            None => Err(cmd),
        }
    }

    /// A clonable sender for one worker's queue (for the control plane's FlowSink).
    pub fn sender(&self, worker: usize) -> Option<Sender<C>> {
        self.workers.get(worker).map(|w| w.cmds.clone())
    }

    /// Counters of one worker.
    pub fn stats(&self, worker: usize) -> Option<StatsSnapshot> {
        self.workers.get(worker).map(|w| w.stats.snapshot())
    }

    /// Counters of every worker, in worker order.
    pub fn all_stats(&self) -> Vec<StatsSnapshot> {
        self.workers.iter().map(|w| w.stats.snapshot()).collect()
    }

    /// Stop the workers (each notices within `idle_wait`), join them, close their sockets, remove the rule.
    pub fn stop(mut self) -> Result<(), SocketMediaError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), SocketMediaError> {
        self.stop.store(true, Ordering::Relaxed);
        for w in &mut self.workers {
            if let Some(t) = w.thread.take()
                && t.join().is_err()
            {
                tracing::error!("a media worker panicked");
            }
        }
        // Sockets are closed (the workers owned them) before the rule goes, so no packet meets neither.
        match self.rule.as_mut() {
            Some(r) => r.remove().map_err(SocketMediaError::Rule),
            None => Ok(()),
        }
    }
}

impl<C: Send + 'static> Drop for SocketMedia<C> {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "socket media driver shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    //! The per-port scheme on loopback needs no privileges, so the whole lifecycle (start, commands, batched
    //! relay, stats, stop) is also covered where the namespace tests are skipped.
    use super::*;
    use crate::fastpath::socket::{HandlerDrop, RxPacket, Verdict};
    use std::net::UdpSocket;
    use std::time::Instant;

    /// Relays to the address set by the last command.
    struct To(Option<SocketAddr>);

    impl PacketHandler for To {
        type Cmd = SocketAddr;
        fn apply_command(&mut self, to: SocketAddr) {
            self.0 = Some(to);
        }
        fn handle_batch(&mut self, _: Instant, pkts: &mut [RxPacket<'_>], out: &mut [Verdict]) {
            for (p, v) in pkts.iter().zip(out.iter_mut()) {
                *v = match self.0 {
                    Some(to) => Verdict::Forward {
                        from: p.local,
                        to,
                        len: p.len(),
                    },
                    None => Verdict::Drop(HandlerDrop::NoFlow),
                };
            }
        }
    }

    #[test]
    fn per_port_scheme_relays_on_loopback() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let src = UdpSocket::bind("127.0.0.1:0").unwrap();
        // A free-looking range derived from the pid; retry a few bases if another process holds a port.
        let base = 40000 + (std::process::id() % 200) as u16 * 100;
        let mut started = None;
        for k in 0..5u16 {
            let cfg = SocketMediaConfig {
                addrs: vec!["127.0.0.1".parse().unwrap()],
                port_min: base + k * 10,
                port_max: base + k * 10 + 7,
                cores: Vec::new(),
                scheme: Scheme::PerPortSockets,
                ..Default::default()
            };
            if let Ok(m) = SocketMedia::start(&cfg, |_| To(None)) {
                started = Some((m, cfg.port_min));
                break;
            }
        }
        let (media, min) = started.expect("no free port range");
        assert_eq!(media.scheme(), ActiveScheme::PerPortSockets);
        let to = sink.local_addr().unwrap();
        media.try_send(0, to).unwrap();
        let t = Instant::now();
        while media.stats(0).unwrap().commands == 0 {
            assert!(t.elapsed() < Duration::from_secs(2));
            std::thread::sleep(Duration::from_millis(1));
        }
        let local: SocketAddr = SocketAddr::from(([127, 0, 0, 1], min + 3));
        for i in 0..100u8 {
            src.send_to(&[i; 20], local).unwrap();
        }
        let mut buf = [0u8; 64];
        for i in 0..100u8 {
            let (n, from) = sink.recv_from(&mut buf).expect("relayed datagram");
            assert_eq!((n, from), (20, local));
            assert_eq!(buf[..n], [i; 20]);
        }
        let s = media.stats(0).unwrap();
        assert_eq!((s.rx_packets, s.tx_packets, s.total_drops()), (100, 100, 0));
        media.stop().unwrap();
    }

    #[test]
    fn bad_configurations_are_refused() {
        let none = SocketMediaConfig::default();
        assert!(matches!(
            SocketMedia::start(&none, |_| To(None)),
            Err(SocketMediaError::Config(_))
        ));
        let any = SocketMediaConfig {
            addrs: vec!["0.0.0.0".parse().unwrap()],
            ..Default::default()
        };
        assert!(matches!(
            SocketMedia::start(&any, |_| To(None)),
            Err(SocketMediaError::Config(_))
        ));
        let backwards = SocketMediaConfig {
            addrs: vec!["127.0.0.1".parse().unwrap()],
            port_min: 2000,
            port_max: 1000,
            ..Default::default()
        };
        assert!(matches!(
            SocketMedia::start(&backwards, |_| To(None)),
            Err(SocketMediaError::Config(_))
        ));
    }
}
