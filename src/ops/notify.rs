//! systemd readiness protocol (sd_notify) over the `$NOTIFY_SOCKET` datagram socket, and a watchdog that pings
//! only while every registered thread (signaling, each media worker) keeps proving it is alive.
use crossbeam_utils::CachePadded;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A connection to systemd's notification socket. `None` from [`Notifier::from_env`] means the process was not
/// started by systemd with `Type=notify` (or `NotifyAccess`), and notifications are simply not sent.
pub struct Notifier {
    sock: UnixDatagram,
    addr: NotifyAddr,
}

enum NotifyAddr {
    Path(PathBuf),
    /// Linux abstract namespace (`@name` in `$NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

impl Notifier {
    pub fn from_env() -> io::Result<Option<Self>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Self::new(&v.to_string_lossy()).map(Some),
            _ => Ok(None),
        }
    }

    pub fn new(socket: &str) -> io::Result<Self> {
        let addr = if let Some(name) = socket.strip_prefix('@') {
            NotifyAddr::Abstract(name.as_bytes().to_vec())
        } else if socket.starts_with('/') {
            NotifyAddr::Path(PathBuf::from(socket))
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsupported NOTIFY_SOCKET {socket:?}"),
            ));
        };
        Ok(Self {
            sock: UnixDatagram::unbound()?,
            addr,
        })
    }

    /// Sends a raw notification (newline-separated `KEY=VALUE` assignments).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        match &self.addr {
            NotifyAddr::Path(p) => self.sock.send_to(state.as_bytes(), p).map(|_| ()),
            NotifyAddr::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.sock.send_to_addr(state.as_bytes(), &a).map(|_| ())
            }
        }
    }

    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.notify(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}",
            std::process::id()
        ))
    }

    /// Reload start; systemd (>= 253, `Type=notify-reload` semantics) wants the monotonic time in microseconds.
    pub fn reloading(&self) -> io::Result<()> {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    pub fn stopping(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("STOPPING=1\nSTATUS={status}"))
    }

    pub fn status(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("STATUS={status}"))
    }

    pub fn watchdog(&self) -> io::Result<()> {
        self.notify("WATCHDOG=1")
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// The watchdog interval systemd asks for (`$WATCHDOG_USEC`, for this pid per `$WATCHDOG_PID`).
pub fn watchdog_interval_from_env() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_string_lossy().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Liveness ticks from the threads the watchdog vouches for. Each thread owns one slot on its own cache line
/// and stores the time (ms since the board was made) with a relaxed store once per loop iteration: no shared
/// written line, no read-modify-write.
pub struct Heartbeats {
    epoch: Instant,
    slots: Box<[CachePadded<AtomicU64>]>,
    names: Vec<String>,
}

/// One thread's handle on its heartbeat slot.
#[derive(Clone)]
pub struct Heartbeat {
    board: Arc<Heartbeats>,
    slot: usize,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.board.names.get(self.slot).map_or("?", String::as_str);
        write!(f, "Heartbeat({name})")
    }
}

impl Heartbeat {
    /// Records that the owning thread is alive now. Cheap enough to call once per batch.
    #[inline]
    pub fn beat(&self) {
        let now = self.board.now_ms();
        if let Some(s) = self.board.slots.get(self.slot) {
            s.store(now, Ordering::Relaxed);
        }
    }

    /// Records liveness at an explicit time (tests, or a loop that already read the clock).
    #[inline]
    pub fn beat_at_ms(&self, ms: u64) {
        if let Some(s) = self.board.slots.get(self.slot) {
            s.store(ms, Ordering::Relaxed);
        }
    }
}

impl Heartbeats {
    /// A board with one slot per named thread (e.g. `["sig", "media0", "media1"]`). Slots start fresh.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> (Arc<Self>, Vec<Heartbeat>) {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        let slots = (0..names.len())
            .map(|_| CachePadded::new(AtomicU64::new(0)))
            .collect();
        let board = Arc::new(Self {
            epoch: Instant::now(),
            slots,
            names,
        });
        let handles = (0..board.names.len())
            .map(|slot| Heartbeat {
                board: board.clone(),
                slot,
            })
            .collect();
        (board, handles)
    }

    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Names of the threads whose last beat is older than `max_age` at time `now_ms`; empty means all alive.
    pub fn stale_at(&self, now_ms: u64, max_age: Duration) -> Vec<&str> {
        let max = max_age.as_millis() as u64;
        self.slots
            .iter()
            .zip(&self.names)
            .filter(|(s, _)| now_ms.saturating_sub(s.load(Ordering::Relaxed)) > max)
            .map(|(_, n)| n.as_str())
            .collect()
    }

    pub fn stale(&self, max_age: Duration) -> Vec<&str> {
        self.stale_at(self.now_ms(), max_age)
    }
}

/// Pings systemd every `interval / 2` while all heartbeats are younger than `max_age`; when one is stale it
/// stops pinging (so systemd restarts the service after `WatchdogSec`) and reports which thread in STATUS.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn spawn(
        notifier: Notifier,
        board: Arc<Heartbeats>,
        interval: Duration,
        max_age: Duration,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let period = (interval / 2).max(Duration::from_millis(10));
        let thread = std::thread::Builder::new().name("watchdog".into()).spawn(move || {
            let mut reported_stale = false;
            while !stop2.load(Ordering::Relaxed) {
                let stale = board.stale(max_age);
                if stale.is_empty() {
                    let _ = notifier.watchdog();
                    reported_stale = false;
                } else if !reported_stale {
                    tracing::error!(threads = ?stale, "watchdog: threads stopped beating, withholding WATCHDOG=1");
                    let _ = notifier.status(&format!("stalled: {}", stale.join(",")));
                    reported_stale = true;
                }
                std::thread::park_timeout(period);
            }
        })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_systemd() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let s = UnixDatagram::bind(&p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        (dir, s, p.to_string_lossy().into_owned())
    }

    fn recv(s: &UnixDatagram) -> String {
        let mut b = [0u8; 512];
        let n = s.recv(&mut b).unwrap();
        String::from_utf8_lossy(&b[..n]).into_owned()
    }

    #[test]
    fn lifecycle_messages_reach_the_socket() {
        let (_d, srv, path) = fake_systemd();
        let n = Notifier::new(&path).unwrap();
        n.ready("serving 2 trunks").unwrap();
        let m = recv(&srv);
        assert!(
            m.starts_with("READY=1\nSTATUS=serving 2 trunks\nMAINPID="),
            "{m}"
        );
        n.reloading().unwrap();
        let m = recv(&srv);
        let usec: u64 = m
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
        n.stopping("draining").unwrap();
        assert_eq!(recv(&srv), "STOPPING=1\nSTATUS=draining");
        assert!(Notifier::new("relative/path").is_err());
    }

    #[test]
    fn abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tgops-notify-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let srv = UnixDatagram::bind_addr(&a).unwrap();
        srv.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Notifier::new(&format!("@{name}"))
            .unwrap()
            .watchdog()
            .unwrap();
        assert_eq!(recv(&srv), "WATCHDOG=1");
    }

    #[test]
    fn stale_detection_is_per_thread() {
        let (board, hb) = Heartbeats::new(["sig", "media0", "media1"]);
        for h in &hb {
            h.beat_at_ms(1000);
        }
        assert!(board.stale_at(1500, Duration::from_millis(1000)).is_empty());
        hb[0].beat_at_ms(2500);
        hb[2].beat_at_ms(2500);
        assert_eq!(
            board.stale_at(2600, Duration::from_millis(1000)),
            vec!["media0"]
        );
    }

    #[test]
    fn watchdog_pings_only_while_all_threads_beat() {
        let (_d, srv, path) = fake_systemd();
        srv.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let (board, hb) = Heartbeats::new(["sig", "media0"]);
        hb.iter().for_each(Heartbeat::beat);
        let wd = Watchdog::spawn(
            Notifier::new(&path).unwrap(),
            board,
            Duration::from_millis(40),
            Duration::from_millis(150),
        )
        .unwrap();
        // Both threads beat: pings arrive.
        let mut pings = 0;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(120) {
            hb.iter().for_each(Heartbeat::beat);
            let mut b = [0u8; 128];
            if let Ok(n) = srv.recv(&mut b)
                && &b[..n] == b"WATCHDOG=1"
            {
                pings += 1;
            }
        }
        assert!(pings >= 2, "{pings}");
        // media0 stops: after max_age a STATUS names it and no more pings come.
        let mut saw_status = false;
        let t0 = Instant::now();
        let mut pings_after_status = 0;
        while t0.elapsed() < Duration::from_millis(700) {
            hb[0].beat();
            let mut b = [0u8; 128];
            if let Ok(n) = srv.recv(&mut b) {
                let m = String::from_utf8_lossy(&b[..n]);
                if m == "STATUS=stalled: media0" {
                    saw_status = true;
                } else if saw_status && m == "WATCHDOG=1" {
                    pings_after_status += 1;
                }
            }
        }
        wd.stop();
        assert!(saw_status);
        assert_eq!(pings_after_status, 0);
    }
}
