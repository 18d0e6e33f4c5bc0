//! End to end: a running `tollgate` between SIPp as the carrier and SIPp as the cloud, all on loopback
//! (carrier 127.0.0.1, tollgate 127.0.0.1, cloud targets 127.0.0.2/127.0.0.3). Every process is bounded in
//! calls and time and killed on drop. Skips (passes with a message) when `sipp` is not installed.
use std::io::Write as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

fn sipp_available() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

macro_rules! need_sipp {
    () => {
        if !sipp_available() {
            eprintln!("skipped: `sipp` not found (Debian package sip-tester)");
            return;
        }
    };
}

/// A child process killed (and reaped) on drop.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = &self.name;
    }
}

/// Ports for one test: each test takes a block of 10 from a per-process base, so tests run in parallel.
fn ports() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 21000 + (std::process::id() % 200) as u16 * 100;
    base + NEXT.fetch_add(10, Ordering::Relaxed)
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

struct Lab {
    dir: PathBuf,
    base: u16,
    _tollgate: Proc,
}

impl Lab {
    /// Starts tollgate on 127.0.0.1:`base` with `extra` appended to a config whose cloud trunk is `cloud`.
    fn start(name: &str, cloud_trunk: &str, extra: &str) -> Lab {
        let base = ports();
        let dir = std::env::temp_dir().join(format!("tg-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = format!(
            r#"
[node]
name = "e2e"
[[listen]]
transport = "udp"
address = "127.0.0.1:{base}"
[media]
mode = "bypass"
[log]
level = "info"
[[trunk]]
name = "carrier"
acl = ["127.0.0.1/32"]
targets = ["sip:127.0.0.1:{carrier}"]
health = {{ ping_interval_s = 0 }}
credentials = {{ username = "tg", password = "secret" }}
[[trunk]]
name = "cloud"
{cloud_trunk}
[[rule]]
trunk = "carrier"
match = '^\+?1?5551234567$'
replace = "+18005551234"
[[route]]
from = "carrier"
to = "cloud"
[[route]]
from = "cloud"
to = "carrier"
{extra}
"#,
            carrier = base + 2,
            cloud_trunk = cloud_trunk.replace("CLOUD", &(base + 1).to_string()),
            extra = extra.replace("BASE", &base.to_string()),
        );
        let path = dir.join("tollgate.toml");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(cfg.as_bytes())
            .unwrap();
        let log = std::fs::File::create(dir.join("tollgate.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tollgate");
        let tollgate = Proc {
            name: "tollgate".into(),
            child,
        };
        let lab = Lab {
            dir,
            base,
            _tollgate: tollgate,
        };
        lab.wait_ready();
        lab
    }

    /// Polls tollgate with OPTIONS until it answers (bounded).
    fn wait_ready(&self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        for i in 0..50 {
            let msg = format!(
                "OPTIONS sip:127.0.0.1:{b} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{i}\r\nFrom: <sip:probe@{local}>;tag=r\r\nTo: <sip:127.0.0.1:{b}>\r\nCall-ID: ready{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                b = self.base
            );
            let _ = sock.send_to(msg.as_bytes(), ("127.0.0.1", self.base));
            let mut buf = [0u8; 2048];
            if let Ok(n) = sock.recv(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!("tollgate did not answer OPTIONS; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tollgate.log")).unwrap_or_default()
    }

    /// Starts SIPp with `scenario` bound to `ip:port` (server role when `target` is None).
    fn sipp(&self, scen: &str, ip: &str, port: u16, target: Option<&str>, args: &[&str]) -> Proc {
        let mut c = Command::new("sipp");
        c.current_dir(&self.dir)
            .arg("-sf")
            .arg(scenario(scen))
            .args([
                "-i",
                ip,
                "-p",
                &port.to_string(),
                "-nostdin",
                "-trace_err",
                "-timeout",
                "60s",
            ])
            .args([
                "-timeout_error",
                "-max_socket",
                "64",
                "-recv_timeout",
                "20000",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = target {
            c.arg(t);
        }
        Proc {
            name: scen.into(),
            child: c.spawn().expect("start sipp"),
        }
    }

    fn tollgate_addr(&self) -> String {
        format!("127.0.0.1:{}", self.base)
    }

    fn errors(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.to_string_lossy().ends_with("_errors.log") {
                    s.push_str(&format!("== {}\n", p.display()));
                    s.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                }
            }
        }
        s.push_str("== tollgate.log\n");
        s.push_str(&self.log());
        s
    }

    /// Runs the server scenario(s) first, then the client; both must exit 0 (every call succeeded).
    fn run(&self, servers: Vec<Proc>, mut client: Proc, limit: Duration) {
        let st = client.wait_timeout(limit);
        assert!(
            st.is_some_and(|s| s.success()),
            "client {} exited {st:?}\n{}",
            client.name,
            self.errors()
        );
        for mut s in servers {
            let st = s.wait_timeout(Duration::from_secs(10));
            assert!(
                st.is_some_and(|s| s.success()),
                "server {} exited {st:?}\n{}",
                s.name,
                self.errors()
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

const ONE_TARGET: &str = "targets = [\"sip:127.0.0.2:CLOUD\"]\nhealth = { ping_interval_s = 0 }\nheaders = { allow = [\"X-Context\"] }";

fn carrier_call(lab: &Lab, scen: &str, calls: u32, extra: &[&str]) -> Proc {
    let m = calls.to_string();
    let mut args = vec!["-s", "15551234567", "-m", &m];
    args.extend_from_slice(extra);
    lab.sipp(
        scen,
        "127.0.0.1",
        lab.base + 3,
        Some(&lab.tollgate_addr()),
        &args,
    )
}

#[test]
fn basic_call_translation_headers_caller_hangup() {
    need_sipp!();
    let lab = Lab::start("basic", ONE_TARGET, "");
    let uas = lab.sipp(
        "uas_answer.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "1"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = carrier_call(&lab, "uac_call.xml", 1, &["-d", "300"]);
    lab.run(vec![uas], uac, Duration::from_secs(20));
}

#[test]
fn callee_hangup() {
    need_sipp!();
    let lab = Lab::start("calleebye", ONE_TARGET, "");
    let uas = lab.sipp(
        "uas_answer_hangup.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "1"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = carrier_call(&lab, "uac_callee_hangup.xml", 1, &[]);
    lab.run(vec![uas], uac, Duration::from_secs(20));
}

#[test]
fn cancel_before_answer() {
    need_sipp!();
    let lab = Lab::start("cancel", ONE_TARGET, "");
    let uas = lab.sipp(
        "uas_ring_cancel.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "1"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = carrier_call(&lab, "uac_cancel.xml", 1, &[]);
    lab.run(vec![uas], uac, Duration::from_secs(20));
}

#[test]
fn busy_is_mapped_back() {
    need_sipp!();
    let lab = Lab::start("busy", ONE_TARGET, "");
    let uas = lab.sipp(
        "uas_busy.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "1"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = carrier_call(&lab, "uac_busy.xml", 1, &[]);
    lab.run(vec![uas], uac, Duration::from_secs(20));
}

#[test]
fn failover_first_target_silent_second_answers() {
    need_sipp!();
    // 127.0.0.2:CLOUD has nobody listening; 127.0.0.3:CLOUD answers.
    let trunk = "targets = [\"sip:127.0.0.2:CLOUD\", \"sip:127.0.0.3:CLOUD\"]\ntarget_timeout_ms = 500\nhealth = { ping_interval_s = 0 }\nheaders = { allow = [\"X-Context\"] }";
    let lab = Lab::start("failover", trunk, "");
    let uas = lab.sipp(
        "uas_answer.xml",
        "127.0.0.3",
        lab.base + 1,
        None,
        &["-m", "1"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = carrier_call(&lab, "uac_call.xml", 1, &["-d", "300"]);
    lab.run(vec![uas], uac, Duration::from_secs(20));
    assert!(lab.log().contains("listening"));
}

#[test]
fn options_to_tollgate_answered() {
    need_sipp!();
    let lab = Lab::start("options", ONE_TARGET, "");
    let uac = lab.sipp(
        "uac_options.xml",
        "127.0.0.1",
        lab.base + 3,
        Some(&lab.tollgate_addr()),
        &["-m", "3"],
    );
    lab.run(vec![], uac, Duration::from_secs(10));
}

#[test]
fn reinvite_hold_relayed() {
    need_sipp!();
    let lab = Lab::start("reinvite", ONE_TARGET, "");
    let uas = lab.sipp(
        "uas_reinvite.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "1"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = carrier_call(&lab, "uac_reinvite.xml", 1, &[]);
    lab.run(vec![uas], uac, Duration::from_secs(20));
}

/// Runs one call with `uas` at the cloud and `uac` at the carrier, once with the carrier over UDP and once over
/// TCP (where no 2xx is retransmitted, so an ACK that goes missing is not repaired).
fn over_udp_and_tcp(name: &str, uas: &str, uac: &str, extra: &[&str]) {
    let tcp = "[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:BASE\"\n";
    for (transport, listen, t) in [("udp", "", "u1"), ("tcp", tcp, "t1")] {
        let lab = Lab::start(&format!("{name}-{transport}"), ONE_TARGET, listen);
        let server = lab.sipp(uas, "127.0.0.2", lab.base + 1, None, &["-m", "1"]);
        std::thread::sleep(Duration::from_millis(200));
        let mut args = vec!["-t", t];
        args.extend_from_slice(extra);
        let client = carrier_call(&lab, uac, 1, &args);
        lab.run(vec![server], client, Duration::from_secs(20));
    }
}

/// Late offer: the INVITE has no SDP, the cloud offers in its 200 and the carrier's answer in its ACK reaches
/// the cloud in tollgate's ACK.
#[test]
fn late_offer_answer_travels_in_the_ack() {
    need_sipp!();
    over_udp_and_tcp(
        "late",
        "uas_late_offer.xml",
        "uac_late_offer.xml",
        &["-d", "200"],
    );
}

/// Offerless re-INVITE: the cloud's offer comes back in the 200, the carrier's answer in its ACK, which
/// tollgate must carry into its own ACK to the cloud.
#[test]
fn offerless_reinvite_answer_travels_in_the_ack() {
    need_sipp!();
    over_udp_and_tcp(
        "offerless",
        "uas_reinvite_offerless.xml",
        "uac_reinvite_offerless.xml",
        &[],
    );
}

#[test]
fn refer_from_cloud_relayed_to_carrier() {
    need_sipp!();
    let lab = Lab::start("refer", ONE_TARGET, "");
    let uas = lab.sipp(
        "uas_refer.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "1"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = carrier_call(&lab, "uac_refer.xml", 1, &[]);
    lab.run(vec![uas], uac, Duration::from_secs(20));
}

#[test]
fn outbound_call_answers_digest_challenge() {
    need_sipp!();
    let lab = Lab::start("digest", ONE_TARGET, "");
    // The carrier UAS listens where the carrier trunk's target points; the cloud UAC calls from 127.0.0.2.
    let uas = lab.sipp(
        "uas_digest.xml",
        "127.0.0.1",
        lab.base + 2,
        None,
        &["-m", "1"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = lab.sipp(
        "uac_outbound.xml",
        "127.0.0.2",
        lab.base + 1,
        Some(&lab.tollgate_addr()),
        &["-s", "+15557654321", "-m", "1"],
    );
    lab.run(vec![uas], uac, Duration::from_secs(20));
}

#[test]
fn two_hundred_concurrent_calls() {
    need_sipp!();
    let lab = Lab::start("concurrent", ONE_TARGET, "");
    let uas = lab.sipp(
        "uas_answer.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "200"],
    );
    std::thread::sleep(Duration::from_millis(200));
    // 200 calls started at 200/s, each held 3 s: all 200 are up at once.
    let uac = carrier_call(
        &lab,
        "uac_call.xml",
        200,
        &["-r", "200", "-l", "200", "-d", "3000"],
    );
    lab.run(vec![uas], uac, Duration::from_secs(40));
}

#[test]
fn carrier_over_tcp_cloud_over_udp() {
    need_sipp!();
    let lab = Lab::start(
        "tcp",
        ONE_TARGET,
        "[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:BASE\"\n",
    );
    let uas = lab.sipp(
        "uas_answer.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "2"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = carrier_call(&lab, "uac_call.xml", 2, &["-t", "t1", "-d", "300"]);
    lab.run(vec![uas], uac, Duration::from_secs(20));
}

#[test]
fn sip_trace_as_pcap_read_by_tshark_and_as_hep() {
    need_sipp!();
    if Command::new("tshark")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: `tshark` not found (apt-get install tshark)");
        return;
    }
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    // Lab::start makes this directory (same naming) before tollgate starts.
    let dir = std::env::temp_dir().join(format!("tg-e2e-{}-trace", std::process::id()));
    let pcap = dir.join("sip.pcap");
    let extra = format!(
        "[mgmt]\nsip_trace_pcap = \"{}\"\nsip_trace_hep = \"{}\"\nhep_capture_id = 42\ncontrol_socket = \"{}\"\n",
        pcap.display(),
        collector.local_addr().unwrap(),
        dir.join("ctl.sock").display()
    );
    let lab = Lab::start("trace", ONE_TARGET, &extra);
    let uas = lab.sipp(
        "uas_answer.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "1"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let uac = carrier_call(&lab, "uac_call.xml", 1, &["-d", "300"]);
    lab.run(vec![uas], uac, Duration::from_secs(20));

    // HEP: every message, with the Call-ID as correlation id.
    let mut buf = [0u8; 65536];
    let mut invites = 0;
    let mut total = 0;
    while let Ok(n) = collector.recv(&mut buf) {
        let chunks = tollgate::stats::hep::decode(&buf[..n]).expect("valid HEPv3");
        let payload = chunks
            .iter()
            .find(|c| c.ty == 15)
            .expect("payload chunk")
            .data;
        let text = String::from_utf8_lossy(payload);
        if text.starts_with("INVITE ") {
            invites += 1;
            let call_id = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .expect("Call-ID");
            assert!(
                chunks
                    .iter()
                    .any(|c| c.ty == 17 && c.data == call_id.as_bytes())
            );
        }
        total += 1;
    }
    // OPTIONS probes + INVITE/100/180/200/ACK/BYE/200 on both legs.
    assert!(total >= 14, "{total} HEP packets\n{}", lab.log());
    assert_eq!(invites, 2, "one INVITE per leg");

    // pcap, flushed by the writer once it is idle for a second; read back by Wireshark's dissector.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "sip",
            "-T",
            "fields",
            "-e",
            "ip.dst",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let count = |method: &str, dst: &str| {
        rows.iter()
            .filter(|r| r.get(1) == Some(&method) && r.first() == Some(&dst))
            .count()
    };
    assert_eq!(
        count("INVITE", "127.0.0.1"),
        1,
        "carrier's INVITE in:\n{text}"
    );
    assert_eq!(
        count("INVITE", "127.0.0.2"),
        1,
        "cloud leg INVITE out:\n{text}"
    );
    assert_eq!(count("BYE", "127.0.0.2"), 1, "{text}");
    assert!(
        rows.iter().filter(|r| r.get(2) == Some(&"200")).count() >= 4,
        "{text}"
    );
}

#[test]
fn reload_during_100_live_calls_loses_none() {
    need_sipp!();
    let lab = Lab::start("reload100", ONE_TARGET, "");
    let uas = lab.sipp(
        "uas_answer.xml",
        "127.0.0.2",
        lab.base + 1,
        None,
        &["-m", "100"],
    );
    std::thread::sleep(Duration::from_millis(200));
    // 100 calls started at 100/s and held 4 s: all up at once when the reloads come.
    let uac = carrier_call(
        &lab,
        "uac_call.xml",
        100,
        &["-r", "100", "-l", "100", "-d", "4000"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let path = lab.dir.join("tollgate.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &lab._tollgate.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::thread::sleep(Duration::from_millis(400));
    };
    // A change new calls would use (one more rule), then a broken file that must be refused.
    let changed = format!(
        "{good}\n[[rule]]\nname = \"strip-nine\"\ntrunk = \"cloud\"\nmatch = '^9(.*)$'\nreplace = '$1'\n"
    );
    std::fs::write(&path, &changed).unwrap();
    hup();
    std::fs::write(&path, "[node]\nname = \"\"\n").unwrap();
    hup();
    std::fs::write(&path, &good).unwrap();
    hup();
    // Every call of the 100 was answered and ended with BYE/200 on both sides.
    lab.run(vec![uas], uac, Duration::from_secs(40));
    let log = lab.log();
    assert_eq!(log.matches("configuration reloaded").count(), 2, "{log}");
    assert!(log.contains("reload refused"), "{log}");
}
