//! The binary's contract for operators and scripts: exit codes and message shapes of `check-config` and `run`.

use std::path::PathBuf;
use std::process::Command;

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn example_config_checks_ok() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/tollgate.toml");
    let out = tollgate().args(["check-config", example]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "ok: node sbc1, 3 listeners, 2 trunks, 3 rules, 2 routes, media xdp"
    );
}

#[test]
fn bad_config_exits_2_with_every_error() {
    let p = temp_file(
        "bad.toml",
        "[node]\nname = \"x\"\ncolour = \"red\"\n\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n\n[[route]]\nfrom = \"a\"\nto = \"b\"\n",
    );
    let out = tollgate().arg("check-config").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let f = p.display().to_string();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("{f}:3:1: unknown field `colour`")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{f}:10:8: route `from` refers to unknown trunk `a`"
        )),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!("{f}:11:6: route `to` refers to unknown trunk `b`")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_file_exits_2() {
    let out = tollgate()
        .args(["check-config", "/nonexistent/tollgate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("/nonexistent/tollgate.toml:1:1: cannot read")
    );
}

#[test]
fn run_refuses_a_bad_config_with_exit_2() {
    let p = temp_file("bad-run.toml", "[node]\nname = \"\"\n");
    let out = tollgate()
        .arg("run")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":2:8: node.name must not be empty"),
        "{stderr}"
    );
}
