//! The shipped unit passes `systemd-analyze verify` (warnings included) and keeps to the capability set.
use std::process::Command;

const UNIT: &str = include_str!("../systemd/tollgate.service");

fn analyze() -> Option<()> {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(o) if o.status.success() => Some(()),
        _ => {
            eprintln!("skip: systemd-analyze not installed (apt-get install systemd)");
            None
        }
    }
}

fn verify(unit_text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's binary exists: point it at the binary cargo just built.
    let text = unit_text.replace("/usr/local/bin/tollgate", env!("CARGO_BIN_EXE_tollgate"));
    let p = dir.path().join("tollgate.service");
    std::fs::write(&p, text).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o.status.success(), err)
}

#[test]
fn unit_verifies_without_warnings() {
    if analyze().is_none() {
        return;
    }
    let (ok, err) = verify(UNIT);
    assert!(ok, "{err}");
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("tollgate.service"))
        .collect();
    assert!(ours.is_empty(), "verify warned about the unit: {ours:?}");
}

#[test]
fn verify_catches_a_broken_unit() {
    if analyze().is_none() {
        return;
    }
    // Guards the test above: a unit whose binary does not exist must fail verification.
    let broken = UNIT.replace("/usr/local/bin/tollgate run", "/nonexistent/tollgate run");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tollgate.service");
    std::fs::write(&p, broken).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!o.status.success() || !o.stderr.is_empty());
}

#[test]
fn capabilities_are_exactly_the_six() {
    let want = "CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_NET_BIND_SERVICE CAP_IPC_LOCK CAP_SYS_NICE";
    for key in ["CapabilityBoundingSet=", "AmbientCapabilities="] {
        let line = UNIT
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(&line[key.len()..], want);
    }
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "LimitMEMLOCK=infinity",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
        "AF_XDP",
    ] {
        assert!(UNIT.contains(needed), "{needed}");
    }
}
