//! What the host shows about a daemon's work: PID files, processes, the mount table.
//! Shared by the end-to-end tests; every check panics with what it saw.
#![allow(dead_code, clippy::unwrap_used)]

use super::Daemon;
use crate::support::{self, mountns};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bound for waits on processes and mounts to settle.
pub const SETTLE: Duration = Duration::from_secs(30);

/// The PID a target's PID file names.
pub fn pid_of(daemon: &Daemon, target: &str) -> u32 {
    let file = daemon.pid_dir.join(format!("{target}.pid"));
    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    text.trim().parse().unwrap_or_else(|e| panic!("{}: {text:?}: {e}", file.display()))
}

/// Whether `pid` is a live process (a zombie counts as dead).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
        stat.rsplit_once(')')
            .map(|(_, rest)| rest.trim_start())
            .is_some_and(|state| !state.starts_with('Z') && !state.starts_with('X'))
    })
}

pub fn wait_dead(pid: u32, what: &str) {
    support::wait_for(&format!("{what} (PID {pid}) to exit"), SETTLE, || {
        (!alive(pid)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Live processes with `arg` as one of their argv entries.
pub fn processes_with_arg(arg: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

pub fn mounted(path: &str, fs_type: &str) {
    let entry = mountns::mount_at(Path::new(path))
        .unwrap_or_else(|| panic!("no mount at {path} in the table"));
    assert_eq!(entry.fs_type, fs_type, "{path}: {entry:?}");
}

pub fn not_mounted(path: &str) {
    assert!(
        mountns::mount_at(Path::new(path)).is_none(),
        "{path} is still mounted: {:?}",
        mountns::mount_at(Path::new(path))
    );
}

pub fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret reached the {what}");
    }
}

/// On a failing test, SIGKILLs the helpers the PID directory names (after checking they
/// are helpers) so they do not outlive the test; their mounts die with the namespace.
pub struct HelperReaper(pub PathBuf);

impl Drop for HelperReaper {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(dir) = std::fs::read_dir(&self.0) else { return };
        for entry in dir.filter_map(Result::ok) {
            let pid = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok());
            let Some(pid) = pid else { continue };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if ["dms-testfs", "s3fs"].contains(&comm.trim()) {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
        }
    }
}
