//! SIP traces of the running daemon (`[mgmt] sip_trace_pcap`, `sip_trace_hep`): every message received and
//! sent, with its addresses and time, as a pcap file for Wireshark/sngrep and/or HEPv3 to a Homer collector.
//!
//! The signaling thread only copies the message into a bounded queue ([`SipTracer::record`], never blocks:
//! when the writer falls behind, records are dropped and counted); a writer thread does the file and socket
//! I/O. The copy is the one allocation tracing adds per message, and only when tracing is on.
use super::hep;
use super::pcap::PcapWriter;
use crate::config::SipTrace;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Records queued between the signaling thread and the writer.
pub const QUEUE: usize = 8192;

/// IP protocol numbers as HEP and pcap readers expect them (TLS is shown as TCP).
pub const UDP: u8 = 17;
pub const TCP: u8 = 6;

struct Record {
    ts: SystemTime,
    proto: u8,
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
}

/// The signaling thread's end: cheap to call, never blocks.
pub struct SipTracer {
    tx: Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl SipTracer {
    /// Queues one message; a full queue drops it (counted, reported by the writer).
    pub fn record(&self, proto: u8, src: SocketAddr, dst: SocketAddr, bytes: &[u8]) {
        let r = Record {
            ts: SystemTime::now(),
            proto,
            src,
            dst,
            bytes: bytes.to_vec(),
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(r) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread; it ends (flushing the file) once every [`SipTracer`] is dropped, or within a second of
/// this being dropped (an error path may drop it while a tracer is still alive).
pub struct TraceWriter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A pcap file that starts over (keeping the previous one as `FILE.1`) at start and when it reaches the cap.
struct RotatingPcap {
    path: PathBuf,
    max_bytes: u64,
    written: u64,
    w: PcapWriter<BufWriter<File>>,
}

fn keep_previous(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => {
            let mut old = path.as_os_str().to_owned();
            old.push(".1");
            std::fs::rename(path, old)
        }
        _ => Ok(()),
    }
}

impl RotatingPcap {
    fn open(path: &Path, max_bytes: u64) -> io::Result<RotatingPcap> {
        keep_previous(path)?;
        let w = PcapWriter::new(BufWriter::new(File::create(path)?))?;
        Ok(RotatingPcap {
            path: path.to_owned(),
            max_bytes,
            written: 24,
            w,
        })
    }

    fn write(&mut self, r: &Record) -> io::Result<()> {
        if self.written + r.bytes.len() as u64 + 64 > self.max_bytes {
            self.w.flush()?;
            *self = RotatingPcap::open(&self.path, self.max_bytes)?;
        }
        self.w
            .write_udp(r.ts, r.src, r.dst, &r.bytes)
            .map_err(io::Error::other)?;
        // Record header + synthesized IP/UDP headers (at most 48 bytes for IPv6) + payload.
        self.written += 16 + 48 + r.bytes.len() as u64;
        Ok(())
    }
}

struct Hep {
    sock: UdpSocket,
    capture_id: u32,
    auth_key: Option<String>,
    buf: Vec<u8>,
}

impl Hep {
    fn send(&mut self, r: &Record) -> io::Result<()> {
        let meta = hep::HepMeta {
            src: r.src,
            dst: r.dst,
            ip_proto: r.proto,
            ts: r.ts,
            capture_id: self.capture_id,
            auth_key: self.auth_key.as_deref(),
            correlation_id: call_id(&r.bytes),
        };
        hep::encode(&meta, &r.bytes, &mut self.buf).map_err(io::Error::other)?;
        self.sock.send(&self.buf).map(|_| ())
    }
}

/// The Call-ID (or its compact form `i`), which Homer uses to group a dialog's messages.
fn call_id(msg: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(msg.get(..msg.len().min(4096))?).ok()?;
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
                .then(|| value.trim())
        })
}

/// Opens the configured outputs (an unwritable file or a bad collector address is an error at start) and
/// starts the writer. `Ok(None)`: tracing is off.
pub fn start(cfg: &SipTrace) -> io::Result<Option<(SipTracer, TraceWriter)>> {
    if !cfg.enabled() {
        return Ok(None);
    }
    let mut pcap = match &cfg.pcap {
        Some(p) => Some(
            RotatingPcap::open(p, cfg.max_bytes)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut hep = match cfg.hep {
        Some(addr) => {
            let bind: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(bind)?;
            sock.connect(addr)?;
            Some(Hep {
                sock,
                capture_id: cfg.hep_capture_id,
                auth_key: cfg.hep_auth_key.clone(),
                buf: Vec::with_capacity(2048),
            })
        }
        None => None,
    };
    let (tx, rx) = bounded(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let seen = dropped.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("tollgate-trace".into())
        .spawn(move || write_loop(rx, &seen, &stopped, pcap.as_mut(), hep.as_mut()))?;
    Ok(Some((
        SipTracer { tx, dropped },
        TraceWriter {
            stop,
            thread: Some(thread),
        },
    )))
}

fn write_loop(
    rx: Receiver<Record>,
    dropped: &AtomicU64,
    stop: &AtomicBool,
    mut pcap: Option<&mut RotatingPcap>,
    mut hep: Option<&mut Hep>,
) {
    let mut reported = 0;
    let (mut pcap_errors, mut hep_errors) = (0u64, 0u64);
    loop {
        let r = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(r) => Some(r),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        match r {
            Some(r) => {
                if let Some(p) = pcap.as_deref_mut()
                    && let Err(e) = p.write(&r)
                {
                    pcap_errors += 1;
                    if pcap_errors == 1 {
                        tracing::error!(error = %e, "SIP trace: pcap write failed");
                    }
                }
                // A collector that is down answers ICMP, which the next send reports: best effort, counted.
                if let Some(h) = hep.as_deref_mut()
                    && h.send(&r).is_err()
                {
                    hep_errors += 1;
                }
            }
            None => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(p) = pcap.as_deref_mut() {
                    let _ = p.w.flush();
                }
                let d = dropped.load(Ordering::Relaxed);
                if d > reported {
                    tracing::warn!(dropped = d, "SIP trace: writer behind, messages not traced");
                    reported = d;
                }
            }
        }
    }
    if let Some(p) = pcap {
        let _ = p.w.flush();
    }
    tracing::info!(
        dropped = dropped.load(Ordering::Relaxed),
        pcap_errors,
        hep_errors,
        "SIP trace stopped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const INVITE: &[u8] =
        b"INVITE sip:+18005551234@x SIP/2.0\r\nCall-ID: abc@h\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn call_id_is_found_in_long_and_compact_form() {
        assert_eq!(call_id(INVITE), Some("abc@h"));
        assert_eq!(call_id(b"BYE sip:x SIP/2.0\r\ni: q1\r\n\r\n"), Some("q1"));
        assert_eq!(call_id(b"BYE sip:x SIP/2.0\r\n\r\nCall-ID: body"), None);
        assert_eq!(call_id(b"\xff\xfe"), None);
    }

    #[test]
    fn pcap_and_hep_receive_every_message() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("sip.pcap");
        std::fs::write(&file, b"previous run").unwrap();
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let cfg = SipTrace {
            pcap: Some(file.clone()),
            max_bytes: 1 << 20,
            hep: Some(collector.local_addr().unwrap()),
            hep_capture_id: 7,
            hep_auth_key: Some("k".into()),
        };
        let (tracer, writer) = start(&cfg).unwrap().unwrap();
        let (a, b) = (addr("192.0.2.1:5060"), addr("192.0.2.2:5080"));
        for _ in 0..3 {
            tracer.record(UDP, a, b, INVITE);
        }
        drop(tracer);
        drop(writer);
        assert_eq!(
            std::fs::read(d.path().join("sip.pcap.1")).unwrap(),
            b"previous run"
        );
        let pcap = std::fs::read(&file).unwrap();
        assert_eq!(&pcap[..4], &0xa1b2_c3d4u32.to_le_bytes());
        // Three records, each IPv4 (20) + UDP (8) + payload.
        assert_eq!(pcap.len(), 24 + 3 * (16 + 28 + INVITE.len()));
        let mut buf = [0u8; 4096];
        for _ in 0..3 {
            let n = collector.recv(&mut buf).unwrap();
            let chunks = hep::decode(&buf[..n]).unwrap();
            assert!(chunks.iter().any(|c| c.data == INVITE));
            assert!(chunks.iter().any(|c| c.data == b"abc@h"), "correlation id");
        }
    }

    #[test]
    fn the_file_starts_over_at_its_cap() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("sip.pcap");
        let cfg = SipTrace {
            pcap: Some(file.clone()),
            max_bytes: 1000,
            ..SipTrace::default()
        };
        let (tracer, writer) = start(&cfg).unwrap().unwrap();
        for _ in 0..20 {
            tracer.record(
                TCP,
                addr("[2001:db8::1]:5061"),
                addr("[2001:db8::2]:5061"),
                INVITE,
            );
        }
        drop(tracer);
        drop(writer);
        let now = std::fs::metadata(&file).unwrap().len();
        let old = std::fs::metadata(d.path().join("sip.pcap.1"))
            .unwrap()
            .len();
        assert!(now <= 1000 && old <= 1000, "{now} {old}");
        assert!(now > 24 && old > 24);
    }

    #[test]
    fn an_unwritable_file_is_an_error_at_start() {
        let cfg = SipTrace {
            pcap: Some(PathBuf::from("/nonexistent-dir/sip.pcap")),
            ..SipTrace::default()
        };
        let e = start(&cfg).err().expect("refused");
        assert!(e.to_string().contains("/nonexistent-dir/sip.pcap"), "{e}");
    }
}
