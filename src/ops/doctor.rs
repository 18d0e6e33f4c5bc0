//! `tollgate doctor`: compares the running machine with the tuning tollgate expects (the sysctl drop-in, limits,
//! CPU isolation, NIC offloads and queues, XDP support) and says, for each thing that is off, the command that
//! fixes it. Gathering (reading /proc, running `ethtool`) is separate from checking, and every check is a pure
//! function over [`Facts`], so the tests feed fake machines.
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The sysctl drop-in shipped in `systemd/99-tollgate.conf`: its lines are the sysctl checklist.
pub const SYSCTL_DROPIN: &str = include_str!("../../systemd/99-tollgate.conf");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub check: String,
    pub status: Status,
    pub found: String,
    pub want: String,
    /// Shell command(s) that fix it, when something is off.
    pub fix: Option<String>,
}

fn finding(
    check: impl Into<String>,
    status: Status,
    found: impl Into<String>,
    want: impl Into<String>,
    fix: Option<String>,
) -> Finding {
    Finding {
        check: check.into(),
        status,
        found: found.into(),
        want: want.into(),
        fix,
    }
}

/// What the configuration asks of the machine.
#[derive(Debug, Clone, Default)]
pub struct Wants {
    pub worker_cores: Vec<usize>,
    pub interfaces: Vec<String>,
    /// XDP media mode (GRO/LRO must be off, kernel must have AF_XDP).
    pub xdp: bool,
    pub media_ports: (u16, u16),
}

impl Wants {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            worker_cores: c.media.worker_cores.clone(),
            interfaces: c.media.interfaces.iter().map(|i| i.name.clone()).collect(),
            xdp: c.media.mode == crate::config::MediaMode::Xdp,
            media_ports: (c.media.port_min, c.media.port_max),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct NicFacts {
    pub name: String,
    /// `ethtool -k` output.
    pub features: Option<String>,
    /// `ethtool -l` output.
    pub channels: Option<String>,
}

/// The machine as observed.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// key -> value as read from /proc/sys (whitespace normalized); missing keys are absent.
    pub sysctls: BTreeMap<String, String>,
    /// Soft RLIMIT_MEMLOCK, `None` for unlimited.
    pub memlock: Option<u64>,
    pub nofile: u64,
    pub cpus: usize,
    pub cmdline: String,
    /// `Some(true)` when irqbalance runs, `None` when unknown.
    pub irqbalance_active: Option<bool>,
    pub kernel_release: String,
    /// Kernel build config text (/proc/config.gz or /boot/config-RELEASE), if found.
    pub kernel_config: Option<String>,
    pub nics: Vec<NicFacts>,
    /// /proc/meminfo text.
    pub meminfo: String,
}

fn norm(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `key = value` pairs of a sysctl.d file.
pub fn parse_sysctl_conf(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().trim_start_matches('-').to_owned(), norm(v)))
        .collect()
}

/// Parses a kernel CPU list (`0-3,8,10-11`); `None` on malformed input.
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.split(':').next()?.parse().ok()?);
                if b < a || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

fn cpu_list_string(cores: &[usize]) -> String {
    cores
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Port ranges like `20000-39999,5060` (ip_local_reserved_ports).
fn parse_port_ranges(s: &str) -> Vec<(u32, u32)> {
    s.split(',')
        .filter_map(|p| {
            let p = p.trim();
            match p.split_once('-') {
                Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                None => p.parse().ok().map(|x| (x, x)),
            }
        })
        .collect()
}

fn sysctl_fix(key: &str, value: &str) -> String {
    format!(
        "sysctl -w {key}=\"{value}\"  # persist: tollgate install (puts 99-tollgate.conf in /etc/sysctl.d), then sysctl --system"
    )
}

/// Keys where a larger value than the drop-in's is just as good.
const AT_LEAST: &[&str] = &[
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.optmem_max",
    "net.core.netdev_max_backlog",
    "net.core.netdev_budget",
    "net.core.somaxconn",
    "net.ipv4.udp_rmem_min",
    "net.ipv4.udp_wmem_min",
];

pub fn check_sysctls(f: &Facts, w: &Wants) -> Vec<Finding> {
    let mut out = Vec::new();
    let (pmin, pmax) = (u32::from(w.media_ports.0), u32::from(w.media_ports.1));
    for (key, want) in parse_sysctl_conf(SYSCTL_DROPIN) {
        let check = format!("sysctl {key}");
        let Some(found) = f.sysctls.get(&key) else {
            out.push(finding(
                check,
                Status::Info,
                "not present on this kernel",
                want,
                None,
            ));
            continue;
        };
        let ok = match key.as_str() {
            // What matters is that ephemeral ports stay clear of the configured media range, not the exact numbers.
            "net.ipv4.ip_local_port_range" => {
                let r: Vec<u32> = found
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                matches!(r.as_slice(), [lo, hi] if *hi < pmin || *lo > pmax)
            }
            "net.ipv4.ip_local_reserved_ports" => parse_port_ranges(found)
                .iter()
                .any(|&(a, b)| a <= pmin && b >= pmax),
            "vm.swappiness" => found
                .parse::<u64>()
                .ok()
                .zip(want.parse::<u64>().ok())
                .is_some_and(|(f, w)| f <= w),
            "kernel.unprivileged_bpf_disabled" => found == "1" || found == "2",
            k if AT_LEAST.contains(&k) => found
                .parse::<u64>()
                .ok()
                .zip(want.parse::<u64>().ok())
                .is_some_and(|(f, w)| f >= w),
            _ => *found == want,
        };
        let want_text = match key.as_str() {
            "net.ipv4.ip_local_port_range" => {
                format!("outside media ports {pmin}-{pmax} (e.g. {want})")
            }
            "net.ipv4.ip_local_reserved_ports" => format!("covers media ports {pmin}-{pmax}"),
            "vm.swappiness" => format!("<= {want}"),
            "kernel.unprivileged_bpf_disabled" => "1 or 2".to_owned(),
            k if AT_LEAST.contains(&k) => format!(">= {want}"),
            _ => want.clone(),
        };
        let fix_value = match key.as_str() {
            "net.ipv4.ip_local_reserved_ports" => format!("{pmin}-{pmax}"),
            "net.ipv4.ip_local_port_range" if pmax < 40000 => want.clone(),
            "net.ipv4.ip_local_port_range" => {
                format!("{} {}", 1024, pmin.saturating_sub(1).max(1025))
            }
            _ => want.clone(),
        };
        let status = if ok { Status::Ok } else { Status::Fail };
        out.push(finding(
            check,
            status,
            found.clone(),
            want_text,
            (!ok).then(|| sysctl_fix(&key, &fix_value)),
        ));
    }
    out
}

pub fn check_limits(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let memlock_ok = f.memlock.is_none_or(|v| v >= 1 << 30);
    out.push(finding(
        "RLIMIT_MEMLOCK",
        if memlock_ok { Status::Ok } else { Status::Fail },
        f.memlock
            .map_or("unlimited".into(), |v| format!("{v} bytes")),
        "unlimited (UMEM is locked memory)",
        (!memlock_ok).then(|| {
            "LimitMEMLOCK=infinity in tollgate.service (shell: ulimit -l unlimited)".to_owned()
        }),
    ));
    let nofile_ok = f.nofile >= 65536;
    out.push(finding(
        "RLIMIT_NOFILE",
        if nofile_ok { Status::Ok } else { Status::Warn },
        f.nofile.to_string(),
        ">= 65536",
        (!nofile_ok).then(|| {
            "LimitNOFILE=1048576 in tollgate.service (shell: ulimit -n 1048576)".to_owned()
        }),
    ));
    out
}

fn cmdline_param<'a>(cmdline: &'a str, name: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|t| t.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

pub fn check_cpus(f: &Facts, w: &Wants) -> Vec<Finding> {
    let mut out = Vec::new();
    if w.worker_cores.is_empty() {
        out.push(finding(
            "media cores",
            Status::Info,
            "none configured (media.worker_cores)",
            "dedicated cores for media",
            None,
        ));
        return out;
    }
    let cores = cpu_list_string(&w.worker_cores);
    let beyond: Vec<usize> = w
        .worker_cores
        .iter()
        .copied()
        .filter(|&c| c >= f.cpus)
        .collect();
    let housekeeping = f
        .cpus
        .saturating_sub(w.worker_cores.iter().filter(|&&c| c < f.cpus).count());
    if !beyond.is_empty() {
        out.push(finding(
            "media cores exist",
            Status::Fail,
            format!(
                "{} CPUs; cores {} do not exist",
                f.cpus,
                cpu_list_string(&beyond)
            ),
            format!("every core in media.worker_cores < {}", f.cpus),
            Some("edit media.worker_cores in /etc/tollgate/tollgate.toml".into()),
        ));
    } else if housekeeping == 0 {
        out.push(finding(
            "housekeeping core",
            Status::Fail,
            format!("all {} CPUs are media cores", f.cpus),
            "at least one CPU left for signaling, mgmt and the kernel",
            Some("remove one core from media.worker_cores".into()),
        ));
    } else {
        out.push(finding(
            "media cores exist",
            Status::Ok,
            format!("{} CPUs, media on {cores}", f.cpus),
            "",
            None,
        ));
    }
    let grub = |p: &str| {
        format!(
            "add {p}={cores} to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub && reboot"
        )
    };
    for (param, status_if_missing) in [
        ("isolcpus", Status::Warn),
        ("nohz_full", Status::Warn),
        ("rcu_nocbs", Status::Info),
    ] {
        let listed = cmdline_param(&f.cmdline, param)
            .map(|v| {
                // isolcpus may carry flags before the list: isolcpus=managed_irq,domain,2-7
                let list: Vec<&str> = v
                    .split(',')
                    .filter(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()))
                    .collect();
                parse_cpu_list(&list.join(",")).unwrap_or_default()
            })
            .unwrap_or_default();
        let missing: Vec<usize> = w
            .worker_cores
            .iter()
            .copied()
            .filter(|c| !listed.contains(c))
            .collect();
        let ok = missing.is_empty();
        out.push(finding(
            format!("kernel cmdline {param}"),
            if ok { Status::Ok } else { status_if_missing },
            cmdline_param(&f.cmdline, param)
                .unwrap_or("absent")
                .to_owned(),
            format!("includes media cores {cores}"),
            (!ok).then(|| grub(param)),
        ));
    }
    match f.irqbalance_active {
        Some(true) => out.push(finding(
            "irqbalance",
            Status::Warn,
            "running",
            "stopped, or banned from the media cores",
            Some(format!(
                "systemctl disable --now irqbalance  # or IRQBALANCE_BANNED_CPULIST={cores} in /etc/default/irqbalance"
            )),
        )),
        Some(false) => out.push(finding("irqbalance", Status::Ok, "not running", "", None)),
        None => out.push(finding("irqbalance", Status::Info, "unknown (no systemctl)", "stopped", None)),
    }
    out
}

/// `ethtool -k` feature state: `Some(on)`, or `None` if the feature is not listed.
pub fn ethtool_feature(text: &str, name: &str) -> Option<bool> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(':')?;
        (k.trim() == name).then(|| v.trim().starts_with("on"))
    })
}

fn feature_fixed(text: &str, name: &str) -> bool {
    text.lines()
        .any(|l| l.trim().starts_with(&format!("{name}:")) && l.contains("[fixed]"))
}

/// `ethtool -l`: (current combined, max combined).
pub fn ethtool_combined(text: &str) -> Option<(u32, u32)> {
    let mut max = None;
    let mut cur = None;
    let mut section = 0;
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with("Pre-set maximums") {
            section = 1;
        } else if l.starts_with("Current hardware settings") {
            section = 2;
        } else if let Some(v) = l.strip_prefix("Combined:") {
            let n = v.trim().parse().ok();
            match section {
                1 => max = n,
                2 => cur = n,
                _ => {}
            }
        }
    }
    Some((cur?, max?))
}

pub fn check_nics(f: &Facts, w: &Wants) -> Vec<Finding> {
    let mut out = Vec::new();
    for nic in &f.nics {
        let name = &nic.name;
        let Some(feat) = &nic.features else {
            out.push(finding(
                format!("{name} offloads"),
                Status::Warn,
                "ethtool -k failed (no such interface or no ethtool)",
                "readable",
                Some("apt-get install ethtool".into()),
            ));
            continue;
        };
        if let Some(on) = ethtool_feature(feat, "rx-checksumming") {
            out.push(finding(
                format!("{name} rx-checksumming"),
                if on { Status::Ok } else { Status::Warn },
                if on { "on" } else { "off" },
                "on (the NIC verifies UDP checksums for SIP)",
                (!on && !feature_fixed(feat, "rx-checksumming"))
                    .then(|| format!("ethtool -K {name} rx on")),
            ));
        }
        if let Some(on) = ethtool_feature(feat, "tx-checksumming") {
            out.push(finding(
                format!("{name} tx-checksumming"),
                if on { Status::Ok } else { Status::Info },
                if on { "on" } else { "off" },
                "on",
                (!on && !feature_fixed(feat, "tx-checksumming"))
                    .then(|| format!("ethtool -K {name} tx on")),
            ));
        }
        if w.xdp {
            for (feature, short) in [
                ("generic-receive-offload", "gro"),
                ("large-receive-offload", "lro"),
            ] {
                if let Some(on) = ethtool_feature(feat, feature) {
                    let fixed = feature_fixed(feat, feature);
                    out.push(finding(
                        format!("{name} {feature}"),
                        if !on { Status::Ok } else { Status::Fail },
                        if on { "on" } else { "off" },
                        "off (XDP native mode refuses to attach or sees merged frames)",
                        (on && !fixed).then(|| format!("ethtool -K {name} {short} off")),
                    ));
                }
            }
        }
        if !w.worker_cores.is_empty() {
            let workers = w.worker_cores.len() as u32;
            match nic.channels.as_deref().and_then(ethtool_combined) {
                Some((cur, max)) => {
                    let ok = cur >= workers;
                    out.push(finding(
                        format!("{name} RSS queues"),
                        if ok { Status::Ok } else { Status::Fail },
                        format!("{cur} combined (max {max})"),
                        format!(">= {workers} (one per media worker)"),
                        (!ok).then(|| {
                            if max >= workers {
                                format!("ethtool -L {name} combined {workers}")
                            } else {
                                format!("NIC has at most {max} queues: use at most {max} media.worker_cores")
                            }
                        }),
                    ));
                }
                None => out.push(finding(
                    format!("{name} RSS queues"),
                    Status::Info,
                    "ethtool -l not supported",
                    format!(">= {workers}"),
                    None,
                )),
            }
        }
    }
    out
}

/// (major, minor) of a release string like `6.1.0-18-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn config_value<'a>(cfg: &'a str, key: &str) -> Option<&'a str> {
    cfg.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

pub fn check_kernel(f: &Facts, w: &Wants) -> Vec<Finding> {
    let mut out = Vec::new();
    let need = if w.xdp { Status::Fail } else { Status::Info };
    let v = kernel_version(&f.kernel_release);
    let ok = v.is_some_and(|v| v >= (5, 10));
    out.push(finding(
        "kernel version",
        if ok { Status::Ok } else { need },
        f.kernel_release.clone(),
        ">= 5.10 (AF_XDP need_wakeup, shared UMEM, BPF_PROG_TYPE_XDP with frags handling)",
        (!ok).then(|| {
            "upgrade the kernel (Debian: apt-get install -t bookworm linux-image-amd64)".into()
        }),
    ));
    match &f.kernel_config {
        Some(cfg) => {
            for key in ["CONFIG_XDP_SOCKETS", "CONFIG_BPF_SYSCALL", "CONFIG_BPF_JIT"] {
                let val = config_value(cfg, key);
                let ok = val == Some("y");
                out.push(finding(
                    key,
                    if ok { Status::Ok } else { need },
                    val.unwrap_or("not set"),
                    "y",
                    (!ok).then(|| {
                        "a kernel built with it (every distribution kernel since 5.x has it)".into()
                    }),
                ));
            }
        }
        None => out.push(finding(
            "kernel config",
            Status::Info,
            "neither /proc/config.gz nor /boot/config-RELEASE found",
            "readable, to check CONFIG_XDP_SOCKETS",
            Some("modprobe configs  # provides /proc/config.gz".into()),
        )),
    }
    let huge = f
        .meminfo
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Total:"))
        .map(str::trim)
        .unwrap_or("0");
    out.push(finding(
        "hugepages (optional)",
        if huge != "0" {
            Status::Ok
        } else {
            Status::Info
        },
        format!("{huge} reserved"),
        "optional: 2 MiB pages for UMEM cut TLB misses",
        (huge == "0").then(|| "sysctl -w vm.nr_hugepages=512".into()),
    ));
    out
}

pub fn check_all(f: &Facts, w: &Wants) -> Vec<Finding> {
    let mut v = check_sysctls(f, w);
    v.extend(check_limits(f));
    v.extend(check_cpus(f, w));
    v.extend(check_nics(f, w));
    v.extend(check_kernel(f, w));
    v
}

/// Reads the machine. `root` is `/` except in tests; commands (`ethtool`, `systemctl`, `zcat`) run only when
/// `root` is `/`.
pub fn gather(root: &Path, w: &Wants) -> Facts {
    let read = |p: &str| std::fs::read_to_string(root.join(p.trim_start_matches('/'))).ok();
    let mut sysctls = BTreeMap::new();
    for (key, _) in parse_sysctl_conf(SYSCTL_DROPIN) {
        if let Some(v) = read(&format!("proc/sys/{}", key.replace('.', "/"))) {
            sysctls.insert(key, norm(&v));
        }
    }
    let live = root == Path::new("/");
    let (memlock, nofile) = rlimits();
    let kernel_release = read("proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let kernel_config = if live {
        Command::new("zcat")
            .arg("/proc/config.gz")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        None
    }
    .or_else(|| read(&format!("boot/config-{kernel_release}")));
    let cpus = read("sys/devices/system/cpu/online")
        .and_then(|s| parse_cpu_list(s.trim()))
        .map(|v| v.len())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let run = |cmd: &str, args: &[&str]| -> Option<String> {
        if !live {
            return None;
        }
        let o = Command::new(cmd).args(args).output().ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    // A process scan works with or without systemd as init (containers, chroots) and on a fake root.
    let irqbalance_active = std::fs::read_dir(root.join("proc")).ok().map(|d| {
        d.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "irqbalance")
            })
    });
    let nics = w
        .interfaces
        .iter()
        .map(|n| NicFacts {
            name: n.clone(),
            features: run("ethtool", &["-k", n]),
            channels: run("ethtool", &["-l", n]),
        })
        .collect();
    Facts {
        sysctls,
        memlock,
        nofile,
        cpus,
        cmdline: read("proc/cmdline").unwrap_or_default(),
        irqbalance_active,
        kernel_release,
        kernel_config,
        nics,
        meminfo: read("proc/meminfo").unwrap_or_default(),
    }
}

fn rlimits() -> (Option<u64>, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    let memlock = if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0
        && r.rlim_cur != libc::RLIM_INFINITY
    {
        Some(r.rlim_cur)
    } else {
        None
    };
    // SAFETY: as above.
    let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        0
    };
    (memlock, nofile)
}

/// Human report: the problems first with their fixes, then a one-line count.
pub fn render(findings: &[Finding], verbose: bool) -> String {
    let mut s = String::new();
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.status));
    for f in sorted {
        if f.status == Status::Ok && !verbose {
            continue;
        }
        let tag = match f.status {
            Status::Ok => "ok  ",
            Status::Info => "info",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        s.push_str(&format!("[{tag}] {}: {}", f.check, f.found));
        if !f.want.is_empty() && f.status != Status::Ok {
            s.push_str(&format!(" (want {})", f.want));
        }
        s.push('\n');
        if let Some(fix) = &f.fix {
            s.push_str(&format!("       fix: {fix}\n"));
        }
    }
    let count = |st| findings.iter().filter(|f| f.status == st).count();
    s.push_str(&format!(
        "{} ok, {} failed, {} warnings, {} notes\n",
        count(Status::Ok),
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Info)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETHTOOL_K: &str = "Features for eth0:
rx-checksumming: on
tx-checksumming: on
	tx-checksum-ipv4: off [fixed]
generic-receive-offload: on
large-receive-offload: off [fixed]
";
    const ETHTOOL_L: &str = "Channel parameters for eth0:
Pre-set maximums:
RX:		n/a
TX:		n/a
Other:		1
Combined:	8
Current hardware settings:
RX:		n/a
TX:		n/a
Other:		1
Combined:	2
";

    fn wants() -> Wants {
        Wants {
            worker_cores: vec![2, 3, 4],
            interfaces: vec!["eth0".into()],
            xdp: true,
            media_ports: (20000, 39999),
        }
    }

    fn good_sysctls() -> BTreeMap<String, String> {
        parse_sysctl_conf(SYSCTL_DROPIN).into_iter().collect()
    }

    fn by<'a>(v: &'a [Finding], check: &str) -> &'a Finding {
        v.iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no finding {check}: {v:#?}"))
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("0-99999999999"), None);
    }

    #[test]
    fn drop_in_applied_passes_and_each_deviation_is_reported_with_fix() {
        let w = wants();
        let f = Facts {
            sysctls: good_sysctls(),
            ..Default::default()
        };
        let r = check_sysctls(&f, &w);
        assert!(r.iter().all(|x| x.status == Status::Ok), "{r:#?}");
        assert!(r.len() >= 15);

        let mut s = good_sysctls();
        s.insert("net.core.rmem_max".into(), "212992".into());
        s.insert("net.core.wmem_max".into(), "67108864".into()); // larger is fine
        s.insert("net.ipv4.ip_local_port_range".into(), "32768 60999".into()); // overlaps media
        s.insert("net.ipv4.ip_local_reserved_ports".into(), "".into());
        s.insert("net.core.bpf_jit_enable".into(), "0".into());
        s.insert("kernel.unprivileged_bpf_disabled".into(), "2".into());
        s.insert("vm.swappiness".into(), "60".into());
        s.insert("kernel.unprivileged_bpf_disabled".into(), "2".into());
        s.insert("vm.swappiness".into(), "60".into());
        s.remove("net.core.netdev_budget");
        let r = check_sysctls(
            &Facts {
                sysctls: s,
                ..Default::default()
            },
            &w,
        );
        let rmem = by(&r, "sysctl net.core.rmem_max");
        assert_eq!(rmem.status, Status::Fail);
        assert!(
            rmem.fix
                .as_deref()
                .unwrap()
                .starts_with("sysctl -w net.core.rmem_max=\"33554432\"")
        );
        assert_eq!(by(&r, "sysctl net.core.wmem_max").status, Status::Ok);
        let pr = by(&r, "sysctl net.ipv4.ip_local_port_range");
        assert_eq!(pr.status, Status::Fail);
        assert!(pr.fix.as_deref().unwrap().contains("\"40000 60999\""));
        let rp = by(&r, "sysctl net.ipv4.ip_local_reserved_ports");
        assert!(rp.fix.as_deref().unwrap().contains("\"20000-39999\""));
        assert_eq!(
            by(&r, "sysctl net.core.bpf_jit_enable").status,
            Status::Fail
        );
        assert_eq!(
            by(&r, "sysctl kernel.unprivileged_bpf_disabled").status,
            Status::Ok
        );
        assert_eq!(by(&r, "sysctl vm.swappiness").want, "<= 1");
        assert_eq!(by(&r, "sysctl vm.swappiness").status, Status::Fail);
        assert_eq!(by(&r, "sysctl net.core.netdev_budget").status, Status::Info);

        // A media range high up moves the suggested ephemeral range below it.
        let w2 = Wants {
            media_ports: (50000, 59999),
            ..wants()
        };
        let mut s = good_sysctls();
        s.insert(
            "net.ipv4.ip_local_reserved_ports".into(),
            "50000-59999".into(),
        );
        let r = check_sysctls(
            &Facts {
                sysctls: s,
                ..Default::default()
            },
            &w2,
        );
        let pr = by(&r, "sysctl net.ipv4.ip_local_port_range");
        assert_eq!(pr.status, Status::Fail, "40000-60999 overlaps 50000-59999");
        assert!(
            pr.fix.as_deref().unwrap().contains("\"1024 49999\""),
            "{pr:?}"
        );
        assert_eq!(
            by(&r, "sysctl net.ipv4.ip_local_reserved_ports").status,
            Status::Ok
        );
    }

    #[test]
    fn limits() {
        let r = check_limits(&Facts {
            memlock: Some(8 << 20),
            nofile: 1024,
            ..Default::default()
        });
        assert_eq!(by(&r, "RLIMIT_MEMLOCK").status, Status::Fail);
        assert!(
            by(&r, "RLIMIT_MEMLOCK")
                .fix
                .as_deref()
                .unwrap()
                .contains("LimitMEMLOCK=infinity")
        );
        assert_eq!(by(&r, "RLIMIT_NOFILE").status, Status::Warn);
        let r = check_limits(&Facts {
            memlock: None,
            nofile: 1 << 20,
            ..Default::default()
        });
        assert!(r.iter().all(|f| f.status == Status::Ok));
    }

    #[test]
    fn cpu_isolation() {
        let w = wants();
        let f = Facts {
            cpus: 8,
            cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/sda1 isolcpus=managed_irq,domain,2-4 nohz_full=2-3 quiet".into(),
            irqbalance_active: Some(true),
            ..Default::default()
        };
        let r = check_cpus(&f, &w);
        assert_eq!(by(&r, "media cores exist").status, Status::Ok);
        assert_eq!(by(&r, "kernel cmdline isolcpus").status, Status::Ok);
        let nohz = by(&r, "kernel cmdline nohz_full");
        assert_eq!(nohz.status, Status::Warn);
        assert!(nohz.fix.as_deref().unwrap().contains("nohz_full=2,3,4"));
        assert_eq!(by(&r, "kernel cmdline rcu_nocbs").status, Status::Info);
        assert!(
            by(&r, "irqbalance")
                .fix
                .as_deref()
                .unwrap()
                .contains("IRQBALANCE_BANNED_CPULIST=2,3,4")
        );

        let r = check_cpus(
            &Facts {
                cpus: 4,
                ..Default::default()
            },
            &Wants {
                worker_cores: vec![2, 3, 4],
                ..wants()
            },
        );
        assert!(
            by(&r, "media cores exist")
                .found
                .contains("cores 4 do not exist")
        );
        let r = check_cpus(
            &Facts {
                cpus: 2,
                ..Default::default()
            },
            &Wants {
                worker_cores: vec![0, 1],
                ..wants()
            },
        );
        assert_eq!(by(&r, "housekeeping core").status, Status::Fail);
    }

    #[test]
    fn nic_offloads_and_queues() {
        let f = Facts {
            nics: vec![NicFacts {
                name: "eth0".into(),
                features: Some(ETHTOOL_K.into()),
                channels: Some(ETHTOOL_L.into()),
            }],
            ..Default::default()
        };
        assert_eq!(ethtool_combined(ETHTOOL_L), Some((2, 8)));
        assert_eq!(ethtool_feature(ETHTOOL_K, "tx-checksum-ipv4"), Some(false));
        let r = check_nics(&f, &wants());
        assert_eq!(by(&r, "eth0 rx-checksumming").status, Status::Ok);
        let gro = by(&r, "eth0 generic-receive-offload");
        assert_eq!(gro.status, Status::Fail);
        assert_eq!(gro.fix.as_deref(), Some("ethtool -K eth0 gro off"));
        assert_eq!(by(&r, "eth0 large-receive-offload").status, Status::Ok);
        let q = by(&r, "eth0 RSS queues");
        assert_eq!(q.status, Status::Fail);
        assert_eq!(q.fix.as_deref(), Some("ethtool -L eth0 combined 3"));
        // Socket mode does not care about GRO.
        let r = check_nics(
            &f,
            &Wants {
                xdp: false,
                ..wants()
            },
        );
        assert!(r.iter().all(|x| !x.check.contains("receive-offload")));
        // A NIC with too few queues gets a different advice.
        let f2 = Facts {
            nics: vec![NicFacts {
                name: "eth1".into(),
                features: Some(ETHTOOL_K.into()),
                channels: Some(ETHTOOL_L.replace("Combined:\t8", "Combined:\t2")),
            }],
            ..Default::default()
        };
        let r = check_nics(&f2, &wants());
        assert!(
            by(&r, "eth1 RSS queues")
                .fix
                .as_deref()
                .unwrap()
                .contains("at most 2")
        );
    }

    #[test]
    fn kernel_and_xdp_support() {
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("4.19.0"), Some((4, 19)));
        let f = Facts {
            kernel_release: "4.19.0-27-amd64".into(),
            kernel_config: Some(
                "CONFIG_BPF_SYSCALL=y\n# CONFIG_XDP_SOCKETS is not set\nCONFIG_BPF_JIT=y\n".into(),
            ),
            meminfo: "MemTotal: 1 kB\nHugePages_Total:     512\n".into(),
            ..Default::default()
        };
        let r = check_kernel(&f, &wants());
        assert_eq!(by(&r, "kernel version").status, Status::Fail);
        assert_eq!(by(&r, "CONFIG_XDP_SOCKETS").status, Status::Fail);
        assert_eq!(by(&r, "CONFIG_BPF_JIT").status, Status::Ok);
        assert_eq!(by(&r, "hugepages (optional)").status, Status::Ok);
        let r = check_kernel(
            &Facts {
                kernel_release: "6.1.0".into(),
                ..Default::default()
            },
            &Wants {
                xdp: false,
                ..wants()
            },
        );
        assert_eq!(by(&r, "kernel version").status, Status::Ok);
        assert_eq!(by(&r, "kernel config").status, Status::Info);
    }

    #[test]
    fn gather_reads_a_fake_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let put = |p: &str, v: &str| {
            let full = root.join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, v).unwrap();
        };
        put("proc/sys/net/core/rmem_max", "212992\n");
        put("proc/sys/net/ipv4/ip_local_port_range", "32768\t60999\n");
        put("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        put(
            "boot/config-6.1.0-18-amd64",
            "CONFIG_XDP_SOCKETS=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=y\n",
        );
        put("proc/cmdline", "isolcpus=2-4 nohz_full=2-4 rcu_nocbs=2-4\n");
        put("sys/devices/system/cpu/online", "0-7\n");
        put("proc/812/comm", "irqbalance\n");
        put("proc/1/comm", "init\n");
        let w = wants();
        let f = gather(root, &w);
        assert_eq!(f.cpus, 8);
        assert_eq!(f.irqbalance_active, Some(true));
        assert_eq!(f.sysctls["net.ipv4.ip_local_port_range"], "32768 60999");
        let r = check_all(&f, &w);
        assert_eq!(by(&r, "sysctl net.core.rmem_max").status, Status::Fail);
        assert_eq!(by(&r, "CONFIG_XDP_SOCKETS").status, Status::Ok);
        assert_eq!(by(&r, "kernel cmdline nohz_full").status, Status::Ok);
        let text = render(&r, false);
        assert!(
            text.contains(
                "[FAIL] sysctl net.core.rmem_max: 212992 (want >= 33554432)\n       fix: sysctl -w"
            ),
            "{text}"
        );
        assert!(!text.contains("[ok  ]"));
        let json = serde_json::to_value(&r).unwrap();
        assert!(
            json.as_array()
                .unwrap()
                .iter()
                .any(|x| x["status"] == "fail" && x["check"] == "sysctl net.core.rmem_max")
        );
    }
}
