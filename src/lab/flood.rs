//! The attacker of `tollgate lab --flood`: from a namespace outside every ACL it sends INVITEs, scanner
//! OPTIONS and garbage at the carrier SIP port as fast as one thread can, bounded in time and count, while the
//! legitimate calls are placed and talk.
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the flooder managed to send.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct FloodStats {
    pub packets: u64,
    pub errors: u64,
    pub seconds: f64,
}

impl FloodStats {
    pub fn rate_pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.packets as f64 / self.seconds
        } else {
            0.0
        }
    }
}

pub struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<FloodStats>>,
}

/// A hard cap whatever the caller asks: the flood is a test, never an open-ended load.
pub const MAX_PACKETS: u64 = 20_000_000;

/// The three kinds of packet the flood cycles through; the INVITE's Call-ID digits change every packet.
fn messages(target: SocketAddr, from: SocketAddr) -> [Vec<u8>; 3] {
    let invite = format!(
        "INVITE sip:+18005550000@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKfl0000000000\r\n\
         From: <sip:1000@{from}>;tag=fl\r\nTo: <sip:+18005550000@{target}>\r\n\
         Call-ID: flood-0000000000\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@{from}>\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let scan = format!(
        "OPTIONS sip:100@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKscan\r\n\
         From: <sip:100@{from}>;tag=s\r\nTo: <sip:100@{target}>\r\nCall-ID: scan\r\nCSeq: 1 OPTIONS\r\n\
         User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
    );
    let garbage = (0..400u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    [invite.into_bytes(), scan.into_bytes(), garbage]
}

/// Writes `n` as ten decimal digits at `at` (the INVITE's branch and Call-ID counters).
fn stamp(buf: &mut [u8], at: usize, mut n: u64) {
    if let Some(d) = buf.get_mut(at..at + 10) {
        for b in d.iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
}

impl Flood {
    /// Starts flooding `target` from namespace `ns` (address `from`) for at most `max`.
    pub fn start(
        ns: &str,
        from: SocketAddr,
        target: SocketAddr,
        max: Duration,
    ) -> Result<Flood, String> {
        let file =
            std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("{ns}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lab-flood".into())
            .spawn(move || {
                use std::os::fd::AsRawFd;
                // SAFETY: setns on an open namespace file descriptor; it affects only this thread.
                let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                let sock = if r == 0 {
                    UdpSocket::bind(from).and_then(|s| s.connect(target).map(|()| s))
                } else {
                    Err(std::io::Error::last_os_error())
                };
                let sock = match sock {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("flooder socket: {e}")));
                        return FloodStats::default();
                    }
                };
                let mut msgs = messages(target, from);
                let invite = &msgs[0];
                let branch = memchr::memmem::find(invite, b"z9hG4bKfl").map(|i| i + 9);
                let call_id = memchr::memmem::find(invite, b"flood-").map(|i| i + 6);
                let start = Instant::now();
                let mut st = FloodStats::default();
                let mut i: u64 = 0;
                while i < MAX_PACKETS {
                    // Look at the clock and the stop flag once per batch, not per packet.
                    if i.is_multiple_of(256)
                        && (stop2.load(Ordering::Relaxed) || start.elapsed() >= max)
                    {
                        break;
                    }
                    let k = (i % 3) as usize;
                    if k == 0 {
                        for at in [branch, call_id].into_iter().flatten() {
                            stamp(&mut msgs[0], at, i);
                        }
                    }
                    match sock.send(&msgs[k]) {
                        Ok(_) => st.packets += 1,
                        // ECONNREFUSED from an ICMP or ENOBUFS under pressure: count and keep going.
                        Err(_) => st.errors += 1,
                    }
                    i += 1;
                }
                st.seconds = start.elapsed().as_secs_f64();
                st
            })
            .map_err(|e| format!("flood thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "flood thread died".to_owned())??;
        Ok(Flood {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) -> FloodStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invites_are_stamped_in_place_and_stay_parseable() {
        let t: SocketAddr = "10.0.1.1:5060".parse().unwrap();
        let f: SocketAddr = "10.0.3.2:5060".parse().unwrap();
        let mut m = messages(t, f);
        let at = memchr::memmem::find(&m[0], b"flood-").unwrap() + 6;
        stamp(&mut m[0], at, 42);
        let text = String::from_utf8(m[0].clone()).unwrap();
        assert!(text.contains("Call-ID: flood-0000000042\r\n"), "{text}");
        let msg =
            crate::sip::message::Message::parse(&m[0][..]).expect("the flood INVITE is valid SIP");
        assert!(msg.is_request());
        assert!(crate::sip::message::Message::parse(&m[2][..]).is_err());
    }
}
