//! Observing the host for the reconciler: the mount table under the mount base, the PID
//! files, the processes that matter and the boot id, gathered into the
//! [`dms_journal::reconcile::Observations`] the pure plan needs.
//!
//! Gathering only reads; nothing here changes the host. A mount point that does not answer
//! within a bound (a dead FUSE helper gives `ENOTCONN`, a hung one never answers) is
//! reported dead rather than waited on.

pub mod mountinfo;
pub mod pidfile;
pub mod procfs;

use dms_journal::reconcile::{MountEntry, Observations, Process};
use dms_journal::{BootId, JournalState};
use pidfile::{PidDir, PidFileError};
use procfs::{ProcError, Procfs, MOUNT_PATH_VAR, TARGET_MARKER};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error(transparent)]
    MountInfo(#[from] mountinfo::MountInfoError),
}

/// What the gatherer needs to know about this node.
#[derive(Debug, Clone)]
pub struct Host {
    pub procfs: Procfs,
    pub pid_dir: PidDir,
    pub mount_base: String,
    /// The configured helper binary; a process counts as a helper if it runs it (as its
    /// executable or, for a script, as its interpreter's first argument) or carries the
    /// daemon's marker.
    pub helper_bin: PathBuf,
    /// How long a mount point may take to answer a `stat` before it is called dead.
    pub probe_timeout: Duration,
    /// Filesystem types reported to the plan as `nfs` (the configured `nfs_fstypes`), so
    /// a stand-in mount program's mounts are recognised as the NFS mounts they stand for.
    pub nfs_fstypes: Vec<String>,
}

impl Host {
    pub fn boot_id(&self) -> Result<BootId, ObserveError> {
        Ok(self.procfs.boot_id()?)
    }

    /// Everything the reconcile plan looks at, read once.
    pub fn observe(&self, journal: &JournalState) -> Result<Observations, ObserveError> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| {
            ProcError::Read { path: PathBuf::from("/proc/self/mountinfo"), source }
        })?;
        let table = mountinfo::parse(&text)?;
        let found: Vec<_> = mountinfo::under(&table, &self.mount_base)
            .into_values()
            .filter(|m| m.mount_point != self.mount_base.trim_end_matches('/'))
            .collect();
        let paths: Vec<&str> = found.iter().map(|m| m.mount_point.as_str()).collect();
        let answered = answer_all(&paths, self.probe_timeout);
        let mounts = found
            .into_iter()
            .zip(answered)
            .map(|(m, answered)| MountEntry {
                dead: !answered,
                path: m.mount_point,
                fstype: if self.nfs_fstypes.contains(&m.fstype) { "nfs".into() } else { m.fstype },
            })
            .collect();
        let pid_files = self.pid_dir.list()?;
        // The processes that matter: those PID files and the journal name, and helpers.
        let mut pids: BTreeSet<u32> = pid_files.iter().filter_map(|f| f.pid).collect();
        pids.extend(journal.targets.values().filter_map(|t| t.helper.map(|h| h.pid)));
        let mut processes = Vec::new();
        for pid in self.procfs.pids()? {
            let helper_for = self.helper_for(pid);
            if helper_for.is_none() && !pids.contains(&pid) {
                continue;
            }
            // A process that exits while we look is simply not there.
            if let Ok(Some(start_ticks)) = self.procfs.start_ticks(pid) {
                processes.push(Process { pid, start_ticks, helper_for });
            }
        }
        Ok(Observations { mount_base: self.mount_base.clone(), mounts, pid_files, processes })
    }

    /// The mount path a process serves, if it is provably a helper.
    fn helper_for(&self, pid: u32) -> Option<String> {
        let path = self.procfs.env_var(pid, MOUNT_PATH_VAR)?;
        let marked = self.procfs.env_var(pid, TARGET_MARKER).is_some();
        (marked || self.runs_helper(pid)).then_some(path)
    }

    fn runs_helper(&self, pid: u32) -> bool {
        let root = PathBuf::from("/proc").join(pid.to_string());
        if std::fs::read_link(root.join("exe")).is_ok_and(|exe| exe == self.helper_bin) {
            return true;
        }
        let Ok(cmdline) = std::fs::read(root.join("cmdline")) else { return false };
        let helper = self.helper_bin.as_os_str().as_encoded_bytes();
        cmdline.split(|&b| b == 0).take(2).any(|arg| arg == helper)
    }
}

/// Probes at once, at most: hung mounts in one batch share one timeout, so a node with
/// many hung mounts is observed in (hung / batch) timeouts, not one timeout each.
const PROBE_BATCH: usize = 64;

/// Whether each path answers within `timeout`, probed in parallel batches.
pub fn answer_all(paths: &[&str], timeout: Duration) -> Vec<bool> {
    let mut answered = Vec::with_capacity(paths.len());
    for batch in paths.chunks(PROBE_BATCH) {
        let probes: Vec<_> = batch.iter().map(|p| probe(p)).collect();
        let deadline = std::time::Instant::now() + timeout;
        for rx in probes {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            answered.push(rx.is_some_and(|rx| rx.recv_timeout(left).unwrap_or(false)));
        }
    }
    answered
}

/// Whether `path` answers a directory read within `timeout`. A hung FUSE mount blocks the calling
/// thread in the kernel, so the probe runs on a thread of its own that may be left behind.
pub fn answers(path: &str, timeout: Duration) -> bool {
    probe(path).is_some_and(|rx| rx.recv_timeout(timeout).unwrap_or(false))
}

/// Start a probe of `path`; its answer arrives on the channel (`None`: no thread).
fn probe(path: &str) -> Option<std::sync::mpsc::Receiver<bool>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("dms-mount-probe".into())
        .spawn(move || {
            // Opening and reading the directory reaches the filesystem itself; a `stat` alone
            // may be served from the kernel's attribute cache after a FUSE helper died.
            let answered = std::fs::read_dir(&path).map(|mut d| d.next().is_none_or(|e| e.is_ok()));
            let _ = tx.send(answered.unwrap_or(false));
        })
        .ok()
        .map(|_| rx)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn given_existing_and_missing_paths_when_probed_then_answers_tells_them_apart() {
        assert!(answers("/", Duration::from_secs(5)));
        assert!(!answers("/nonexistent/dms", Duration::from_secs(5)));
        let paths: Vec<String> = (0..PROBE_BATCH + 3)
            .map(|i| if i % 2 == 0 { "/".into() } else { format!("/nonexistent/{i}") })
            .collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let answered = answer_all(&paths, Duration::from_secs(5));
        assert_eq!(answered, (0..PROBE_BATCH + 3).map(|i| i % 2 == 0).collect::<Vec<_>>());
    }

    #[test]
    fn given_a_marked_child_and_pid_files_when_observed_then_it_is_a_helper_and_others_are_listed()
    {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            procfs: Procfs::default(),
            pid_dir: PidDir::new(dir.path()),
            mount_base: "/nonexistent/base".into(),
            helper_bin: "/usr/bin/s3vaultfuse.py".into(),
            probe_timeout: Duration::from_secs(2),
            nfs_fstypes: vec!["nfs".into()],
        };
        let mut helper = std::process::Command::new("sleep")
            .arg("30")
            .env_clear()
            .env(MOUNT_PATH_VAR, "/nonexistent/base/t1")
            .env(TARGET_MARKER, "t1")
            .spawn()
            .unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .env(MOUNT_PATH_VAR, "/nonexistent/base/t2")
            .spawn()
            .unwrap();
        std::fs::write(dir.path().join("t2.pid"), format!("{}\n", other.id())).unwrap();
        let obs = host.observe(&JournalState::default()).unwrap();
        let find = |pid: u32| obs.processes.iter().find(|p| p.pid == pid).cloned();
        assert_eq!(find(helper.id()).unwrap().helper_for.as_deref(), Some("/nonexistent/base/t1"));
        // Unmarked and not running the helper binary: listed (its PID file names it) but
        // not a helper, whatever its environment says.
        assert_eq!(find(other.id()).unwrap().helper_for, None);
        assert_eq!(obs.pid_files.len(), 1);
        for child in [&mut helper, &mut other] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
