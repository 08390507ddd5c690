//! The guard on a real ext4 (a loop-mounted image) and on a filesystem without the flag
//! (ramfs), each inside a private mount namespace of its own.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::exec::mounts::tests::{isolated_in, mb, tempdir, Mounted};
use std::io::ErrorKind;
use std::process::Command;

fn isolated(name: &str) -> bool {
    isolated_in(module_path!(), name)
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?}: {err}");
}

/// Mount a filesystem of `fstype` at `at` (`image`: a fresh ext4 image, through a loop
/// device that goes with the mount).
fn mount(fstype: &str, image: Option<&Path>, at: &Path) -> Mounted {
    std::fs::create_dir_all(at).unwrap();
    let at_s = at.to_str().unwrap();
    match image {
        Some(img) => {
            std::fs::File::create(img).unwrap().set_len(32 << 20).unwrap();
            run("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]);
            run("mount", &["-t", fstype, "-o", "loop", img.to_str().unwrap(), at_s]);
        }
        None => run("mount", &["-t", fstype, fstype, at_s]),
    }
    Mounted(at_s.to_owned())
}

/// Whether creating a file and a directory in `dir` is refused with EPERM (what the guard
/// answers); what it could create, it removes again.
fn refuses_writes(dir: &Path) -> bool {
    let file = std::fs::write(dir.join("backup.img"), b"data");
    let sub = std::fs::create_dir(dir.join("sub"));
    match (file, sub) {
        (Err(f), Err(s)) => {
            assert_eq!(f.kind(), ErrorKind::PermissionDenied, "{f}");
            assert_eq!(s.kind(), ErrorKind::PermissionDenied, "{s}");
            true
        }
        (Ok(()), Ok(())) => {
            std::fs::remove_file(dir.join("backup.img")).unwrap();
            std::fs::remove_dir(dir.join("sub")).unwrap();
            false
        }
        other => panic!("half guarded: {other:?}"),
    }
}

#[test]
fn given_ext4_when_a_mount_point_is_prepared_then_it_refuses_writes_until_mounted_over_and_again_after_a_lazy_detach(
) {
    if !isolated("given_ext4_when_a_mount_point_is_prepared_then_it_refuses_writes_until_mounted_over_and_again_after_a_lazy_detach") {
        return;
    }
    let dir = tempdir();
    let _disk = mount("ext4", Some(&dir.path().join("disk.img")), &dir.path().join("ext4"));
    let base = dir.path().join("ext4/mounts");
    let t1 = base.join("t1");

    assert_eq!(prepare_mount_point(&mb(&base), &t1).unwrap(), Guard::Guarded);
    assert!(refuses_writes(&t1), "a bare mount point takes no writes");
    assert_eq!(prepare_mount_point(&mb(&base), &t1).unwrap(), Guard::Guarded, "again: same");
    assert!(!refuses_writes(&base), "the base itself is not guarded");

    // Mounting over the guarded directory works, and writes go to the mount.
    let over = mount("tmpfs", None, &t1);
    assert!(!refuses_writes(&t1), "the mount over it takes writes");
    assert_eq!(prepare_mount_point(&mb(&base), &t1).unwrap(), Guard::MountedOver);
    assert!(!refuses_writes(&t1), "preparing again left the mount's own root alone");
    let err = remove_mount_point(&mb(&base), &t1).unwrap_err();
    assert!(matches!(err, MountPointError::MountedOver { .. }), "{err:?}");
    assert!(err.to_string().ends_with("is mounted over; not removed"), "{err}");

    // The mount goes away behind the daemon's back (a lazy detach): guarded again.
    run("umount", &["-l", t1.to_str().unwrap()]);
    std::mem::forget(over);
    assert!(refuses_writes(&t1), "after the detach the bare directory refuses writes again");

    // Removed on request; a directory with something in it stays, guarded.
    remove_mount_point(&mb(&base), &t1).unwrap();
    assert!(!t1.exists());
    remove_mount_point(&mb(&base), &t1).unwrap();
    let t2 = base.join("t2");
    std::fs::create_dir_all(&t2).unwrap();
    std::fs::write(t2.join("left-by-hand"), b"x").unwrap();
    assert_eq!(prepare_mount_point(&mb(&base), &t2).unwrap(), Guard::Guarded);
    remove_mount_point(&mb(&base), &t2).unwrap();
    assert!(t2.join("left-by-hand").exists(), "a non-empty directory is not removed");
    assert!(refuses_writes(&t2), "and stays guarded");

    // A directory made by hand (or by an earlier version) is guarded once found bare.
    let t3 = base.join("t3");
    std::fs::create_dir_all(&t3).unwrap();
    assert!(!refuses_writes(&t3));
    assert_eq!(guard_mount_point(&mb(&base), &t3).unwrap(), Some(Guard::Guarded));
    assert!(refuses_writes(&t3));
    assert_eq!(guard_mount_point(&mb(&base), &base.join("none")).unwrap(), None);
}

#[test]
fn given_a_filesystem_without_the_flag_when_prepared_then_unguarded_and_the_mount_point_still_works(
) {
    if !isolated("given_a_filesystem_without_the_flag_when_prepared_then_unguarded_and_the_mount_point_still_works") {
        return;
    }
    let dir = tempdir();
    let _ram = mount("ramfs", None, &dir.path().join("ram"));
    let base = dir.path().join("ram/mounts");
    let t1 = base.join("t1");
    let guard = prepare_mount_point(&mb(&base), &t1).unwrap();
    assert!(matches!(guard, Guard::Unguarded(_)), "{guard:?}");
    assert!(!refuses_writes(&t1), "unguarded: writable, as before the guard existed");
    remove_mount_point(&mb(&base), &t1).unwrap();
    assert!(!t1.exists());
}
