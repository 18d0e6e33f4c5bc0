//! The netfilter rule that keeps the kernel quiet about media packets it sees but has no socket for.
//!
//! The packet sockets get their copy of a media packet before the IP stack runs; without a rule the stack
//! would then find no UDP socket for the port and answer ICMP port unreachable. The rule drops those packets
//! in `raw PREROUTING`, the earliest hook, so they also cost no route lookup and no conntrack entry. It lives
//! in its own chain, `TGMEDIA-<tag>`, so a crashed process's leftovers are found and removed by name.

use std::fs::File;
use std::net::IpAddr;
use std::process::Command;

use super::sys;

/// Why the rule could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot run {tool}: {err}")]
    Spawn { tool: String, err: std::io::Error },
    #[error("`{cmd}` failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("network namespace: {0}")]
    Netns(std::io::Error),
}

/// Chain name for a tag: `TGMEDIA-` plus the tag's alphanumerics, within iptables' 28-character limit.
pub fn chain_name(tag: &str) -> String {
    let clean: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(20)
        .collect();
    format!("TGMEDIA-{clean}")
}

/// The argument lists that install the chain for one family (without the tool name).
pub fn install_args(chain: &str, addrs: &[IpAddr], min: u16, max: u16) -> Vec<Vec<String>> {
    let mut cmds = vec![
        vec!["-t", "raw", "-N", chain]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
    ];
    for a in addrs {
        let prefix = if a.is_ipv4() { 32 } else { 128 };
        cmds.push(
            [
                "-t".into(),
                "raw".into(),
                "-A".into(),
                chain.into(),
                "-d".into(),
                format!("{a}/{prefix}"),
                "-p".into(),
                "udp".into(),
                "--dport".into(),
                format!("{min}:{max}"),
                "-j".into(),
                "DROP".into(),
            ]
            .to_vec(),
        );
    }
    cmds.push(
        ["-t", "raw", "-I", "PREROUTING", "1", "-j", chain]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    cmds
}

fn run(tool: &str, args: &[String]) -> Result<(), RuleError> {
    let out = Command::new(tool)
        .arg("-w")
        .arg("5")
        .args(args)
        .output()
        .map_err(|err| RuleError::Spawn {
            tool: tool.to_string(),
            err,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RuleError::Failed {
            cmd: format!("{tool} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn remove_chain(tool: &str, chain: &str) -> bool {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut removed = false;
    // Bounded: each pass deletes one jump; more than a few means something else keeps adding them.
    for _ in 0..16 {
        if run(tool, &s(&["-t", "raw", "-D", "PREROUTING", "-j", chain])).is_err() {
            break;
        }
        removed = true;
    }
    let flushed = run(tool, &s(&["-t", "raw", "-F", chain])).is_ok();
    let deleted = run(tool, &s(&["-t", "raw", "-X", chain])).is_ok();
    removed || flushed || deleted
}

/// The netfilter command-line tools to drive (e.g. `iptables-legacy` where the nft backend is unwanted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTools {
    pub iptables: String,
    pub ip6tables: String,
}

impl Default for RuleTools {
    fn default() -> Self {
        RuleTools {
            iptables: "iptables".into(),
            ip6tables: "ip6tables".into(),
        }
    }
}

impl RuleTools {
    fn get(&self, v6: bool) -> &str {
        if v6 { &self.ip6tables } else { &self.iptables }
    }
}

/// Installed drop rules; removed on [`DropRule::remove`] or drop, in the namespace they were installed in.
#[derive(Debug)]
pub struct DropRule {
    chain: String,
    families: Vec<bool>,
    tools: RuleTools,
    netns: File,
    removed: bool,
}

impl DropRule {
    /// Remove leftovers of an earlier run with the same tag, then install the chain for every family present
    /// in `addrs`, in the calling thread's network namespace.
    pub fn install(
        tools: &RuleTools,
        tag: &str,
        addrs: &[IpAddr],
        min: u16,
        max: u16,
    ) -> Result<Self, RuleError> {
        let netns = File::open("/proc/thread-self/ns/net").map_err(RuleError::Netns)?;
        let chain = chain_name(tag);
        let mut rule = DropRule {
            chain,
            families: Vec::new(),
            tools: tools.clone(),
            netns,
            removed: false,
        };
        for v6 in [false, true] {
            let fam: Vec<IpAddr> = addrs
                .iter()
                .copied()
                .filter(|a| a.is_ipv6() == v6)
                .collect();
            if fam.is_empty() {
                continue;
            }
            if remove_chain(tools.get(v6), &rule.chain) {
                tracing::warn!(chain = %rule.chain, "removed a stale media drop chain");
            }
            rule.families.push(v6);
            for args in install_args(&rule.chain, &fam, min, max) {
                run(tools.get(v6), &args)?; // on error, Drop removes what was installed
            }
        }
        Ok(rule)
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Remove the chains; idempotent.
    pub fn remove(&mut self) -> Result<(), RuleError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        let (chain, families, tools, netns) =
            (&self.chain, &self.families, &self.tools, &self.netns);
        // iptables acts on its own network namespace, which it inherits from the spawning thread: spawn from a
        // short-lived thread moved into the namespace the rule was installed in.
        std::thread::scope(|s| {
            s.spawn(|| -> Result<(), RuleError> {
                sys::setns_net(netns).map_err(RuleError::Netns)?;
                for &v6 in families {
                    remove_chain(tools.get(v6), chain);
                }
                Ok(())
            })
            .join()
            .unwrap_or(Ok(()))
        })
    }
}

impl Drop for DropRule {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::error!(chain = %self.chain, error = %e, "could not remove the media drop chain");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_are_bounded_and_clean() {
        assert_eq!(chain_name("tollgate"), "TGMEDIA-tollgate");
        assert_eq!(chain_name("a b;c$(x)"), "TGMEDIA-abcx");
        assert!(chain_name(&"x".repeat(100)).len() <= 28);
    }

    #[test]
    fn install_arguments() {
        let addrs: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
        let a = install_args("TGMEDIA-t", &addrs, 30000, 49999);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].join(" "), "-t raw -N TGMEDIA-t");
        assert_eq!(
            a[1].join(" "),
            "-t raw -A TGMEDIA-t -d 10.0.0.1/32 -p udp --dport 30000:49999 -j DROP"
        );
        assert_eq!(a[2].join(" "), "-t raw -I PREROUTING 1 -j TGMEDIA-t");
    }
}
