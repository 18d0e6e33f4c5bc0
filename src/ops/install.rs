//! `tollgate install`: puts the binary, the systemd unit, the sysctl drop-in and an example configuration in
//! place. The unit and sysctl file are compiled into the binary, so one file is all that needs copying to a host.
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const UNIT: &str = include_str!("../../systemd/tollgate.service");
pub const SYSCTL: &str = include_str!("../../systemd/99-tollgate.conf");
pub const EXAMPLE_CONFIG: &str = include_str!("../../systemd/tollgate.toml");
pub const TUNING_DOC: &str = include_str!("../../docs/tuning.md");

/// Where things go. `root` prefixes every path (a staging directory, a chroot, a test's temp dir); `prefix` is
/// where the binary lives under it (`/usr/local` by default).
#[derive(Debug, Clone)]
pub struct InstallPlan {
    pub root: PathBuf,
    pub prefix: PathBuf,
    /// The binary to copy (normally the running executable).
    pub binary: PathBuf,
    /// Overwrite an existing /etc/tollgate/tollgate.toml (never done by default).
    pub force_config: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Wrote(PathBuf),
    KeptExisting(PathBuf),
}

fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d)?;
    }
    // Write beside and rename, so a running binary or a unit being read is never seen half-written.
    let tmp = path.with_extension("tollgate-install.tmp");
    fs::write(&tmp, data)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)
}

impl InstallPlan {
    pub fn bin_path(&self) -> PathBuf {
        self.prefix.join("bin/tollgate")
    }

    /// Performs the installation and says what it did.
    pub fn run(&self) -> io::Result<Vec<Action>> {
        let mut done = Vec::new();
        let bin_path = self.bin_path();
        let bin = fs::read(&self.binary)?;
        let dst = under(&self.root, &bin_path);
        write_file(&dst, &bin, 0o755)?;
        done.push(Action::Wrote(dst));

        // The unit names the binary by its final (root-less) path.
        let unit = UNIT.replace("/usr/local/bin/tollgate", &bin_path.to_string_lossy());
        let unit = unit.replace(
            "/usr/local/share/doc/tollgate",
            &self.prefix.join("share/doc/tollgate").to_string_lossy(),
        );
        let dst = under(
            &self.root,
            Path::new("/etc/systemd/system/tollgate.service"),
        );
        write_file(&dst, unit.as_bytes(), 0o644)?;
        done.push(Action::Wrote(dst));

        let dst = under(&self.root, Path::new("/etc/sysctl.d/99-tollgate.conf"));
        write_file(&dst, SYSCTL.as_bytes(), 0o644)?;
        done.push(Action::Wrote(dst));

        let dst = under(
            &self.root,
            &self.prefix.join("share/doc/tollgate/tuning.md"),
        );
        write_file(&dst, TUNING_DOC.as_bytes(), 0o644)?;
        done.push(Action::Wrote(dst));

        let cfg = under(&self.root, Path::new("/etc/tollgate/tollgate.toml"));
        if cfg.exists() && !self.force_config {
            done.push(Action::KeptExisting(cfg));
        } else {
            // Readable by the service group only: it holds trunk credentials.
            write_file(&cfg, EXAMPLE_CONFIG.as_bytes(), 0o640)?;
            done.push(Action::Wrote(cfg));
        }
        Ok(done)
    }

    /// What to run after installing into the live root.
    pub fn next_steps(&self) -> &'static str {
        "next: useradd --system --no-create-home tollgate; chgrp tollgate /etc/tollgate/tollgate.toml;\n      \
         sysctl --system; systemctl daemon-reload; edit /etc/tollgate/tollgate.toml;\n      \
         tollgate doctor --config /etc/tollgate/tollgate.toml; systemctl enable --now tollgate"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_into_a_root_and_keeps_existing_config() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let fake_bin = dir.path().join("tollgate-built");
        fs::write(&fake_bin, b"\x7fELF fake").unwrap();
        let plan = InstallPlan {
            root: root.clone(),
            prefix: "/usr/local".into(),
            binary: fake_bin,
            force_config: false,
        };
        let acts = plan.run().unwrap();
        assert_eq!(acts.len(), 5);
        let bin = root.join("usr/local/bin/tollgate");
        assert_eq!(fs::read(&bin).unwrap(), b"\x7fELF fake");
        assert_eq!(
            fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let unit = fs::read_to_string(root.join("etc/systemd/system/tollgate.service")).unwrap();
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/tollgate run --config /etc/tollgate/tollgate.toml"
        ));
        assert_eq!(
            fs::read_to_string(root.join("etc/sysctl.d/99-tollgate.conf")).unwrap(),
            SYSCTL
        );
        let cfg = root.join("etc/tollgate/tollgate.toml");
        assert_eq!(fs::read_to_string(&cfg).unwrap(), EXAMPLE_CONFIG);
        assert_eq!(
            fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(root.join("usr/local/share/doc/tollgate/tuning.md").exists());

        fs::write(&cfg, "# operator's config\n").unwrap();
        let acts = plan.run().unwrap();
        assert!(acts.contains(&Action::KeptExisting(cfg.clone())));
        assert_eq!(fs::read_to_string(&cfg).unwrap(), "# operator's config\n");
        InstallPlan {
            force_config: true,
            ..plan
        }
        .run()
        .unwrap();
        assert_eq!(fs::read_to_string(&cfg).unwrap(), EXAMPLE_CONFIG);
    }

    #[test]
    fn prefix_moves_binary_and_unit_follows() {
        let dir = tempfile::tempdir().unwrap();
        let fake_bin = dir.path().join("b");
        fs::write(&fake_bin, b"x").unwrap();
        let plan = InstallPlan {
            root: dir.path().join("r"),
            prefix: "/opt/tollgate".into(),
            binary: fake_bin,
            force_config: false,
        };
        plan.run().unwrap();
        assert!(dir.path().join("r/opt/tollgate/bin/tollgate").exists());
        let unit =
            fs::read_to_string(dir.path().join("r/etc/systemd/system/tollgate.service")).unwrap();
        assert!(unit.contains("ExecStart=/opt/tollgate/bin/tollgate run"));
        assert!(!unit.contains("/usr/local/bin"));
        assert!(plan.run().is_ok(), "re-running is idempotent");
        assert!(
            InstallPlan {
                binary: dir.path().join("missing"),
                ..plan
            }
            .run()
            .is_err()
        );
    }
}
