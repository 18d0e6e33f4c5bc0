//! The operator commands end to end through the built binary: install into a staging root, doctor's JSON, and
//! `ctl` against a control server backed by a fake handler.
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use tollgate::mgmt::CallInfo;
use tollgate::mgmt::ctl::{BanInfo, ControlHandler, CtlServer, FlowInfo, TrunkInfo};

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

#[test]
fn install_into_root_then_verify_installed_unit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let out = tollgate()
        .args(["install", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("installed "))
            .count(),
        5,
        "{stdout}"
    );
    let installed = root.join("usr/local/bin/tollgate");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_tollgate")).unwrap()
    );
    // The installed example config is valid for the installed binary.
    let cfg = root.join("etc/tollgate/tollgate.toml");
    let chk = Command::new(&installed)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        chk.status.success(),
        "{}",
        String::from_utf8_lossy(&chk.stderr)
    );
    let again = tollgate()
        .args(["install", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("kept existing"));
}

#[test]
fn doctor_json_is_a_list_of_findings() {
    let out = tollgate().args(["doctor", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert!(arr.iter().any(|f| f["check"] == "sysctl net.core.rmem_max"));
    assert!(arr.iter().any(|f| f["check"] == "RLIMIT_MEMLOCK"));
    let failed = arr.iter().any(|f| f["status"] == "fail");
    assert_eq!(
        out.status.success(),
        !failed,
        "exit status follows failures"
    );
    for f in arr.iter().filter(|f| f["status"] == "fail") {
        assert!(f["fix"].is_string(), "every failure has a fix: {f}");
    }
}

struct Fake;
impl ControlHandler for Fake {
    fn calls(&self) -> Vec<CallInfo> {
        vec![CallInfo {
            id: "call-1".into(),
            state: "answered".into(),
            start_ms: 0,
            answered_ms: Some(1),
            inbound_trunk: "carrier".into(),
            outbound_trunk: Some("cloud".into()),
            from_in: "555".into(),
            to_in: "666".into(),
            from_out: "+1555".into(),
            to_out: "+1666".into(),
            legs: vec![],
        }]
    }
    fn call(&self, _id: &str) -> Option<CallInfo> {
        None
    }
    fn trunks(&self) -> Vec<TrunkInfo> {
        vec![]
    }
    fn flows(&self) -> Vec<FlowInfo> {
        vec![]
    }
    fn stats(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([("calls_total".to_owned(), 12.0)])
    }
    fn reload(&self) -> Result<Vec<String>, Vec<String>> {
        Ok(vec![])
    }
    fn drain(&self, t: Option<u32>) -> Result<(usize, u32), String> {
        Ok((1, t.unwrap_or(300)))
    }
    fn bans(&self) -> Vec<BanInfo> {
        vec![]
    }
    fn unban(&self, a: &str) -> Result<(), String> {
        Err(format!("{a} is not banned"))
    }
}

#[test]
fn ctl_commands_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("c.sock");
    let _srv = CtlServer::spawn(&sock, Arc::new(Fake)).unwrap();
    let run = |args: &[&str]| {
        let o = tollgate()
            .arg("ctl")
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok, out) = run(&["calls"]);
    assert!(ok);
    assert!(out.starts_with("CALL"), "{out}");
    assert!(
        out.contains("call-1") && out.contains("carrier -> cloud"),
        "{out}"
    );
    let (ok, out) = run(&["--json", "stats"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["data"]["calls_total"], 12.0);
    let (ok, out) = run(&["drain", "--timeout", "30"]);
    assert!(ok);
    assert!(out.contains("1 calls up") && out.contains("30s"), "{out}");
    let (ok, out) = run(&["show", "call", "nope"]);
    assert!(!ok, "an error reply exits non-zero");
    assert_eq!(out, "error: no call nope\n");
    let (ok, out) = run(&["ban", "del", "192.0.2.1"]);
    assert!(!ok);
    assert!(out.contains("not banned"));
    let o = tollgate()
        .args(["ctl", "--socket"])
        .arg(dir.path().join("absent.sock"))
        .arg("calls")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach tollgate"));
}
