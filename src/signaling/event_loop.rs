//! The loop: one io_uring for every SIP socket, woken by completions, the next timer deadline, or the eventfd
//! other threads write after queueing work.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::conn::{Conn, ConnState, ConnTable};
use super::counters::Counters;
use super::dns::{DnsConfig, DnsError, DnsHelper, DnsQuery, DnsRequestId};
use super::handler::{CloseReason, ConnEvent, ConnId, ListenerId, SipHandler, Transport};
use super::shared::{Control, LoopHandle, Shared};
use super::stream::{LayerContext, LayerFactory, PlainLayer, StreamBuf, StreamLayer};
use super::timer::{TimerToken, TimerWheel};
use super::udp::{
    BufRing, NAME_LEN, RECVMSG_OUT_HDR, RecvHdr, SendPool, read_sockaddr, write_sockaddr,
};

/// Tunables of the loop. Defaults suit a production SBC; tests shrink them.
#[derive(Debug, Clone)]
pub struct SigConfig {
    /// Submission queue entries (completion queue is 4×).
    pub ring_entries: u32,
    /// Provided buffers per UDP listener (power of two); more datagrams than this may be in the socket queue.
    pub udp_buf_count: u16,
    /// Largest UDP payload received whole; longer datagrams are counted as errors and dropped.
    pub udp_max_datagram: usize,
    /// SO_RCVBUF for UDP listeners (bursts wait here between ring enters).
    pub udp_rcvbuf: usize,
    /// UDP sends that can be in flight; past this, sends go out with a direct non-blocking `sendto`.
    pub udp_send_slots: usize,
    /// Read size per TCP receive.
    pub tcp_read_buf: usize,
    /// Unconsumed received plus unsent bytes per connection before it is closed.
    pub tcp_max_buffered: usize,
    /// Close a connection without traffic in either direction for this long.
    pub tcp_idle_timeout: Duration,
    /// A message whose first byte arrived (or a TLS handshake begun) must be complete within this long, or
    /// the connection is closed (`CloseReason::MessageTimeout`): a peer trickling one byte at a time is never
    /// idle, so only this bounds it.
    pub tcp_message_timeout: Duration,
    /// Give up on an outbound connect after this long (`ConnectFailed(ETIMEDOUT)`).
    pub tcp_connect_timeout: Duration,
    /// Open connections (accepted and outbound) in total.
    pub tcp_max_connections: usize,
    /// Accepted connections per source IP.
    pub tcp_max_per_source: usize,
    /// Listen backlog.
    pub tcp_backlog: i32,
    /// Which SQE carries a UDP send.
    pub udp_send_op: UdpSendOp,
    /// When > 0 (and the kernel has min-wait, 6.12+): after the first completion, wait up to this many µs
    /// for more (up to 64) before running the batch. Trades that much latency for fewer wake-ups under load.
    pub batch_wait_usec: u32,
    /// IORING_SETUP_DEFER_TASKRUN (completions processed only when the loop enters the ring) instead of
    /// COOP_TASKRUN.
    pub defer_taskrun: bool,
}

/// The io_uring operation used for UDP sends (both are batched: queued during a batch, submitted together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpSendOp {
    /// IORING_OP_SENDMSG with a per-slot msghdr.
    SendMsg,
    /// IORING_OP_SEND with a destination address (kernel 6.0+): no msghdr for the kernel to copy in.
    SendTo,
}

impl Default for SigConfig {
    fn default() -> Self {
        Self {
            ring_entries: 4096,
            udp_buf_count: 1024,
            udp_max_datagram: 9000,
            udp_rcvbuf: 8 << 20,
            udp_send_slots: 1024,
            tcp_read_buf: 16 << 10,
            tcp_max_buffered: 256 << 10,
            tcp_idle_timeout: Duration::from_secs(600),
            tcp_message_timeout: Duration::from_secs(10),
            tcp_connect_timeout: Duration::from_secs(5),
            tcp_max_connections: 10_000,
            tcp_max_per_source: 64,
            tcp_backlog: 1024,
            udp_send_op: UdpSendOp::SendMsg,
            defer_taskrun: true,
            batch_wait_usec: 0,
        }
    }
}

/// Why a send was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no such listener")]
    UnknownListener,
    #[error("listener is not UDP")]
    NotUdp,
    #[error("connection is closed or unknown")]
    NoConnection,
    #[error("per-connection buffer limit reached; connection closed")]
    BufferLimit,
    #[error("connection limit reached")]
    TooManyConnections,
    #[error("transport {0:?} not available on this path")]
    Unsupported(Transport),
    #[error("submission queue full")]
    QueueFull,
    #[error("stream layer refused to start")]
    Layer,
    #[error("socket error {0}")]
    Os(i32),
}

const K_UDP_RECV: u64 = 1;
const K_UDP_SEND: u64 = 2;
const K_ACCEPT: u64 = 3;
const K_READ: u64 = 4;
const K_WRITE: u64 = 5;
const K_CONNECT: u64 = 6;
const K_EVENTFD: u64 = 7;
const K_CANCEL: u64 = 8;

fn ud(kind: u64, index: u32) -> u64 {
    (kind << 56) | u64::from(index)
}

fn ud_split(v: u64) -> (u64, u32) {
    (v >> 56, v as u32)
}

enum ListenerSock {
    Udp(std::net::UdpSocket),
    /// A stream listener; `Tls` ones wrap accepted connections in the TLS layer.
    Tcp(std::net::TcpListener, Transport),
}

struct Listener {
    sock: ListenerSock,
    local: SocketAddr,
}

impl Listener {
    fn fd(&self) -> RawFd {
        match &self.sock {
            ListenerSock::Udp(s) => s.as_raw_fd(),
            ListenerSock::Tcp(s, _) => s.as_raw_fd(),
        }
    }
}

/// Receive side of one UDP listener; kept apart from [`Core`] so the handler can borrow a datagram while
/// `Io` borrows the core.
struct UdpRx {
    /// Position in the loop's `udp_rx` list; completions carry it.
    index: u32,
    listener: ListenerId,
    fd: RawFd,
    ring: BufRing,
    msghdr: RecvHdr,
    rearm: bool,
}

/// Everything the handler reaches through [`Io`].
pub(crate) struct Core {
    cfg: SigConfig,
    origin: Instant,
    now: Instant,
    now_ms: u64,
    listeners: Vec<Listener>,
    send_pool: SendPool,
    conns: ConnTable,
    outbound: HashMap<(SocketAddr, Transport), ConnId>,
    per_source: HashMap<IpAddr, u32>,
    timers: TimerWheel,
    idle: TimerWheel,
    events: VecDeque<(ConnId, SocketAddr, ConnEvent)>,
    counters: Counters,
    dns: Option<DnsHelper>,
    tls_layer: Option<LayerFactory>,
    stopping: bool,
    eventfd_buf: Box<u64>,
    shared: Arc<Shared>,
}

/// The handler's view of the loop: send, connect, close, timers, DNS. Sends are queued on the ring and go out
/// together when the loop next enters the kernel.
pub struct Io<'a> {
    ring: &'a mut IoUring,
    core: &'a mut Core,
}

impl Io<'_> {
    /// The loop's time for this batch.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// Sends one datagram from `listener` (a UDP listener) to `dst`. The bytes are copied.
    pub fn send_datagram(
        &mut self,
        listener: ListenerId,
        dst: SocketAddr,
        data: &[u8],
    ) -> Result<(), SendError> {
        self.core.send_datagram(self.ring, listener, dst, data)
    }

    /// Queues bytes on an existing connection (through its layer).
    pub fn send_on(&mut self, conn: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.core.send_on(self.ring, conn, data)
    }

    /// Sends on the open connection to `(dst, transport)`, opening one if there is none; returns its id. Bytes
    /// wait in the connection until the connect finishes.
    pub fn send_stream_to(
        &mut self,
        dst: SocketAddr,
        transport: Transport,
        data: &[u8],
    ) -> Result<ConnId, SendError> {
        let id = match self.core.outbound.get(&(dst, transport)) {
            Some(id) => *id,
            None => self.core.connect(self.ring, dst, transport)?,
        };
        self.core.send_on(self.ring, id, data)?;
        Ok(id)
    }

    /// The reusable outbound connection to `(dst, transport)`, if one is open or connecting.
    pub fn connection_to(&self, dst: SocketAddr, transport: Transport) -> Option<ConnId> {
        self.core.outbound.get(&(dst, transport)).copied()
    }

    /// Peer address of a live connection.
    pub fn peer_of(&self, conn: ConnId) -> Option<SocketAddr> {
        self.core
            .conns
            .get(conn)
            .filter(|c| c.state != ConnState::Closing)
            .map(|c| c.peer)
    }

    /// Transport of a live connection (TCP or TLS).
    pub fn transport_of(&self, conn: ConnId) -> Option<Transport> {
        self.core
            .conns
            .get(conn)
            .filter(|c| c.state != ConnState::Closing)
            .map(|c| c.transport)
    }

    /// Closes a connection; a `Closed(Local)` event follows.
    pub fn close(&mut self, conn: ConnId) {
        self.core.begin_close(self.ring, conn, CloseReason::Local);
    }

    /// Arms a timer `after` from now; `data` comes back in `on_timer`.
    /// Never fires before `now() + after`; at most ~1 ms plus wake-up latency after it.
    pub fn set_timer(&mut self, after: Duration, data: u64) -> TimerToken {
        let ms = ms_ceil(
            self.core
                .now
                .duration_since(self.core.origin)
                .saturating_add(after),
        );
        self.core.timers.insert(ms, data)
    }

    /// Arms a timer for an absolute time (rounded up to the wheel's millisecond).
    pub fn set_timer_at(&mut self, at: Instant, data: u64) -> TimerToken {
        let ms = ms_ceil(at.saturating_duration_since(self.core.origin));
        self.core.timers.insert(ms, data)
    }

    /// Disarms a timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, token: TimerToken) -> bool {
        self.core.timers.cancel(token)
    }

    /// Submits a DNS query to the helper thread; the answer arrives in `on_dns`.
    pub fn resolve(&mut self, query: DnsQuery) -> Result<DnsRequestId, DnsError> {
        let dns = self.core.dns.as_mut().ok_or(DnsError::NotConfigured)?;
        let id = dns.submit(query)?;
        self.core.counters.dns_queries += 1;
        Ok(id)
    }

    /// Local address of a listener.
    pub fn local_addr(&self, listener: ListenerId) -> Option<SocketAddr> {
        self.core
            .listeners
            .get(usize::from(listener.0))
            .map(|l| l.local)
    }

    /// The loop's counters.
    pub fn counters(&self) -> &Counters {
        &self.core.counters
    }

    /// Ends the loop after the current batch.
    pub fn stop(&mut self) {
        self.core.stopping = true;
    }
}

/// Pushes an SQE, flushing the queue to the kernel if it is full.
fn push_sqe(ring: &mut IoUring, entry: &squeue::Entry) -> Result<(), SendError> {
    for _ in 0..4 {
        // SAFETY: every entry built by this module points only into memory that outlives the operation
        // (listener/connection/pool buffers freed only after their completion, or after the ring is dropped).
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        if ring.submit().is_err() {
            break;
        }
    }
    Err(SendError::QueueFull)
}

impl Core {
    fn update_now(&mut self) {
        self.now = Instant::now();
        self.now_ms = self.now.duration_since(self.origin).as_millis() as u64;
    }

    fn send_datagram(
        &mut self,
        ring: &mut IoUring,
        listener: ListenerId,
        dst: SocketAddr,
        data: &[u8],
    ) -> Result<(), SendError> {
        let l = self
            .listeners
            .get(usize::from(listener.0))
            .ok_or(SendError::UnknownListener)?;
        let ListenerSock::Udp(sock) = &l.sock else {
            return Err(SendError::NotUdp);
        };
        let fd = sock.as_raw_fd();
        match self.send_pool.prepare(&dst, data) {
            Some(p) => {
                let slot = p.slot;
                let e = match self.cfg.udp_send_op {
                    UdpSendOp::SendMsg => opcode::SendMsg::new(types::Fd(fd), p.msg).build(),
                    UdpSendOp::SendTo => opcode::Send::new(types::Fd(fd), p.buf, p.len)
                        .dest_addr(p.addr)
                        .dest_addr_len(p.addr_len)
                        .build(),
                }
                .user_data(ud(K_UDP_SEND, slot));
                if let Err(e) = push_sqe(ring, &e) {
                    self.send_pool.release(slot);
                    self.counters.udp_send_errors += 1;
                    return Err(e);
                }
                Ok(())
            }
            None => {
                // All slots in flight: a direct non-blocking send keeps ordering good enough for UDP and avoids
                // unbounded queueing.
                let r = socket2::SockRef::from(sock).send_to_with_flags(
                    data,
                    &socket2::SockAddr::from(dst),
                    libc::MSG_DONTWAIT,
                );
                match r {
                    Ok(n) => {
                        self.counters.udp_datagrams_out += 1;
                        self.counters.udp_bytes_out += n as u64;
                        Ok(())
                    }
                    Err(e) => {
                        self.counters.udp_send_errors += 1;
                        Err(SendError::Os(e.raw_os_error().unwrap_or(0)))
                    }
                }
            }
        }
    }

    /// The layer for a new connection: plain for TCP, the configured factory's for TLS.
    fn make_layer(
        &mut self,
        transport: Transport,
        ctx: &LayerContext,
    ) -> Result<Box<dyn StreamLayer>, SendError> {
        match transport {
            Transport::Tcp => Ok(Box::new(PlainLayer)),
            Transport::Tls => match self.tls_layer.as_mut() {
                Some(f) => f(ctx).map_err(|_| SendError::Layer),
                None => Err(SendError::Unsupported(transport)),
            },
            Transport::Udp => Err(SendError::Unsupported(transport)),
        }
    }

    fn new_conn(
        &self,
        fd: OwnedFd,
        peer: SocketAddr,
        transport: Transport,
        outbound: bool,
        layer: Box<dyn StreamLayer>,
    ) -> Conn {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Conn {
            fd,
            peer,
            transport,
            outbound,
            state: ConnState::Open,
            layer,
            rx_wire: vec![0u8; self.cfg.tcp_read_buf].into_boxed_slice(),
            app_in: StreamBuf::with_capacity(self.cfg.tcp_read_buf),
            tx_inflight: Vec::new(),
            tx_off: 0,
            tx_pending: Vec::new(),
            reading: false,
            writing: false,
            connecting: false,
            last_activity_ms: self.now_ms,
            partial_since_ms: None,
            idle_timer: None,
            counted_source: false,
            connect_addr: Box::new(storage),
            connect_len: 0,
        }
    }

    fn idle_ms(&self) -> u64 {
        self.cfg.tcp_idle_timeout.as_millis().max(1) as u64
    }

    fn message_ms(&self) -> u64 {
        self.cfg.tcp_message_timeout.as_millis().max(1) as u64
    }

    fn arm_idle(&mut self, id: ConnId, at_ms: u64) {
        let token = self.idle.insert(at_ms, id.to_u64());
        if let Some(c) = self.conns.get_mut(id) {
            c.idle_timer = Some(token);
        }
    }

    fn accept(&mut self, ring: &mut IoUring, fd: RawFd, listener: ListenerId) {
        // SAFETY: a successful accept completion hands us a new fd nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let sref = socket2::SockRef::from(&sock);
        let Some(peer) = sref.peer_addr().ok().and_then(|a| a.as_socket()) else {
            self.counters.tcp_errors += 1;
            return;
        };
        let per_source = self.per_source.get(&peer.ip()).copied().unwrap_or(0);
        if self.conns.live >= self.cfg.tcp_max_connections
            || per_source as usize >= self.cfg.tcp_max_per_source
        {
            self.counters.tcp_refused += 1;
            return;
        }
        let transport = match self.listeners.get(usize::from(listener.0)).map(|l| &l.sock) {
            Some(ListenerSock::Tcp(_, t)) => *t,
            _ => Transport::Tcp,
        };
        let ctx = LayerContext {
            peer,
            outbound: false,
            listener: Some(listener),
        };
        let Ok(layer) = self.make_layer(transport, &ctx) else {
            self.counters.tcp_errors += 1;
            return;
        };
        let _ = sref.set_tcp_nodelay(true);
        *self.per_source.entry(peer.ip()).or_insert(0) += 1;
        let mut conn = self.new_conn(sock, peer, transport, false, layer);
        conn.counted_source = true;
        let id = self.conns.insert(conn);
        self.counters.tcp_accepted += 1;
        self.counters.tcp_open += 1;
        self.events
            .push_back((id, peer, ConnEvent::Accepted { listener }));
        self.arm_idle(id, self.now_ms + self.idle_ms());
        self.conn_established(ring, id);
    }

    /// Common to accepted and connected: let the layer speak first, start reading, flush.
    fn conn_established(&mut self, ring: &mut IoUring, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.layer.on_connected(&mut c.tx_pending).is_err() {
            self.counters.tcp_errors += 1;
            self.begin_close(ring, id, CloseReason::LayerError);
            return;
        }
        self.start_read(ring, id);
        self.start_write(ring, id);
    }

    fn connect(
        &mut self,
        ring: &mut IoUring,
        dst: SocketAddr,
        transport: Transport,
    ) -> Result<ConnId, SendError> {
        if self.conns.live >= self.cfg.tcp_max_connections {
            return Err(SendError::TooManyConnections);
        }
        let ctx = LayerContext {
            peer: dst,
            outbound: true,
            listener: None,
        };
        let layer = self.make_layer(transport, &ctx)?;
        let os = |e: io::Error| SendError::Os(e.raw_os_error().unwrap_or(0));
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(dst),
            socket2::Type::STREAM.cloexec(),
            Some(socket2::Protocol::TCP),
        )
        .map_err(os)?;
        let _ = sock.set_tcp_nodelay(true);
        let mut conn = self.new_conn(OwnedFd::from(sock), dst, transport, true, layer);
        conn.state = ConnState::Connecting;
        conn.connecting = true;
        conn.connect_len = write_sockaddr(&dst, &mut conn.connect_addr);
        let addr_ptr =
            (&*conn.connect_addr as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
        let fd = conn.fd.as_raw_fd();
        let len = conn.connect_len;
        let id = self.conns.insert(conn);
        let e = opcode::Connect::new(types::Fd(fd), addr_ptr, len)
            .build()
            .user_data(ud(K_CONNECT, id.index));
        if let Err(err) = push_sqe(ring, &e) {
            if let Some(c) = self.conns.get_mut(id) {
                c.connecting = false;
                c.state = ConnState::Closing;
            }
            self.conns.free_if_done(id.index);
            return Err(err);
        }
        self.counters.tcp_open += 1;
        self.outbound.insert((dst, transport), id);
        // The same timer serves as connect timeout; once connected it re-arms for the idle time.
        let connect_ms = ms_ceil(self.cfg.tcp_connect_timeout).min(self.idle_ms());
        self.arm_idle(id, self.now_ms + connect_ms);
        Ok(id)
    }

    fn send_on(&mut self, ring: &mut IoUring, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        let max = self.cfg.tcp_max_buffered;
        let now_ms = self.now_ms;
        let c = self.conns.get_mut(id).ok_or(SendError::NoConnection)?;
        if c.state == ConnState::Closing {
            return Err(SendError::NoConnection);
        }
        if c.layer.write_app(data, &mut c.tx_pending).is_err() {
            self.counters.tcp_errors += 1;
            self.begin_close(ring, id, CloseReason::LayerError);
            return Err(SendError::NoConnection);
        }
        if c.unsent() > max {
            self.counters.tcp_overflow_closed += 1;
            self.begin_close(ring, id, CloseReason::BufferLimit);
            return Err(SendError::BufferLimit);
        }
        c.last_activity_ms = now_ms;
        if c.state == ConnState::Open {
            self.start_write(ring, id);
        }
        Ok(())
    }

    fn start_read(&mut self, ring: &mut IoUring, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.reading || c.state != ConnState::Open {
            return;
        }
        let e = opcode::Recv::new(
            types::Fd(c.fd.as_raw_fd()),
            c.rx_wire.as_mut_ptr(),
            c.rx_wire.len() as u32,
        )
        .build()
        .user_data(ud(K_READ, id.index));
        if push_sqe(ring, &e).is_ok() {
            c.reading = true;
        } else {
            self.counters.tcp_errors += 1;
            self.begin_close(ring, id, CloseReason::IoError(libc::EBUSY));
        }
    }

    fn start_write(&mut self, ring: &mut IoUring, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.writing || c.state != ConnState::Open {
            return;
        }
        if c.tx_off >= c.tx_inflight.len() {
            if c.tx_pending.is_empty() {
                return;
            }
            c.tx_inflight.clear();
            std::mem::swap(&mut c.tx_inflight, &mut c.tx_pending);
            c.tx_off = 0;
        }
        let rest = c.tx_inflight.get(c.tx_off..).unwrap_or(&[]);
        let e = opcode::Send::new(
            types::Fd(c.fd.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(ud(K_WRITE, id.index));
        if push_sqe(ring, &e).is_ok() {
            c.writing = true;
        } else {
            self.counters.tcp_errors += 1;
            self.begin_close(ring, id, CloseReason::IoError(libc::EBUSY));
        }
    }

    /// Marks a connection closed for the handler now; the slot is freed when its operations have completed.
    fn begin_close(&mut self, ring: &mut IoUring, id: ConnId, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.state == ConnState::Closing {
            return;
        }
        c.state = ConnState::Closing;
        let peer = c.peer;
        let key = (c.peer, c.transport);
        let outbound = c.outbound;
        let counted = c.counted_source;
        let idle = c.idle_timer.take();
        let mut cancels = [0u64; 3];
        let mut n = 0;
        for (busy, kind) in [
            (c.reading, K_READ),
            (c.writing, K_WRITE),
            (c.connecting, K_CONNECT),
        ] {
            if busy {
                cancels[n] = ud(kind, id.index);
                n += 1;
            }
        }
        // Shutdown ends a pending receive even if the cancel races with its completion.
        // SAFETY: shutdown(2) on a socket fd we own; no pointers.
        unsafe {
            libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_RDWR);
        }
        for target in cancels.iter().take(n) {
            let e = opcode::AsyncCancel::new(*target)
                .build()
                .user_data(ud(K_CANCEL, id.index));
            let _ = push_sqe(ring, &e);
        }
        if let Some(t) = idle {
            self.idle.cancel(t);
        }
        if outbound && self.outbound.get(&key) == Some(&id) {
            self.outbound.remove(&key);
        }
        if counted && let Some(v) = self.per_source.get_mut(&peer.ip()) {
            *v = v.saturating_sub(1);
            if *v == 0 {
                self.per_source.remove(&peer.ip());
            }
        }
        self.counters.tcp_open = self.counters.tcp_open.saturating_sub(1);
        self.events.push_back((id, peer, ConnEvent::Closed(reason)));
        self.conns.free_if_done(id.index);
    }

    fn write_done(&mut self, ring: &mut IoUring, index: u32, res: i32) {
        let Some((id, c)) = self.conns.by_index(index) else {
            return;
        };
        c.writing = false;
        if c.state == ConnState::Closing {
            self.conns.free_if_done(index);
            return;
        }
        if res < 0 {
            self.counters.tcp_errors += 1;
            self.begin_close(ring, id, CloseReason::IoError(-res));
            return;
        }
        c.tx_off += res as usize;
        if c.tx_off < c.tx_inflight.len() {
            self.counters.tcp_partial_writes += 1;
        }
        c.last_activity_ms = self.now_ms;
        self.counters.tcp_bytes_out += res as u64;
        self.start_write(ring, id);
    }

    fn connect_done(&mut self, ring: &mut IoUring, index: u32, res: i32) {
        let Some((id, c)) = self.conns.by_index(index) else {
            return;
        };
        c.connecting = false;
        if c.state == ConnState::Closing {
            self.conns.free_if_done(index);
            return;
        }
        if res < 0 {
            self.counters.tcp_connect_failed += 1;
            self.begin_close(ring, id, CloseReason::ConnectFailed(-res));
            return;
        }
        c.state = ConnState::Open;
        c.last_activity_ms = self.now_ms;
        let peer = c.peer;
        self.counters.tcp_connected += 1;
        self.events.push_back((id, peer, ConnEvent::Connected));
        self.conn_established(ring, id);
    }

    fn idle_fired(&mut self, ring: &mut IoUring, data: u64) {
        let id = ConnId::from_u64(data);
        let idle_ms = self.idle_ms();
        let now_ms = self.now_ms;
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.idle_timer = None;
        if c.state == ConnState::Closing {
            return;
        }
        if c.state == ConnState::Connecting {
            self.counters.tcp_connect_failed += 1;
            self.begin_close(ring, id, CloseReason::ConnectFailed(libc::ETIMEDOUT));
            return;
        }
        let idle_due = c.last_activity_ms + idle_ms;
        let message_due = c.partial_since_ms.map(|p| p + self.message_ms());
        if message_due.is_some_and(|d| d <= now_ms) {
            self.counters.tcp_message_timeout_closed += 1;
            self.begin_close(ring, id, CloseReason::MessageTimeout);
        } else if idle_due <= now_ms {
            self.counters.tcp_idle_closed += 1;
            self.begin_close(ring, id, CloseReason::Idle);
        } else {
            let due = message_due.map_or(idle_due, |m| m.min(idle_due));
            self.arm_idle(id, due);
        }
    }

    fn next_wakeup(&self) -> Option<Duration> {
        let t = match (self.timers.next_deadline(), self.idle.next_deadline()) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        let at = self.origin + Duration::from_millis(t);
        Some(at.saturating_duration_since(Instant::now()))
    }
}

/// Milliseconds rounded up, so a timer never fires early; capped far beyond any real deadline.
fn ms_ceil(d: Duration) -> u64 {
    d.as_nanos()
        .div_ceil(1_000_000)
        .min(u128::from(u64::MAX / 2)) as u64
}

/// The signaling loop before it runs: bind listeners, configure DNS, take a handle, then [`SigLoop::run`] on
/// the thread that will own the ring.
pub struct SigLoop<M> {
    core: Core,
    udp_rx: Vec<UdpRx>,
    messages: Arc<SegQueue<M>>,
}

impl<M: Send + 'static> SigLoop<M> {
    pub fn new(cfg: SigConfig) -> io::Result<Self> {
        let shared = Arc::new(Shared::new()?);
        let now = Instant::now();
        let send_pool = SendPool::new(cfg.udp_send_slots, 1500);
        Ok(Self {
            core: Core {
                cfg,
                origin: now,
                now,
                now_ms: 0,
                listeners: Vec::new(),
                send_pool,
                conns: ConnTable::default(),
                outbound: HashMap::new(),
                per_source: HashMap::new(),
                timers: TimerWheel::new(),
                idle: TimerWheel::new(),
                events: VecDeque::with_capacity(256),
                counters: Counters::default(),
                dns: None,
                tls_layer: None,
                stopping: false,
                eventfd_buf: Box::new(0),
                shared,
            },
            udp_rx: Vec::new(),
            messages: Arc::new(SegQueue::new()),
        })
    }

    fn next_listener_id(&self) -> io::Result<ListenerId> {
        u16::try_from(self.core.listeners.len())
            .map(ListenerId)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many listeners"))
    }

    /// Binds a UDP listener (port 0 picks one; see [`SigLoop::local_addr`]).
    pub fn bind_udp(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        let id = self.next_listener_id()?;
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM.cloexec(),
            Some(socket2::Protocol::UDP),
        )?;
        set_rcvbuf(&sock, self.core.cfg.udp_rcvbuf);
        sock.bind(&addr.into())?;
        let sock: std::net::UdpSocket = sock.into();
        let local = sock.local_addr()?;
        // Each buffer holds the kernel's `io_uring_recvmsg_out` header, the source address, then the payload.
        let buf_size = RECVMSG_OUT_HDR + NAME_LEN as usize + self.core.cfg.udp_max_datagram;
        let ring = BufRing::new(self.core.cfg.udp_buf_count, buf_size, id.0)?;
        let msghdr = RecvHdr::new();
        self.udp_rx.push(UdpRx {
            index: self.udp_rx.len() as u32,
            listener: id,
            fd: sock.as_raw_fd(),
            ring,
            msghdr,
            rearm: false,
        });
        self.core.listeners.push(Listener {
            sock: ListenerSock::Udp(sock),
            local,
        });
        Ok(id)
    }

    /// Binds a TCP listener.
    pub fn bind_tcp(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        self.bind_stream(addr, Transport::Tcp)
    }

    /// Binds a TLS listener: accepted connections get a layer from the factory set with
    /// [`SigLoop::set_tls_layer`] (without one they are closed at once and counted in `tcp_errors`).
    pub fn bind_tls(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        self.bind_stream(addr, Transport::Tls)
    }

    /// Installs the factory that builds the layer (e.g. a rustls session) of every TLS connection, inbound
    /// and outbound (`Io::send_stream_to(.., Transport::Tls, ..)`).
    pub fn set_tls_layer(&mut self, factory: LayerFactory) {
        self.core.tls_layer = Some(factory);
    }

    fn bind_stream(&mut self, addr: SocketAddr, transport: Transport) -> io::Result<ListenerId> {
        let id = self.next_listener_id()?;
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.cloexec(),
            Some(socket2::Protocol::TCP),
        )?;
        sock.set_reuse_address(true)?;
        sock.bind(&addr.into())?;
        sock.listen(self.core.cfg.tcp_backlog)?;
        let sock: std::net::TcpListener = sock.into();
        let local = sock.local_addr()?;
        self.core.listeners.push(Listener {
            sock: ListenerSock::Tcp(sock, transport),
            local,
        });
        Ok(id)
    }

    /// Local address of a listener.
    pub fn local_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        self.core.listeners.get(usize::from(id.0)).map(|l| l.local)
    }

    /// Enables `Io::resolve`: starts the DNS helper thread now (so a bad resolver configuration fails here,
    /// not on the signaling thread).
    pub fn with_dns(&mut self, cfg: DnsConfig) -> io::Result<()> {
        self.core.dns = Some(DnsHelper::start(cfg, self.core.shared.clone())?);
        Ok(())
    }

    /// A handle for other threads: send messages, stop, read counters.
    pub fn handle(&self) -> LoopHandle<M> {
        LoopHandle {
            shared: self.core.shared.clone(),
            messages: self.messages.clone(),
        }
    }

    /// Runs until a stop request; returns the handler and the final counters. Call on the thread that is to
    /// own the ring (it is created here, single-issuer).
    pub fn run<H: SipHandler<Message = M>>(self, mut handler: H) -> io::Result<(H, Counters)> {
        let SigLoop {
            mut core,
            mut udp_rx,
            messages,
        } = self;
        core.origin = Instant::now();
        core.update_now();
        // Declared after the buffers it points into, so it is dropped (and every operation cancelled) first.
        let mut ring = make_ring(core.cfg.ring_entries, core.cfg.defer_taskrun)?;
        for rx in &udp_rx {
            rx.ring.register(&ring.submitter())?;
            arm_udp(&mut ring, rx).map_err(|_| io::Error::other("submission queue full"))?;
        }
        for (i, l) in core.listeners.iter().enumerate() {
            if matches!(l.sock, ListenerSock::Tcp(..)) {
                arm_accept(&mut ring, l.fd(), i as u32)
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
        }
        let efd = core.shared.eventfd();
        arm_eventfd(&mut ring, efd, &mut core.eventfd_buf)
            .map_err(|_| io::Error::other("submission queue full"))?;

        let batch = (core.cfg.ring_entries as usize * 4).max(64);
        let batch_wait = if ring.params().is_feature_min_timeout() {
            core.cfg.batch_wait_usec
        } else {
            0
        };
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(batch);
        let mut fired: Vec<(TimerToken, u64)> = Vec::with_capacity(256);
        loop {
            let busy = !core.events.is_empty()
                || !core.shared.control.is_empty()
                || !messages.is_empty()
                || !ring.completion().is_empty();
            let r = if busy {
                ring.submit()
            } else if batch_wait > 0 {
                // Once something arrived, wait up to `batch_wait` µs for more (up to 64) before running.
                let args = types::SubmitArgs::new().min_wait_usec(batch_wait);
                match core.next_wakeup() {
                    Some(d) => {
                        let ts = types::Timespec::from(d);
                        ring.submitter().submit_with_args(64, &args.timespec(&ts))
                    }
                    None => ring.submitter().submit_with_args(64, &args),
                }
            } else {
                match core.next_wakeup() {
                    Some(d) => {
                        let ts = types::Timespec::from(d);
                        ring.submitter()
                            .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
                    }
                    None => ring.submit_and_wait(1),
                }
            };
            if let Err(e) = r {
                match e.raw_os_error() {
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                    | Some(libc::EAGAIN) => {}
                    _ => return Err(e),
                }
            }
            core.update_now();
            core.counters.loop_iterations += 1;

            cqes.clear();
            cqes.extend(ring.completion().take(batch));
            for cqe in &cqes {
                let (kind, index) = ud_split(cqe.user_data());
                let res = cqe.result();
                match kind {
                    K_UDP_RECV => on_udp_recv(
                        &mut core,
                        &mut ring,
                        &mut udp_rx,
                        &mut handler,
                        index,
                        res,
                        cqe.flags(),
                    ),
                    K_UDP_SEND => {
                        let len = core.send_pool.release(index);
                        if res >= 0 {
                            core.counters.udp_datagrams_out += 1;
                            core.counters.udp_bytes_out += len as u64;
                        } else {
                            core.counters.udp_send_errors += 1;
                        }
                    }
                    K_ACCEPT => {
                        let listener = ListenerId(index as u16);
                        if res >= 0 {
                            core.accept(&mut ring, res, listener);
                        } else {
                            core.counters.tcp_errors += 1;
                        }
                        if !cqueue::more(cqe.flags())
                            && !core.stopping
                            && let Some(l) = core.listeners.get(index as usize)
                        {
                            let _ = arm_accept(&mut ring, l.fd(), index);
                        }
                    }
                    K_READ => on_read(&mut core, &mut ring, &mut handler, index, res),
                    K_WRITE => core.write_done(&mut ring, index, res),
                    K_CONNECT => core.connect_done(&mut ring, index, res),
                    K_EVENTFD if !core.stopping => {
                        let _ = arm_eventfd(&mut ring, efd, &mut core.eventfd_buf);
                    }
                    _ => {}
                }
            }
            for rx in &mut udp_rx {
                rx.ring.publish();
                if rx.rearm {
                    rx.rearm = false;
                    if !core.stopping {
                        let _ = arm_udp(&mut ring, rx);
                    }
                }
            }

            while let Some(c) = core.shared.control.pop() {
                match c {
                    Control::Stop => core.stopping = true,
                    Control::Dns(done) => {
                        core.counters.dns_completions += 1;
                        let now = core.now;
                        let mut io = Io {
                            ring: &mut ring,
                            core: &mut core,
                        };
                        handler.on_dns(now, done.id, done.result, &mut io);
                    }
                }
            }
            // Bounded so a flood of messages cannot starve the sockets.
            for _ in 0..1024 {
                let Some(m) = messages.pop() else { break };
                let now = core.now;
                let mut io = Io {
                    ring: &mut ring,
                    core: &mut core,
                };
                handler.on_message(now, m, &mut io);
            }

            fired.clear();
            let now_ms = core.now_ms;
            core.timers.advance(now_ms, |t, d| fired.push((t, d)));
            for (t, d) in fired.drain(..) {
                core.counters.timers_fired += 1;
                let now = core.now;
                let mut io = Io {
                    ring: &mut ring,
                    core: &mut core,
                };
                handler.on_timer(now, t, d, &mut io);
            }
            core.idle.advance(now_ms, |t, d| fired.push((t, d)));
            for (_, d) in fired.drain(..) {
                core.idle_fired(&mut ring, d);
            }
            dispatch_events(&mut core, &mut ring, &mut handler);

            if core.stopping {
                let ids: Vec<ConnId> = core.conns.ids().collect();
                for id in ids {
                    core.begin_close(&mut ring, id, CloseReason::Local);
                }
                dispatch_events(&mut core, &mut ring, &mut handler);
                drain_ring(&mut ring);
                core.shared.publish(&core.counters);
                break;
            }
            core.shared.publish(&core.counters);
        }
        drop(ring);
        // The helper joins on drop; do it before returning so no thread outlives `run`.
        core.dns = None;
        let counters = core.counters;
        Ok((handler, counters))
    }
}

fn dispatch_events<H: SipHandler>(core: &mut Core, ring: &mut IoUring, handler: &mut H) {
    while let Some((id, peer, ev)) = core.events.pop_front() {
        let now = core.now;
        let mut io = Io { ring, core };
        handler.on_conn_event(now, id, peer, ev, &mut io);
    }
}

fn on_udp_recv<H: SipHandler>(
    core: &mut Core,
    ring: &mut IoUring,
    udp_rx: &mut [UdpRx],
    handler: &mut H,
    index: u32,
    res: i32,
    flags: u32,
) {
    let Some(rx) = udp_rx.get_mut(index as usize) else {
        return;
    };
    if !cqueue::more(flags) {
        rx.rearm = true;
    }
    let Some(bid) = cqueue::buffer_select(flags) else {
        if res == -libc::ENOBUFS {
            core.counters.udp_no_buffers += 1;
        } else if res < 0 {
            core.counters.udp_recv_errors += 1;
        }
        return;
    };
    if res >= 0 {
        let buf = rx.ring.buffer(bid, res as usize);
        match types::RecvMsgOut::parse(buf, &rx.msghdr.0) {
            Ok(out) if !out.is_payload_truncated() && !out.is_name_data_truncated() => {
                match read_sockaddr(out.name_data()) {
                    Some(src) => {
                        let data = out.payload_data();
                        core.counters.udp_datagrams_in += 1;
                        core.counters.udp_bytes_in += data.len() as u64;
                        let now = core.now;
                        let mut io = Io { ring, core };
                        handler.on_datagram(now, rx.listener, src, data, &mut io);
                    }
                    None => core.counters.udp_recv_errors += 1,
                }
            }
            _ => core.counters.udp_recv_errors += 1,
        }
    } else {
        core.counters.udp_recv_errors += 1;
    }
    rx.ring.recycle(bid);
}

fn on_read<H: SipHandler>(
    core: &mut Core,
    ring: &mut IoUring,
    handler: &mut H,
    index: u32,
    res: i32,
) {
    let max = core.cfg.tcp_max_buffered;
    let now_ms = core.now_ms;
    let Some((id, c)) = core.conns.by_index(index) else {
        return;
    };
    c.reading = false;
    if c.state == ConnState::Closing {
        core.conns.free_if_done(index);
        return;
    }
    if res == 0 {
        core.counters.tcp_peer_closed += 1;
        core.begin_close(ring, id, CloseReason::PeerClosed);
        return;
    }
    if res < 0 {
        core.counters.tcp_errors += 1;
        core.begin_close(ring, id, CloseReason::IoError(-res));
        return;
    }
    let n = res as usize;
    core.counters.tcp_bytes_in += n as u64;
    c.last_activity_ms = now_ms;
    let Conn {
        layer,
        rx_wire,
        app_in,
        tx_pending,
        ..
    } = c;
    let wire = rx_wire.get(..n).unwrap_or(&[]);
    if layer.read_wire(wire, app_in, tx_pending).is_err() {
        core.counters.tcp_errors += 1;
        core.begin_close(ring, id, CloseReason::LayerError);
        return;
    }
    if app_in.len() > max {
        core.counters.tcp_overflow_closed += 1;
        core.begin_close(ring, id, CloseReason::BufferLimit);
        return;
    }
    let peer = c.peer;
    let mut buf = std::mem::take(&mut c.app_in);
    let before = buf.len();
    core.start_write(ring, id);
    if !buf.is_empty() {
        let now = core.now;
        let mut io = Io {
            ring: &mut *ring,
            core: &mut *core,
        };
        handler.on_stream_data(now, id, peer, &mut buf, &mut io);
    }
    if let Some(c) = core.conns.get_mut(id) {
        // Whatever the handler left is an incomplete message; a handshake under way is one too.
        let partial = !buf.is_empty() || c.layer.in_progress();
        // A message completed in this read: what is left began now, so a busy connection whose messages
        // straddle reads is never cut by the first one's deadline.
        let consumed = buf.len() < before;
        c.app_in = buf;
        let was = c.partial_since_ms;
        c.partial_since_ms = match (partial, was) {
            (false, _) => None,
            (true, Some(_)) if consumed => Some(now_ms),
            (true, Some(t)) => Some(t),
            (true, None) => Some(now_ms),
        };
        let open = c.state == ConnState::Open;
        if partial && was.is_none() && open {
            // The idle timer may be far out; bring it forward to the message deadline.
            let old = c.idle_timer.take();
            let at = c.last_activity_ms + core.idle_ms();
            let at = at.min(now_ms + core.message_ms());
            if let Some(t) = old {
                core.idle.cancel(t);
            }
            core.arm_idle(id, at);
        }
        if open {
            core.start_read(ring, id);
        }
    }
}

/// Cancels every operation and reaps completions until the ring is quiet (bounded), so no buffer is freed
/// while the kernel could still write into it.
fn drain_ring(ring: &mut IoUring) {
    let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
        .build()
        .user_data(ud(K_CANCEL, u32::MAX));
    let _ = push_sqe(ring, &cancel);
    let ts = types::Timespec::from(Duration::from_millis(10));
    for _ in 0..50 {
        let r = ring
            .submitter()
            .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts));
        let reaped = ring.completion().count();
        if reaped == 0 && matches!(r, Err(ref e) if e.raw_os_error() == Some(libc::ETIME)) {
            break;
        }
    }
}

fn make_ring(entries: u32, defer_taskrun: bool) -> io::Result<IoUring> {
    let cq = entries.saturating_mul(4);
    // DEFER_TASKRUN keeps completion work on this thread and batches it into our enters (kernel 6.1+); the
    // alternative lets the kernel run it at any syscall exit, flagged cooperatively. Fall back to a plain ring
    // on kernels that know neither.
    let built = if defer_taskrun {
        IoUring::builder()
            .setup_cqsize(cq)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
    } else {
        IoUring::builder()
            .setup_cqsize(cq)
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(entries)
    };
    built.or_else(|_| IoUring::builder().setup_cqsize(cq).build(entries))
}

fn arm_udp(ring: &mut IoUring, rx: &UdpRx) -> Result<(), SendError> {
    let e = opcode::RecvMsgMulti::new(types::Fd(rx.fd), &*rx.msghdr.0, rx.ring.bgid)
        .build()
        .user_data(ud(K_UDP_RECV, rx.index));
    push_sqe(ring, &e)
}

fn arm_accept(ring: &mut IoUring, fd: RawFd, index: u32) -> Result<(), SendError> {
    let e = opcode::AcceptMulti::new(types::Fd(fd))
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(ud(K_ACCEPT, index));
    push_sqe(ring, &e)
}

fn arm_eventfd(ring: &mut IoUring, efd: RawFd, buf: &mut u64) -> Result<(), SendError> {
    let e = opcode::Read::new(types::Fd(efd), (buf as *mut u64).cast(), 8)
        .build()
        .user_data(ud(K_EVENTFD, 0));
    push_sqe(ring, &e)
}

/// Large receive buffers absorb bursts between ring enters (P15). SO_RCVBUFFORCE passes rmem_max when we have
/// CAP_NET_ADMIN; otherwise the capped SO_RCVBUF is the best we get.
fn set_rcvbuf(sock: &socket2::Socket, bytes: usize) {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        let _ = sock.set_recv_buffer_size(bytes);
    }
}
