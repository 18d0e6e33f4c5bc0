//! AF_XDP transmit mode, for rates beyond what `sendmmsg` reaches (~300 kpps here): the generator writes
//! whole Ethernet/IPv4/UDP frames into a UMEM and hands them to one TX-only XDP socket (copy mode on veth,
//! zero-copy where the driver has it), kicking the kernel with `sendto` (at most 32 descriptors per kick in
//! copy mode) and recycling frames from the completion ring. UDP checksum 0 (allowed for IPv4), IPv4 header
//! checksum computed. Receive side is the ordinary sink on kernel sockets (or a count-only sink).

use std::ffi::CString;
use std::net::SocketAddrV4;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use xdpilone::xdp::XdpDesc;
use xdpilone::{IfInfo, Socket, SocketConfig, Umem, UmemConfig};

use super::transform::PacketTransform;
use super::wire::{self, Stamp};
use super::{now_ns, pin_to};

const FRAME: u32 = 2048;
const HDRS: usize = 14 + 20 + 8;
const MAX_KICKS: u32 = 64;

#[derive(Debug, Clone)]
pub struct XskGenConfig {
    pub iface: String,
    pub queue: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// (source, destination) per stream; stream `i` uses SSRC `ssrc_base + i`.
    pub streams: Vec<(SocketAddrV4, SocketAddrV4)>,
    /// Total packets/s (0 = as fast as the ring takes them).
    pub total_pps: u64,
    pub duration: Duration,
    pub payload_len: usize,
    pub ssrc_base: u32,
    pub core: Option<usize>,
    /// UMEM frames (2 KiB each) and TX/completion ring size (powers of two).
    pub frames: u32,
    pub ring: u32,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct XskGenReport {
    pub sent: u64,
    pub sent_per_stream: Vec<u64>,
    pub completed: u64,
    pub kick_eagain: u64,
    pub protect_errors: u64,
    pub elapsed_s: f64,
    pub pps: f64,
    pub pinned: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("interface {0:?} not found")]
    NoInterface(String),
    #[error("AF_XDP {0}: {1:?}")]
    Xdp(&'static str, xdpilone::Errno),
    #[error("UMEM mmap: {0}")]
    Mmap(std::io::Error),
    #[error("bad config: {0}")]
    Config(&'static str),
}

struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> Result<Area, XskError> {
        // SAFETY: anonymous private mapping, no fd; the result is checked against MAP_FAILED.
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
            return Err(XskError::Mmap(std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| XskError::Mmap(std::io::Error::other("null mapping")))?;
        Ok(Area { ptr, len })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`; the Umem using it is dropped first (declared later in
        // `run_xsk_gen`, so dropped earlier).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes Ethernet + IPv4 + UDP headers for a UDP payload of `udp_payload` bytes into `f[..HDRS]`.
fn write_headers(
    f: &mut [u8],
    src_mac: &[u8; 6],
    dst_mac: &[u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    udp_payload: usize,
) {
    f[0..6].copy_from_slice(dst_mac);
    f[6..12].copy_from_slice(src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    let total = (20 + 8 + udp_payload) as u16;
    ip[0] = 0x45;
    ip[1] = 0xb8; // EF, as voice is marked
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&[0, 0]);
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let c = ip_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + udp_payload) as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]); // no checksum (IPv4)
}

/// Transmits the streams through AF_XDP until `duration` passes or `stop` is set. Needs CAP_NET_RAW.
pub fn run_xsk_gen(
    cfg: &XskGenConfig,
    txs: &mut [Box<dyn PacketTransform>],
    stop: &AtomicBool,
) -> Result<XskGenReport, XskError> {
    let n = cfg.streams.len().min(txs.len());
    if n == 0 {
        return Err(XskError::Config("no streams"));
    }
    if !cfg.frames.is_power_of_two() || !cfg.ring.is_power_of_two() || cfg.ring > cfg.frames {
        return Err(XskError::Config(
            "frames and ring must be powers of two, ring <= frames",
        ));
    }
    let len = cfg.frames as usize * FRAME as usize;
    let area = Area::new(len)?;
    let ucfg = UmemConfig {
        fill_size: cfg.ring,
        complete_size: cfg.ring,
        frame_size: FRAME,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: `area` is a page-aligned private mapping of `len` bytes that outlives `umem` (declared after).
    let umem = unsafe { Umem::new(ucfg, NonNull::slice_from_raw_parts(area.ptr, len)) }
        .map_err(|e| XskError::Xdp("UMEM", e))?;
    let name =
        CString::new(cfg.iface.as_str()).map_err(|_| XskError::NoInterface(cfg.iface.clone()))?;
    let mut info = IfInfo::invalid();
    info.from_name(&name)
        .map_err(|_| XskError::NoInterface(cfg.iface.clone()))?;
    info.set_queue(cfg.queue);
    let sock = Socket::with_shared(&info, &umem).map_err(|e| XskError::Xdp("socket", e))?;
    let mut dev = umem
        .fq_cq(&sock)
        .map_err(|e| XskError::Xdp("fill/completion rings", e))?;
    let ring = NonZeroU32::new(cfg.ring);
    // Auto mode: zero-copy where the driver supports it, copy otherwise (veth).
    let sc = SocketConfig {
        rx_size: None,
        tx_size: ring,
        bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP,
    };
    let user = umem
        .rx_tx(&sock, &sc)
        .map_err(|e| XskError::Xdp("tx ring", e))?;
    umem.bind(&user).map_err(|e| XskError::Xdp("bind", e))?;
    let mut tx = user.map_tx().map_err(|e| XskError::Xdp("map tx", e))?;

    let pinned = pin_to(cfg.core);
    let mut rep = XskGenReport {
        sent_per_stream: vec![0; n],
        pinned,
        ..XskGenReport::default()
    };
    let mut free: Vec<u64> = (0..u64::from(cfg.frames))
        .map(|i| i * u64::from(FRAME))
        .collect();
    let mut seqs = vec![0u64; n];
    let mut scratch = [0u8; FRAME as usize];
    let rate = if cfg.total_pps == 0 {
        f64::INFINITY
    } else {
        cfg.total_pps as f64
    };
    let start = now_ns();
    let end = start.saturating_add(cfg.duration.as_nanos() as u64);
    let mut cursor = 0usize;
    let base = area.ptr.as_ptr();
    loop {
        let now = now_ns();
        if stop.load(Ordering::Relaxed) || now >= end {
            break;
        }
        {
            let mut c = dev.complete(dev.available().min(cfg.ring));
            while let Some(addr) = c.read() {
                free.push(addr & !u64::from(FRAME - 1));
                rep.completed += 1;
            }
            c.release();
        }
        let mut want = free.len().min(64) as u64;
        if rate.is_finite() {
            let owed = ((now - start) as f64 / 1e9 * rate) as u64;
            want = want.min(owed.saturating_sub(rep.sent));
            if want == 0 && !free.is_empty() {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        if want > 0 {
            let mut w = tx.transmit(want as u32);
            let mut inserted = 0u64;
            for _ in 0..want {
                let s = cursor;
                let stamp = Stamp {
                    stream: s as u32,
                    ssrc: cfg.ssrc_base.wrapping_add(s as u32),
                    seq: seqs[s],
                    sent_ns: now_ns(),
                };
                let Some(l) = wire::write_packet(
                    &mut scratch[HDRS..FRAME as usize - 64],
                    &stamp,
                    cfg.payload_len,
                ) else {
                    rep.protect_errors += 1;
                    break;
                };
                let l = match txs[s].protect(&mut scratch[HDRS..], l) {
                    Ok(l) => l,
                    Err(_) => {
                        rep.protect_errors += 1;
                        break;
                    }
                };
                let Some(addr) = free.pop() else { break };
                let (src, dst) = cfg.streams[s];
                write_headers(&mut scratch, &cfg.src_mac, &cfg.dst_mac, src, dst, l);
                let flen = HDRS + l;
                // SAFETY: `addr` is a free frame offset below `len` (frames * FRAME); the kernel does not own it
                // until the descriptor is committed; flen <= FRAME.
                unsafe {
                    std::ptr::copy_nonoverlapping(scratch.as_ptr(), base.add(addr as usize), flen)
                };
                if !w.insert_once(XdpDesc {
                    addr,
                    len: flen as u32,
                    options: 0,
                }) {
                    free.push(addr);
                    break;
                }
                seqs[s] += 1;
                rep.sent_per_stream[s] += 1;
                inserted += 1;
                cursor = (cursor + 1) % n;
            }
            w.commit();
            rep.sent += inserted;
        }
        let mut kicks = 0;
        while tx.pending() > 0 && kicks < MAX_KICKS {
            kicks += 1;
            // SAFETY: sendto with a null buffer of length 0 is the AF_XDP TX kick.
            let rc = unsafe {
                libc::sendto(
                    tx.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc < 0 {
                rep.kick_eagain += 1;
                std::thread::yield_now();
                break;
            }
        }
    }
    rep.elapsed_s = (now_ns() - start) as f64 / 1e9;
    rep.pps = rep.sent as f64 / rep.elapsed_s.max(1e-9);
    drop(tx);
    drop(user);
    drop(dev);
    drop(sock);
    drop(umem);
    drop(area);
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_checksum() {
        let mut f = [0u8; 64];
        write_headers(
            &mut f,
            &[2; 6],
            &[4; 6],
            "10.0.0.1:1000".parse().unwrap(),
            "10.0.0.2:2000".parse().unwrap(),
            172,
        );
        assert_eq!(
            ip_checksum(&f[14..34]),
            0,
            "checksum over a correct header is 0"
        );
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 200);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 180);
    }
}
