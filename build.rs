//! Builds the XDP program `xdp/tollgate.bpf.c` into `$OUT_DIR/tollgate.bpf.o`, embedded by
//! `src/fastpath/xdp/loader.rs` with `include_bytes!`.
//!
//! Needs clang with the BPF target and the libbpf headers: `apt-get install -y clang llvm libbpf-dev`
//! (Debian 12: clang 14). `TOLLGATE_CLANG` overrides the compiler path.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SRC: &str = "xdp/tollgate.bpf.c";

fn main() {
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-env-changed=TOLLGATE_CLANG");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("tollgate.bpf.o");
    let clang = env::var("TOLLGATE_CLANG").unwrap_or_else(|_| "clang".to_owned());
    // Debian keeps asm/types.h under the multiarch directory; -target bpf does not search it by itself.
    let multiarch = format!("-I/usr/include/{}-linux-gnu", env::consts::ARCH);
    let result = Command::new(&clang)
        .args([
            "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", &multiarch, "-c", SRC, "-o",
        ])
        .arg(&out)
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            if stderr.contains("bpf/bpf_helpers.h") {
                panic!(
                    "building {SRC}: libbpf headers missing; install them with `apt-get install -y libbpf-dev`\n{stderr}"
                );
            }
            panic!(
                "building {SRC} with {clang} failed ({}):\n{stderr}",
                o.status
            );
        }
        Err(e) => panic!(
            "building {SRC}: cannot run `{clang}` ({e}); the XDP program needs clang with the BPF target and the \
             libbpf headers: install them with `apt-get install -y clang llvm libbpf-dev` (or set TOLLGATE_CLANG)"
        ),
    }
}
