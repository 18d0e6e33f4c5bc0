//! `[security] kernel_bans`: the guard's bans pushed into netfilter, so a banned flooder's packets die in
//! `raw PREROUTING` instead of queueing in front of the carrier's INVITEs on the SIP socket.
//!
//! The guard (sans-IO, on the signaling thread) stays the one that decides; once a second the signaling thread
//! hands the current ban list to [`KernelBans::sync`], which only diffs sets and queues the changes. A helper
//! thread runs `iptables`/`ip6tables` (slow, forks), so the signaling loop never waits on a child process.
//! Everything lives in chain `TGBAN-<node>`, flushed and removed at stop and on the next start after a crash.
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Chain name for a node: `TGBAN-` plus the name's safe characters, within iptables' 28-character limit.
pub fn chain_name(node: &str) -> String {
    let clean: String = node
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(22)
        .collect();
    format!("TGBAN-{clean}")
}

/// What changes between the installed set and the guard's bans now.
pub fn diff(installed: &BTreeSet<IpAddr>, now: &[IpAddr]) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let want: BTreeSet<IpAddr> = now.iter().copied().collect();
    let add = want.difference(installed).copied().collect();
    let del = installed.difference(&want).copied().collect();
    (add, del)
}

/// The iptables arguments (without the tool) for one change.
pub fn rule_args(chain: &str, ip: IpAddr, add: bool) -> Vec<String> {
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    [
        "-t",
        "raw",
        if add { "-A" } else { "-D" },
        chain,
        "-s",
        &format!("{ip}/{prefix}"),
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

enum Cmd {
    Rule(IpAddr, bool),
    Stop,
}

pub struct KernelBans {
    installed: BTreeSet<IpAddr>,
    tx: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
}

fn tool(ip_v6: bool) -> &'static str {
    if ip_v6 { "ip6tables" } else { "iptables" }
}

fn run(tool: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new(tool)
        .arg("-w")
        .arg("5")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{tool} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Removes the chain and its jump (a previous run's leftovers, or ours at stop). Errors mean "not there".
fn remove_chain(tool: &str, chain: &str) {
    for _ in 0..16 {
        if run(tool, &strs(&["-t", "raw", "-D", "PREROUTING", "-j", chain])).is_err() {
            break;
        }
    }
    let _ = run(tool, &strs(&["-t", "raw", "-F", chain]));
    let _ = run(tool, &strs(&["-t", "raw", "-X", chain]));
}

fn install_chain(tool: &str, chain: &str) -> Result<(), String> {
    remove_chain(tool, chain);
    run(tool, &strs(&["-t", "raw", "-N", chain]))?;
    run(
        tool,
        &strs(&["-t", "raw", "-I", "PREROUTING", "1", "-j", chain]),
    )
}

impl KernelBans {
    /// Installs `TGBAN-<node>` for IPv4 (and IPv6 where ip6tables works) and starts the helper thread.
    pub fn start(node: &str) -> Result<KernelBans, String> {
        let chain = chain_name(node);
        install_chain(tool(false), &chain)?;
        let v6 = install_chain(tool(true), &chain).is_ok();
        let (tx, rx) = mpsc::channel::<Cmd>();
        let thread = std::thread::Builder::new()
            .name("kernel-bans".into())
            .spawn(move || {
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Cmd::Rule(ip, add) => {
                            if ip.is_ipv6() && !v6 {
                                continue;
                            }
                            match run(tool(ip.is_ipv6()), &rule_args(&chain, ip, add)) {
                                Ok(()) if add => {
                                    tracing::warn!(%ip, "banned source dropped by netfilter")
                                }
                                Ok(()) => tracing::info!(%ip, "netfilter ban lifted"),
                                Err(e) => {
                                    tracing::error!(%ip, error = %e, "netfilter ban not applied")
                                }
                            }
                        }
                        Cmd::Stop => break,
                    }
                }
                remove_chain(tool(false), &chain);
                if v6 {
                    remove_chain(tool(true), &chain);
                }
            })
            .map_err(|e| format!("kernel-bans thread: {e}"))?;
        Ok(KernelBans {
            installed: BTreeSet::new(),
            tx,
            thread: Some(thread),
        })
    }

    /// Brings netfilter in line with the guard's current bans (queued; applied by the helper thread).
    pub fn sync(&mut self, banned: &[IpAddr]) {
        let (add, del) = diff(&self.installed, banned);
        for ip in add {
            self.installed.insert(ip);
            let _ = self.tx.send(Cmd::Rule(ip, true));
        }
        for ip in del {
            self.installed.remove(&ip);
            let _ = self.tx.send(Cmd::Rule(ip, false));
        }
    }
}

impl Drop for KernelBans {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_sent_to_netfilter() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let mut inst = BTreeSet::new();
        assert_eq!(diff(&inst, &[a, b, a]), (vec![a, b], vec![]));
        inst.extend([a, b]);
        assert_eq!(diff(&inst, &[b]), (vec![], vec![a]));
        assert_eq!(diff(&inst, &[a, b]), (vec![], vec![]));
    }

    #[test]
    fn rules_name_the_source_and_the_chain() {
        let c = chain_name("sbc 1/edge.example");
        assert_eq!(c, "TGBAN-sbc1edgeexample");
        assert!(c.len() <= 28);
        let ip: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(
            rule_args(&c, ip, false).join(" "),
            "-t raw -D TGBAN-sbc1edgeexample -s 2001:db8::2/128 -j DROP"
        );
        assert!(
            rule_args(&c, "192.0.2.1".parse().unwrap(), true)
                .join(" ")
                .contains("-A TGBAN-sbc1edgeexample -s 192.0.2.1/32")
        );
    }
}
