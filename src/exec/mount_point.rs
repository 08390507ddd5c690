//! A target's mount point: created inside the mount base with no race, guarded against
//! writes while nothing is mounted on it, removed when its target is unmounted.
//!
//! **The guard.** A backup written into a directory whose mount is gone lands on the
//! node's own disk and is lost with it, silently (kubernetes #51982, #117513, #120853).
//! So every mount point carries the inode flag `FS_IMMUTABLE_FL` on its own directory:
//! nothing can be created, renamed or removed in it. A mount over it hides that inode and
//! is unaffected, so the flag stays set the whole time and is never cleared while mounted:
//! when a helper dies or a mount is lazily detached, whatever looks at the path again sees
//! the guarded directory and gets `EPERM`. It is cleared only to remove the directory after
//! a requested unmount (and set again if that removal fails); a lost mount's cleanup keeps
//! the directory, guarded, where the writer will look.
//!
//! Setting the flag needs `CAP_LINUX_IMMUTABLE` and a filesystem that has it (ext2/3/4,
//! xfs, btrfs, f2fs, tmpfs since Linux 6.0). Without either the directory stays writable,
//! as before: the mount still happens, and the daemon says once that the base is
//! unguarded ([`Guard::Unguarded`]). Operators remove a guarded directory by hand with
//! `chattr -i DIR && rmdir DIR`.

use dms_journal::MountBase;
use rustix::fs::{AtFlags, IFlags, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::Errno;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a mount point could not be made, walked or removed. The texts are the reasons the
/// requester and the journal read, unchanged from when they were plain strings.
#[derive(Debug, thiserror::Error)]
pub enum MountPointError {
    #[error("cannot create {}: {source}", path.display())]
    CreateBase { path: PathBuf, source: std::io::Error },
    #[error("cannot create {}: {errno}", path.display())]
    Create { path: PathBuf, errno: Errno },
    #[error("{} is not inside {base}", path.display())]
    NotInside { path: PathBuf, base: MountBase },
    #[error("{} is a symlink; refusing to mount through it", path.display())]
    Symlink { path: PathBuf },
    #[error("{} exists and is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot open {}: {errno}", path.display())]
    Open { path: PathBuf, errno: Errno },
    #[error("cannot look at {}: {errno}", path.display())]
    Look { path: PathBuf, errno: Errno },
    #[error("{} is mounted over; not removed", path.display())]
    MountedOver { path: PathBuf },
    #[error("cannot remove {}: {errno}", path.display())]
    Remove { path: PathBuf, errno: Errno },
}

/// What guarding a mount point achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// The directory refuses writes until something is mounted over it.
    Guarded,
    /// Something is mounted there already: its root is not the daemon's to mark.
    MountedOver,
    /// The filesystem or the daemon's capabilities have no immutable flag: writable.
    Unguarded(Errno),
}

/// Create the mount point `path` strictly inside `base`, refusing to go through anything
/// that is not a plain directory, and guard it. The wire codec checked the path as a
/// string; this checks the filesystem, so a symlink planted inside the base cannot send a
/// mount (or the directory creation) elsewhere.
///
/// The walk is relative to directory descriptors, one component at a time: each step is
/// `mkdirat` then `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` on the descriptor of the
/// step before (plain `openat` with `O_NOFOLLOW` where the kernel lacks `openat2`), so
/// there is no moment between a check and a use in which a component swapped for a
/// symlink could redirect the walk outside the base.
pub fn prepare_mount_point(base: &MountBase, path: &Path) -> Result<Guard, MountPointError> {
    let dir = Path::new(base.as_str());
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::create_dir_all(dir)
            .map_err(|source| MountPointError::CreateBase { path: dir.into(), source })?;
    }
    let walked = walk(base, path, true)?;
    let guard = guard(&walked.parent, &walked.dir);
    if let Guard::Unguarded(e) = guard {
        unguarded_once(dir, e);
    }
    Ok(guard)
}

/// Guard the mount point `path` if it exists and nothing is mounted on it: a lost mount's
/// directory, after its detach, whoever created it (a directory made by an earlier version,
/// or by hand, is guarded from then on). `None` when there is no directory.
pub fn guard_mount_point(base: &MountBase, path: &Path) -> Result<Option<Guard>, MountPointError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    let walked = walk(base, path, false)?;
    Ok(Some(guard(&walked.parent, &walked.dir)))
}

/// Remove the (empty) mount point `path` of a target that was unmounted on request: the
/// guard comes off just before, and goes back on if the directory stays. A directory with
/// entries means something else lives there: it stays (guarded), and that is no error.
/// Success when there is no directory left to remove.
pub fn remove_mount_point(base: &MountBase, path: &Path) -> Result<(), MountPointError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let Walked { parent, dir, name, at } = walk(base, path, false)?;
    let same = same_mount(&parent, &dir)
        .map_err(|errno| MountPointError::Look { path: at.clone(), errno })?;
    if !same {
        return Err(MountPointError::MountedOver { path: at });
    }
    // An error here means the flag was never set (an unguarded base); rmdir tells the rest.
    let _ = set_immutable(&dir, false);
    match rustix::fs::unlinkat(&parent, &name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => {
            let _ = guard(&parent, &dir);
            match e {
                Errno::NOTEMPTY | Errno::EXIST => Ok(()),
                errno => Err(MountPointError::Remove { path: at, errno }),
            }
        }
    }
}

/// A mount point reached from the base: its directory and its parent's (both `O_PATH`),
/// its name in the parent, and the path as shown in messages.
struct Walked {
    parent: OwnedFd,
    dir: OwnedFd,
    name: std::ffi::OsString,
    at: std::path::PathBuf,
}

/// The walk from `base` to `path`, one component at a time relative to the descriptor of
/// the step before; `create`: each missing component is made on the way (`mkdirat`).
fn walk(base: &MountBase, path: &Path, create: bool) -> Result<Walked, MountPointError> {
    let rest = inside(base, path)?;
    let mut at = PathBuf::from(base.as_str());
    let mut parent = open_dir(rustix::fs::CWD, Path::new(base.as_str()), &at, false)?;
    let mut parts = rest.components().peekable();
    while let Some(part) = parts.next() {
        at.push(part);
        let name = part.as_os_str();
        if create {
            match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => return Err(MountPointError::Create { path: at, errno }),
            }
        }
        let dir = open_dir(&parent, Path::new(name), &at, true)?;
        if parts.peek().is_none() {
            return Ok(Walked { parent, dir, name: name.to_owned(), at });
        }
        parent = dir;
    }
    Err(MountPointError::NotInside { path: path.into(), base: base.clone() })
}

/// The components of `path` after `base` (at least one): [`MountBase`]'s rule, the one the
/// wire validator applies too.
fn inside<'a>(base: &MountBase, path: &'a Path) -> Result<&'a Path, MountPointError> {
    path.to_str()
        .and_then(|p| base.below(p))
        .map(Path::new)
        .ok_or_else(|| MountPointError::NotInside { path: path.into(), base: base.clone() })
}

/// Set the immutable flag on `dir` (an `O_PATH` descriptor), unless something is mounted
/// on it.
fn guard(parent: &OwnedFd, dir: &OwnedFd) -> Guard {
    match same_mount(parent, dir) {
        Ok(true) => {}
        // A mount that cannot say (ENOTCONN: a dead FUSE helper's) is mounted over too.
        Ok(false) | Err(_) => return Guard::MountedOver,
    }
    match set_immutable(dir, true) {
        Ok(()) => Guard::Guarded,
        Err(e) => Guard::Unguarded(e),
    }
}

/// `FS_IOC_SETFLAGS` needs a real descriptor, which an `O_PATH` one is not: reopen the
/// directory itself through it (`.` cannot be swapped for anything).
fn set_immutable(dir: &OwnedFd, on: bool) -> Result<(), Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, ".", flags, Mode::empty())?;
    let now = rustix::fs::ioctl_getflags(&fd)?;
    let want = match on {
        true => now | IFlags::IMMUTABLE,
        false => now - IFlags::IMMUTABLE,
    };
    if want != now {
        rustix::fs::ioctl_setflags(&fd, want)?;
    }
    Ok(())
}

/// Whether `dir` lies on its parent's mount (nothing is mounted on it). From cached
/// attributes only (`AT_STATX_DONT_SYNC`), so a hung FUSE mount there is not asked.
fn same_mount(parent: &OwnedFd, dir: &OwnedFd) -> Result<bool, Errno> {
    let look = |fd: &OwnedFd| {
        let ask = StatxFlags::MNT_ID | StatxFlags::INO;
        let flags = AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC;
        rustix::fs::statx(fd.as_fd(), "", flags, ask)
    };
    Ok(!crate::host::probe::mount_differs(&look(parent)?, &look(dir)?))
}

/// Say once per process that mount points under `base` cannot be guarded, and why: it is
/// a property of the node, not of a request.
fn unguarded_once(base: &Path, e: Errno) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            mount_base = %base.display(),
            error = %e,
            "bare mount points cannot be made immutable (no CAP_LINUX_IMMUTABLE, or a filesystem \
             without the flag): writes into a target whose mount is gone will reach the local disk"
        );
    }
}

/// One directory, opened `O_PATH` without following a symlink at its name. `beneath` (the
/// components after the base): without leaving `dirfd` or following any symlink at all;
/// the base's own parents may be symlinks an operator set up (`/var/lib/trilio → /data`).
fn open_dir(
    dirfd: impl AsFd,
    name: &Path,
    shown: &Path,
    beneath: bool,
) -> Result<OwnedFd, MountPointError> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let opened = match beneath {
        false => rustix::fs::openat(&dirfd, name, flags, Mode::empty()),
        true => match rustix::fs::openat2(&dirfd, name, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS) => rustix::fs::openat(&dirfd, name, flags, Mode::empty()),
            other => other,
        },
    };
    // `O_PATH | O_NOFOLLOW` on a symlink opens the link, which `O_DIRECTORY` refuses with
    // ENOTDIR: look again (for the message only; nothing was opened) to say which it was.
    let is_link = || {
        rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
        })
    };
    let path = shown.to_path_buf();
    opened.map_err(|errno| match errno {
        Errno::LOOP | Errno::XDEV => MountPointError::Symlink { path },
        Errno::NOTDIR if is_link() => MountPointError::Symlink { path },
        Errno::NOTDIR => MountPointError::NotADirectory { path },
        errno => MountPointError::Open { path, errno },
    })
}

#[cfg(test)]
#[path = "mount_point_tests.rs"]
mod tests;
