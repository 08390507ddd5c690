//! Real mounts, each test inside a private mount namespace of its own: the test re-runs
//! itself under `unshare -m --propagation private`, so nothing it mounts is visible to the
//! machine or to other tests, and everything vanishes when it ends.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::exec::command::Program;
use dms_journal::MountBase;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const INSIDE: &str = "DMS_TEST_PRIVATE_NS";

/// `true` inside the namespace (run the body); outside, run the test there and check it.
fn isolated(name: &str) -> bool {
    isolated_in(module_path!(), name)
}

/// [`isolated`] for the test `name` of the test module `module` (its `module_path!()`).
pub(crate) fn isolated_in(module: &str, name: &str) -> bool {
    if std::env::var(INSIDE).as_deref() == Ok(name) {
        return true;
    }
    let full = format!("{}::{name}", module.split_once("::").map_or("", |(_, rest)| rest));
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        // Through /proc: the file may be replaced by a rebuild while the tests run.
        .arg(format!("/proc/{}/exe", std::process::id()))
        .args([full.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, name)
        .output()
        .expect("unshare(1) from util-linux is required for mount tests");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains("1 passed"),
        "isolated run of {full} failed:\n{text}"
    );
    false
}

/// A mount at a path (a tmpfs, an ext4 image), detached when dropped, before the test's
/// temp dir goes: a mount left inside makes the temp dir's removal fail, and the directory
/// outlives the test on the host (the namespace takes only the mount with it).
#[must_use]
pub(crate) struct Mounted(pub(crate) String);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-l", self.0.as_str()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn tmpfs(path: &str) -> Mounted {
    std::fs::create_dir_all(path).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", path])
        .status()
        .unwrap();
    assert!(ok.success());
    Mounted(path.to_owned())
}

/// A temp dir whose mount points (guarded by [`prepare_mount_point`]) are unguarded first
/// when it goes, or its removal would fail and leave it on the host.
pub(crate) struct Tmp(tempfile::TempDir);

impl Tmp {
    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        unguard_tree(self.0.path());
    }
}

/// `chattr -R -i`: what an operator runs to remove guarded mount points by hand.
pub(crate) fn unguard_tree(root: &Path) {
    let _ = Command::new("chattr")
        .args(["-R", "-f", "-i"])
        .arg(root)
        .stderr(std::process::Stdio::null())
        .status();
}

pub(crate) fn tempdir() -> Tmp {
    Tmp(tempfile::tempdir().unwrap())
}

/// mount(8) and umount(8) are awaited: each call gets a runtime of its own.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(future)
}

/// A temporary directory as the mount base.
pub(crate) fn mb(dir: &Path) -> MountBase {
    MountBase::new(dir.to_str().unwrap()).unwrap()
}

fn mounter(dir: &Path) -> Mounter {
    Mounter {
        mount_base: mb(dir),
        mount: Program::new("mount"),
        umount: Program::new("umount"),
        mount_timeout: Duration::from_secs(10),
        umount_timeout: Duration::from_secs(10),
        fs_types: dms_journal::FsTypes::default(),
    }
}

#[test]
fn given_a_mount_that_appears_later_when_waiting_then_it_is_seen_and_probed() {
    if !isolated("given_a_mount_that_appears_later_when_waiting_then_it_is_seen_and_probed") {
        return;
    }
    let dir = tempdir();
    let path = dir.path().join("t").to_str().unwrap().to_owned();
    let later = path.clone();
    let mounter_thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        tmpfs(&later)
    });
    let started = Instant::now();
    wait_for_mount(&path, MountKind::Any, None, Duration::from_secs(10)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    let _mounted = mounter_thread.join().unwrap();
    assert_eq!(mount_at(&path).unwrap().unwrap().fstype, "tmpfs");
}

#[test]
fn given_no_mount_or_the_wrong_kind_when_waiting_then_a_failure_with_the_reason() {
    if !isolated("given_no_mount_or_the_wrong_kind_when_waiting_then_a_failure_with_the_reason") {
        return;
    }
    let dir = tempdir();
    let path = dir.path().join("t").to_str().unwrap().to_owned();
    let err = wait_for_mount(&path, MountKind::Any, None, Duration::from_millis(300)).unwrap_err();
    assert!(err.reason.starts_with("no mount at"), "{}", err.reason);
    let _mounted = tmpfs(&path);
    let err = wait_for_mount(&path, MountKind::Fuse, None, Duration::from_secs(5)).unwrap_err();
    assert!(err.reason.contains("tmpfs mount, not the expected kind"), "{}", err.reason);
}

#[test]
fn given_a_helper_that_exits_without_mounting_when_waiting_then_it_fails_fast() {
    if !isolated("given_a_helper_that_exits_without_mounting_when_waiting_then_it_fails_fast") {
        return;
    }
    let dir = tempdir();
    let path = dir.path().join("t").to_str().unwrap().to_owned();
    let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    let started = Instant::now();
    let err =
        wait_for_mount(&path, MountKind::Any, Some(&pidfd), Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.reason, "the helper exited before mounting");
    assert!(!err.maybe_mounted);
    assert!(started.elapsed() < Duration::from_secs(10), "did not wait for the deadline");
    child.wait().unwrap();
}

#[test]
fn given_a_mount_when_unmounted_then_the_table_confirms_the_directory_goes_and_repeats_are_fine() {
    if !isolated("given_a_mount_when_unmounted_then_the_table_confirms_the_directory_goes_and_repeats_are_fine") {
        return;
    }
    let dir = tempdir();
    let path = dir.path().join("t").to_str().unwrap().to_owned();
    let _mounted = tmpfs(&path);
    let m = mounter(dir.path());
    block_on(m.unmount(&path, false)).result.unwrap();
    assert!(mount_at(&path).unwrap().is_none());
    assert!(Path::new(&path).is_dir(), "unmounting alone keeps the directory");
    let write = std::fs::write(Path::new(&path).join("f"), b"x");
    assert!(write.is_err(), "and guards it (/tmp: ext4 or tmpfs, which have the flag): {write:?}");
    m.remove_mount_point(&path).unwrap();
    assert!(!Path::new(&path).exists(), "the empty mount directory is removed");
    block_on(m.unmount(&path, false)).result.unwrap();
    m.remove_mount_point(&path).unwrap();
}

#[test]
fn given_a_bind_mount_of_the_parents_own_filesystem_then_the_look_still_sees_it_and_unmount_removes_it(
) {
    if !isolated("given_a_bind_mount_of_the_parents_own_filesystem_then_the_look_still_sees_it_and_unmount_removes_it") {
        return;
    }
    // Same device as the parent: only the mount id tells that something is mounted here.
    let dir = tempdir();
    let source = dir.path().join("src");
    let path = dir.path().join("t").to_str().unwrap().to_owned();
    std::fs::create_dir_all(&source).unwrap();
    std::fs::create_dir_all(&path).unwrap();
    assert!(!is_mounted(&path, Duration::from_secs(5)), "a plain directory is no mount");
    assert_eq!(look(&path, Duration::from_secs(5)), Ok(Look::Absent));
    let ok = Command::new("mount").arg("--bind").arg(&source).arg(&path).status().unwrap();
    assert!(ok.success());
    assert!(mount_at(&path).unwrap().is_some(), "the table has the bind mount");
    assert!(is_mounted(&path, Duration::from_secs(5)));
    let seen = look(&path, Duration::from_secs(5));
    assert!(matches!(seen, Ok(Look::Mounted { .. })), "the look agrees with the table: {seen:?}");
    block_on(mounter(dir.path()).unmount(&path, false)).result.unwrap();
    assert!(mount_at(&path).unwrap().is_none());
    assert!(!is_mounted(&path, Duration::from_secs(5)));
    assert_eq!(look(&path, Duration::from_secs(5)), Ok(Look::Absent));
    assert!(!is_mounted(&format!("{path}/missing"), Duration::from_secs(5)));
    assert_eq!(look(&format!("{path}/missing"), Duration::from_secs(5)), Ok(Look::Absent));
}

#[test]
fn given_a_busy_mount_when_unmounted_then_lazy_detach_is_the_last_resort() {
    if !isolated("given_a_busy_mount_when_unmounted_then_lazy_detach_is_the_last_resort") {
        return;
    }
    let dir = tempdir();
    let path = dir.path().join("t").to_str().unwrap().to_owned();
    let _mounted = tmpfs(&path);
    let mut busy = Command::new("sleep").arg("30").current_dir(&path).spawn().unwrap();
    block_on(mounter(dir.path()).unmount(&path, true)).result.unwrap();
    assert!(mount_at(&path).unwrap().is_none());
    busy.kill().unwrap();
    busy.wait().unwrap();
}

#[test]
fn given_this_kernel_without_nfs_when_mount_8_runs_then_its_error_is_the_reason() {
    if !isolated("given_this_kernel_without_nfs_when_mount_8_runs_then_its_error_is_the_reason") {
        return;
    }
    let dir = tempdir();
    let path = dir.path().join("n").to_str().unwrap().to_owned();
    let mounter = mounter(dir.path());
    let nfs =
        mounter.mount_nfs("127.0.0.1:/exports/none", "nosuid,nodev,soft,timeo=1,retrans=0", &path);
    let err = block_on(nfs).result.unwrap_err();
    assert!(!err.reason.is_empty());
    assert!(mount_at(&path).unwrap().is_none());
}

#[test]
fn given_a_hanging_mount_program_when_mounting_nfs_then_the_deadline_kills_it() {
    if !isolated("given_a_hanging_mount_program_when_mounting_nfs_then_the_deadline_kills_it") {
        return;
    }
    let dir = tempdir();
    let stand_in = dir.path().join("hang-mount");
    std::fs::write(&stand_in, "#!/bin/sh\nsleep 30\n").unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut m = mounter(dir.path());
    m.mount = Program::new(stand_in);
    m.mount_timeout = Duration::from_millis(300);
    let path = dir.path().join("n").to_str().unwrap().to_owned();
    let ran = block_on(m.mount_nfs("h:/x", "nosuid,nodev", &path));
    assert!(matches!(&ran.heard, Heard::TimedOut(t) if t.contains("did not finish")), "{ran:?}");
    let err = ran.result.unwrap_err();
    assert!(err.maybe_mounted, "a killed mount(8) may have mounted");
    assert!(err.reason.contains("did not finish"), "{}", err.reason);
}

#[test]
fn given_a_symlink_inside_the_base_when_preparing_a_mount_point_then_refused_and_nothing_created_outside(
) {
    let dir = tempdir();
    let base = dir.path().join("base");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, base.join("evil")).unwrap();
    let err = prepare_mount_point(&mb(&base), &base.join("evil/t1")).unwrap_err();
    assert!(matches!(err, MountPointError::Symlink { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{} is a symlink; refusing to mount through it", base.join("evil").display())
    );
    assert!(!outside.join("t1").exists(), "nothing was created through the symlink");
    std::os::unix::fs::symlink(&outside, base.join("t2")).unwrap();
    let err = prepare_mount_point(&mb(&base), &base.join("t2")).unwrap_err();
    assert!(matches!(err, MountPointError::Symlink { .. }), "{err:?}");
    std::fs::write(base.join("file"), b"x").unwrap();
    let err = prepare_mount_point(&mb(&base), &base.join("file")).unwrap_err();
    assert!(err.to_string().ends_with("/file exists and is not a directory"), "{err}");
    assert!(prepare_mount_point(&mb(&base), &dir.path().join("elsewhere")).is_err());
    assert!(
        prepare_mount_point(&mb(&base), &base).is_err(),
        "the base itself is not a mount point"
    );
    prepare_mount_point(&mb(&base), &base.join("a/b")).unwrap();
    assert!(base.join("a/b").is_dir());
    prepare_mount_point(&mb(&base), &base.join("a/b")).unwrap();
}

#[test]
fn given_a_component_swapped_for_a_symlink_meanwhile_when_preparing_then_nothing_lands_outside() {
    let dir = tempdir();
    let base = dir.path().join("base");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(base.join("x")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Swap base/x atomically between a real directory and a symlink to `outside`
    // (RENAME_EXCHANGE: x always exists), as fast as it goes.
    let flipper = {
        let (stop, base, outside) = (stop.clone(), base.clone(), outside.clone());
        std::thread::spawn(move || {
            let (x, link) = (base.join("x"), base.join("x.link"));
            std::os::unix::fs::symlink(&outside, &link).unwrap();
            let (cwd, exchange) = (rustix::fs::CWD, rustix::fs::RenameFlags::EXCHANGE);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rustix::fs::renameat_with(cwd, &x, cwd, &link, exchange).unwrap();
            }
        })
    };
    // At least 3000 walks, and on until one got through: on a loaded machine a run of
    // thousands can meet the symlink every time (the test once failed that way).
    let (mut made, mut refused) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        if i >= 3000 && (made > 0 || Instant::now() > deadline) {
            break;
        }
        match prepare_mount_point(&mb(&base), &base.join(format!("x/t{i}"))) {
            Ok(_) => made += 1,
            Err(_) => refused += 1,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    let escaped = std::fs::read_dir(&outside).unwrap().count();
    assert_eq!(escaped, 0, "created through the symlink ({made} made, {refused} refused)");
    assert!(made > 0, "the walk never got through ({refused} refused)");
}

/// Nothing mounted, or no directory at all (removed by hand): the detach has nothing to do
/// and says so by succeeding; the path is bare either way.
#[test]
fn given_a_bare_or_missing_path_when_detached_then_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let m = mounter(dir.path());
    let bare = dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    m.detach(bare.to_str().unwrap()).unwrap();
    m.detach(dir.path().join("missing").to_str().unwrap()).unwrap();
}

/// The typed errors render exactly the reasons the journal and the replies have always
/// carried ("Unmount failed: still mounted", ...).
#[test]
fn given_each_unmount_failure_then_its_text_is_the_reason_as_before() {
    let path = "/b/t".to_owned();
    assert_eq!(MountError::StillMounted { path: path.clone() }.to_string(), "still mounted");
    let busy = rustix::io::Errno::BUSY;
    let detach = MountError::Detach { path: path.clone(), errno: busy };
    assert_eq!(detach.to_string(), format!("cannot detach /b/t: {busy}"));
    let tries = MountError::Detached { path, tries: DETACH_TRIES };
    assert_eq!(tries.to_string(), "/b/t is still mounted after 4 detaches");
    let timeout = Duration::from_secs(2);
    let run = RunError::Timeout { program: "umount".into(), timeout };
    assert_eq!(MountError::from(run).to_string(), "umount did not finish within 2s and was killed");
    let outside = MountPointError::NotInside { path: "/x".into(), base: mb(Path::new("/b")) };
    assert_eq!(MountError::from(outside).to_string(), "/x is not inside /b");
}
