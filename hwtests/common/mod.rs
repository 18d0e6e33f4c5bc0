//! Shared by hwtests/socket_media.rs and benches/socket_relay.rs: the three-namespace topology, running code
//! inside a namespace, /proc counters, and a static port-map relay handler.
#![allow(dead_code)]

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use tollgate::fastpath::socket::{HandlerDrop, PacketHandler, RxPacket, Verdict};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// carrier ns `c0` 10.X.1.2 <-> `s0` 10.X.1.1 [sbc ns] `s1` 10.X.2.1 <-> `d0` 10.X.2.2 cloud ns.
/// The namespaces (and with them the veths) are deleted on drop, also when a test fails.
pub struct Topo {
    pub carrier: String,
    pub sbc: String,
    pub cloud: String,
    pub carrier_ip: IpAddr,
    pub sbc_carrier_ip: IpAddr,
    pub sbc_cloud_ip: IpAddr,
    pub cloud_ip: IpAddr,
    pub carrier_ip6: IpAddr,
    pub sbc_carrier_ip6: IpAddr,
    pub sbc_cloud_ip6: IpAddr,
    pub cloud_ip6: IpAddr,
}

impl Topo {
    /// `tag` makes the namespace names unique per test (`tgs-<tag>-car`, ...); `net` picks 10.`net`.x.x.
    pub fn new(tag: &str, net: u8) -> Result<Topo, String> {
        let t = Topo {
            carrier: format!("tgs-{tag}-car"),
            sbc: format!("tgs-{tag}-sbc"),
            cloud: format!("tgs-{tag}-cld"),
            carrier_ip: format!("10.{net}.1.2").parse().unwrap(),
            sbc_carrier_ip: format!("10.{net}.1.1").parse().unwrap(),
            sbc_cloud_ip: format!("10.{net}.2.1").parse().unwrap(),
            cloud_ip: format!("10.{net}.2.2").parse().unwrap(),
            carrier_ip6: format!("fd00:{net}:1::2").parse().unwrap(),
            sbc_carrier_ip6: format!("fd00:{net}:1::1").parse().unwrap(),
            sbc_cloud_ip6: format!("fd00:{net}:2::1").parse().unwrap(),
            cloud_ip6: format!("fd00:{net}:2::2").parse().unwrap(),
        };
        t.delete(); // leftovers of an aborted run
        for ns in [&t.carrier, &t.sbc, &t.cloud] {
            sh(&["ip", "netns", "add", ns])?;
        }
        let (c, s, d) = (t.carrier.as_str(), t.sbc.as_str(), t.cloud.as_str());
        sh(&[
            "ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "s0", "netns", s,
        ])?;
        sh(&[
            "ip", "link", "add", "d0", "netns", d, "type", "veth", "peer", "name", "s1", "netns", s,
        ])?;
        let addr = |ns: &str, dev: &str, ip: IpAddr| {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ])
        };
        addr(c, "c0", t.carrier_ip)?;
        addr(s, "s0", t.sbc_carrier_ip)?;
        addr(s, "s1", t.sbc_cloud_ip)?;
        addr(d, "d0", t.cloud_ip)?;
        let addr6 = |ns: &str, dev: &str, ip: IpAddr| {
            sh(&[
                "ip",
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{ip}/64"),
                "dev",
                dev,
                "nodad",
            ])
        };
        addr6(c, "c0", t.carrier_ip6)?;
        addr6(s, "s0", t.sbc_carrier_ip6)?;
        addr6(s, "s1", t.sbc_cloud_ip6)?;
        addr6(d, "d0", t.cloud_ip6)?;
        for (ns, dev) in [(c, "c0"), (s, "s0"), (s, "s1"), (d, "d0")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        // Pitfall P3: a local socket sending into a veth leaves the UDP checksum to an offload that never
        // happens; make the end hosts compute it.
        for (ns, dev) in [(c, "c0"), (d, "d0")] {
            sh(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"])?;
        }
        Ok(t)
    }

    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        sh(&v)
    }

    fn delete(&self) {
        for ns in [&self.carrier, &self.sbc, &self.cloud] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Run `f` on a fresh thread inside network namespace `ns`; sockets it creates stay in that namespace.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = File::open(format!("/run/netns/{ns}")).expect("open netns");
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: plain syscall on an open namespace file.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in netns panicked")
    })
}

/// A counter from /proc/net/snmp of namespace `ns` (e.g. "Udp", "InCsumErrors").
pub fn snmp(ns: &str, proto: &str, field: &str) -> u64 {
    let text = in_ns(ns, || {
        std::fs::read_to_string("/proc/thread-self/net/snmp").expect("snmp")
    });
    let mut lines = text.lines().filter(|l| l.starts_with(&format!("{proto}:")));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A counter from /proc/net/snmp6 of namespace `ns` (e.g. "Icmp6OutDestUnreachs").
pub fn snmp6(ns: &str, field: &str) -> u64 {
    let text = in_ns(ns, || {
        std::fs::read_to_string("/proc/thread-self/net/snmp6").expect("snmp6")
    });
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == field).then(|| it.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// rx_packets of an interface in namespace `ns` (from /proc/net/dev).
pub fn if_rx_packets(ns: &str, dev: &str) -> u64 {
    let text = in_ns(ns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev").expect("net/dev")
    });
    text.lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == dev).then(|| rest.split_whitespace().nth(1)?.parse().ok())?
        })
        .unwrap_or(0)
}

/// Packets counted by the first rule of `table`/`chain` in namespace `ns` (a sink rule's counter).
pub fn rule_packets(t: &Topo, ns: &str, table: &str, chain: &str) -> u64 {
    let out = t
        .exec(
            ns,
            &["iptables", "-t", table, "-n", "-v", "-x", "-L", chain],
        )
        .unwrap_or_default();
    out.lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// CPU time (user + system, clock ticks) of this process's thread named `name`.
pub fn thread_cpu_ticks(name: &str) -> Option<u64> {
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            return Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?);
        }
    }
    None
}

fn thread_dir(name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::read_to_string(p.join("comm"))
                .map(|c| c.trim() == name)
                .unwrap_or(false)
        })
}

/// (time on CPU, time runnable but waiting for a CPU) of this process's thread named `name`, from schedstat.
pub fn thread_schedstat(name: &str) -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string(thread_dir(name)?.join("schedstat")).ok()?;
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((
        Duration::from_nanos(f.next()??),
        Duration::from_nanos(f.next()??),
    ))
}

/// Give this process's thread named `name` a real-time (SCHED_FIFO) priority; false if that failed.
pub fn make_realtime(name: &str, prio: i32) -> bool {
    // The thread names itself when it starts, which may be just after the spawn returned.
    let deadline = Instant::now() + Duration::from_secs(1);
    let tid = loop {
        if let Some(tid) =
            thread_dir(name).and_then(|p| p.file_name()?.to_str()?.parse::<i32>().ok())
        {
            break tid;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: plain syscall on a thread id of this process with a valid parameter.
    unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) == 0 }
}

/// Flow programming for [`StaticRelay`].
#[derive(Debug, Clone, Copy)]
pub enum RelayCmd {
    /// Packets to `local` go out from `from` to `to`.
    Add {
        local: SocketAddr,
        from: SocketAddr,
        to: SocketAddr,
    },
    Remove {
        local: SocketAddr,
    },
}

/// A real, minimal handler: a static map from local media address to (source, destination), kept in a table
/// indexed by port (allocated at construction, nothing allocated per packet).
pub struct StaticRelay {
    min: u16,
    table: Vec<Option<(SocketAddr, SocketAddr, SocketAddr)>>,
}

impl StaticRelay {
    pub fn new(min: u16, max: u16) -> Self {
        StaticRelay {
            min,
            table: vec![None; usize::from(max - min) + 1],
        }
    }
}

impl PacketHandler for StaticRelay {
    type Cmd = RelayCmd;

    fn apply_command(&mut self, cmd: RelayCmd) {
        let local = match cmd {
            RelayCmd::Add { local, .. } | RelayCmd::Remove { local } => local,
        };
        let Some(slot) = local
            .port()
            .checked_sub(self.min)
            .and_then(|i| self.table.get_mut(usize::from(i)))
        else {
            return;
        };
        *slot = match cmd {
            RelayCmd::Add { local, from, to } => Some((local, from, to)),
            RelayCmd::Remove { .. } => None,
        };
    }

    fn handle_batch(&mut self, _now: Instant, pkts: &mut [RxPacket<'_>], out: &mut [Verdict]) {
        for (p, v) in pkts.iter().zip(out.iter_mut()) {
            let e = p
                .local
                .port()
                .checked_sub(self.min)
                .and_then(|i| self.table.get(usize::from(i)))
                .copied()
                .flatten();
            *v = match e {
                Some((local, from, to)) if local == p.local => Verdict::Forward {
                    from,
                    to,
                    len: p.len(),
                },
                _ => Verdict::Drop(HandlerDrop::NoFlow),
            };
        }
    }
}
