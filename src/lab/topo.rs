//! The lab's network-namespace topology, built with `ip` and veth pairs:
//!
//! ```text
//! carrier ns  c0 10.N.1.2/24 <-> s0 10.N.1.1/24  [sbc ns]  s1 10.N.2.1/24 <-> d0 10.N.2.2/24  cloud ns
//! ```
//!
//! Namespaces are named `tglab-<pid>-car|sbc|cld` so that a sweep can tell a stale lab (its pid is gone)
//! from a lab that is still running. Everything is deleted on drop.
use std::net::Ipv4Addr;
use std::process::Command;

/// Prefix of every namespace the lab creates.
pub const PREFIX: &str = "tglab-";

/// True when running as root (the lab needs it for namespaces).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run(args: &[&str]) -> Result<String, String> {
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

/// Names of the existing network namespaces (`ip netns list`), first word of each line.
pub fn list_netns() -> Result<Vec<String>, String> {
    Ok(run(&["ip", "netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// The pid encoded in a lab namespace name `tglab-<pid>-...`, if it is one.
pub fn owner_pid(ns: &str) -> Option<u32> {
    ns.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Delete `tglab-*` namespaces whose owning process no longer exists; returns the names deleted.
pub fn sweep_stale() -> Result<Vec<String>, String> {
    let mut gone = Vec::new();
    for ns in list_netns()? {
        let Some(pid) = owner_pid(&ns) else { continue };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        run(&["ip", "netns", "del", &ns])?;
        gone.push(ns);
    }
    Ok(gone)
}

/// The three namespaces and their addresses; deleted on drop.
#[derive(Debug)]
pub struct Topo {
    pub carrier: String,
    pub sbc: String,
    pub cloud: String,
    pub carrier_ip: Ipv4Addr,
    pub sbc_carrier_ip: Ipv4Addr,
    pub sbc_cloud_ip: Ipv4Addr,
    pub cloud_ip: Ipv4Addr,
    /// A fourth host on its own link to the SBC, outside every ACL (`add_flooder`).
    pub flooder: Option<(String, Ipv4Addr)>,
}

impl Topo {
    /// Build the topology for this process; `tag` distinguishes several labs of one process, `net` picks
    /// the 10.`net`.x.x addresses.
    pub fn new(tag: &str, net: u8) -> Result<Topo, String> {
        let pid = std::process::id();
        let t = Topo {
            carrier: format!("{PREFIX}{pid}-{tag}car"),
            sbc: format!("{PREFIX}{pid}-{tag}sbc"),
            cloud: format!("{PREFIX}{pid}-{tag}cld"),
            carrier_ip: Ipv4Addr::new(10, net, 1, 2),
            sbc_carrier_ip: Ipv4Addr::new(10, net, 1, 1),
            sbc_cloud_ip: Ipv4Addr::new(10, net, 2, 1),
            cloud_ip: Ipv4Addr::new(10, net, 2, 2),
            flooder: None,
        };
        t.delete();
        // From here on `t` is dropped (and the namespaces deleted) on any error.
        for ns in [&t.carrier, &t.sbc, &t.cloud] {
            run(&["ip", "netns", "add", ns])?;
        }
        let (c, s, d) = (t.carrier.as_str(), t.sbc.as_str(), t.cloud.as_str());
        run(&[
            "ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "s0", "netns", s,
        ])?;
        run(&[
            "ip", "link", "add", "d0", "netns", d, "type", "veth", "peer", "name", "s1", "netns", s,
        ])?;
        for (ns, dev, ip) in [
            (c, "c0", t.carrier_ip),
            (s, "s0", t.sbc_carrier_ip),
            (s, "s1", t.sbc_cloud_ip),
            (d, "d0", t.cloud_ip),
        ] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        // Pitfall P3 (notes/xdp-on-this-machine.md): a local socket sending into a veth leaves the UDP
        // checksum to an offload that never happens; the end hosts compute it themselves.
        for (ns, dev) in [(c, "c0"), (d, "d0")] {
            run(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"])?;
        }
        Ok(t)
    }

    /// Adds the attacker: namespace `…fld` at 10.`net`.3.2, linked to the SBC's 10.`net`.3.1 and routed to
    /// the SBC's carrier address, so its packets reach the carrier SIP port from a source no ACL admits.
    pub fn add_flooder(&mut self) -> Result<(), String> {
        let ns = self.sbc.replace("sbc", "fld");
        let net = self.sbc_carrier_ip.octets()[1];
        let (ip, gw) = (Ipv4Addr::new(10, net, 3, 2), Ipv4Addr::new(10, net, 3, 1));
        run(&["ip", "netns", "add", &ns])?;
        self.flooder = Some((ns.clone(), ip));
        run(&[
            "ip", "link", "add", "f0", "netns", &ns, "type", "veth", "peer", "name", "s2", "netns",
            &self.sbc,
        ])?;
        for (n, dev, a) in [(ns.as_str(), "f0", ip), (self.sbc.as_str(), "s2", gw)] {
            run(&["ip", "-n", n, "addr", "add", &format!("{a}/24"), "dev", dev])?;
            run(&["ip", "-n", n, "link", "set", dev, "up"])?;
        }
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        run(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &gw.to_string(),
        ])?;
        run(&[
            "ip", "netns", "exec", &ns, "ethtool", "-K", "f0", "tx", "off",
        ])?;
        Ok(())
    }

    /// Run a command inside namespace `ns` and return its stdout.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Names of the namespaces, carrier, sbc, cloud.
    pub fn names(&self) -> [&str; 3] {
        [&self.carrier, &self.sbc, &self.cloud]
    }

    /// Run `f` on a fresh thread that has entered namespace `ns`; sockets it opens live in `ns`.
    pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let file =
            std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("{ns}: {e}"))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                use std::os::fd::AsRawFd;
                // SAFETY: setns on an open namespace file descriptor; it affects only this thread.
                let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if r != 0 {
                    return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| format!("thread in {ns} panicked"))?
        })
    }

    fn delete(&self) {
        let extra = self.flooder.as_ref().map(|f| f.0.as_str());
        for ns in self.names().into_iter().chain(extra) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.delete();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_lab_names_only() {
        assert_eq!(owner_pid("tglab-1234-car"), Some(1234));
        assert_eq!(owner_pid("tglab-1234-xsbc"), Some(1234));
        assert_eq!(owner_pid("tgs-1-car"), None);
        assert_eq!(owner_pid("tglab-x-car"), None);
    }

    #[test]
    fn topology_carries_udp_and_is_removed() {
        if !is_root() {
            eprintln!("skip: topology_carries_udp_and_is_removed needs root");
            return;
        }
        let names: Vec<String>;
        {
            let t = Topo::new("ut", 231).expect("topology");
            names = t.names().iter().map(|s| s.to_string()).collect();
            // One UDP datagram from each end host to the SBC's address on its side (2 s bound each).
            for (from, to) in [(&t.carrier, t.sbc_carrier_ip), (&t.cloud, t.sbc_cloud_ip)] {
                let rx =
                    Topo::in_ns(&t.sbc, || std::net::UdpSocket::bind((to, 0)).unwrap()).unwrap();
                rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                    .unwrap();
                let dst = rx.local_addr().unwrap();
                Topo::in_ns(from, || {
                    let tx = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                    tx.send_to(b"tglab", dst).unwrap();
                })
                .unwrap();
                let mut buf = [0u8; 16];
                let (n, _) = rx.recv_from(&mut buf).expect("datagram across the veth");
                assert_eq!(&buf[..n], b"tglab");
            }
            let now = list_netns().unwrap();
            assert!(names.iter().all(|n| now.contains(n)));
        }
        let after = list_netns().unwrap();
        assert!(
            names.iter().all(|n| !after.contains(n)),
            "left behind: {after:?}"
        );
    }

    #[test]
    fn sweep_removes_only_namespaces_of_dead_pids() {
        if !is_root() {
            eprintln!("skip: sweep_removes_only_namespaces_of_dead_pids needs root");
            return;
        }
        // A pid that surely is gone: a child that has exited and been reaped.
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = format!("{PREFIX}{dead}-swcar");
        let live = format!("{PREFIX}{}-swcar", std::process::id());
        for ns in [&stale, &live] {
            run(&["ip", "netns", "add", ns]).unwrap();
        }
        let gone = sweep_stale().unwrap();
        let now = list_netns().unwrap();
        let _ = run(&["ip", "netns", "del", &live]);
        let _ = run(&["ip", "netns", "del", &stale]);
        assert!(gone.contains(&stale), "{gone:?}");
        assert!(!now.contains(&stale));
        assert!(now.contains(&live), "a running lab's namespace was swept");
    }
}
