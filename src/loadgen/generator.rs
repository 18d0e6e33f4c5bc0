//! The sender: one connected UDP socket per stream, packets batched with `sendmmsg`, paced by a global
//! schedule (packet `g` of the run is due at `g / R` plus optional jitter), on its own pinned core. Never
//! spins: when ahead it sleeps until the next packet is due (at most 1 ms at a time).

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::transform::PacketTransform;
use super::wire::{self, Stamp};
use super::{now_ns, pin_to};

/// Largest `sendmmsg` batch.
pub const MAX_BATCH: usize = 64;
const BUF: usize = 2048;

/// How packets are scheduled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Every stream sends `pps_per_stream` (50 = 20 ms ptime), streams interleaved evenly; each packet is
    /// delayed by a uniform random 0..`jitter_us` on top of its slot.
    Paced { pps_per_stream: u32, jitter_us: u32 },
    /// `total_pps` across all streams (0 = as fast as the sockets take them), `batch` packets per stream
    /// visit in one `sendmmsg`.
    Unpaced { total_pps: u64, batch: usize },
}

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub pace: Pace,
    pub duration: Duration,
    /// Payload bytes after the RTP header (>= the 24-byte load header); 160 = G.711 20 ms.
    pub payload_len: usize,
    /// SSRC of stream 0; stream `i` uses `ssrc_base + i` and stamps `i` as its stream id.
    pub ssrc_base: u32,
    pub core: Option<usize>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenReport {
    pub sent: u64,
    /// Per stream: packets the kernel accepted.
    pub sent_per_stream: Vec<u64>,
    pub send_errors: u64,
    pub protect_errors: u64,
    pub elapsed_s: f64,
    pub pps: f64,
    pub pinned: bool,
}

/// xorshift64*: jitter only, no security meaning.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn sleep_ns(ns: u64) {
    std::thread::sleep(Duration::from_nanos(ns.min(1_000_000)));
}

/// Sends until `cfg.duration` has passed or `stop` is set. `txs[i]` protects stream `i`'s packets.
pub fn run_gen(
    socks: &[UdpSocket],
    txs: &mut [Box<dyn PacketTransform>],
    cfg: &GenConfig,
    stop: &AtomicBool,
) -> GenReport {
    let n = socks.len().min(txs.len());
    let pinned = pin_to(cfg.core);
    let mut rep = GenReport {
        sent_per_stream: vec![0; n],
        pinned,
        ..GenReport::default()
    };
    if n == 0 {
        return rep;
    }
    let (rate, batch, jitter_ns) = match cfg.pace {
        Pace::Paced {
            pps_per_stream,
            jitter_us,
        } => (
            f64::from(pps_per_stream.max(1)) * n as f64,
            1,
            u64::from(jitter_us) * 1000,
        ),
        Pace::Unpaced { total_pps, batch } => (
            if total_pps == 0 {
                f64::INFINITY
            } else {
                total_pps as f64
            },
            batch.clamp(1, MAX_BATCH),
            0,
        ),
    };
    let mut seqs = vec![0u64; n];
    let mut bufs = vec![[0u8; BUF]; MAX_BATCH];
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is a valid value.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; MAX_BATCH];
    // SAFETY: as above.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; MAX_BATCH];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ now_ns());
    let mut next_jitter = if jitter_ns > 0 {
        rng.next() % jitter_ns
    } else {
        0
    };
    let start = now_ns();
    let end = start.saturating_add(cfg.duration.as_nanos() as u64);
    let mut scheduled: u64 = 0; // packets whose slot has been handed out (sent or not)
    let mut cursor = 0usize;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = now_ns();
        if now >= end {
            break;
        }
        let elapsed = (now - start) as f64 / 1e9;
        let mut k = batch as u64;
        if rate.is_finite() {
            // Slot of the next packet, plus its jitter.
            let due_ns = start as f64 + (scheduled as f64 / rate) * 1e9 + next_jitter as f64;
            if (now as f64) < due_ns {
                sleep_ns((due_ns - now as f64) as u64);
                continue;
            }
            let owed = (elapsed * rate) as u64;
            k = k.min(owed.saturating_sub(scheduled).max(1));
        }
        let s = cursor;
        cursor = (cursor + 1) % n;
        let tx = &mut txs[s];
        let mut built = 0usize;
        for j in 0..k as usize {
            let stamp = Stamp {
                stream: s as u32,
                ssrc: cfg.ssrc_base.wrapping_add(s as u32),
                seq: seqs[s] + j as u64,
                sent_ns: now_ns(),
            };
            let Some(len) =
                wire::write_packet(&mut bufs[built][..BUF - 64], &stamp, cfg.payload_len)
            else {
                rep.protect_errors += 1;
                continue;
            };
            match tx.protect(&mut bufs[built], len) {
                Ok(l) => {
                    iovs[built].iov_base = bufs[built].as_mut_ptr().cast();
                    iovs[built].iov_len = l;
                    built += 1;
                }
                Err(_) => rep.protect_errors += 1,
            }
        }
        seqs[s] += k;
        scheduled += k;
        if jitter_ns > 0 {
            next_jitter = rng.next() % jitter_ns;
        }
        for i in 0..built {
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_len = 0;
        }
        let mut done = 0usize;
        // Bounded: a partial send is retried at most `built` times.
        for _ in 0..built.max(1) {
            if done >= built {
                break;
            }
            // SAFETY: msgs[done..built] point at iovecs and buffers that live for this call; the socket
            // is connected, so no address is needed.
            let r = unsafe {
                libc::sendmmsg(
                    socks[s].as_raw_fd(),
                    msgs[done..].as_mut_ptr(),
                    (built - done) as u32,
                    0,
                )
            };
            if r <= 0 {
                rep.send_errors += (built - done) as u64;
                break;
            }
            done += r as usize;
        }
        rep.sent += done as u64;
        rep.sent_per_stream[s] += done as u64;
    }
    rep.elapsed_s = (now_ns() - start) as f64 / 1e9;
    rep.pps = if rep.elapsed_s > 0.0 {
        rep.sent as f64 / rep.elapsed_s
    } else {
        0.0
    };
    rep
}
