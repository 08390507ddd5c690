//! Mounting, verifying and unmounting at a target's path.
//!
//! "Mounted" is what the kernel says (DESIGN §3.4). Verification waits for the mount to
//! appear without sleeping in a loop: the kernel wakes a poller of `/proc/self/mountinfo`
//! with POLLPRI when the table changes, and the helper's pidfd when it exits (s3fs, for
//! one, exits 0 when it fails). Each wake looks at the path alone, so the cost does not
//! grow with the number of mounts on the node: its device differs from its parent's once
//! something is mounted there, and `statfs` names the filesystem's type and must be
//! answered by whoever serves the mount (for FUSE, the helper itself, with no call to its
//! backend: listing the root would make an S3 helper list its bucket). The look runs on a
//! thread of its own with a deadline, since a hung mount would block it.

use super::command::{Program, RunError};
pub use super::mount_point::{guard_mount_point, prepare_mount_point, remove_mount_point, Guard};
use crate::observe::mountinfo::{self, MountInfo};
use dms_journal::machine::MountFailure;
use dms_journal::{FsKind, FsTypes};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

const MOUNTINFO: &str = "/proc/self/mountinfo";

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

/// The mount at `path` as the table shows it now (the top of a stack), if any.
pub fn mount_at(path: &str) -> Result<Option<MountInfo>, String> {
    let text =
        std::fs::read_to_string(MOUNTINFO).map_err(|e| format!("cannot read {MOUNTINFO}: {e}"))?;
    let table = mountinfo::parse(&text).map_err(|e| e.to_string())?;
    Ok(table.into_iter().rev().find(|m| m.mount_point == path))
}

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
    // Opened before the first look, so a change after it wakes the poll below.
    let table =
        File::open(MOUNTINFO).map_err(|e| fail(format!("cannot watch {MOUNTINFO}: {e}")))?;
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
        let ts = Timespec { tv_sec: nap.as_secs() as i64, tv_nsec: i64::from(nap.subsec_nanos()) };
        let mut fds = vec![PollFd::new(&table, PollFlags::PRI | PollFlags::ERR)];
        if let Some(pidfd) = helper {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        let _ = poll(&mut fds, Some(&ts));
        if fds.get(1).is_some_and(|fd| fd.revents().contains(PollFlags::IN)) {
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

/// Look at `path` within `timeout`: a hung or broken mount fails here.
fn look(path: &str, timeout: Duration) -> Result<Look, String> {
    match within(timeout, path, look_now) {
        Some(Ok(Ok(look))) => Ok(look),
        Some(Ok(Err(e))) => Err(format!("{path} is mounted but does not answer: {e}")),
        Some(Err(e)) => Err(format!("cannot start the probe: {e}")),
        None => Err(format!("{path} is mounted but did not answer within {timeout:?}")),
    }
}

/// Run `ask` on `path` on a thread of its own: `None` if it has not answered within
/// `timeout` (a hung mount blocks whoever asks), `Some(Err)` if no thread could start.
fn within<T: Send + 'static>(
    timeout: Duration,
    path: &str,
    ask: fn(&Path) -> T,
) -> Option<std::io::Result<T>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_owned();
    let spawned = std::thread::Builder::new().name("dms-mount-look".into()).spawn(move || {
        let _ = tx.send(ask(Path::new(&owned)));
    });
    match spawned {
        Ok(_) => rx.recv_timeout(timeout).ok().map(Ok),
        Err(e) => Some(Err(e)),
    }
}

fn look_now(path: &Path) -> std::io::Result<Look> {
    if !is_mount_root(path)? {
        return Ok(Look::Absent);
    }
    let fs = rustix::fs::statfs(path)?;
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between C libraries
    Ok(Look::Mounted { fs_type: fs.f_type as i64 })
}

/// Whether something is mounted at `path` itself: its mount differs from its parent's.
/// The mount id (`statx`, Linux 5.8+) is exact even for a bind mount of the parent's own
/// filesystem; without it the device number is compared.
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
    Ok(mount_differs(&above, &here))
}

/// Whether `here` is on another mount than `above`, its parent: the mount id where the
/// kernel reports it, the device number otherwise.
pub(super) fn mount_differs(above: &rustix::fs::Statx, here: &rustix::fs::Statx) -> bool {
    use rustix::fs::StatxFlags;
    let has_mnt_id = |s: &rustix::fs::Statx| {
        StatxFlags::from_bits_retain(s.stx_mask).contains(StatxFlags::MNT_ID)
    };
    if has_mnt_id(above) && has_mnt_id(here) {
        return here.stx_mnt_id != above.stx_mnt_id;
    }
    (here.stx_dev_major, here.stx_dev_minor) != (above.stx_dev_major, above.stx_dev_minor)
}

/// Whether anything is mounted at `path`, asking only about the path (the cost does not
/// grow with the mount table). A mount that does not answer within `timeout`, or answers
/// with an error (a FUSE mount whose helper died says ENOTCONN), is still mounted.
pub fn is_mounted(path: &str, timeout: Duration) -> bool {
    !matches!(within(timeout, path, is_mount_root), Some(Ok(Ok(false))))
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
    pub mount_base: std::path::PathBuf,
}

impl Mounter {
    /// `mount -t nfs -o <options> <export> <path>`, then the table must show it.
    pub fn mount_nfs(
        &self,
        export: &str,
        options: &str,
        path: &str,
    ) -> Ran<Result<(), MountFailure>> {
        if let Err(reason) = prepare_mount_point(&self.mount_base, Path::new(path)) {
            return Ran::unasked(Err(MountFailure { reason, maybe_mounted: false }));
        }
        match self.mount.run(&["-t", "nfs", "-o", options, export, path], self.mount_timeout) {
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
        Ran::answered(match mount_at(path) {
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
    /// each with a deadline; success only when the kernel says nothing is mounted there
    /// ([`is_mounted`]: a look at the path, not a read of the whole table). The directory
    /// stays, guarded ([`Mounter::remove_mount_point`] is for an unmount the client asked
    /// for).
    pub fn unmount(&self, path: &str, nfs: bool) -> Ran<Result<(), String>> {
        let attempts: &[&[&str]] = if nfs { &[&[], &["-f"], &["-l"]] } else { &[&[], &["-l"]] };
        let mut last = String::from("still mounted");
        let mut heard = Heard::Nothing;
        let look = self.umount_timeout.min(Duration::from_secs(5));
        for flags in attempts {
            if !is_mounted(path, look) {
                break;
            }
            let mut args: Vec<&str> = flags.to_vec();
            args.push(path);
            match self.umount.run(&args, self.umount_timeout) {
                Ok(_) => {}
                Err(e @ RunError::Timeout { .. }) => {
                    last = e.to_string();
                    if heard == Heard::Nothing {
                        heard = Heard::TimedOut(last.clone());
                    }
                }
                Err(e) => last = e.to_string(),
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
    pub fn detach(&self, path: &str) -> Result<(), String> {
        use rustix::mount::{unmount, UnmountFlags};
        let look = self.umount_timeout.min(Duration::from_secs(5));
        for _ in 0..DETACH_TRIES {
            match unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
                // EINVAL: not a mount point (any more); ENOENT: no path at all (removed by
                // hand). Either way, look whether the path is bare.
                Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(format!("cannot detach {path}: {e}")),
            }
            if !is_mounted(path, look) {
                return Ok(());
            }
        }
        Err(format!("{path} is still mounted after {DETACH_TRIES} detaches"))
    }

    /// Remove the empty mount directory of a target unmounted on request (see
    /// [`remove_mount_point`]).
    pub fn remove_mount_point(&self, path: &str) -> Result<(), String> {
        remove_mount_point(&self.mount_base, Path::new(path))
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
