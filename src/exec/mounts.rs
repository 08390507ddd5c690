//! Mounting, verifying and unmounting at a target's path.
//!
//! "Mounted" is what the kernel says (DESIGN §3.4). Verification waits for the mount to
//! appear without sleeping in a loop: the kernel wakes a poller of `/proc/self/mountinfo`
//! with POLLPRI when the table changes, and the helper's pidfd when it exits (s3fs, for
//! one, exits 0 when it fails). Each wake looks at the path alone, so the cost does not
//! grow with the number of mounts on the node: its device differs from its parent's once
//! something is mounted there, and `statfs` names the filesystem's type and must be
//! answered by whoever serves the mount (for FUSE, the helper itself, with no call to its
//! backend: listing the root would make an S3 helper list its bucket). The look is the
//! shared [`crate::host::probe`], with a deadline, since a hung mount would block it.
//! Whether a path is bare after an unmount is the same kind of look (the path alone, not the
//! whole table: at 1,000 mounts a read of the table made an unmount 2.6 times slower).

use super::command::{Program, RunError};
pub use super::mount_point::{
    guard_mount_point, prepare_mount_point, remove_mount_point, Guard, MountPointError,
};
pub use crate::host::mount_table::{mount_at, MountInfo};
use crate::host::mount_table::{Watch, Woke};
use crate::host::probe::{self, Probed};
use dms_journal::machine::MountFailure;
use dms_journal::{FsKind, FsTypes};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Why an unmount, a detach or a mount point's removal failed. The texts are the reasons
/// the requester and the journal read ("Unmount failed: ..."), unchanged from when they
/// were plain strings.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    MountPoint(#[from] MountPointError),
    /// The last umount(8) failed (or ran into its deadline) and the path is still mounted.
    #[error(transparent)]
    Umount(#[from] RunError),
    /// umount(8) said nothing wrong, yet the table still has a mount at the path.
    #[error("still mounted")]
    StillMounted { path: String },
    #[error("cannot detach {path}: {errno}")]
    Detach { path: String, errno: rustix::io::Errno },
    #[error("{path} is still mounted after {tries} detaches")]
    Detached { path: String, tries: usize },
}

/// `statfs` magic numbers (linux/magic.h) of the kinds this module tells apart by name.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
const KNOWN_MAGIC: &[(i64, &str)] = &[
    (FUSE_SUPER_MAGIC, "fuse"),
    (0x0102_1994, "tmpfs"),
    (0xEF53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x6969, "nfs"),
    (0x794C_7630, "overlay"),
];

/// What a target's mount must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A FUSE filesystem (an S3 helper's).
    Fuse,
    /// Anything (tests of the waiting itself).
    Any,
}

impl MountKind {
    fn accepts(self, fs_type: i64) -> bool {
        match self {
            MountKind::Fuse => fs_type == FUSE_SUPER_MAGIC,
            MountKind::Any => true,
        }
    }
}

fn type_name(fs_type: i64) -> String {
    KNOWN_MAGIC
        .iter()
        .find(|(magic, _)| *magic == fs_type)
        .map_or_else(|| format!("{fs_type:#x}"), |(_, name)| (*name).to_owned())
}

/// Wait until a mount of `kind` is at `path` and answers, the helper behind `helper` (a
/// pidfd) exits, or `timeout` passes.
pub fn wait_for_mount(
    path: &str,
    kind: MountKind,
    helper: Option<&OwnedFd>,
    timeout: Duration,
) -> Result<(), MountFailure> {
    let fail = |reason: String| MountFailure { reason, maybe_mounted: true };
    let deadline = Instant::now() + timeout;
    // Opened before the first look, so a change after it wakes the wait below.
    let table = Watch::open().map_err(|e| fail(e.to_string()))?;
    let left =
        || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    loop {
        if let Look::Mounted { fs_type } = look(path, left()).map_err(fail)? {
            return match kind.accepts(fs_type) {
                true => Ok(()),
                false => Err(fail(format!(
                    "{path} holds a {} mount, not the expected kind",
                    type_name(fs_type)
                ))),
            };
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(fail(format!("no mount at {path} after {timeout:?}")));
        }
        // Wake on a mount table change or the helper's exit; look again at least twice a
        // second in case a change notification is missed.
        let nap = remaining.min(Duration::from_millis(500));
        if table.wait(helper.map(|fd| fd.as_fd()), nap) == Woke::Other {
            // One last look: it may have mounted just before exiting.
            if let Look::Absent = look(path, left()).map_err(fail)? {
                return Err(MountFailure {
                    reason: "the helper exited before mounting".into(),
                    maybe_mounted: false,
                });
            }
            return Err(fail("the helper exited right after mounting".into()));
        }
    }
}

/// What one look at a mount point found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Absent,
    /// Something is mounted there and answered `statfs` with this type.
    Mounted {
        fs_type: i64,
    },
}

/// Look at `path` within `timeout` (the shared [`probe`]): a hung or broken mount fails
/// here, and one already stuck fails at once.
fn look(path: &str, timeout: Duration) -> Result<Look, String> {
    match probe::probe(path, Instant::now() + timeout, look_now) {
        Probed::Answered(Ok(look)) => Ok(look),
        Probed::Answered(Err(e)) => Err(format!("{path} is mounted but does not answer: {e}")),
        Probed::NoThread(e) => Err(format!("cannot start the probe: {e}")),
        Probed::TimedOut | Probed::Stuck => {
            Err(format!("{path} is mounted but did not answer within {timeout:?}"))
        }
    }
}

/// Asks the path alone, so the cost does not grow with the mount table: whether something
/// is mounted on it, and then its `statfs` type, which whoever serves it must answer.
fn look_now(path: &Path) -> std::io::Result<Look> {
    if !is_mount_root(path)? {
        return Ok(Look::Absent);
    }
    let fs = rustix::fs::statfs(path)?;
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between C libraries
    Ok(Look::Mounted { fs_type: fs.f_type as i64 })
}

/// Whether something is mounted at `path` itself: its mount differs from its parent's.
fn is_mount_root(path: &Path) -> std::io::Result<bool> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let parent = path.parent().unwrap_or(Path::new("/"));
    let ask = StatxFlags::MNT_ID | StatxFlags::INO;
    let flags = AtFlags::SYMLINK_NOFOLLOW;
    let look = |p: &Path| match statx(CWD, p, flags, ask) {
        Ok(s) => Ok(Some(s)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(std::io::Error::from(e)),
    };
    // A path that does not exist has nothing mounted on it.
    let (Some(above), Some(here)) = (look(parent)?, look(path)?) else {
        return Ok(false);
    };
    Ok(probe::mount_differs(&above, &here))
}

/// Whether anything is mounted at `path`, asking only about the path (the cost does not
/// grow with the mount table), through the shared probe. A mount that does not answer
/// within `timeout` (or is stuck already), or answers with an error (a FUSE mount whose
/// helper died says ENOTCONN), is still mounted.
pub fn is_mounted(path: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    !matches!(probe::probe(path, deadline, is_mount_root), Probed::Answered(Ok(false)))
}

/// How many mounts stacked at one path [`Mounter::detach`] takes off before it gives up.
const DETACH_TRIES: usize = 4;

/// mount(8) and umount(8), as configured.
#[derive(Debug, Clone)]
pub struct Mounter {
    pub mount: Program,
    pub umount: Program,
    pub mount_timeout: Duration,
    pub umount_timeout: Duration,
    /// What the mount table may call an NFS mount (`nfs`, `nfs4`; tests use a stand-in).
    pub fs_types: FsTypes,
    /// Mount points are created only inside it, never through a symlink.
    pub mount_base: dms_journal::MountBase,
}

impl Mounter {
    /// `mount -t nfs -o <options> <export> <path>`, then the table must show it.
    pub async fn mount_nfs(
        &self,
        export: &str,
        options: &str,
        path: &str,
    ) -> Ran<Result<(), MountFailure>> {
        if let Err(e) = prepare_mount_point(&self.mount_base, Path::new(path)) {
            let reason = e.to_string();
            return Ran::unasked(Err(MountFailure { reason, maybe_mounted: false }));
        }
        let args = ["-t", "nfs", "-o", options, export, path];
        match self.mount.run(&args, self.mount_timeout).await {
            Ok(_) => {}
            Err(e @ RunError::Timeout { .. }) => {
                let reason = e.to_string();
                let failure = MountFailure { reason: reason.clone(), maybe_mounted: true };
                return Ran { result: Err(failure), heard: Heard::TimedOut(reason) };
            }
            Err(RunError::Failed { stderr, status, .. }) => {
                let reason = if stderr.is_empty() { status } else { stderr };
                return Ran::answered(Err(MountFailure { reason, maybe_mounted: false }));
            }
            // mount(8) did not start: the server was never asked.
            Err(e) => {
                let reason = e.to_string();
                return Ran::unasked(Err(MountFailure { reason, maybe_mounted: false }));
            }
        }
        Ran::answered(match mount_at(path).map_err(|e| e.to_string()) {
            Ok(Some(m)) if self.fs_types.kind_of(&m.fstype) == FsKind::Nfs => Ok(()),
            Ok(Some(m)) => Err(MountFailure {
                reason: format!("{path} shows a {} mount after mount(8)", m.fstype),
                maybe_mounted: true,
            }),
            Ok(None) => Err(MountFailure {
                reason: format!("mount(8) succeeded but {path} is not in the mount table"),
                maybe_mounted: false,
            }),
            Err(reason) => Err(MountFailure { reason, maybe_mounted: true }),
        })
    }

    /// Make sure nothing is mounted at `path`: umount, then (NFS) force, then lazy detach,
    /// each with a deadline; success only when the mount table has nothing at the path
    /// ([`is_mounted`]: a look at the path, not a read of the whole table). The directory
    /// stays, guarded ([`Mounter::remove_mount_point`] is for an unmount the client asked
    /// for).
    pub async fn unmount(&self, path: &str, nfs: bool) -> Ran<Result<(), MountError>> {
        let attempts: &[&[&str]] = if nfs { &[&[], &["-f"], &["-l"]] } else { &[&[], &["-l"]] };
        let mut last = MountError::StillMounted { path: path.to_owned() };
        let look = self.umount_timeout.min(Duration::from_secs(5));
        let mut heard = Heard::Nothing;
        for flags in attempts {
            if !is_mounted(path, look) {
                break;
            }
            let mut args: Vec<&str> = flags.to_vec();
            args.push(path);
            let ran = self.umount.run(&args, self.umount_timeout).await;
            // What was stuck at the path may be gone now: the next look starts afresh.
            probe::forget(path);
            match ran {
                Ok(_) => {}
                Err(e @ RunError::Timeout { .. }) => {
                    if heard == Heard::Nothing {
                        heard = Heard::TimedOut(e.to_string());
                    }
                    last = e.into();
                }
                Err(e) => last = e.into(),
            }
        }
        if is_mounted(path, look) {
            return Ran { result: Err(last), heard };
        }
        // Bare now: guarded, whoever made the directory (an earlier version, a hand). Best
        // effort; the mount point module says once when the base cannot be guarded.
        let _ = guard_mount_point(&self.mount_base, Path::new(path));
        Ran { result: Ok(()), heard }
    }

    /// Detach what is mounted at `path` at once: `umount2(MNT_DETACH)`, which neither waits
    /// for the FUSE helper serving it nor can be held up by a hung one; the helper is
    /// stopped afterwards. Mounts stacked at the path are detached one by one, a bounded
    /// number of times; success only when the path is bare.
    pub fn detach(&self, path: &str) -> Result<(), MountError> {
        use rustix::mount::{unmount, UnmountFlags};
        let look = self.umount_timeout.min(Duration::from_secs(5));
        for _ in 0..DETACH_TRIES {
            match unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
                // EINVAL: not a mount point (any more); ENOENT: no path at all (removed by
                // hand). Either way, look whether the path is bare.
                Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
                Err(errno) => return Err(MountError::Detach { path: path.to_owned(), errno }),
            }
            // A hung mount's stuck probe is about what was detached, not what the path
            // shows now.
            probe::forget(path);
            if !is_mounted(path, look) {
                return Ok(());
            }
        }
        Err(MountError::Detached { path: path.to_owned(), tries: DETACH_TRIES })
    }

    /// Remove the empty mount directory of a target unmounted on request (see
    /// [`remove_mount_point`]).
    pub fn remove_mount_point(&self, path: &str) -> Result<(), MountError> {
        Ok(remove_mount_point(&self.mount_base, Path::new(path))?)
    }
}

/// An operation's result, and what it showed of the NFS server behind it (for the
/// server's breaker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran<T> {
    pub result: T,
    pub heard: Heard,
}

/// What an operation showed of the NFS server it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Nothing: the server was never asked (a local step failed first), or the operation
    /// cannot tell (an umount(8) that returned may have needed no answer from it, so an
    /// unmount never counts as the server answering).
    Nothing,
    /// mount(8) returned, with success or a refusal: the server talks.
    Answered,
    /// A mount(8) or umount(8) ran into its deadline: the server stopped answering, even
    /// when a later step (a lazy detach) succeeded.
    TimedOut(String),
}

impl<T> Ran<T> {
    pub fn answered(result: T) -> Self {
        Self { result, heard: Heard::Answered }
    }

    pub fn unasked(result: T) -> Self {
        Self { result, heard: Heard::Nothing }
    }
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
pub(crate) mod tests;
