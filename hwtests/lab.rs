//! `tollgate lab` end to end, as the README runs it: the binary builds its namespaces, starts tollgate,
//! places real calls with SRTP to the cloud, and its JSON report must show every call answered, the
//! translation on the wire, DTMF, zero loss at this low rate and SRTP verified; Ctrl-C leaves nothing
//! behind; without root it says what to run.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn lab_namespaces(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("tglab-{pid}-")))
        .map(str::to_owned)
        .collect()
}

fn run_lab(args: &[&str]) -> (serde_json::Value, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("lab")
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    assert!(lab_namespaces(pid).is_empty(), "namespaces left behind");
    (report, stderr)
}

fn check(mode: &str) {
    let (r, stderr) = run_lab(&[
        "--calls",
        "6",
        "--rate",
        "10",
        "--duration",
        "3",
        "--mode",
        mode,
    ]);
    let log = || {
        std::fs::read_to_string(format!("{}/tollgate.log", r["workdir"].as_str().unwrap()))
            .unwrap_or_default()
    };
    assert_eq!(
        r["problems"],
        serde_json::json!([]),
        "{r:#}\n{stderr}\n{}",
        log()
    );
    assert_eq!(r["media_mode"], mode, "{r:#}");
    assert_eq!(r["calls_answered"], 6);
    assert_eq!(r["calls_ended_cleanly"], 6);
    assert_eq!(r["cloud_received"], serde_json::json!(["+18005551234"]));
    assert_eq!(r["calls_translated"], 6);
    assert_eq!(r["x_header_passed"], 6);
    assert_eq!(r["dtmf_received"], 6);
    for dir in ["carrier_to_cloud", "cloud_to_carrier"] {
        let d = &r[dir];
        // 6 streams x 50 packets/s x 3 s, all of them.
        assert!(d["sent"].as_u64().unwrap() >= 850, "{dir}: {d}");
        assert_eq!(d["received"], d["sent"], "{dir}: {d}");
        assert_eq!(d["bad_payload"], 0);
        assert_eq!(d["srtp_auth_failures"], 0);
    }
    assert_eq!(
        r["carrier_to_cloud"]["srtp_authenticated"],
        r["carrier_to_cloud"]["received"]
    );
    assert!(r["latency"]["packets"].as_u64().unwrap() > 1700);
    assert!(r["pdd_ms_max"].as_f64().unwrap() > 0.0);
    assert!(
        stderr.contains("tollgate is up"),
        "progress shown: {stderr}"
    );
}

#[test]
fn lab_in_socket_mode_passes_its_own_report() {
    if !is_root() {
        eprintln!("SKIP: tollgate lab needs root");
        return;
    }
    check("socket");
}

#[test]
fn lab_in_xdp_mode_passes_its_own_report() {
    if !is_root() {
        eprintln!("SKIP: tollgate lab needs root");
        return;
    }
    check("xdp");
}

#[test]
fn ctrl_c_hangs_up_and_removes_everything() {
    if !is_root() {
        eprintln!("SKIP: tollgate lab needs root");
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "lab",
            "--calls",
            "4",
            "--rate",
            "20",
            "--duration",
            "60",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the audio runs, then interrupt.
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && lab_namespaces(pid).len() < 3 {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "lab took {:?} to stop",
        start.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(r["interrupted"], true, "{r:#}");
    assert!(!out.status.success());
    // Every call that was up was hung up, and nothing is left.
    assert_eq!(r["calls_ended_cleanly"], r["calls_answered"], "{r:#}");
    assert!(lab_namespaces(pid).is_empty(), "namespaces left behind");
}

#[test]
fn without_root_it_says_how_to_run_it() {
    if !is_root() {
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_tollgate"))
        .args(["lab", "--calls", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs root") && err.contains("run: sudo "),
        "{err}"
    );
}
