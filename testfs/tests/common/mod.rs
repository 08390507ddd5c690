//! Shared test machinery: run each test body in private mount and PID namespaces, start
//! the helper with an explicit environment, and clean up with Drop guards.
//!
//! Isolation: the outer test re-executes this test binary, filtered to the one test, under
//! `unshare --mount --propagation private --pid --fork --kill-child --mount-proc`. Mounts
//! made inside never reach the machine's mount table, and the test body runs as PID 1 of
//! its own PID namespace: when it ends (or is killed, or `unshare` is), the kernel kills
//! every helper it started, so nothing outlives the test even if a Drop guard never runs.
#![allow(dead_code)] // each test file uses a different part of this module

pub mod powercut;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

pub const HELPER: &str = env!("CARGO_BIN_EXE_dms-testfs");
pub const FS_TYPE: &str = "fuse.dms-testfs";
/// Set (to the outer mount namespace) in the re-executed child that runs a test body.
const IN_NS_VAR: &str = "DMS_TESTFS_TEST_OUTER_MNT_NS";
/// Upper bound for one isolated test, child start-up included.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// Upper bound for anything a test polls for.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `body` in fresh mount and PID namespaces; `name` must be the test function's name.
pub fn isolated(name: &str, body: impl FnOnce()) {
    let here = fs::read_link("/proc/self/ns/mnt").expect("read own mount namespace");
    if let Some(outer) = std::env::var_os(IN_NS_VAR) {
        assert_ne!(here.as_os_str(), outer, "not in a private mount namespace");
        body();
        return;
    }
    let out_dir = TempDir::new().expect("tempdir");
    let out_path = out_dir.path().join("child.out");
    let out = File::create(&out_path).expect("child output file");
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--pid", "--fork"])
        .args(["--kill-child", "--mount-proc", "--"])
        .arg(std::env::current_exe().expect("current_exe"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NS_VAR, &here)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("spawn unshare (util-linux)");
    let status = wait_exit(&mut child, CHILD_DEADLINE);
    if status.is_none() {
        let _ = child.kill(); // --kill-child takes the namespace's processes with it
        let _ = child.wait();
    }
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    println!("--- isolated child output ---\n{output}--- end ---");
    let status =
        status.unwrap_or_else(|| panic!("isolated test {name} exceeded {CHILD_DEADLINE:?}"));
    assert!(status.success(), "isolated test {name} failed: {status}");
    assert!(
        output.contains("test result: ok. 1 passed"),
        "isolated child did not run exactly one test named {name}"
    );
}

/// Declares a `#[test]` whose body runs inside [`isolated`].
#[macro_export]
macro_rules! isolated_test {
    ($(#[$meta:meta])* fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            common::isolated(stringify!($name), || $body);
        }
    };
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit, at most `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(within, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

/// `(fstype, source)` of the mount at `path` in this mount namespace, if any. Reading
/// mountinfo never touches the FUSE server, so it is safe on hung and dead mounts.
pub fn mount_at(path: &Path) -> Option<(String, String)> {
    let table = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let want = path.to_str().expect("utf-8 path");
    table.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if left.split(' ').nth(4)? != want {
            return None;
        }
        let mut right = right.split(' ');
        Some((right.next()?.to_owned(), right.next()?.to_owned()))
    })
}

/// `stat(path)` in a thread: `None` if it has not returned within `within` (the thread is
/// then left blocked; it ends when the FUSE connection is aborted).
pub fn stat_within(path: &Path, within: Duration) -> Option<std::io::Result<fs::Metadata>> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_owned();
    thread::spawn(move || {
        let _ = tx.send(fs::metadata(path));
    });
    rx.recv_timeout(within).ok()
}

/// A running `dms-testfs` with its own mount directory; killed and lazily unmounted on drop.
pub struct Helper {
    pub child: Child,
    pub mountpoint: PathBuf,
    stderr_path: PathBuf,
    _dir: TempDir,
}

/// The environment the daemon gives a helper (the relevant part), keys included.
pub fn daemon_env(mountpoint: &Path) -> Vec<(String, String)> {
    [
        ("vault_data_directory", mountpoint.to_str().expect("utf-8")),
        ("vault_s3_bucket", "bucket-1"),
        ("vault_s3_region_name", "us-west-2"),
        ("AWS_ACCESS_KEY_ID", "AKIDTESTFS"),
        ("AWS_SECRET_ACCESS_KEY", "secret-TESTFS-value"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Helper {
    /// Starts the helper with `edit` applied to [`daemon_env`]; nothing else is inherited.
    pub fn start(edit: impl FnOnce(&mut Vec<(String, String)>)) -> Helper {
        let dir = TempDir::new().expect("tempdir");
        let mountpoint = dir.path().join("mnt");
        fs::create_dir(&mountpoint).expect("mkdir mountpoint");
        let stderr_path = dir.path().join("helper.stderr");
        let mut env = daemon_env(&mountpoint);
        edit(&mut env);
        let child = Command::new(HELPER)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn dms-testfs");
        Helper { child, mountpoint, stderr_path, _dir: dir }
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        kill(pid, sig).expect("signal helper");
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, within)
    }

    pub fn mounted(&self) -> Option<(String, String)> {
        mount_at(&self.mountpoint)
    }

    /// Waits until the mount shows up; panics with the helper's stderr otherwise.
    pub fn wait_mounted(&self) {
        assert!(
            wait_until(DEADLINE, || self.mounted().is_some()),
            "no mount within {DEADLINE:?}; helper stderr:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed helper leaves a dead mount; detach it (stacked mounts too).
        for _ in 0..8 {
            if mount_at(&self.mountpoint).is_none() {
                break;
            }
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
