//! Mounting, verifying and unmounting at a target's path.
//!
//! "Mounted" is what the mount table says (DESIGN §3.4), so verification watches
//! `/proc/self/mountinfo` (the kernel wakes a poller with POLLPRI when the table changes)
//! instead of sleeping in a loop, and gives up early when the helper exits: s3fs, for one,
//! exits 0 when it fails. A mount that appears must also answer: s3fs mounts before it has
//! checked its bucket, so the probe lists the mount's root.

use super::command::{Program, RunError};
use crate::observe::mountinfo::{self, MountInfo};
use dms_journal::machine::MountFailure;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The mount at `path` as the table shows it now (the top of a stack), if any.
pub fn mount_at(path: &str) -> Result<Option<MountInfo>, String> {
    let text =
        std::fs::read_to_string(MOUNTINFO).map_err(|e| format!("cannot read {MOUNTINFO}: {e}"))?;
    let table = mountinfo::parse(&text).map_err(|e| e.to_string())?;
    Ok(table.into_iter().rev().find(|m| m.mount_point == path))
}

pub fn is_fuse(m: &MountInfo) -> bool {
    m.fstype == "fuse" || m.fstype.starts_with("fuse.")
}

/// Wait until a mount accepted by `kind` is at `path` and answers, the helper behind
/// `helper` (a pidfd) exits, or `timeout` passes.
pub fn wait_for_mount(
    path: &str,
    kind: fn(&MountInfo) -> bool,
    helper: Option<&OwnedFd>,
    timeout: Duration,
) -> Result<(), MountFailure> {
    let fail = |reason: String| MountFailure { reason, maybe_mounted: true };
    let deadline = Instant::now() + timeout;
    let mut table =
        File::open(MOUNTINFO).map_err(|e| fail(format!("cannot watch {MOUNTINFO}: {e}")))?;
    loop {
        if let Some(found) = read_mount(&mut table, path).map_err(fail)? {
            if !kind(&found) {
                return Err(fail(format!(
                    "{path} holds a {} mount, not the expected kind",
                    found.fstype
                )));
            }
            let left =
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
            return probe(path, left).map_err(fail);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(format!("no mount at {path} after {timeout:?}")));
        }
        // Wake on a mount table change or the helper's exit; re-read at least twice a
        // second in case a change notification is missed.
        let nap = left.min(Duration::from_millis(500));
        let ts = Timespec { tv_sec: nap.as_secs() as i64, tv_nsec: i64::from(nap.subsec_nanos()) };
        let mut fds = vec![PollFd::new(&table, PollFlags::PRI | PollFlags::ERR)];
        if let Some(pidfd) = helper {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        let _ = poll(&mut fds, Some(&ts));
        if fds.get(1).is_some_and(|fd| fd.revents().contains(PollFlags::IN)) {
            // One last look: it may have mounted just before exiting.
            if read_mount(&mut table, path).map_err(fail)?.is_none() {
                return Err(MountFailure {
                    reason: "the helper exited before mounting".into(),
                    maybe_mounted: false,
                });
            }
            return Err(fail("the helper exited right after mounting".into()));
        }
    }
}

fn read_mount(table: &mut File, path: &str) -> Result<Option<MountInfo>, String> {
    let mut text = String::new();
    table
        .rewind()
        .and_then(|()| table.read_to_string(&mut text))
        .map_err(|e| format!("cannot read {MOUNTINFO}: {e}"))?;
    let entries = mountinfo::parse(&text).map_err(|e| e.to_string())?;
    Ok(entries.into_iter().rev().find(|m| m.mount_point == path))
}

/// List the mount's root within `timeout`: a hung or broken mount fails here.
pub fn probe(path: &str, timeout: Duration) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_owned();
    std::thread::Builder::new()
        .name("dms-mount-probe".into())
        .spawn(move || {
            let listed = std::fs::read_dir(&owned).and_then(|mut d| d.next().transpose().map(drop));
            let _ = tx.send(listed.map_err(|e| e.to_string()));
        })
        .map_err(|e| format!("cannot start the probe: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{path} is mounted but does not answer: {e}")),
        Err(_) => Err(format!("{path} is mounted but did not answer within {timeout:?}")),
    }
}

/// Create the mount point `path` strictly inside `base`, refusing to go through anything
/// that is not a plain directory. The wire codec checked the path as a string; this checks
/// the filesystem, so a symlink planted inside the base cannot send a mount (or the
/// directory creation) elsewhere.
pub fn prepare_mount_point(base: &Path, path: &Path) -> Result<(), String> {
    let rest = path
        .strip_prefix(base)
        .ok()
        .filter(|r| r.components().count() > 0)
        .ok_or_else(|| format!("{} is not inside {}", path.display(), base.display()))?;
    let mut at = base.to_path_buf();
    let check = |p: &Path| match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => {
            Err(format!("{} is a symlink; refusing to mount through it", p.display()))
        }
        Ok(m) if !m.is_dir() => Err(format!("{} exists and is not a directory", p.display())),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot inspect {}: {e}", p.display())),
    };
    if !check(&at)? {
        std::fs::create_dir_all(&at).map_err(|e| format!("cannot create {}: {e}", at.display()))?;
    }
    for part in rest.components() {
        at.push(part);
        if !check(&at)? {
            match std::fs::create_dir(&at) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    check(&at)?;
                }
                Err(e) => return Err(format!("cannot create {}: {e}", at.display())),
            }
        }
    }
    Ok(())
}

/// mount(8) and umount(8), as configured.
#[derive(Debug, Clone)]
pub struct Mounter {
    pub mount: Program,
    pub umount: Program,
    pub mount_timeout: Duration,
    pub umount_timeout: Duration,
    /// What the mount table may call an NFS mount (`nfs`, `nfs4`; tests use a stand-in).
    pub nfs_fstypes: Vec<String>,
    /// Mount points are created only inside it, never through a symlink.
    pub mount_base: std::path::PathBuf,
}

impl Mounter {
    /// `mount -t nfs -o <options> <export> <path>`, then the table must show it.
    pub fn mount_nfs(&self, export: &str, options: &str, path: &str) -> Result<(), MountFailure> {
        prepare_mount_point(&self.mount_base, Path::new(path))
            .map_err(|reason| MountFailure { reason, maybe_mounted: false })?;
        match self.mount.run(&["-t", "nfs", "-o", options, export, path], self.mount_timeout) {
            Ok(_) => {}
            Err(e @ RunError::Timeout { .. }) => {
                return Err(MountFailure { reason: e.to_string(), maybe_mounted: true })
            }
            Err(RunError::Failed { stderr, status, .. }) => {
                let reason = if stderr.is_empty() { status } else { stderr };
                return Err(MountFailure { reason, maybe_mounted: false });
            }
            Err(e) => return Err(MountFailure { reason: e.to_string(), maybe_mounted: false }),
        }
        match mount_at(path) {
            Ok(Some(m)) if self.nfs_fstypes.contains(&m.fstype) => Ok(()),
            Ok(Some(m)) => Err(MountFailure {
                reason: format!("{path} shows a {} mount after mount(8)", m.fstype),
                maybe_mounted: true,
            }),
            Ok(None) => Err(MountFailure {
                reason: format!("mount(8) succeeded but {path} is not in the mount table"),
                maybe_mounted: false,
            }),
            Err(reason) => Err(MountFailure { reason, maybe_mounted: true }),
        }
    }

    /// Make sure nothing is mounted at `path`: umount, then (NFS) force, then lazy detach,
    /// each with a deadline; success only when the table confirms. Then remove the empty
    /// mount directory.
    pub fn unmount(&self, path: &str, nfs: bool) -> Result<(), String> {
        let attempts: &[&[&str]] = if nfs { &[&[], &["-f"], &["-l"]] } else { &[&[], &["-l"]] };
        let mut last = String::from("still mounted");
        for flags in attempts {
            if mount_at(path)?.is_none() {
                break;
            }
            let mut args: Vec<&str> = flags.to_vec();
            args.push(path);
            if let Err(e) = self.umount.run(&args, self.umount_timeout) {
                last = e.to_string();
            }
        }
        if mount_at(path)?.is_some() {
            return Err(last);
        }
        // Only an empty directory goes; a non-empty one means something else lives there.
        let _ = std::fs::remove_dir(Path::new(path));
        Ok(())
    }
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
