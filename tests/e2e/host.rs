//! What the host shows about a daemon's work: PID files, processes, the mount table.
//! Shared by the end-to-end tests; every check panics with what it saw.
#![allow(dead_code, clippy::unwrap_used)]

use super::Daemon;
use crate::support::{self, mountns};
use rustix::process::{kill_process, Pid, Signal};
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// Whether `pid` is a live process (a zombie counts as dead). A killed multi-threaded
/// process shows its leader as a zombie while other threads still exit (and still hold its
/// files, a FUSE helper's /dev/fuse among them): it is alive until no other thread is left.
pub fn alive(pid: u32) -> bool {
    let leader_alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start())
                .is_some_and(|state| !state.starts_with('Z') && !state.starts_with('X'))
        });
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    leader_alive || threads > 1
}

pub fn wait_dead(pid: u32, what: &str) {
    support::wait_for(&format!("{what} (PID {pid}) to exit"), SETTLE, || {
        (!alive(pid)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Wait until `check` holds, at most [`SETTLE`]; on a timeout, panic with the daemon's log.
pub fn wait_until(what: &str, daemon: &Daemon, mut check: impl FnMut() -> bool) {
    if let Err(e) = support::wait_for(what, SETTLE, || check().then_some(())) {
        panic!("{e}\n--- daemon log ---\n{}", daemon.log_text());
    }
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
        if std::thread::panicking() {
            kill_helpers(&self.0);
        }
    }
}

/// SIGKILL every helper `pid_dir` names (only processes that are helpers) and wait until
/// they are gone: for a passing test that ends with a helper the daemon left running.
pub fn kill_helpers(pid_dir: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(pid_dir) else { return Vec::new() };
    let mut killed = Vec::new();
    for entry in dir.filter_map(Result::ok) {
        let pid =
            std::fs::read_to_string(entry.path()).ok().and_then(|t| t.trim().parse::<i32>().ok());
        let Some(pid) = pid else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if ["dms-testfs", "s3fs"].contains(&comm.trim()) {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                killed.push(pid as u32);
            }
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while killed.iter().any(|pid| alive(*pid)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    killed
}

/// One variable of a process's environment (root reads every process's environ).
pub fn environ_var(pid: u32, name: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    raw.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Live dms-testfs processes serving `path` (by their `vault_data_directory`).
pub fn helpers_serving(path: &str) -> Vec<u32> {
    let mut found: Vec<u32> = all_pids()
        .into_iter()
        .filter(|p| comm(*p) == "dms-testfs" && alive(*p))
        .filter(|p| environ_var(*p, "vault_data_directory").as_deref() == Some(path))
        .collect();
    found.sort_unstable();
    found
}

/// Session id of a process (field 6 of /proc/PID/stat).
pub fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

pub fn sigkill(pid: u32, what: &str) {
    let p = Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    kill_process(p, Signal::KILL).unwrap_or_else(|e| panic!("SIGKILL {what} (PID {pid}): {e}"));
    wait_dead(pid, what);
}

/// A FUSE mount whose helper died answers ENOTCONN.
/// Opening the directory always reaches the FUSE server (a `stat` may be answered from the
/// kernel's attribute cache for a while after the helper died).
pub fn is_dead_mount(path: &str) -> bool {
    std::fs::read_dir(path)
        .err()
        .is_some_and(|e| e.raw_os_error() == Some(rustix::io::Errno::NOTCONN.raw_os_error()))
}

pub fn lazy_unmount(path: &str) {
    let out = Command::new("umount").arg("-l").arg(path).output().unwrap();
    assert!(out.status.success(), "umount -l {path}: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn write_pid_file(pid_dir: &Path, target: &str, pid: u32) {
    std::fs::create_dir_all(pid_dir).unwrap();
    std::fs::write(pid_dir.join(format!("{target}.pid")), format!("{pid}\n")).unwrap();
}

/// The start time (clock ticks after boot) of a live process: with the PID, its identity.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}
