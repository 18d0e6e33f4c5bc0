//! Fallback scheme: one UDP socket per (media address, port), used only when the packet-socket scheme's
//! prerequisites are missing (no CAP_NET_RAW/CAP_NET_ADMIN, no iptables). It needs addresses × ports file
//! descriptors, so it only fits small ranges. Worker `w` owns the ports with `port % workers == w` (the same
//! split as the packet scheme's fanout) and waits on them with epoll; it transmits on the socket of the
//! forward's source address, which may belong to another worker (sending on a shared UDP socket is safe).

use std::io;
use std::mem::zeroed;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::batch::{Batch, MAX_BATCH, Meta, RX_HEADROOM, SLOT, TxBatch};
use super::handler::{PacketHandler, Verdict};
use super::packet::Common;
use super::stats::DropReason;
use super::{bpf, sys, wire};

/// Payload offset for per-port receive: the kernel strips the headers, the payload lands where the packet
/// scheme would put it.
const PAYLOAD_OFF: usize = RX_HEADROOM + wire::MAX_TX_HDR;

/// Every bound socket, indexed by `addr_index * ports + (port - min)`.
pub struct PortTable {
    addrs: Vec<IpAddr>,
    min: u16,
    ports: usize,
    fds: Vec<OwnedFd>,
}

impl PortTable {
    pub fn open(addrs: &[IpAddr], min: u16, max: u16, rcvbuf: usize) -> io::Result<Self> {
        let ports = usize::from(max.saturating_sub(min)) + 1;
        let mut fds = Vec::with_capacity(addrs.len() * ports);
        for ip in addrs {
            for p in min..=max {
                let fd = sys::udp_socket(SocketAddr::new(*ip, p))?;
                let _ = sys::set_rcvbuf(&fd, rcvbuf);
                fds.push(fd);
            }
        }
        Ok(PortTable {
            addrs: addrs.to_vec(),
            min,
            ports,
            fds,
        })
    }

    pub fn len(&self) -> usize {
        self.fds.len()
    }

    fn index(&self, a: SocketAddr) -> Option<usize> {
        let ai = self.addrs.iter().position(|x| *x == a.ip())?;
        let pi = usize::from(a.port().checked_sub(self.min)?);
        (pi < self.ports).then_some(ai * self.ports + pi)
    }

    fn local(&self, idx: usize) -> Option<SocketAddr> {
        let ip = *self.addrs.get(idx / self.ports)?;
        let port = self
            .min
            .checked_add(u16::try_from(idx % self.ports).ok()?)?;
        Some(SocketAddr::new(ip, port))
    }

    fn fd(&self, idx: usize) -> Option<RawFd> {
        self.fds.get(idx).map(|f| f.as_raw_fd())
    }
}

pub(crate) struct PerPortWorker<H: PacketHandler> {
    pub common: Common<H>,
    pub table: Arc<PortTable>,
    pub index: usize,
    pub workers: usize,
}

struct RxBufs {
    msgs: [libc::mmsghdr; MAX_BATCH],
    iov: [libc::iovec; MAX_BATCH],
    addr: [libc::sockaddr_storage; MAX_BATCH],
}

const MAX_EVENTS: usize = 64;

impl<H: PacketHandler> PerPortWorker<H> {
    fn epoll(&self) -> io::Result<OwnedFd> {
        // SAFETY: plain syscall; we own the returned descriptor.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        for idx in 0..self.table.len() {
            let Some(local) = self.table.local(idx) else {
                continue;
            };
            if bpf::worker_for_port(local.port(), self.workers) != self.index {
                continue;
            }
            let Some(fd) = self.table.fd(idx) else {
                continue;
            };
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: idx as u64,
            };
            // SAFETY: valid epoll and socket descriptors, `ev` lives for the call.
            if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(ep)
    }

    pub fn run(mut self) {
        self.common.pin();
        let ep = match self.epoll() {
            Ok(ep) => ep,
            Err(e) => {
                tracing::error!(error = %e, worker = self.index, "media worker cannot set up epoll");
                return;
            }
        };
        let mut b = Batch::new();
        // SAFETY: plain C structs, all-zero valid, filled before use.
        let mut rx: Box<RxBufs> = Box::new(unsafe { zeroed() });
        let mut tx = TxBatch::new();
        // SAFETY: epoll_event is plain data.
        let mut events: [libc::epoll_event; MAX_EVENTS] = unsafe { zeroed() };
        let batch = self.common.batch.clamp(1, MAX_BATCH);
        let idle_ms = i32::try_from(self.common.idle_wait.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        while !self.common.stop.load(Relaxed) {
            self.common.drain_commands();
            self.common.stats.rx_syscall();
            // SAFETY: valid epoll descriptor and event array of the length passed.
            let nev = unsafe {
                libc::epoll_wait(
                    ep.as_raw_fd(),
                    events.as_mut_ptr(),
                    MAX_EVENTS as i32,
                    idle_ms,
                )
            };
            if nev <= 0 {
                self.common.stats.idle_wait();
                continue;
            }
            for ev in events.iter().take(nev as usize) {
                let idx = ev.u64 as usize;
                let n = self.receive(idx, &mut b, &mut rx, batch);
                if n > 0 {
                    b.decide(
                        &mut self.common.handler,
                        Instant::now(),
                        n,
                        &self.common.stats,
                    );
                    self.transmit(&mut b, &mut tx, n);
                }
            }
        }
    }

    fn receive(&self, idx: usize, b: &mut Batch, rx: &mut RxBufs, batch: usize) -> usize {
        let (Some(fd), Some(local)) = (self.table.fd(idx), self.table.local(idx)) else {
            return 0;
        };
        let RxBufs { msgs, iov, addr } = rx;
        for i in 0..batch {
            let Some(slot) = b.bufs.get_mut(i).and_then(|s| s.get_mut(PAYLOAD_OFF..)) else {
                break;
            };
            iov[i] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut addr[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let stats = &self.common.stats;
        stats.rx_syscall();
        let n = sys::recvmmsg(fd, &mut msgs[..batch]).unwrap_or(0);
        let mut bytes = 0;
        for i in 0..n {
            let len = msgs[i].msg_len as usize;
            bytes += len;
            let m = &mut b.meta[i];
            m.ok = false;
            if msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                stats.dropped(DropReason::Truncated, 1);
                continue;
            }
            let Some(remote) = sys::from_sockaddr(&addr[i]) else {
                stats.dropped(DropReason::Malformed, 1);
                continue;
            };
            *m = Meta {
                local,
                remote,
                off: PAYLOAD_OFF,
                len,
                tos: 0,
                ok: true,
                verdict: m.verdict,
            };
        }
        if n > 0 {
            stats.rx(n, bytes);
        }
        n
    }

    fn transmit(&self, b: &mut Batch, tx: &mut TxBatch, n: usize) {
        let stats = &self.common.stats;
        let mut cur: Option<RawFd> = None;
        for i in 0..n {
            let m = b.meta[i];
            let Verdict::Forward { from, to, len } = m.verdict else {
                continue;
            };
            if !m.ok {
                continue;
            }
            if m.off + len > SLOT {
                stats.dropped(DropReason::TooBig, 1);
                continue;
            }
            let Some(fd) = self.table.index(from).and_then(|x| self.table.fd(x)) else {
                stats.dropped(DropReason::FamilyMismatch, 1);
                continue;
            };
            if from.is_ipv6() != to.is_ipv6() {
                stats.dropped(DropReason::FamilyMismatch, 1);
                continue;
            }
            // sendmmsg sends on one socket: flush when the source socket changes.
            if let Some(c) = cur
                && c != fd
            {
                tx.flush(c, stats);
            }
            cur = Some(fd);
            let data = b
                .bufs
                .get(i)
                .and_then(|s| s.get(m.off..m.off + len))
                .unwrap_or_default();
            tx.push(data, to);
        }
        if let Some(c) = cur
            && tx.n > 0
        {
            tx.flush(c, stats);
        }
    }
}
