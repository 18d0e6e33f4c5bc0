//! Start-up checks and interruption for `tollgate lab`: the root requirement and Ctrl-C.
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The message printed when the lab is started without root, with the command line to run instead.
pub fn needs_root_message(args: &[String]) -> String {
    let cmd = args.join(" ");
    format!(
        "tollgate lab needs root: it creates network namespaces and veth pairs.\nrun: sudo {cmd}"
    )
}

/// A flag set by SIGINT or SIGTERM; the lab polls it, stops placing calls, and its `Topo` drop removes
/// the namespaces.
pub fn interrupt_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_message_names_the_command() {
        let m = needs_root_message(&[
            "/x/tollgate".into(),
            "lab".into(),
            "--calls".into(),
            "4".into(),
        ]);
        assert!(m.contains("needs root"));
        assert!(m.ends_with("run: sudo /x/tollgate lab --calls 4"), "{m}");
    }
}
