//! Observing the host for the reconciler: the mount table under the mount base, the PID
//! files, the processes that matter and the boot id, gathered into the
//! [`dms_journal::reconcile::Observations`] the pure plan needs.
//!
//! Gathering only reads; nothing here changes the host. A mount point that does not answer
//! within a bound (a dead FUSE helper gives `ENOTCONN`, a hung one never answers) is
//! reported dead rather than waited on.

pub mod identity;
pub mod pidfile;
pub mod procfs;

use crate::host::mount_table::{self, MountTableError};
use crate::host::probe::{self, Probed};
use dms_journal::reconcile::{Finding, MountEntry, Observations, Process};
use dms_journal::{BootId, FsKind, FsTypes, JournalState, MountBase, MountStep, Phase, SpawnNonce};
use identity::{Claim, Proof};
use pidfile::{PidDir, PidFileError};
use procfs::{ProcError, Procfs};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error(transparent)]
    MountTable(#[from] MountTableError),
}

/// What the gatherer needs to know about this node.
#[derive(Debug, Clone)]
pub struct Host {
    pub procfs: Procfs,
    pub pid_dir: PidDir,
    pub mount_base: MountBase,
    /// The configured helper binary: a process the journal does not name counts as a
    /// helper only with the proof [`identity`] describes.
    pub helper_bin: PathBuf,
    /// How long a mount point may take to answer a `stat` before it is called dead.
    pub probe_timeout: Duration,
    /// The fstype rule: which mounts are FUSE, which NFS (the configured `nfs_fstypes`, so
    /// a stand-in mount program's mounts are recognised as the NFS mounts they stand for).
    pub fs_types: FsTypes,
}

impl Host {
    pub fn boot_id(&self) -> Result<BootId, ObserveError> {
        Ok(self.procfs.boot_id()?)
    }

    /// Everything the reconcile plan looks at, read once.
    pub fn observe(&self, journal: &JournalState) -> Result<Observations, ObserveError> {
        let table = mount_table::read()?;
        let found: Vec<_> = mount_table::under(&table, &self.mount_base)
            .into_values()
            .filter(|m| m.mount_point != self.mount_base.as_str())
            .collect();
        // The FUSE connection behind each FUSE mount: its minor device number.
        let fuse: BTreeMap<String, u32> = found
            .iter()
            .filter(|m| self.fs_types.kind_of(&m.fstype) == FsKind::Fuse)
            .filter(|m| m.device.0 == 0)
            .map(|m| (m.mount_point.clone(), m.device.1))
            .collect();
        let paths: Vec<&str> = found.iter().map(|m| m.mount_point.as_str()).collect();
        let answered = answer_all(&paths, self.probe_timeout);
        let mounts = found
            .into_iter()
            .zip(answered)
            .map(|(m, answered)| MountEntry {
                dead: !answered,
                path: m.mount_point,
                kind: self.fs_types.kind_of(&m.fstype),
                fstype: m.fstype,
            })
            .collect();
        let listing = self.pid_dir.list()?;
        let mut distrusted = listing.refused;
        // The processes that matter: those PID files and the journal name, and helpers.
        let mut pids: BTreeSet<u32> = listing.files.iter().filter_map(|f| f.pid).collect();
        let journaled: BTreeSet<u32> =
            journal.targets.values().filter_map(|t| t.helper.map(|h| h.pid)).collect();
        pids.extend(&journaled);
        let target_at = |path: &str| {
            journal
                .targets
                .values()
                .find(|t| t.mount_path() == Some(path))
                .map(|t| t.target.clone())
        };
        let proof = Proof::new(&self.helper_bin);
        let intents = open_intents(journal);
        let mut processes = Vec::new();
        for pid in self.procfs.pids()? {
            let nonce = self.carried_nonce(pid, &intents);
            let (helper_for, serves_mount) =
                match proof.check(&self.procfs, pid, |path| fuse.get(path).copied()) {
                    Claim::Helper { path, serves_mount } => (Some(path), serves_mount),
                    // The journal's own helpers are proven by their identity, whatever
                    // they run (a wrapper may exec another program), and those of an open
                    // spawn intent by its nonce.
                    Claim::Unproven { path, why }
                        if self.mount_base.contains(&path)
                            && !journaled.contains(&pid)
                            && nonce.is_none() =>
                    {
                        distrusted.push(Finding {
                            target: target_at(&path),
                            what: format!(
                                "pid {pid} claims to be a helper for {path} but is not proven \
                                 ({why}); never signalled"
                            ),
                        });
                        (None, false)
                    }
                    Claim::Unproven { .. } | Claim::None => (None, false),
                };
            if helper_for.is_none() && nonce.is_none() && !pids.contains(&pid) {
                continue;
            }
            // A process that exits while we look is simply not there.
            if let Ok(Some(start_ticks)) = self.procfs.start_ticks(pid) {
                processes.push(Process { pid, start_ticks, helper_for, serves_mount, nonce });
            }
        }
        Ok(Observations {
            mount_base: self.mount_base.clone(),
            mounts,
            pid_files: listing.files,
            processes,
            distrusted,
        })
    }
}

impl Host {
    /// The open spawn intent's nonce that `pid` carries, if it is a process of the daemon's
    /// user leading its own process group (a helper is spawned as a session leader; its
    /// children inherit the environment, not the leadership). Read only while some intent
    /// is open: usually none is, and then no process's environment is read for it.
    fn carried_nonce(&self, pid: u32, intents: &[SpawnNonce]) -> Option<SpawnNonce> {
        if intents.is_empty() {
            return None;
        }
        let nonce = SpawnNonce::from_env_value(&self.procfs.env_var(pid, SpawnNonce::ENV)?)?;
        let uid = rustix::process::geteuid().as_raw();
        let ours = self.procfs.uids(pid).is_some_and(|uids| uids.iter().all(|u| *u == uid));
        (ours && intents.contains(&nonce) && self.procfs.leads_group(pid)).then_some(nonce)
    }
}

/// The nonces of spawns the journal licensed whose `Spawned` it has not recorded.
fn open_intents(journal: &JournalState) -> Vec<SpawnNonce> {
    let open = |t: &dms_journal::TargetState| {
        let Phase::Mounting(MountStep::SpawnIntended(nonce)) = t.phase else { return None };
        Some(nonce)
    };
    journal.targets.values().filter_map(open).collect()
}

/// Probes at once, at most: hung mounts in one batch share one timeout, so a node with
/// many hung mounts is observed in (hung / batch) timeouts, not one timeout each.
const PROBE_BATCH: usize = 64;

/// Whether each path answers within `timeout`, probed in parallel batches. Only a timeout
/// (or a probe already stuck) or an error that says the filesystem itself is gone counts as
/// not answering; any other answer (EACCES from a root-squashed NFS export, EIO from a
/// struggling helper) is an answer, and a probe that cannot even start is no evidence
/// either way (counted alive, so nothing is detached on it). (A `stat` may be answered
/// from the kernel's attribute cache for a moment after a FUSE helper died; the helper's
/// pidfd reports that death anyway, and the next pass sees the mount gone.)
pub fn answer_all(paths: &[&str], timeout: Duration) -> Vec<bool> {
    let stat = |path: &std::path::Path| std::fs::metadata(path).map(drop);
    let mut answered = Vec::with_capacity(paths.len());
    for batch in paths.chunks(PROBE_BATCH) {
        let probes: Vec<_> = batch.iter().map(|p| probe::start(p, stat)).collect();
        let deadline = std::time::Instant::now() + timeout;
        for pending in probes {
            answered.push(match pending.wait(deadline) {
                Probed::Answered(Ok(())) => true,
                Probed::Answered(Err(e)) => !probe::is_gone(&e),
                Probed::TimedOut | Probed::Stuck => false,
                Probed::NoThread(_) => true,
            });
        }
    }
    answered
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use procfs::{MOUNT_PATH_VAR, TARGET_MARKER};

    #[test]
    fn given_paths_and_errors_when_probed_then_only_a_gone_filesystem_is_not_answering() {
        // A missing path or a refused one is an answer from a working filesystem.
        let answered = answer_all(&["/", "/nonexistent/dms"], Duration::from_secs(5));
        assert_eq!(answered, [true, true]);
        let paths: Vec<String> =
            (0..PROBE_BATCH + 3).map(|i| format!("/nonexistent/{i}")).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        assert_eq!(answer_all(&paths, Duration::from_secs(5)), vec![true; PROBE_BATCH + 3]);
        assert!(probe::stuck_paths().is_empty(), "finished probes are forgotten");
    }

    #[test]
    fn given_a_marked_child_and_pid_files_when_observed_then_it_is_a_helper_and_others_are_listed()
    {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            procfs: Procfs::default(),
            pid_dir: PidDir::new(dir.path()),
            mount_base: MountBase::new("/nonexistent/base").unwrap(),
            helper_bin: "/usr/bin/sleep".into(),
            probe_timeout: Duration::from_secs(2),
            fs_types: FsTypes::default(),
        };
        let mut helper = std::process::Command::new(&host.helper_bin)
            .arg("30")
            .env_clear()
            .env(MOUNT_PATH_VAR, "/nonexistent/base/t1")
            .spawn()
            .unwrap();
        // Marked as the daemon marks its helpers, but running another binary.
        let mut other = std::process::Command::new("tail")
            .args(["-f", "/dev/null"])
            .env(MOUNT_PATH_VAR, "/nonexistent/base/t2")
            .env(TARGET_MARKER, "t2")
            .spawn()
            .unwrap();
        let exec_done = |pid: u32, exe: &str| {
            host.procfs.exe(pid).is_some_and(|e| e.ends_with(exe))
                && !host.procfs.cmdline(pid).is_empty()
        };
        for _ in 0..500 {
            if exec_done(helper.id(), "sleep") && exec_done(other.id(), "tail") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(dir.path().join("t2.pid"), format!("{}\n", other.id())).unwrap();
        let obs = host.observe(&JournalState::default()).unwrap();
        let find = |pid: u32| obs.processes.iter().find(|p| p.pid == pid).cloned();
        assert_eq!(find(helper.id()).unwrap().helper_for.as_deref(), Some("/nonexistent/base/t1"));
        // Not running the helper binary: listed (its PID file names it) but not a helper,
        // whatever its environment says, and reported.
        assert_eq!(find(other.id()).unwrap().helper_for, None);
        assert_eq!(obs.pid_files.len(), 1);
        let claim = format!("pid {} claims to be a helper for /nonexistent/base/t2", other.id());
        assert!(obs.distrusted.iter().any(|f| f.what.contains(&claim)), "{:?}", obs.distrusted);
        for child in [&mut helper, &mut other] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
