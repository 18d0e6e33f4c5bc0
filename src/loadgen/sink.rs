//! The receiver: per-stream counts, sequence checks (loss, reorder, duplicates), payload integrity, SRTP
//! authentication, and one-way latency into an hdrhistogram. Or, when reading would make the sink the
//! bottleneck, count-only: the sockets get a tiny receive buffer, nothing reads them, and the kernel's
//! per-socket drop counter (`/proc/net/udp`, matched by socket inode) plus a final drain is the count.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::transform::PacketTransform;
use super::wire::{self, WireError};
use super::{now_ns, pin_to};
use crate::srtp::SrtpError;

const BATCH: usize = 64;
const BUF: usize = 2048;
/// Duplicate detection window below the highest sequence seen, per stream.
const WINDOW: u64 = 64;

#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Sender streams expected: SSRCs `ssrc_base .. ssrc_base + streams`.
    pub streams: usize,
    pub ssrc_base: u32,
    /// Stop after this long even if nobody sets `stop`.
    pub max_duration: Duration,
    pub core: Option<usize>,
    pub count_only: bool,
}

/// What one sender stream's packets looked like on arrival.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StreamStats {
    pub received: u64,
    /// Highest sequence seen + 1: what the sink knows was sent (trailing losses are invisible to it).
    pub expected: u64,
    pub reordered: u64,
    pub duplicates: u64,
    /// Arrived more than the window below the highest: late, not checked for duplication.
    pub too_late: u64,
    pub bad_payload: u64,
    pub auth_failures: u64,
    pub srtp_errors: u64,
    /// RFC 3550 interarrival jitter (section 6.4.1) of the one-way transit times, in nanoseconds.
    pub jitter_ns: f64,
    #[serde(skip)]
    last_transit: Option<u64>,
    #[serde(skip)]
    highest: Option<u64>,
    #[serde(skip)]
    window: u64,
}

impl StreamStats {
    /// Folds one packet's transit time (receive - send, same clock) into the jitter estimate.
    pub fn record_transit(&mut self, transit_ns: u64) {
        if let Some(prev) = self.last_transit {
            let d = transit_ns.abs_diff(prev) as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit = Some(transit_ns);
    }
    /// Unique packets accepted.
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }
    /// Sequence numbers below the highest that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.unique())
    }

    fn record_seq(&mut self, seq: u64) {
        self.received += 1;
        match self.highest {
            None => {
                self.highest = Some(seq);
                self.window = 1;
            }
            Some(h) if seq > h => {
                let shift = seq - h;
                self.window = if shift >= WINDOW {
                    0
                } else {
                    self.window << shift
                };
                self.window |= 1;
                self.highest = Some(seq);
            }
            Some(h) => {
                let back = h - seq;
                if back >= WINDOW {
                    self.too_late += 1;
                } else if self.window & (1 << back) != 0 {
                    self.duplicates += 1;
                } else {
                    self.window |= 1 << back;
                    self.reordered += 1;
                }
            }
        }
        self.expected = self.highest.map_or(0, |h| h + 1);
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkReport {
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub bad_payload: u64,
    pub auth_failures: u64,
    pub srtp_errors: u64,
    /// Packets whose SSRC is none of ours (or too short to have one).
    pub unknown: u64,
    /// Count-only mode: packets the kernel dropped on our tiny buffers (included in `received`).
    pub kernel_counted: u64,
    pub count_only: bool,
    pub elapsed_s: f64,
    pub pinned: bool,
    pub latency: Option<LatencySummary>,
    pub per_stream: Vec<StreamStats>,
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

/// Sets SO_RCVBUF (the kernel doubles it and enforces its own minimum).
pub fn set_rcvbuf(sock: &UdpSocket, bytes: usize) -> std::io::Result<()> {
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt reads size_of::<c_int>() bytes from a valid pointer to `v`.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Socket inode (what `/proc/net/udp` lists).
pub fn socket_inode(sock: &UdpSocket) -> std::io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/self/fd/{}", sock.as_raw_fd()))?.ino())
}

/// inode -> drops, from the text of `/proc/net/udp` (and `udp6`).
pub fn parse_proc_udp_drops(text: &str) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let (Some(ino), Some(drops)) = (f.get(9), f.get(12))
            && let (Ok(ino), Ok(drops)) = (ino.parse::<u64>(), drops.parse::<u64>())
        {
            m.insert(ino, drops);
        }
    }
    m
}

fn read_drops() -> HashMap<u64, u64> {
    let mut text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    text.push_str(
        &std::fs::read_to_string("/proc/net/udp6")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    parse_proc_udp_drops(&text)
}

/// Reads every socket until `stop` is set (then drains what is queued) or `max_duration` passes.
/// `rxs[i]` unprotects what arrives on `socks[i]`.
pub fn run_sink(
    socks: &[UdpSocket],
    rxs: &mut [Box<dyn PacketTransform>],
    cfg: &SinkConfig,
    stop: &AtomicBool,
) -> SinkReport {
    run_sink_signalled(socks, rxs, cfg, stop, &AtomicBool::new(false))
}

/// [`run_sink`] that sets `ready` once its baseline (the kernel drop counters) is taken and it is
/// listening: a generator started before that would have its early drops folded into the baseline.
pub fn run_sink_signalled(
    socks: &[UdpSocket],
    rxs: &mut [Box<dyn PacketTransform>],
    cfg: &SinkConfig,
    stop: &AtomicBool,
    ready: &AtomicBool,
) -> SinkReport {
    let pinned = pin_to(cfg.core);
    let start = now_ns();
    let end = start.saturating_add(cfg.max_duration.as_nanos() as u64);
    let mut per = vec![StreamStats::default(); cfg.streams];
    let mut unknown = 0u64;
    let mut kernel_counted = 0u64;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).ok();
    let mut bufs = vec![[0u8; BUF]; BATCH];
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    // SAFETY: as above.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let n = socks.len().min(rxs.len());

    let inodes: Vec<u64> = if cfg.count_only {
        socks.iter().map(|s| socket_inode(s).unwrap_or(0)).collect()
    } else {
        Vec::new()
    };
    let base_drops = if cfg.count_only {
        read_drops()
    } else {
        HashMap::new()
    };

    // SAFETY: epoll_create1 has no pointer arguments.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if !cfg.count_only && ep >= 0 {
        for (i, s) in socks.iter().enumerate().take(n) {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: ep is our epoll fd, the socket fd is open, ev is a valid epoll_event.
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    ready.store(true, Ordering::Release);

    // Reads up to `rounds` batches from socket i; returns packets read.
    let mut drain = |i: usize,
                     rounds: usize,
                     check: bool,
                     per: &mut Vec<StreamStats>,
                     unknown: &mut u64,
                     hist: &mut Option<Histogram<u64>>|
     -> u64 {
        let mut total = 0u64;
        for _ in 0..rounds {
            for j in 0..BATCH {
                iovs[j].iov_base = bufs[j].as_mut_ptr().cast();
                iovs[j].iov_len = BUF;
                msgs[j].msg_hdr.msg_iov = &mut iovs[j];
                msgs[j].msg_hdr.msg_iovlen = 1;
                msgs[j].msg_hdr.msg_name = std::ptr::null_mut();
                msgs[j].msg_hdr.msg_namelen = 0;
                msgs[j].msg_len = 0;
            }
            // SAFETY: every mmsghdr points at an iovec over a live BUF-sized buffer; MSG_DONTWAIT never blocks.
            let r = unsafe {
                libc::recvmmsg(
                    socks[i].as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r <= 0 {
                break;
            }
            let got = r as usize;
            total += got as u64;
            let now = now_ns();
            for j in 0..got {
                let len = (msgs[j].msg_len as usize).min(BUF);
                let pkt = &mut bufs[j];
                let idx = wire::ssrc_of(&pkt[..len])
                    .map(|s| s.wrapping_sub(cfg.ssrc_base) as usize)
                    .filter(|&x| x < per.len());
                let Some(idx) = idx else {
                    *unknown += 1;
                    continue;
                };
                let st = &mut per[idx];
                if !check {
                    st.received += 1;
                    continue;
                }
                let plain = match rxs[i].unprotect(pkt, len) {
                    Ok(l) => l,
                    Err(SrtpError::AuthFailed) => {
                        st.auth_failures += 1;
                        continue;
                    }
                    Err(SrtpError::Replayed) => {
                        st.received += 1;
                        st.duplicates += 1;
                        continue;
                    }
                    Err(_) => {
                        st.srtp_errors += 1;
                        continue;
                    }
                };
                match wire::read_packet(&pkt[..plain]) {
                    Ok(stamp) if stamp.stream as usize == idx => {
                        st.record_seq(stamp.seq);
                        st.record_transit(now.saturating_sub(stamp.sent_ns));
                        if let Some(h) = hist.as_mut() {
                            let _ = h.record(now.saturating_sub(stamp.sent_ns).max(1));
                        }
                    }
                    Ok(_)
                    | Err(WireError::BadMagic | WireError::BadFiller | WireError::SeqMismatch) => {
                        st.bad_payload += 1
                    }
                    Err(_) => st.bad_payload += 1,
                }
            }
            if got < BATCH {
                break;
            }
        }
        total
    };

    if !cfg.count_only {
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if stopping || now_ns() >= end {
                // Final drain: bounded number of batches per socket.
                for i in 0..n {
                    drain(i, 64, true, &mut per, &mut unknown, &mut hist);
                }
                break;
            }
            // SAFETY: events has room for events.len() entries; a 10 ms timeout bounds the wait.
            let k = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 10) };
            for e in events.iter().take(k.max(0) as usize) {
                let i = e.u64 as usize;
                if i < n {
                    drain(i, 8, true, &mut per, &mut unknown, &mut hist);
                }
            }
        }
    } else {
        // Count-only: sleep until stopped; the kernel's drop counters are per receiving socket, not per sender
        // stream, so they go into the total (`kernel_counted`); only the final drain is attributed by SSRC.
        while !stop.load(Ordering::Relaxed) && now_ns() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Datagrams still in flight when the stop comes (softirq on the other core, a loaded CI box) land
        // after a single read of the counters and would be neither dropped-and-counted nor drained: settle
        // until a drain finds nothing and the counters stop moving, bounded to 50 rounds of 5 ms.
        let ours = |m: &HashMap<u64, u64>| -> u64 {
            inodes
                .iter()
                .take(n)
                .map(|i| m.get(i).copied().unwrap_or(0))
                .sum()
        };
        let mut last = read_drops();
        for _ in 0..50 {
            let mut got = 0;
            for i in 0..n {
                got += drain(i, 64, false, &mut per, &mut unknown, &mut hist);
            }
            std::thread::sleep(Duration::from_millis(5));
            let now = read_drops();
            let settled = got == 0 && ours(&now) == ours(&last);
            last = now;
            if settled {
                break;
            }
        }
        for ino in inodes.iter().take(n) {
            kernel_counted += last
                .get(ino)
                .copied()
                .unwrap_or(0)
                .saturating_sub(base_drops.get(ino).copied().unwrap_or(0));
        }
    }
    if ep >= 0 {
        // SAFETY: ep is an fd we opened and close once.
        unsafe { libc::close(ep) };
    }

    let mut rep = SinkReport {
        received: 0,
        lost: 0,
        reordered: 0,
        duplicates: 0,
        bad_payload: 0,
        auth_failures: 0,
        srtp_errors: 0,
        unknown,
        kernel_counted,
        count_only: cfg.count_only,
        elapsed_s: (now_ns() - start) as f64 / 1e9,
        pinned,
        latency: None,
        per_stream: Vec::new(),
        histogram: None,
    };
    for s in &per {
        rep.received += s.received;
        rep.lost += s.lost();
        rep.reordered += s.reordered;
        rep.duplicates += s.duplicates;
        rep.bad_payload += s.bad_payload;
        rep.auth_failures += s.auth_failures;
        rep.srtp_errors += s.srtp_errors;
    }
    if let Some(h) = hist.as_ref()
        && !h.is_empty()
    {
        let us = |v: u64| v as f64 / 1000.0;
        rep.latency = Some(LatencySummary {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        });
    }
    rep.received += kernel_counted;
    rep.per_stream = per;
    rep.histogram = hist;
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_follows_rfc3550() {
        let mut s = StreamStats::default();
        s.record_transit(1000);
        assert_eq!(s.jitter_ns, 0.0);
        s.record_transit(1160);
        assert_eq!(s.jitter_ns, 10.0);
        s.record_transit(1160);
        assert_eq!(s.jitter_ns, 10.0 - 10.0 / 16.0);
    }

    #[test]
    fn sequence_accounting() {
        let mut s = StreamStats::default();
        for q in [0, 1, 2, 4, 3, 3, 5, 7] {
            s.record_seq(q);
        }
        assert_eq!(s.received, 8);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.expected, 8);
        assert_eq!(s.lost(), 1); // 6
        s.record_seq(200);
        s.record_seq(10);
        assert_eq!(s.too_late, 1);
    }

    #[test]
    fn proc_udp_drops() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
 1: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 42\n";
        let m = parse_proc_udp_drops(text);
        assert_eq!(m.get(&12345), Some(&42));
    }
}
