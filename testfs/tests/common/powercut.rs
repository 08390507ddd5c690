//! Test rig for `dms-powercutfs`: a temporary backing directory and mount point that
//! outlive any number of starts of the filesystem, a guard per start that kills it and
//! detaches its mount when dropped, and helpers to fsync and to compare whole trees.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::{mount_at, wait_exit, wait_until, DEADLINE};

pub const POWERCUTFS: &str = env!("CARGO_BIN_EXE_dms-powercutfs");
pub const FS_TYPE: &str = "fuse.dms-powercutfs";

/// A backing directory (`backing`) and a mount point (`mnt`) in one temporary directory.
/// Declare it before the [`CutFs`] guards: they must go (and unmount) first.
pub struct Rig {
    pub backing: PathBuf,
    pub mnt: PathBuf,
    dir: TempDir,
    starts: u32,
}

impl Rig {
    pub fn new() -> Rig {
        let dir = TempDir::new().expect("tempdir");
        let backing = dir.path().join("backing");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&backing).expect("mkdir backing");
        fs::create_dir(&mnt).expect("mkdir mnt");
        Rig { backing, mnt, dir, starts: 0 }
    }

    /// Starts `dms-powercutfs` with `args`, stderr to a file of its own.
    pub fn spawn(&mut self, args: &[&Path]) -> CutFs {
        self.starts += 1;
        let stderr_path = self.dir.path().join(format!("powercutfs.{}.stderr", self.starts));
        let child = Command::new(POWERCUTFS)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn dms-powercutfs");
        CutFs { child, mnt: self.mnt.clone(), stderr_path }
    }

    /// Starts it on this rig's directories and waits for the mount.
    pub fn start(&mut self) -> CutFs {
        let (backing, mnt) = (self.backing.clone(), self.mnt.clone());
        let fs = self.spawn(&[&backing, &mnt]);
        assert!(
            wait_until(DEADLINE, || mount_at(&mnt).is_some()),
            "no mount within {DEADLINE:?}; stderr:\n{}",
            fs.stderr()
        );
        fs
    }

    /// The backing directory's tree, which holds only what the last stop wrote.
    pub fn backing_tree(&self) -> Tree {
        tree(&self.backing)
    }
}

/// One running `dms-powercutfs`; killed, and its mount detached, on drop.
pub struct CutFs {
    pub child: Child,
    pub mnt: PathBuf,
    stderr_path: PathBuf,
}

impl CutFs {
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        kill(pid, sig).expect("signal dms-powercutfs");
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, within)
    }

    /// Waits for a zero exit status and the mount to be gone; returns stderr.
    pub fn expect_exit_zero(mut self) -> String {
        let status = self.wait_exit(DEADLINE);
        let stderr = self.stderr();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "exit status; stderr:\n{stderr}");
        assert_eq!(mount_at(&self.mnt), None, "still mounted; stderr:\n{stderr}");
        stderr
    }

    /// Sends `sig`, then as [`CutFs::expect_exit_zero`].
    pub fn stop(self, sig: Signal) -> String {
        self.signal(sig);
        self.expect_exit_zero()
    }

    /// Cuts the power (SIGUSR1); returns stderr, which must report the cut.
    pub fn cut(self) -> String {
        let stderr = self.stop(Signal::SIGUSR1);
        assert!(stderr.contains("power cut: kept"), "stderr:\n{stderr}");
        stderr
    }
}

impl Drop for CutFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..8 {
            if mount_at(&self.mnt).is_none() {
                break;
            }
            let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Every path below a root: `Some(content)` for a file, `None` for a directory.
pub type Tree = BTreeMap<String, Option<Vec<u8>>>;

pub fn tree(root: &Path) -> Tree {
    fn walk(dir: &Path, prefix: &str, out: &mut Tree) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().into_string().expect("utf-8 name");
            let path = format!("{prefix}{name}");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                out.insert(path.clone(), None);
                walk(&entry.path(), &format!("{path}/"), out);
            } else {
                assert!(kind.is_file(), "{path} is neither a file nor a directory");
                out.insert(path, Some(fs::read(entry.path()).expect("read")));
            }
        }
    }
    let mut out = Tree::new();
    walk(root, "", &mut out);
    out
}

/// A [`Tree`] from `(path, Some(content))` for files and `(path, None)` for directories.
pub fn expect_tree(entries: &[(&str, Option<&str>)]) -> Tree {
    entries.iter().map(|(p, c)| ((*p).to_owned(), c.map(|c| c.as_bytes().to_vec()))).collect()
}

/// Creates (or truncates) `path` with `content` and fsyncs it; not its directory.
pub fn write_synced(path: &Path, content: &[u8]) {
    let file = File::create(path).expect("create");
    std::io::Write::write_all(&mut &file, content).expect("write");
    file.sync_all().expect("fsync");
}

/// fsync of a directory (FUSE `fsyncdir`).
pub fn fsync_dir(path: &Path) {
    File::open(path).expect("open dir").sync_all().expect("fsync dir");
}
