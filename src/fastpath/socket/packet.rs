//! Worker of the packet-socket scheme: AF_PACKET receive (one socket per family, in a fanout group), raw
//! IP_HDRINCL transmit.

use std::mem::zeroed;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::batch::{Batch, MAX_BATCH, RX_HEADROOM, SLOT, TxBatch};
use super::handler::{PacketHandler, Verdict};
use super::stats::{DropReason, WorkerStats};
use super::{sys, wire};

/// Commands applied per loop iteration at most, so a flood of flow updates cannot starve the packets.
pub(crate) const MAX_CMDS_PER_ITER: usize = 256;

pub(crate) struct Common<H: PacketHandler> {
    pub handler: H,
    pub cmds: Receiver<H::Cmd>,
    pub stats: Arc<WorkerStats>,
    pub stop: Arc<AtomicBool>,
    pub core: Option<core_affinity::CoreId>,
    pub batch: usize,
    pub idle_wait: Duration,
}

impl<H: PacketHandler> Common<H> {
    pub fn pin(&self) {
        if let Some(core) = self.core
            && !core_affinity::set_for_current(core)
        {
            tracing::warn!(core = core.id, "could not pin media worker");
        }
    }

    pub fn drain_commands(&mut self) {
        let mut n = 0;
        while n < MAX_CMDS_PER_ITER {
            match self.cmds.try_recv() {
                Ok(c) => {
                    self.handler.apply_command(c);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        if n > 0 {
            self.stats.commands(n);
        }
    }
}

pub(crate) struct PacketWorker<H: PacketHandler> {
    pub common: Common<H>,
    /// One AF_PACKET socket per family served.
    pub rx: Vec<OwnedFd>,
    pub tx4: Option<OwnedFd>,
    pub tx6: Option<OwnedFd>,
}

struct RxRing {
    msgs: [libc::mmsghdr; MAX_BATCH],
    iov: [libc::iovec; MAX_BATCH],
    ctl: [[u64; sys::AUX_CMSG_SPACE / 8]; MAX_BATCH],
}

impl<H: PacketHandler> PacketWorker<H> {
    pub fn run(mut self) {
        self.common.pin();
        let mut b = Batch::new();
        // SAFETY: plain C structs; all-zero is valid and every entry used is filled before the syscall.
        let mut rx: Box<RxRing> = Box::new(unsafe { zeroed() });
        let mut tx = TxBatch::new();
        let mut pfds: Vec<libc::pollfd> = self
            .rx
            .iter()
            .map(|f| sys::pollfd(f.as_raw_fd(), libc::POLLIN))
            .collect();
        let batch = self.common.batch.clamp(1, MAX_BATCH);
        // One packet socket: block inside recvmmsg (up to idle_wait). Two (IPv4 and IPv6): never block on
        // one while the other has traffic; poll both when both are empty.
        let flags = if self.rx.len() == 1 {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        let mut loops: u32 = 0;
        while !self.common.stop.load(Relaxed) {
            self.common.drain_commands();
            let mut busy = false;
            for r in 0..self.rx.len() {
                let Some(fd) = self.rx.get(r).map(|f| f.as_raw_fd()) else {
                    continue;
                };
                let n = self.receive(fd, flags, &mut b, &mut rx, batch);
                if n == 0 {
                    continue;
                }
                busy = true;
                b.decide(
                    &mut self.common.handler,
                    Instant::now(),
                    n,
                    &self.common.stats,
                );
                self.transmit(&mut b, &mut tx, n);
            }
            loops = loops.wrapping_add(1);
            if !busy {
                self.common.stats.idle_wait();
                if flags == libc::MSG_DONTWAIT {
                    let _ = sys::poll(&mut pfds, self.common.idle_wait);
                }
            }
            if !busy || loops.is_multiple_of(4096) {
                let k: u64 = self.rx.iter().map(sys::packet_drops).sum();
                if k > 0 {
                    self.common.stats.kernel_drops(k);
                }
            }
        }
    }

    /// One recvmmsg; validates every frame into `b.meta`. Returns how many frames were received.
    fn receive(&self, fd: i32, flags: i32, b: &mut Batch, rx: &mut RxRing, batch: usize) -> usize {
        let RxRing { msgs, iov, ctl } = rx;
        for i in 0..batch {
            let Some(slot) = b.bufs.get_mut(i).and_then(|s| s.get_mut(RX_HEADROOM..)) else {
                break;
            };
            iov[i] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            h.msg_control = ctl[i].as_mut_ptr().cast();
            h.msg_controllen = sys::AUX_CMSG_SPACE;
            h.msg_flags = 0;
        }
        let stats = &self.common.stats;
        stats.rx_syscall();
        let n = match sys::recvmmsg_flags(fd, &mut msgs[..batch], flags) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "packet socket receive failed");
                return 0;
            }
        };
        let mut bytes = 0usize;
        for (i, msg) in msgs.iter().take(n).enumerate() {
            let len = msg.msg_len as usize;
            bytes += len;
            let hdr = &msg.msg_hdr;
            // SAFETY: `hdr` was just filled by recvmmsg and its control buffer (`ctl[i]`) is alive.
            let status = unsafe { sys::aux_status(hdr) }.unwrap_or(0);
            let truncated = hdr.msg_flags & libc::MSG_TRUNC != 0;
            let m = &mut b.meta[i];
            m.ok = false;
            if truncated {
                stats.dropped(DropReason::Truncated, 1);
                continue;
            }
            let frame = b
                .bufs
                .get(i)
                .and_then(|s| s.get(RX_HEADROOM..RX_HEADROOM + len))
                .unwrap_or_default();
            let d = match wire::parse_ip_udp(frame) {
                Ok(d) => d,
                Err(_) => {
                    stats.dropped(DropReason::Malformed, 1);
                    continue;
                }
            };
            // The kernel vouches for the checksum (verified by the NIC) or knows it is not computed yet (sent
            // from this host with offload): only otherwise is it ours to check.
            let trusted = status & (libc::TP_STATUS_CSUM_VALID | libc::TP_STATUS_CSUMNOTREADY) != 0;
            if !trusted && !wire::udp_checksum_ok(frame, &d) {
                stats.dropped(DropReason::BadChecksum, 1);
                continue;
            }
            *m = super::batch::Meta {
                local: d.dst,
                remote: d.src,
                off: RX_HEADROOM + d.payload_off,
                len: d.payload_len,
                tos: d.tos,
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
        for v6 in [false, true] {
            let fd = if v6 { &self.tx6 } else { &self.tx4 };
            for i in 0..n {
                let m = b.meta[i];
                let Verdict::Forward { from, to, len } = m.verdict else {
                    continue;
                };
                if !m.ok || to.is_ipv6() != v6 {
                    continue;
                }
                if from.is_ipv6() != v6 || fd.is_none() {
                    stats.dropped(DropReason::FamilyMismatch, 1);
                    continue;
                }
                if m.off + len > SLOT {
                    stats.dropped(DropReason::TooBig, 1);
                    continue;
                }
                let Some(buf) = b.bufs.get_mut(i) else {
                    continue;
                };
                match wire::write_headers(buf, m.off, len, from, to, m.tos) {
                    Ok(start) => {
                        // Raw sockets route on the address alone; IPv6 raw sockets read the port as protocol.
                        let dst = std::net::SocketAddr::new(to.ip(), 0);
                        tx.push(buf.get(start..m.off + len).unwrap_or_default(), dst);
                    }
                    Err(wire::BuildError::FamilyMismatch) => {
                        stats.dropped(DropReason::FamilyMismatch, 1)
                    }
                    Err(_) => stats.dropped(DropReason::TooBig, 1),
                }
            }
            if let Some(fd) = fd
                && tx.n > 0
            {
                tx.flush(fd.as_raw_fd(), stats);
            }
        }
    }
}
