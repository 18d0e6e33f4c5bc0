//! Issue 8's flood test through `tollgate lab --flood` (root): while 50 calls are placed and talk, a fourth
//! namespace outside every ACL floods the carrier SIP port with INVITEs, scanner OPTIONS and garbage as fast as
//! one thread sends. Every call must still be answered, keep its audio and end with BYE/200; the flooder must
//! be on the ban list; tollgate's memory must stay bounded. Its own binary, so no other lab shares the cores.
use std::process::{Command, Stdio};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn fifty_calls_survive_a_flood_and_the_flooder_is_banned() {
    if !is_root() {
        eprintln!("SKIP: tollgate lab needs root");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["lab", "--calls", "50", "--rate", "20", "--duration", "4"])
        .args(["--mode", "socket", "--flood", "30", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    let log = std::fs::read_to_string(format!(
        "{}/tollgate.log",
        r["workdir"].as_str().unwrap_or("")
    ))
    .unwrap_or_default();
    let tail: String = log.lines().rev().take(40).collect::<Vec<_>>().join("\n");
    assert_eq!(r["problems"], serde_json::json!([]), "{r:#}\n{tail}");
    assert_eq!(r["calls_answered"], 50, "{r:#}");
    assert_eq!(r["calls_failed"], 0, "{r:#}");
    assert_eq!(r["calls_ended_cleanly"], 50, "{r:#}");
    let f = &r["flood"];
    assert_eq!(f["banned"], true, "{f}");
    // Far more than the calls' own signaling: the flood was real.
    assert!(f["packets"].as_u64().unwrap_or(0) > 100_000, "{f}");
    assert!(f["sbc_dropped"].as_u64().unwrap_or(0) > 0, "{f}");
    for dir in ["carrier_to_cloud", "cloud_to_carrier"] {
        assert_eq!(r[dir]["received"], r[dir]["sent"], "{dir}: {r:#}");
    }
    assert!(log.contains("banned source dropped by netfilter"), "{tail}");
}
