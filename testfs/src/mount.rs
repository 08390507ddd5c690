//! Mounting and unmounting. The helper mounts with mount(2) itself, the way a root FUSE
//! server does, and hands the `/dev/fuse` descriptor to fuser with `Session::from_fd`:
//! no libfuse, no `fusermount`, and the mount shows as `fuse.<name>` (a FUSE subtype,
//! like s3fs's `fuse.s3fs`) in `/proc/self/mountinfo`. This needs CAP_SYS_ADMIN, which the
//! daemon (and so its helpers) has.
//!
//! Shared by both binaries of the crate (`dms-powercutfs` includes this file with
//! `#[path]`), so it names nothing of either filesystem.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use fuser::{Config, Filesystem, Session, SessionACL};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// The user and group the server runs as: the owner of a fresh filesystem's root.
pub fn owner() -> (u32, u32) {
    (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
}

/// Mounts `fs` at `path` with source `name` and type `fuse.<name>`, and completes the FUSE
/// handshake. The returned session is not yet serving requests: call `Session::run` (or
/// never, to hang).
pub fn mount<FS: Filesystem>(path: &Path, name: &str, fs: FS) -> io::Result<Session<FS>> {
    let fs_type = format!("fuse.{name}");
    let root_mode = std::fs::metadata(path)?.mode() & libc::S_IFMT;
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/fuse: {e}")))?;
    let (uid, gid) = owner();
    let data = format!(
        "fd={},rootmode={root_mode:o},user_id={uid},group_id={gid},allow_other,default_permissions",
        dev.as_raw_fd()
    );
    nix::mount::mount(
        Some(name),
        path,
        Some(fs_type.as_str()),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| {
        let hint = if e == Errno::EPERM {
            " (the server mounts with mount(2) and needs CAP_SYS_ADMIN)"
        } else {
            ""
        };
        io::Error::new(
            io::Error::from(e).kind(),
            format!("mount(2) of {fs_type} failed: {e}{hint}"),
        )
    })?;
    let fd = OwnedFd::from(dev);
    match Session::from_fd(fs, fd, SessionACL::All, Config::default()) {
        Ok(session) => Ok(session),
        Err(e) => {
            // Do not leave a mount behind that nobody serves.
            let _ = nix::mount::umount2(path, MntFlags::MNT_DETACH);
            Err(io::Error::new(e.kind(), format!("FUSE handshake failed: {e}")))
        }
    }
}

/// How the mount went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// A plain umount(2) succeeded.
    Clean,
    /// The mount was busy and was detached (MNT_DETACH); it disappears with its last user.
    Detached,
    /// Someone else had already unmounted it.
    AlreadyGone,
}

/// Unmounts `path`: plainly, else lazily when it is busy.
pub fn unmount(path: &Path) -> io::Result<Unmounted> {
    match nix::mount::umount2(path, MntFlags::empty()) {
        Ok(()) => Ok(Unmounted::Clean),
        Err(Errno::EBUSY) => nix::mount::umount2(path, MntFlags::MNT_DETACH)
            .map(|()| Unmounted::Detached)
            .map_err(io::Error::from),
        Err(Errno::EINVAL) => Ok(Unmounted::AlreadyGone),
        Err(e) => Err(io::Error::from(e)),
    }
}
