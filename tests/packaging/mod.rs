//! Packaging, as an operator receives it: `scripts/install.sh` and the unit it installs
//! (install.rs), the example configuration and the `Dockerfile` (config.rs), and the
//! monitoring kit in `dist/` checked by promtool against the daemon's own exposition
//! (monitoring.rs), and the .deb/.rpm of `scripts/package.sh` (packages.rs; installed in a
//! Debian 12 root by packages_root.rs). A module of the one integration test binary (tests/main.rs).
#![allow(clippy::unwrap_used)]

use dms::config::keys::{Fallback, KEYS};
use dms::config::{Config, Sources};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod config;
mod install;
mod monitoring;
mod packages;
mod packages_root;
use crate::support;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap()
}

/// The directory holding the binaries `cargo test` built: dms-server, dms-ctl and
/// dms-journal, all of this package.
fn built_bin_dir() -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_dms-server"));
    let dir = server.parent().unwrap().to_path_buf();
    for bin in [env!("CARGO_BIN_EXE_dms-ctl"), env!("CARGO_BIN_EXE_dms-journal")] {
        let bin = Path::new(bin);
        assert_eq!(bin.parent(), Some(dir.as_path()), "{} is not beside dms-server", bin.display());
        assert!(bin.exists(), "{} is missing", bin.display());
    }
    dir
}

/// Runs `bash scripts/install.sh <args>` with no DESTDIR/PREFIX from the environment.
fn install(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .args(args)
        .env_remove("DESTDIR")
        .env_remove("PREFIX")
        .output()
        .unwrap()
}

fn install_ok(args: &[&str]) -> String {
    let out = install(args);
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "install.sh {args:?} failed ({}):\n{text}", out.status);
    text
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every path under `root` with (mode, size, inode, mtime): equal snapshots mean nothing was
/// created, removed, rewritten or chmod-ed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                stack.push(path.clone());
            }
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            out.insert(rel, (m.mode() & 0o7777, m.len(), m.ino(), m.mtime(), m.mtime_nsec()));
        }
    }
    out
}

fn exec_start(unit: &str) -> &str {
    let lines: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("ExecStart=")).collect();
    assert_eq!(lines.len(), 1, "one ExecStart= expected: {lines:?}");
    lines[0]
}

/// Tiny stand-ins for the three binaries: each answers `completions <shell>`.
fn fake_bin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["dms-server", "dms-ctl", "dms-journal"] {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n[ \"$1\" = completions ] && {{ echo \"# {name} $2 completion\"; exit 0; }}\ncase \"$1\" in man|--man) echo \".TH {name} 1\"; exit 0;; esac\nexit 1\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

const COMPLETIONS: [(&str, &[&str]); 2] = [
    ("dms-ctl", &["health", "list", "stats", "cleanup", "mount", "unmount"]),
    ("dms-journal", &["inspect", "verify", "export"]),
];

const MAN_PAGES: [(&str, &[&str]); 3] = [
    ("dms-server", &["\\-\\-config", "\\-\\-check\\-config"]),
    ("dms-ctl", &["health", "stats", "cleanup", "mount"]),
    ("dms-journal", &["inspect", "verify", "accept\\-loss", "export"]),
];
