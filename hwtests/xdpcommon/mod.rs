//! Shared helpers for the network-namespace tests: root check, a topology guard that deletes its namespaces
//! by name on drop (also when the test panics), running code inside a namespace, reading SNMP counters.
#![allow(dead_code)]

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Returns true (and says why) when the test must be skipped.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!(
        "SKIP {test}: needs root (network namespaces, XDP, AF_XDP); CI runs the hwtests as root"
    );
    true
}

pub fn sh(cmd: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sh_out(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a new thread that has entered network namespace `ns`. Sockets, netlink handles and threads
/// created inside stay in that namespace when they are returned.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: fd is an open netns file; setns only changes this thread's namespace.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread panicked")
}

/// `UdpInCsumErrors`, `InErrors`, `RcvbufErrors` of the namespace (read through /proc/thread-self, which
/// follows the reading thread's namespace).
pub fn udp_snmp(ns: &str) -> (u64, u64, u64) {
    in_netns(ns, || {
        let s = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
        let mut lines = s.lines().filter(|l| l.starts_with("Udp:"));
        let names: Vec<&str> = lines
            .next()
            .expect("Udp header")
            .split_whitespace()
            .collect();
        let vals: Vec<u64> = lines
            .next()
            .expect("Udp values")
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let get = |n: &str| {
            names
                .iter()
                .skip(1)
                .position(|x| *x == n)
                .map(|i| vals[i])
                .unwrap_or(0)
        };
        (get("InCsumErrors"), get("InErrors"), get("RcvbufErrors"))
    })
}

/// carrier ns `c` [vc0 10.201.1.2] <-> [vs0 10.201.1.1] sbc ns `s` [vs1 10.201.2.1] <-> [vk0 10.201.2.2] cloud
/// ns `k`. IPv6 too: fd00:201:1::/64 and fd00:201:2::/64 with the same host numbers.
pub struct Topo {
    pub c: String,
    pub s: String,
    pub k: String,
}

pub const CARRIER: &str = "10.201.1.2";
pub const SBC_C: &str = "10.201.1.1";
pub const SBC_K: &str = "10.201.2.1";
pub const CLOUD: &str = "10.201.2.2";
pub const CARRIER6: &str = "fd00:201:1::2";
pub const SBC_C6: &str = "fd00:201:1::1";
pub const SBC_K6: &str = "fd00:201:2::1";
pub const CLOUD6: &str = "fd00:201:2::2";

impl Topo {
    /// `tag` makes the namespace names unique per test (tests of one binary run in parallel).
    pub fn new(tag: &str) -> Self {
        Self::with_queues(tag, 1)
    }

    /// Same, with `queues` RX/TX queues on every veth (for one worker per queue).
    pub fn with_queues(tag: &str, queues: u32) -> Self {
        let t = Topo {
            c: format!("tgx-{tag}-c"),
            s: format!("tgx-{tag}-s"),
            k: format!("tgx-{tag}-k"),
        };
        t.delete(); // leftovers of a crashed earlier run
        let (c, s, k) = (&t.c, &t.s, &t.k);
        for ns in [c, s, k] {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        }
        let q = format!("numtxqueues {queues} numrxqueues {queues}");
        sh(&format!(
            "ip link add vc0 netns {c} {q} type veth peer name vs0 netns {s} {q}"
        ));
        sh(&format!(
            "ip link add vk0 netns {k} {q} type veth peer name vs1 netns {s} {q}"
        ));
        for (ns, dev, a4, a6) in [
            (c, "vc0", CARRIER, CARRIER6),
            (s, "vs0", SBC_C, SBC_C6),
            (s, "vs1", SBC_K, SBC_K6),
            (k, "vk0", CLOUD, CLOUD6),
        ] {
            sh(&format!(
                "ip -n {ns} addr add {a4}/24 dev {dev} && ip -n {ns} addr add {a6}/64 dev {dev} nodad && \
                 ip -n {ns} link set {dev} up"
            ));
        }
        sh(&format!(
            "ip -n {c} route add 10.201.2.0/24 via {SBC_C} && ip -n {c} route add fd00:201:2::/64 via {SBC_C6}"
        ));
        sh(&format!(
            "ip -n {k} route add 10.201.1.0/24 via {SBC_K} && ip -n {k} route add fd00:201:1::/64 via {SBC_K6}"
        ));
        // P3: a local sender on veth leaves the UDP checksum to an offload that AF_XDP never completes.
        sh(&format!(
            "ip netns exec {c} ethtool -K vc0 tx off >/dev/null"
        ));
        sh(&format!(
            "ip netns exec {k} ethtool -K vk0 tx off >/dev/null"
        ));
        t
    }

    fn delete(&self) {
        for ns in [&self.c, &self.s, &self.k] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.delete();
    }
}

pub fn udp_socket(ns: &str, bind: SocketAddr) -> UdpSocket {
    in_netns(ns, move || {
        let s = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        // The tests send a burst before reading: room for all of it (root may exceed rmem_max).
        let size: libc::c_int = 8 << 20;
        // SAFETY: valid socket fd and an int option value of the given size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        s
    })
}

/// Sends `n` datagrams `prefix + seq`, paced at bursts of 16 per millisecond: these are correctness tests
/// on a shared 2-vCPU machine, where an unpinned worker can be descheduled for milliseconds (the benchmark
/// measures rates).
pub fn send_n(sock: &UdpSocket, to: SocketAddr, n: u32, prefix: &[u8]) {
    for i in 0..n {
        let mut p = prefix.to_vec();
        p.extend_from_slice(&i.to_be_bytes());
        sock.send_to(&p, to).expect("send");
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Receives until `n` datagrams arrived or `timeout` passed; returns (payload, source) pairs.
pub fn recv_up_to(sock: &UdpSocket, n: usize, timeout: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let end = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n && Instant::now() < end {
        if let Ok((len, from)) = sock.recv_from(&mut buf) {
            out.push((buf[..len].to_vec(), from));
        }
    }
    out
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}
