//! One media worker: a pinned thread that owns one UMEM shared by the AF_XDP sockets of the interface
//! queues it serves (e.g. carrier side queue q and cloud side queue q), and runs the ring loop:
//!
//! completion drain -> fill refill -> RX batch -> handler -> TX (with backlog) -> kick.
//!
//! Frames are never lost: every frame is at all times in exactly one of free list, fill ring / RX ring
//! (kernel RX side), TX backlog, TX ring / completion ring (kernel TX side). The worker keeps that ledger
//! and publishes it in [`WorkerStats`]; a test checks it against the rings at rest.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::handler::{BATCH, BatchCtx, FrameHandler, FrameRef, PortInfo, Verdict};
use super::loader::{XdpError, XdpProgram};
use super::neigh::NeighTable;
use super::netlink::Netlink;
use super::rewrite::{ETH_HDR_LEN, VLAN_TAG_LEN};

/// How to bind the AF_XDP sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Zero-copy where the driver supports it, else copy (logged).
    #[default]
    Auto,
    Copy,
    ZeroCopy,
}

/// One interface queue served by the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub iface: String,
    pub queue: u32,
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Ports sharing this worker's UMEM; `Verdict::Tx{port}` indexes this list.
    pub ports: Vec<PortSpec>,
    /// CPU to pin the thread to.
    pub core: Option<usize>,
    /// UMEM frames (shared by all ports) and their size (power of two, 2048 or 4096).
    pub frames: u32,
    pub frame_size: u32,
    /// Size of every ring (RX, TX, fill, completion), power of two.
    pub ring_size: u32,
    pub bind: BindMode,
    /// Spin when idle (lowest latency, 100 % CPU) instead of sleeping in poll() after a while.
    pub busy_poll: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            ports: Vec::new(),
            core: None,
            frames: 8192,
            frame_size: 2048,
            ring_size: 2048,
            bind: BindMode::Auto,
            busy_poll: false,
        }
    }
}

/// Counters published by the worker (single writer, relaxed; one cache-line-aligned block per worker).
#[repr(align(128))]
#[derive(Default)]
pub struct WorkerStats {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub dropped: AtomicU64,
    pub to_kernel: AtomicU64,
    pub kernel_send_errors: AtomicU64,
    pub tx_kicks: AtomicU64,
    pub tx_kick_eagain: AtomicU64,
    pub batches: AtomicU64,
    /// RX descriptors outside the UMEM (never seen; a kernel bug would show here).
    pub bad_descs: AtomicU64,
    /// Frame ledger (see module docs).
    pub frames_total: AtomicU64,
    pub frames_free: AtomicU64,
    pub frames_kernel_rx: AtomicU64,
    pub frames_kernel_tx: AtomicU64,
    pub frames_backlog: AtomicU64,
    /// What the rings themselves hold (summed over ports), read at the same time as the ledger.
    pub ring_fill: AtomicU64,
    pub ring_rx: AtomicU64,
    pub ring_tx: AtomicU64,
    pub ring_completion: AtomicU64,
    /// XDP socket statistics, summed over ports: the kernel could not put a packet into a full RX ring /
    /// had no fill-ring frame for it.
    pub xsk_rx_dropped: AtomicU64,
    pub xsk_rx_ring_full: AtomicU64,
    pub xsk_fill_ring_empty: AtomicU64,
}

/// A consistent-enough copy of [`WorkerStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    pub rx: u64,
    pub tx: u64,
    pub dropped: u64,
    pub to_kernel: u64,
    pub kernel_send_errors: u64,
    pub tx_kicks: u64,
    pub tx_kick_eagain: u64,
    pub batches: u64,
    pub bad_descs: u64,
    pub frames_total: u64,
    pub frames_free: u64,
    pub frames_kernel_rx: u64,
    pub frames_kernel_tx: u64,
    pub frames_backlog: u64,
    pub ring_fill: u64,
    pub ring_rx: u64,
    pub ring_tx: u64,
    pub ring_completion: u64,
    pub xsk_rx_dropped: u64,
    pub xsk_rx_ring_full: u64,
    pub xsk_fill_ring_empty: u64,
}

impl WorkerCounters {
    /// The user-side ledger balances.
    pub fn ledger_balanced(&self) -> bool {
        self.frames_free + self.frames_kernel_rx + self.frames_kernel_tx + self.frames_backlog
            == self.frames_total
    }
    /// At rest (nothing in flight inside the kernel), the rings hold exactly the frames the ledger says.
    pub fn rings_balanced(&self) -> bool {
        self.frames_free
            + self.ring_fill
            + self.ring_rx
            + self.ring_tx
            + self.ring_completion
            + self.frames_backlog
            == self.frames_total
    }
}

impl WorkerStats {
    pub fn read(&self) -> WorkerCounters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerCounters {
            rx: g(&self.rx),
            tx: g(&self.tx),
            dropped: g(&self.dropped),
            to_kernel: g(&self.to_kernel),
            kernel_send_errors: g(&self.kernel_send_errors),
            tx_kicks: g(&self.tx_kicks),
            tx_kick_eagain: g(&self.tx_kick_eagain),
            batches: g(&self.batches),
            bad_descs: g(&self.bad_descs),
            frames_total: g(&self.frames_total),
            frames_free: g(&self.frames_free),
            frames_kernel_rx: g(&self.frames_kernel_rx),
            frames_kernel_tx: g(&self.frames_kernel_tx),
            frames_backlog: g(&self.frames_backlog),
            ring_fill: g(&self.ring_fill),
            ring_rx: g(&self.ring_rx),
            ring_tx: g(&self.ring_tx),
            ring_completion: g(&self.ring_completion),
            xsk_rx_dropped: g(&self.xsk_rx_dropped),
            xsk_rx_ring_full: g(&self.xsk_rx_ring_full),
            xsk_fill_ring_empty: g(&self.xsk_fill_ring_empty),
        }
    }
}

/// A running worker. Stop it with [`WorkerHandle::stop`] (also on drop) to get the handler back.
pub struct WorkerHandle<H: FrameHandler> {
    stop: Arc<AtomicBool>,
    stats: Arc<WorkerStats>,
    ports: Vec<PortInfo>,
    thread: Option<JoinHandle<H>>,
}

impl<H: FrameHandler> WorkerHandle<H> {
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }
    pub fn ports(&self) -> &[PortInfo] {
        &self.ports
    }
    /// Stops the loop and returns the handler. Unregister the sockets from the XSKMAP first
    /// ([`XdpProgram::unregister_xsk`]) so flows fall back to the kernel instead of a closed socket; the
    /// kernel also removes a closed socket from the map.
    pub fn stop(mut self) -> Option<H> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl<H: FrameHandler> Drop for WorkerHandle<H> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Page-aligned anonymous memory for the UMEM.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: anonymous private mapping, no fd; result checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly the mapping created in new(); the Umem and rings using it are dropped
        // before (field order of Xsks).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A fixed-capacity FIFO of TX descriptors waiting for room in a TX ring (P9: copy-mode TX backpressure).
struct Backlog {
    buf: Box<[XdpDesc]>,
    head: usize,
    len: usize,
}

impl Backlog {
    fn new(cap: usize) -> Self {
        Self {
            buf: vec![XdpDesc::default(); cap.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }
    fn push(&mut self, d: XdpDesc) -> bool {
        if self.len == self.buf.len() {
            return false;
        }
        let i = (self.head + self.len) % self.buf.len();
        self.buf[i] = d;
        self.len += 1;
        true
    }
    fn front(&self) -> Option<XdpDesc> {
        (self.len > 0).then(|| self.buf[self.head])
    }
    fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.buf.len();
            self.len -= 1;
        }
    }
}

struct Port {
    info: PortInfo,
    dev: DeviceQueue,
    rx: RingRx,
    tx: RingTx,
    _user: User,
    _bound_as: Option<User>,
    backlog: Backlog,
    /// Frames kept in the fill ring.
    fill_target: u32,
    kernel_rx: u64,
    kernel_tx: u64,
}

/// The UMEM and its sockets. Field order is drop order: sockets and rings, then the Umem, then the memory.
struct Xsks {
    ports: Vec<Port>,
    _umem: Umem,
    area: Area,
    free: Vec<u64>,
    frame_size: u64,
    total: u64,
}

fn xsk_err(iface: &str, queue: u32, what: &str, e: impl std::fmt::Debug) -> XdpError {
    XdpError::Socket {
        iface: iface.to_owned(),
        queue,
        detail: format!("{what}: {e:?}"),
    }
}

fn errno_of(e: &xdpilone::Errno) -> i32 {
    e.get_raw().abs()
}

impl Xsks {
    fn open(cfg: &WorkerConfig) -> Result<Self, XdpError> {
        let first = cfg
            .ports
            .first()
            .ok_or_else(|| xsk_err("-", 0, "config", "no ports"))?;
        if !cfg.frame_size.is_power_of_two() || !cfg.ring_size.is_power_of_two() {
            return Err(xsk_err(
                &first.iface,
                first.queue,
                "config",
                "frame_size and ring_size must be powers of two",
            ));
        }
        let len = cfg.frames as usize * cfg.frame_size as usize;
        let area =
            Area::new(len).map_err(|e| xsk_err(&first.iface, first.queue, "UMEM mmap", e))?;
        let ucfg = UmemConfig {
            fill_size: cfg.ring_size,
            complete_size: cfg.ring_size,
            frame_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
        };
        let slice = NonNull::slice_from_raw_parts(area.ptr, len);
        // SAFETY: the area is a page-aligned private mapping of `len` bytes that outlives the Umem (Xsks
        // field order drops the Umem first).
        let umem = unsafe { Umem::new(ucfg, slice) }
            .map_err(|e| xsk_err(&first.iface, first.queue, "UMEM", e))?;
        let mut nl = Netlink::open(0)?;
        let ring = NonZeroU32::new(cfg.ring_size);
        let mut ports = Vec::with_capacity(cfg.ports.len());
        for (i, spec) in cfg.ports.iter().enumerate() {
            let (iface, q) = (spec.iface.as_str(), spec.queue);
            let cname =
                CString::new(iface).map_err(|_| XdpError::NoSuchInterface(iface.to_owned()))?;
            let mut info = IfInfo::invalid();
            info.from_name(&cname)
                .map_err(|_| XdpError::NoSuchInterface(iface.to_owned()))?;
            info.set_queue(q);
            let ifindex = info.ifindex();
            let mac = nl.link_mac(ifindex)?;
            let sock = if i == 0 {
                Socket::with_shared(&info, &umem)
            } else {
                Socket::new(&info)
            }
            .map_err(|e| xsk_err(iface, q, "socket", e))?;
            let dev = umem
                .fq_cq(&sock)
                .map_err(|e| xsk_err(iface, q, "fill/completion rings", e))?;
            let (user, bound_as, zerocopy) = if i == 0 {
                bind_first(&umem, &sock, ring, cfg.bind, iface, q)?
            } else {
                // Shares the first socket's UMEM: flags must be 0, the mode is inherited (P8).
                let sc = SocketConfig {
                    rx_size: ring,
                    tx_size: ring,
                    bind_flags: 0,
                };
                let user = umem
                    .rx_tx(&sock, &sc)
                    .map_err(|e| xsk_err(iface, q, "rx/tx rings", e))?;
                umem.bind(&user)
                    .map_err(|e| xsk_err(iface, q, "bind (shared UMEM)", e))?;
                let zc = ports.first().is_some_and(|p: &Port| p.info.zerocopy);
                (user, None, zc)
            };
            let rx = user.map_rx().map_err(|e| xsk_err(iface, q, "map rx", e))?;
            let tx = user.map_tx().map_err(|e| xsk_err(iface, q, "map tx", e))?;
            info!(
                iface,
                queue = q,
                mode = if zerocopy { "zero-copy" } else { "copy" },
                "AF_XDP socket bound"
            );
            ports.push(Port {
                info: PortInfo {
                    iface: iface.to_owned(),
                    ifindex,
                    queue: q,
                    mac,
                    zerocopy,
                },
                dev,
                rx,
                tx,
                _user: user,
                _bound_as: bound_as,
                backlog: Backlog::new(cfg.frames as usize),
                // Half the frames stay out of the fill rings for RX/TX rings and backlog.
                fill_target: cfg
                    .ring_size
                    .min(cfg.frames / (2 * cfg.ports.len() as u32))
                    .max(1),
                kernel_rx: 0,
                kernel_tx: 0,
            });
        }
        let fs = u64::from(cfg.frame_size);
        let free = (0..u64::from(cfg.frames)).rev().map(|i| i * fs).collect();
        Ok(Self {
            ports,
            _umem: umem,
            area,
            free,
            frame_size: fs,
            total: u64::from(cfg.frames),
        })
    }
}

/// Binds the UMEM-owning socket: zero-copy first when allowed, then copy. The rings are created once (a
/// socket's rings cannot be set twice); a retry uses a ring-less `User` that only carries other bind flags.
/// Returns the `User` whose rings are to be mapped, the one that was bound (kept alive), and zero-copy.
fn bind_first(
    umem: &Umem,
    sock: &Socket,
    ring: Option<NonZeroU32>,
    mode: BindMode,
    iface: &str,
    q: u32,
) -> Result<(User, Option<User>, bool), XdpError> {
    let wake = SocketConfig::XDP_BIND_NEED_WAKEUP;
    let attempts: &[(u16, bool)] = match mode {
        BindMode::Auto => &[
            (SocketConfig::XDP_BIND_ZEROCOPY | wake, true),
            (SocketConfig::XDP_BIND_COPY | wake, false),
        ],
        BindMode::ZeroCopy => &[(SocketConfig::XDP_BIND_ZEROCOPY | wake, true)],
        BindMode::Copy => &[(SocketConfig::XDP_BIND_COPY | wake, false)],
    };
    let mut rings: Option<User> = None;
    let mut last = String::new();
    for &(flags, zc) in attempts {
        let (user, is_rings) = match rings {
            None => {
                let sc = SocketConfig {
                    rx_size: ring,
                    tx_size: ring,
                    bind_flags: flags,
                };
                (
                    umem.rx_tx(sock, &sc)
                        .map_err(|e| xsk_err(iface, q, "rx/tx rings", e))?,
                    true,
                )
            }
            Some(_) => {
                let sc = SocketConfig {
                    rx_size: None,
                    tx_size: None,
                    bind_flags: flags,
                };
                (
                    umem.rx_tx(sock, &sc)
                        .map_err(|e| xsk_err(iface, q, "bind config", e))?,
                    false,
                )
            }
        };
        let res = umem.bind(&user);
        let bound = res.is_ok();
        if is_rings {
            rings = Some(user);
            if bound {
                return Ok((rings.take().unwrap_or_else(|| unreachable!()), None, zc));
            }
        } else if bound {
            let r = rings
                .take()
                .ok_or_else(|| xsk_err(iface, q, "bind", "rings lost"))?;
            return Ok((r, Some(user), zc));
        }
        if let Err(e) = res {
            if zc && mode == BindMode::Auto {
                info!(
                    iface,
                    queue = q,
                    errno = errno_of(&e),
                    "zero-copy bind refused, using copy mode"
                );
            }
            last = format!("bind flags {flags:#x}: errno {}", errno_of(&e));
        }
    }
    Err(xsk_err(iface, q, "bind", last))
}

/// Spawns a worker for `cfg.ports`: the thread pins itself, creates the UMEM and sockets, reports them back,
/// and this function registers them in the program's XSKMAP before the loop starts. The program must be
/// attached to every port's interface already.
pub fn spawn_worker<H: FrameHandler>(
    cfg: WorkerConfig,
    handler: H,
    prog: &mut XdpProgram,
    neigh: NeighTable,
) -> Result<WorkerHandle<H>, XdpError> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(WorkerStats::default());
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Vec<(PortInfo, RawFd)>, XdpError>>();
    let (go_tx, go_rx) = mpsc::channel::<bool>();
    let (stop2, stats2) = (stop.clone(), stats.clone());
    let name = format!(
        "tg-xdp-{}",
        cfg.core
            .map(|c| c.to_string())
            .unwrap_or_else(|| "any".into())
    );
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Some(core) = cfg.core
                && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
            {
                warn!(core, "could not pin the XDP worker");
            }
            let xsks = match Xsks::open(&cfg) {
                Ok(x) => x,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return handler;
                }
            };
            let mut w = match Worker::new(xsks, handler, neigh, stats2, cfg.busy_poll) {
                Ok(w) => w,
                Err((e, handler)) => {
                    let _ =
                        ready_tx.send(Err(xsk_err("-", 0, "raw sockets for the kernel path", e)));
                    return handler;
                }
            };
            // Fill rings are primed before the sockets go into the XSKMAP: a packet steered to a socket
            // with an empty fill ring is lost (rx_fill_ring_empty_descs).
            w.prime();
            let fds =
                w.x.ports
                    .iter()
                    .map(|p| (p.info.clone(), p.rx.as_raw_fd()))
                    .collect();
            let _ = ready_tx.send(Ok(fds));
            if go_rx.recv() != Ok(true) {
                return w.handler;
            }
            w.run(&stop2);
            w.handler
        })
        .map_err(|e| xsk_err("-", 0, "spawn", e))?;
    let ports = match ready_rx.recv() {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(xsk_err("-", 0, "worker", "exited during setup"));
        }
    };
    for (p, fd) in &ports {
        if let Err(e) = prog.register_xsk(p.ifindex, p.queue, *fd) {
            let _ = go_tx.send(false);
            let _ = thread.join();
            return Err(e);
        }
    }
    let _ = go_tx.send(true);
    Ok(WorkerHandle {
        stop,
        stats,
        ports: ports.into_iter().map(|(p, _)| p).collect(),
        thread: Some(thread),
    })
}

struct RawSockets {
    v4: OwnedFd,
    v6: OwnedFd,
}

impl RawSockets {
    fn open() -> io::Result<Self> {
        let mk = |family| {
            // SAFETY: socket(2); the fd is checked and then owned.
            let fd = unsafe {
                libc::socket(
                    family,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_RAW,
                )
            };
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                // SAFETY: fresh valid fd, owned from here on.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        };
        Ok(Self {
            v4: mk(libc::AF_INET)?,
            v6: mk(libc::AF_INET6)?,
        })
    }

    /// Sends the IP packet inside an Ethernet frame through the kernel's output path.
    fn send(&self, frame: &[u8]) -> bool {
        let mut l3 = ETH_HDR_LEN;
        let mut et = frame
            .get(12..14)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .unwrap_or(0);
        if et == 0x8100 || et == 0x88a8 {
            et = frame
                .get(16..18)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .unwrap_or(0);
            l3 += VLAN_TAG_LEN;
        }
        let Some(pkt) = frame.get(l3..) else {
            return false;
        };
        let rc = match et {
            0x0800 => {
                let Some(d) = pkt.get(16..20) else {
                    return false;
                };
                let dst = Ipv4Addr::new(d[0], d[1], d[2], d[3]);
                // SAFETY: sockaddr_in is plain data; all-zero is valid.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as u16;
                sa.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
                // SAFETY: pkt and sa are valid for the given lengths during the call.
                unsafe {
                    libc::sendto(
                        self.v4.as_raw_fd(),
                        pkt.as_ptr().cast(),
                        pkt.len(),
                        libc::MSG_DONTWAIT,
                        (&sa as *const libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>() as u32,
                    )
                }
            }
            0x86dd => {
                let Some(d) = pkt.get(24..40).and_then(|d| <[u8; 16]>::try_from(d).ok()) else {
                    return false;
                };
                // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as u16;
                sa.sin6_addr.s6_addr = Ipv6Addr::from(d).octets();
                // SAFETY: pkt and sa are valid for the given lengths during the call.
                unsafe {
                    libc::sendto(
                        self.v6.as_raw_fd(),
                        pkt.as_ptr().cast(),
                        pkt.len(),
                        libc::MSG_DONTWAIT,
                        (&sa as *const libc::sockaddr_in6).cast(),
                        size_of::<libc::sockaddr_in6>() as u32,
                    )
                }
            }
            _ => return false,
        };
        rc >= 0
    }
}

/// Local counters, published to the shared [`WorkerStats`] once per loop iteration that did work.
#[derive(Default)]
struct Local {
    rx: u64,
    tx: u64,
    dropped: u64,
    to_kernel: u64,
    kernel_send_errors: u64,
    tx_kicks: u64,
    tx_kick_eagain: u64,
    batches: u64,
    bad_descs: u64,
}

struct Worker<H: FrameHandler> {
    x: Xsks,
    handler: H,
    neigh: NeighTable,
    raw: RawSockets,
    stats: Arc<WorkerStats>,
    local: Local,
    infos: Vec<PortInfo>,
    busy_poll: bool,
}

/// Frames refilled into a fill ring at once; the ring is kept at most this much below its target.
const FILL_BATCH: u32 = 64;
/// Copy-mode TX sends at most 32 descriptors per kick (P9); a few kicks per iteration.
const MAX_KICKS: u32 = 8;
/// Idle iterations before sleeping in poll() (when not busy polling).
const SPIN_BEFORE_SLEEP: u32 = 1000;

impl<H: FrameHandler> Worker<H> {
    fn new(
        x: Xsks,
        handler: H,
        neigh: NeighTable,
        stats: Arc<WorkerStats>,
        busy_poll: bool,
    ) -> Result<Self, (io::Error, H)> {
        let raw = match RawSockets::open() {
            Ok(r) => r,
            Err(e) => return Err((e, handler)),
        };
        let infos = x.ports.iter().map(|p| p.info.clone()).collect();
        stats.frames_total.store(x.total, Ordering::Relaxed);
        Ok(Self {
            x,
            handler,
            neigh,
            raw,
            stats,
            local: Local::default(),
            infos,
            busy_poll,
        })
    }

    fn prime(&mut self) {
        for i in 0..self.x.ports.len() {
            self.refill(i);
        }
        self.publish();
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut idle = 0u32;
        let mut last_stats = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut work = 0u32;
            for i in 0..self.x.ports.len() {
                work += self.drain_completions(i);
            }
            for i in 0..self.x.ports.len() {
                self.refill(i);
            }
            for i in 0..self.x.ports.len() {
                work += self.rx_batch(i);
            }
            for i in 0..self.x.ports.len() {
                work += self.flush_tx(i);
            }
            if work > 0 {
                idle = 0;
                self.publish();
            } else {
                idle = idle.saturating_add(1);
            }
            if (work == 0 || self.local.batches.is_multiple_of(64))
                && last_stats.elapsed() >= Duration::from_millis(10)
            {
                if work == 0 {
                    self.handler.idle();
                }
                self.publish();
                self.publish_xsk_stats();
                last_stats = Instant::now();
            }
            if work == 0 && !self.busy_poll && idle > SPIN_BEFORE_SLEEP {
                self.sleep_until_rx(1);
            }
        }
        self.publish();
        self.publish_xsk_stats();
    }

    /// Sleeps up to `ms` in poll() on the RX rings.
    fn sleep_until_rx(&self, ms: i32) {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; 8];
        let n = self.x.ports.len().min(fds.len());
        for (f, p) in fds.iter_mut().zip(&self.x.ports) {
            f.fd = p.rx.as_raw_fd();
        }
        // SAFETY: fds holds n valid pollfd entries.
        unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, ms) };
    }

    fn drain_completions(&mut self, i: usize) -> u32 {
        let mask = !(self.x.frame_size - 1);
        let p = &mut self.x.ports[i];
        let mut n = 0u32;
        let mut c = p.dev.complete(p.dev.available().min(1024));
        while let Some(addr) = c.read() {
            self.x.free.push(addr & mask);
            n += 1;
        }
        c.release();
        p.kernel_tx -= u64::from(n);
        n
    }

    fn refill(&mut self, i: usize) {
        let p = &mut self.x.ports[i];
        let target = p.fill_target;
        let in_fill = p.dev.pending();
        let want = target.saturating_sub(in_fill);
        if want < FILL_BATCH.min(target) && in_fill > 0 {
            return;
        }
        let n = want.min(self.x.free.len() as u32);
        if n == 0 {
            return;
        }
        let mut w = p.dev.fill(n);
        let start = self.x.free.len() - n as usize;
        let got = w.insert(self.x.free[start..].iter().copied());
        w.commit();
        drop(w);
        // insert() may take fewer than reserved: exactly free[start..start + got] went to the kernel.
        self.x.free.drain(start..start + got as usize);
        p.kernel_rx += u64::from(got);
        if p.dev.needs_wakeup() {
            p.dev.wake();
        }
    }

    fn rx_batch(&mut self, i: usize) -> u32 {
        let mut descs = [XdpDesc::default(); BATCH];
        let n = {
            let p = &mut self.x.ports[i];
            let mut r = p.rx.receive(BATCH as u32);
            let mut n = 0;
            while n < BATCH {
                match r.read() {
                    Some(d) => {
                        descs[n] = d;
                        n += 1;
                    }
                    None => break,
                }
            }
            r.release();
            drop(r);
            p.kernel_rx -= n as u64;
            // Zero-copy drivers with need_wakeup stop filling the RX ring until user space kicks them.
            if n == 0 && p.dev.needs_wakeup() {
                p.dev.wake();
            }
            n
        };
        if n == 0 {
            return 0;
        }
        self.local.rx += n as u64;
        self.local.batches += 1;
        let n = self.validate(&mut descs, n);

        let fs = self.x.frame_size;
        let base = self.x.area.ptr.as_ptr();
        let mut verdicts = [Verdict::Drop; BATCH];
        {
            let mut frames: [FrameRef<'_>; BATCH] =
                std::array::from_fn(|_| FrameRef::new(i, &mut [], 0));
            for (k, d) in descs[..n].iter().enumerate() {
                let chunk_end = (d.addr & !(fs - 1)) + fs;
                // SAFETY: [addr, chunk_end) lies inside the UMEM mapping (checked by `validate`). The frame was
                // just consumed from the RX ring, so neither the kernel nor any other FrameRef of this batch
                // (distinct descriptors are distinct chunks) accesses it while the slice lives.
                let buf = unsafe {
                    std::slice::from_raw_parts_mut(
                        base.add(d.addr as usize),
                        (chunk_end - d.addr) as usize,
                    )
                };
                frames[k] = FrameRef::new(i, buf, d.len as usize);
            }
            let snap = self.neigh.snapshot();
            let ctx = BatchCtx {
                ports: &self.infos,
                neigh: &snap,
                neigh_table: &self.neigh,
            };
            self.handler
                .handle_batch(&ctx, &mut frames[..n], &mut verdicts[..n]);
            for (k, v) in verdicts[..n].iter().enumerate() {
                if let Verdict::Kernel { len } = *v {
                    let pkt = frames[k].buffer_mut();
                    if self.raw.send(pkt.get(..len).unwrap_or(&[])) {
                        self.local.to_kernel += 1;
                    } else {
                        self.local.kernel_send_errors += 1;
                    }
                }
            }
        }
        let mask = !(fs - 1);
        let nports = self.x.ports.len();
        for (d, v) in descs[..n].iter().zip(verdicts[..n].iter()) {
            match *v {
                Verdict::Tx { port, len } if port < nports && len > 0 => {
                    let room = (d.addr & mask) + fs - d.addr;
                    let len = (len as u64).min(room) as u32;
                    let desc = XdpDesc {
                        addr: d.addr,
                        len,
                        options: 0,
                    };
                    if self.x.ports[port].backlog.push(desc) {
                        continue;
                    }
                    self.local.dropped += 1;
                    self.x.free.push(d.addr & mask);
                }
                Verdict::Kernel { .. } => self.x.free.push(d.addr & mask),
                _ => {
                    self.local.dropped += 1;
                    self.x.free.push(d.addr & mask);
                }
            }
        }
        n as u32
    }

    /// Keeps the descriptors that address one chunk of our UMEM (all of them, from a sane kernel); returns
    /// how many, compacted to the front. A bad one is counted and never touched.
    fn validate(&mut self, descs: &mut [XdpDesc; BATCH], n: usize) -> usize {
        let fs = self.x.frame_size;
        let area_len = self.x.area.len as u64;
        let mut m = 0;
        for k in 0..n.min(BATCH) {
            let d = descs[k];
            let chunk_end = (d.addr & !(fs - 1)) + fs;
            if chunk_end > area_len || d.addr >= chunk_end || u64::from(d.len) > chunk_end - d.addr
            {
                self.local.bad_descs += 1;
                continue;
            }
            descs[m] = d;
            m += 1;
        }
        m
    }

    /// Moves backlog into the TX ring and kicks the kernel. Returns descriptors submitted.
    fn flush_tx(&mut self, i: usize) -> u32 {
        let p = &mut self.x.ports[i];
        let mut sent = 0u32;
        if p.backlog.len > 0 {
            let want = p.backlog.len as u32;
            let mut w = p.tx.transmit(want);
            while let Some(d) = p.backlog.front() {
                if !w.insert_once(d) {
                    break;
                }
                p.backlog.pop();
                sent += 1;
            }
            w.commit();
            drop(w);
            p.kernel_tx += u64::from(sent);
            self.local.tx += u64::from(sent);
        }
        // Copy mode always needs a kick to transmit; zero-copy only when the driver asks (need_wakeup).
        let mut kicks = 0;
        while p.tx.pending() > 0 && kicks < MAX_KICKS && (!p.info.zerocopy || p.tx.needs_wakeup()) {
            kicks += 1;
            self.local.tx_kicks += 1;
            // SAFETY: sendto with a null buffer of length 0 is the documented AF_XDP TX kick.
            let rc = unsafe {
                libc::sendto(
                    p.tx.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error().raw_os_error();
                if matches!(
                    e,
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS)
                ) {
                    // The peer is full: let softirq/ksoftirqd on this core run, retry next iteration.
                    self.local.tx_kick_eagain += 1;
                    std::thread::yield_now();
                    break;
                }
                break;
            }
        }
        sent
    }

    fn publish(&mut self) {
        let s = &self.stats;
        let l = &self.local;
        let r = Ordering::Relaxed;
        s.rx.store(l.rx, r);
        s.tx.store(l.tx, r);
        s.dropped.store(l.dropped, r);
        s.to_kernel.store(l.to_kernel, r);
        s.kernel_send_errors.store(l.kernel_send_errors, r);
        s.tx_kicks.store(l.tx_kicks, r);
        s.tx_kick_eagain.store(l.tx_kick_eagain, r);
        s.batches.store(l.batches, r);
        s.bad_descs.store(l.bad_descs, r);
        let (mut krx, mut ktx, mut back, mut fill, mut rx, mut tx, mut comp) =
            (0, 0, 0, 0, 0, 0, 0);
        for p in &self.x.ports {
            krx += p.kernel_rx;
            ktx += p.kernel_tx;
            back += p.backlog.len as u64;
            fill += u64::from(p.dev.pending());
            rx += u64::from(p.rx.available());
            tx += u64::from(p.tx.pending());
            comp += u64::from(p.dev.available());
        }
        s.frames_free.store(self.x.free.len() as u64, r);
        s.frames_kernel_rx.store(krx, r);
        s.frames_kernel_tx.store(ktx, r);
        s.frames_backlog.store(back, r);
        s.ring_fill.store(fill, r);
        s.ring_rx.store(rx, r);
        s.ring_tx.store(tx, r);
        s.ring_completion.store(comp, r);
    }

    /// getsockopt(XDP_STATISTICS) per port: a syscall, so only on the periodic publish.
    fn publish_xsk_stats(&self) {
        let (mut dropped, mut full, mut empty) = (0, 0, 0);
        for p in &self.x.ports {
            if let Ok(st) = p._user.statistics_v2() {
                dropped += st.rx_dropped;
                full += st.rx_ring_full;
                empty += st.rx_fill_ring_empty_descs;
            }
        }
        let r = Ordering::Relaxed;
        self.stats.xsk_rx_dropped.store(dropped, r);
        self.stats.xsk_rx_ring_full.store(full, r);
        self.stats.xsk_fill_ring_empty.store(empty, r);
    }
}
