//! Buffers and per-batch bookkeeping shared by both receive schemes: fixed slots allocated once per worker,
//! the handler call, and batched transmit with bounded retry.

use std::io;
use std::mem::zeroed;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;

use super::handler::{HandlerDrop, PacketHandler, RxPacket, Verdict};
use super::stats::{DropReason, WorkerStats};
use super::sys;

/// Bytes per packet buffer: a 1500-byte MTU frame plus room to grow (SRTP tag) and to prepend headers.
pub const SLOT: usize = 2048;
/// Most packets per recvmmsg/sendmmsg.
pub const MAX_BATCH: usize = 64;
/// Where a received frame is placed in its slot, so the transmit headers fit in front of the payload even
/// when the received headers were shorter (IPv4 in, IPv6 out).
pub const RX_HEADROOM: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Payload offset in the slot.
    pub off: usize,
    pub len: usize,
    pub tos: u8,
    /// Passed the driver's checks and went to the handler.
    pub ok: bool,
    pub verdict: Verdict,
}

impl Default for Meta {
    fn default() -> Self {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        Meta {
            local: any,
            remote: any,
            off: 0,
            len: 0,
            tos: 0,
            ok: false,
            verdict: Verdict::Drop(HandlerDrop::NoFlow),
        }
    }
}

pub struct Batch {
    pub bufs: Box<[[u8; SLOT]]>,
    pub meta: [Meta; MAX_BATCH],
    verdicts: [Verdict; MAX_BATCH],
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            bufs: vec![[0u8; SLOT]; MAX_BATCH].into_boxed_slice(),
            meta: [Meta::default(); MAX_BATCH],
            verdicts: [Verdict::Drop(HandlerDrop::NoFlow); MAX_BATCH],
        }
    }

    /// Run the handler over the `n` first slots that passed the driver's checks; their verdicts land in
    /// `meta[i].verdict`, handler drops are counted.
    pub fn decide<H: PacketHandler>(
        &mut self,
        h: &mut H,
        now: Instant,
        n: usize,
        stats: &WorkerStats,
    ) {
        let mut pkts: ArrayVec<RxPacket<'_>, MAX_BATCH> = ArrayVec::new();
        let mut idx: ArrayVec<usize, MAX_BATCH> = ArrayVec::new();
        for (i, (buf, m)) in self
            .bufs
            .iter_mut()
            .zip(self.meta.iter())
            .take(n)
            .enumerate()
        {
            if m.ok
                && let Some(b) = buf.get_mut(m.off..)
            {
                pkts.push(RxPacket::new(m.local, m.remote, b, m.len));
                idx.push(i);
            }
        }
        let out = &mut self.verdicts[..pkts.len()];
        out.fill(Verdict::Drop(HandlerDrop::NoFlow));
        if !pkts.is_empty() {
            h.handle_batch(now, &mut pkts, out);
        }
        drop(pkts);
        for (&i, v) in idx.iter().zip(self.verdicts.iter()) {
            if let Some(m) = self.meta.get_mut(i) {
                m.verdict = *v;
                if let Verdict::Drop(d) = v {
                    stats.dropped((*d).into(), 1);
                }
            }
        }
    }
}

/// Transmit buffers: message headers, iovecs and destination addresses, owned by one worker.
pub struct TxBatch {
    pub msgs: [libc::mmsghdr; MAX_BATCH],
    pub iov: [libc::iovec; MAX_BATCH],
    pub addr: [libc::sockaddr_storage; MAX_BATCH],
    pub n: usize,
}

impl TxBatch {
    pub fn new() -> Box<Self> {
        // SAFETY: mmsghdr, iovec and sockaddr_storage are plain C data; all-zero (null pointers) is valid and
        // every entry is filled before it is passed to the kernel.
        Box::new(unsafe { zeroed() })
    }

    /// Queue `data` (which must stay alive and unmoved until `flush`) for `to`.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) {
        let Some(i) = (self.n < MAX_BATCH).then_some(self.n) else {
            return;
        };
        let (ss, len) = sys::sockaddr(to);
        self.addr[i] = ss;
        self.iov[i] = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let h = &mut self.msgs[i].msg_hdr;
        h.msg_name = (&mut self.addr[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = len;
        h.msg_iov = &mut self.iov[i];
        h.msg_iovlen = 1;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        h.msg_flags = 0;
        self.n += 1;
    }

    /// Send everything queued on `fd`: sendmmsg until done; a message the kernel refuses is counted and
    /// skipped; a full send buffer gets a few 1 ms waits before the rest is dropped (never an unbounded spin).
    pub fn flush(&mut self, fd: RawFd, stats: &WorkerStats) {
        let n = std::mem::take(&mut self.n);
        let (mut at, mut waits) = (0usize, 0u32);
        while at < n {
            stats.tx_syscall();
            match sys::sendmmsg(fd, &mut self.msgs[at..n]) {
                Ok(sent) => {
                    let bytes: usize = self.iov[at..at + sent].iter().map(|v| v.iov_len).sum();
                    stats.tx(sent, bytes);
                    at += sent.max(1).min(n - at);
                    if sent == 0 {
                        stats.dropped(DropReason::TxError, 1);
                    }
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) if waits < 3 => {
                        waits += 1;
                        let mut p = [sys::pollfd(fd, libc::POLLOUT)];
                        let _ = sys::poll(&mut p, Duration::from_millis(1));
                    }
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                        stats.dropped(DropReason::TxError, n - at);
                        at = n;
                    }
                    _ => {
                        log_tx_error(&e);
                        stats.dropped(DropReason::TxError, 1);
                        at += 1;
                    }
                },
            }
        }
    }
}

#[cold]
fn log_tx_error(e: &io::Error) {
    tracing::debug!(error = %e, "media transmit refused by the kernel");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forwards even-numbered local ports after appending a 4-byte trailer (as SRTP protect grows a packet),
    /// drops odd ones as `Crypto`.
    struct Grow;

    impl PacketHandler for Grow {
        type Cmd = ();
        fn apply_command(&mut self, _: ()) {}
        fn handle_batch(&mut self, _: Instant, pkts: &mut [RxPacket<'_>], out: &mut [Verdict]) {
            for (p, v) in pkts.iter_mut().zip(out.iter_mut()) {
                if p.local.port() % 2 == 1 {
                    *v = Verdict::Drop(HandlerDrop::Crypto);
                    continue;
                }
                let len = p.len();
                assert!(p.capacity() >= len + 4);
                p.buf_mut()[len..len + 4].copy_from_slice(b"TAIL");
                let to = SocketAddr::from(([192, 0, 2, 1], p.local.port()));
                *v = Verdict::Forward {
                    from: p.local,
                    to,
                    len: len + 4,
                };
            }
        }
    }

    #[test]
    fn decide_maps_verdicts_to_their_slots_and_skips_rejected_frames() {
        let mut b = Batch::new();
        let stats = WorkerStats::default();
        for i in 0..5 {
            let off = RX_HEADROOM + 28;
            b.bufs[i][off..off + 3].copy_from_slice(&[i as u8; 3]);
            b.meta[i] = Meta {
                local: SocketAddr::from(([10, 0, 0, 1], 30000 + i as u16)),
                remote: SocketAddr::from(([10, 0, 0, 2], 5000)),
                off,
                len: 3,
                ok: i != 2, // slot 2 failed the driver's checks: the handler never sees it
                ..Meta::default()
            };
        }
        b.decide(&mut Grow, Instant::now(), 5, &stats);
        for i in [0usize, 4] {
            let Verdict::Forward { from, to, len } = b.meta[i].verdict else {
                panic!("slot {i}")
            };
            assert_eq!(
                (from.port(), to.port(), len),
                (30000 + i as u16, 30000 + i as u16, 7)
            );
            let off = b.meta[i].off;
            assert_eq!(
                &b.bufs[i][off..off + 7],
                &[i as u8, i as u8, i as u8, b'T', b'A', b'I', b'L']
            );
        }
        for i in [1usize, 3] {
            assert_eq!(b.meta[i].verdict, Verdict::Drop(HandlerDrop::Crypto));
        }
        assert_eq!(b.meta[2].verdict, Verdict::Drop(HandlerDrop::NoFlow));
        assert_eq!(stats.snapshot().dropped(DropReason::Crypto), 2);
        assert_eq!(stats.snapshot().total_drops(), 2);
    }
}
