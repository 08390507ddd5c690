//! The normal life of a helper: mount, serve files, go away on a signal or when killed.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Command;

use common::{stat_within, wait_until, Helper, DEADLINE, FS_TYPE};
use nix::sys::signal::Signal;

isolated_test! {
    fn mounts_at_vault_data_directory_with_fuse_subtype() {
        let h = Helper::start(|_| {});
        h.wait_mounted();
        let (fstype, source) = h.mounted().expect("mounted");
        assert_eq!(fstype, FS_TYPE);
        assert_eq!(source, "dms-testfs");
        let line = format!("mounted at {}", h.mountpoint.display());
        assert!(
            wait_until(DEADLINE, || h.stderr().contains(&line)),
            "stderr lacks {line:?}: {}",
            h.stderr()
        );
        let meta = fs::metadata(&h.mountpoint).expect("stat root");
        assert!(meta.is_dir());
    }
}

isolated_test! {
    fn files_round_trip_through_the_mount() {
        let h = Helper::start(|_| {});
        h.wait_mounted();
        let m = &h.mountpoint;

        // What a shell user does: echo x > file; cat file; ls; rm.
        let script = "set -e; cd \"$1\"; echo x > file; cat file; ls; rm file; ls";
        let out = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(m)
            .output()
            .expect("run sh");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x\nfile\n");

        fs::create_dir(m.join("d")).expect("mkdir");
        fs::write(m.join("d/a"), b"hello world").expect("write");
        assert_eq!(fs::read(m.join("d/a")).expect("read"), b"hello world");
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(m.join("d/a"))
            .expect("open");
        f.seek(SeekFrom::Start(6)).expect("seek");
        f.write_all(b"WORLD!").expect("overwrite");
        f.set_len(8).expect("truncate");
        let mut back = String::new();
        f.seek(SeekFrom::Start(0)).expect("seek");
        f.read_to_string(&mut back).expect("read back");
        assert_eq!(back, "hello WO");
        drop(f);

        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(m.join("big"), &big).expect("write big");
        assert_eq!(fs::metadata(m.join("big")).expect("stat").len(), big.len() as u64);
        assert!(fs::read(m.join("big")).expect("read big") == big);

        fs::rename(m.join("d/a"), m.join("b")).expect("rename");
        let mut names: Vec<String> = fs::read_dir(m)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        assert_eq!(names, ["b", "big", "d"]);
        assert_eq!(
            fs::remove_dir(m).map_err(|e| e.raw_os_error()).err(),
            Some(Some(libc::EBUSY))
        );
        assert!(fs::remove_dir(m.join("b")).is_err(), "rmdir of a file");
        fs::remove_file(m.join("b")).expect("unlink");
        fs::remove_file(m.join("big")).expect("unlink");
        fs::remove_dir(m.join("d")).expect("rmdir");
        assert_eq!(fs::read_dir(m).expect("readdir").count(), 0);
    }
}

fn stops_cleanly_on(sig: Signal) {
    let mut h = Helper::start(|_| {});
    h.wait_mounted();
    fs::write(h.mountpoint.join("f"), b"x").expect("write");
    h.signal(sig);
    let status = h.wait_exit(DEADLINE).expect("helper exits after the signal");
    assert_eq!(status.code(), Some(0), "stderr: {}", h.stderr());
    assert_eq!(h.mounted(), None, "still mounted after {sig}");
    assert!(!h.mountpoint.join("f").exists(), "mountpoint still shows the fs");
    assert!(h.stderr().contains("unmounted"), "stderr: {}", h.stderr());
}

isolated_test! {
    fn sigterm_unmounts_and_exits_zero() {
        stops_cleanly_on(Signal::SIGTERM);
    }
}

isolated_test! {
    fn sigint_unmounts_and_exits_zero() {
        stops_cleanly_on(Signal::SIGINT);
    }
}

isolated_test! {
    fn sigkill_leaves_a_dead_mount_that_umount_l_clears() {
        let mut h = Helper::start(|_| {});
        h.wait_mounted();
        h.signal(Signal::SIGKILL);
        h.wait_exit(DEADLINE).expect("killed helper exits");
        assert_eq!(h.mounted().map(|m| m.0), Some(FS_TYPE.to_owned()), "mount stays");
        let err = stat_within(&h.mountpoint, DEADLINE)
            .expect("stat on a dead mount returns at once")
            .expect_err("stat on a dead mount fails");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
        let out = Command::new("umount")
            .arg("-l")
            .arg(&h.mountpoint)
            .output()
            .expect("run umount -l");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(h.mounted(), None);
        assert!(fs::metadata(&h.mountpoint).expect("stat").is_dir());
    }
}

isolated_test! {
    fn external_umount_ends_the_helper_with_status_zero() {
        let mut h = Helper::start(|_| {});
        h.wait_mounted();
        let out = Command::new("umount")
            .arg(&h.mountpoint)
            .output()
            .expect("run umount");
        assert!(out.status.success(), "{out:?}");
        let status = h.wait_exit(DEADLINE).expect("helper exits when unmounted");
        assert_eq!(status.code(), Some(0), "stderr: {}", h.stderr());
    }
}
