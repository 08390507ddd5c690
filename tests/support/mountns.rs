//! Running a test body in a private mount namespace, and reading the mount table.
//!
//! Pattern: the test re-executes its own binary under
//! `unshare -m --propagation private <test-binary> --exact <name> --test-threads=1`,
//! with `DMS_TEST_MOUNT_NS=<name>` set. In the child the same test function finds the
//! variable and runs the body; mounts it makes live in the child's namespace only and
//! vanish when the child's processes exit, even if it crashes or is killed. The parent
//! waits (bounded), prints the child's output (libtest shows it on failure), and fails
//! unless the child ran exactly one test and it passed, so a misspelt name cannot pass
//! silently by running zero tests.
//!
//! ```ignore
//! #[test]
//! fn s3fs_mount_roundtrip() {
//!     support::mountns::run_isolated("s3fs_mount_roundtrip", || {
//!         // ... mount things; runs in the child only
//!     });
//! }
//! ```
//!
//! `name` is the test function's name, or its path as libtest prints it (`module::test`).
//! The child is asked for the full path, which libtest gives the thread it runs each test
//! on: a test `server_e2e::x` of the one integration binary passes just `"x"`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::proc::GroupChild;

const ENV: &str = "DMS_TEST_MOUNT_NS";

/// Whether this process is the re-executed child running `name`.
pub fn is_isolated_child(name: &str) -> bool {
    std::env::var(ENV).is_ok_and(|v| v == full_name(name))
}

/// The running test's path as libtest prints it, when `name` is its tail (libtest names
/// each test's thread after the test); `name` itself otherwise, which the parent then
/// fails on as a name that ran no test.
fn full_name(name: &str) -> String {
    match std::thread::current().name() {
        Some(test) if test == name || test.ends_with(&format!("::{name}")) => test.to_owned(),
        _ => name.to_owned(),
    }
}

/// Runs `body` in a private mount namespace (see the module docs), with a 300 s limit.
pub fn run_isolated(name: &str, body: impl FnOnce()) {
    run_isolated_with_timeout(name, Duration::from_secs(300), body);
}

/// [`run_isolated`] with an explicit time limit for the child.
pub fn run_isolated_with_timeout(name: &str, timeout: Duration, body: impl FnOnce()) {
    if is_isolated_child(name) {
        body();
        return;
    }
    let name = &full_name(name);
    let exe = std::env::current_exe().expect("current_exe");
    let dir = super::temp_dir("dms-mountns-");
    let log = dir.path().join("child.log");
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "--"])
        .arg(&exe)
        // `--include-ignored`: an #[ignore]d test run on purpose (`--run-ignored`) runs in the
        // child too; `--exact` already limits the child to this one test.
        .args(["--exact", name, "--include-ignored", "--test-threads=1", "--nocapture"])
        .env(ENV, name);
    let mut child = GroupChild::spawn("isolated test child", cmd, &log);
    let status = child.wait_timeout(timeout);
    if status.is_none() {
        child.kill();
    }
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    println!("----- output of {name} in a private mount namespace -----\n{out}");
    match status {
        None => panic!("{name} in a private mount namespace timed out after {timeout:?}"),
        Some(st) => {
            assert!(st.success(), "{name} failed in its private mount namespace ({st})");
            assert!(
                out.contains("test result: ok. 1 passed"),
                "the re-executed child did not run exactly one passing test named {name:?}"
            );
        }
    }
}

/// One line of `/proc/self/mountinfo`, the fields the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
}

/// The entries of `/proc/self/mountinfo`, read with the daemon's own parser (one copy of
/// it: a test that parsed differently could agree with itself and not with the daemon).
pub fn mounts() -> Vec<MountEntry> {
    let table = dms::host::mount_table::read().expect("read and parse mountinfo");
    table
        .into_iter()
        .map(|m| MountEntry { mount_point: m.mount_point, fs_type: m.fstype, source: m.source })
        .collect()
}

/// The last (topmost) mount entry at `path`, if any.
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    let p = path.to_string_lossy();
    mounts().into_iter().rev().find(|m| m.mount_point == p)
}

/// Waits until a mount of type `fs_type` (e.g. `fuse.s3fs`) is at `path`.
pub fn wait_for_mount(path: &Path, fs_type: &str, timeout: Duration) -> Result<MountEntry, String> {
    super::wait_for(&format!("a {fs_type} mount at {}", path.display()), timeout, || {
        mount_at(path).filter(|m| m.fs_type == fs_type)
    })
}

/// Waits until nothing is mounted at `path`.
pub fn wait_for_unmount(path: &Path, timeout: Duration) -> Result<(), String> {
    super::wait_for(&format!("{} to be unmounted", path.display()), timeout, || {
        mount_at(path).is_none().then_some(())
    })
}

/// A filesystem mounted by a test, detached (lazily) when dropped.
#[must_use]
pub struct Mounted(pub std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A fresh ext4 image of `size` bytes at `image`, loop-mounted at `at` (the loop device goes
/// with the mount). For a test in a private namespace that needs a real disk filesystem.
pub fn loop_ext4(image: &Path, size: u64, at: &Path) -> Mounted {
    std::fs::File::create(image).and_then(|f| f.set_len(size)).expect("create the image");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run mkfs.ext4/mount");
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image));
    std::fs::create_dir_all(at).expect("create the mount point");
    run(Command::new("mount").args(["-t", "ext4", "-o", "loop"]).arg(image).arg(at));
    Mounted(at.to_path_buf())
}
