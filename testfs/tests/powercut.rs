//! `dms-powercutfs` through a real mount: what survives a power cut (SIGUSR1) and a clean
//! stop, and what the backing directory holds afterwards. Each test runs in private mount
//! and PID namespaces (`isolated_test!`).

mod common;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::powercut::{expect_tree, fsync_dir, tree, write_synced, Rig, FS_TYPE};
use common::{mount_at, DEADLINE};
use nix::sys::signal::Signal;

fn open_rw(path: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(path).expect("open rw")
}

isolated_test! {
    fn fsynced_data_in_a_durable_name_survives_and_unsynced_data_does_not() {
        let mut rig = Rig::new();
        let fs = rig.start();
        assert_eq!(mount_at(&rig.mnt).map(|m| m.0), Some(FS_TYPE.to_owned()));
        assert!(fs.stderr().contains(&format!("mounted at {}", rig.mnt.display())));
        let m = rig.mnt.clone();
        fs::create_dir(m.join("d")).expect("mkdir");
        fsync_dir(&m);
        write_synced(&m.join("d/f"), b"v1");
        fsync_dir(&m.join("d"));
        open_rw(&m.join("d/f")).write_all_at(b"v2, longer", 0).expect("unsynced write");
        // syncfs(2) makes nothing durable here.
        let out = Command::new("sync").arg("-f").arg(m.join("d/f")).output().expect("run sync");
        assert!(out.status.success(), "{out:?}");

        // g: synced at ten bytes, then truncated without a sync.
        write_synced(&m.join("g"), b"0123456789");
        // h: three pages, then shrunk to one byte and fdatasync'ed, then grown unsynced.
        let h = File::create(m.join("h")).expect("create");
        h.write_all_at(&vec![b'h'; 3 * 4096], 0).expect("write");
        h.set_len(1).expect("truncate");
        h.sync_data().expect("fdatasync");
        h.write_all_at(b"more", 8000).expect("unsynced write");
        fsync_dir(&m);
        open_rw(&m.join("g")).set_len(3).expect("unsynced truncate");
        assert_eq!(fs::read(m.join("g")).expect("read"), b"012", "the live image");
        drop(h);

        fs.cut();
        let want = expect_tree(&[
            ("d", None),
            ("d/f", Some("v1")),
            ("g", Some("0123456789")),
            ("h", Some("h")),
        ]);
        assert_eq!(rig.backing_tree(), want);
    }
}

isolated_test! {
    fn a_new_name_survives_only_after_its_directory_fsync() {
        let mut rig = Rig::new();
        let m = rig.mnt.clone();
        let fs = rig.start();
        write_synced(&m.join("a"), b"data synced, name not");
        fs::create_dir(m.join("sub")).expect("mkdir");
        write_synced(&m.join("sub/x"), b"x");
        fsync_dir(&m.join("sub")); // sub's entries are durable, sub's name is not
        fs.cut();
        assert_eq!(rig.backing_tree(), expect_tree(&[]));

        let fs = rig.start();
        assert_eq!(tree(&m), expect_tree(&[]));
        write_synced(&m.join("b"), b"b");
        fsync_dir(&m);
        fs.cut();
        assert_eq!(rig.backing_tree(), expect_tree(&[("b", Some("b"))]));
    }
}

isolated_test! {
    fn rename_is_durable_only_after_the_directory_fsync() {
        let mut rig = Rig::new();
        let m = rig.mnt.clone();
        fs::write(rig.backing.join("final"), b"old").expect("seed");

        // tmp never had a durable name: after the cut only the old final is left.
        let fs = rig.start();
        write_synced(&m.join("tmp"), b"new");
        fs::rename(m.join("tmp"), m.join("final")).expect("rename");
        assert_eq!(fs::read(m.join("final")).expect("read"), b"new");
        fs.cut();
        assert_eq!(rig.backing_tree(), expect_tree(&[("final", Some("old"))]));

        // tmp's name was durable: the cut leaves both old names with their synced data.
        let fs = rig.start();
        File::create(m.join("tmp")).expect("create");
        fsync_dir(&m);
        write_synced(&m.join("tmp"), b"new");
        fs::rename(m.join("tmp"), m.join("final")).expect("rename");
        fs.cut();
        let want = expect_tree(&[("final", Some("old")), ("tmp", Some("new"))]);
        assert_eq!(rig.backing_tree(), want);

        // The whole pattern: write tmp; fsync tmp; rename tmp -> final; fsync dir.
        let fs = rig.start();
        write_synced(&m.join("tmp"), b"newer");
        fs::rename(m.join("tmp"), m.join("final")).expect("rename");
        fsync_dir(&m);
        fs.cut();
        assert_eq!(rig.backing_tree(), expect_tree(&[("final", Some("newer"))]));
    }
}

/// renameat2(2), which std does not offer.
#[allow(unsafe_code)]
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(from.as_os_str().as_bytes()).expect("no NUL");
    let to = CString::new(to.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

isolated_test! {
    fn unlink_without_a_directory_fsync_comes_back() {
        let mut rig = Rig::new();
        let m = rig.mnt.clone();
        fs::write(rig.backing.join("a"), b"A").expect("seed");
        fs::write(rig.backing.join("b"), b"B").expect("seed");
        fs::create_dir(rig.backing.join("d")).expect("seed");
        fs::write(rig.backing.join("d/c"), b"C").expect("seed");
        let fs = rig.start();
        fs::remove_file(m.join("a")).expect("unlink a");
        fsync_dir(&m); // a's unlink is durable
        fs::remove_file(m.join("b")).expect("unlink b"); // root not fsynced again
        fs::remove_file(m.join("d/c")).expect("unlink d/c"); // d never fsynced
        fs::remove_dir(m.join("d")).expect("rmdir d");

        // Rename flags: RENAME_NOREPLACE refuses an existing target, RENAME_EXCHANGE is
        // not supported.
        fs::write(m.join("x"), b"x").expect("write");
        fs::write(m.join("y"), b"y").expect("write");
        let noreplace = renameat2(&m.join("x"), &m.join("y"), libc::RENAME_NOREPLACE);
        assert_eq!(noreplace.map_err(|e| e.raw_os_error()), Err(Some(libc::EEXIST)));
        renameat2(&m.join("x"), &m.join("z"), libc::RENAME_NOREPLACE).expect("to a new name");
        let exchange = renameat2(&m.join("z"), &m.join("y"), libc::RENAME_EXCHANGE);
        assert_eq!(exchange.map_err(|e| e.raw_os_error()), Err(Some(libc::EINVAL)));

        fs.cut();
        let want = expect_tree(&[("b", Some("B")), ("d", None), ("d/c", Some("C"))]);
        assert_eq!(rig.backing_tree(), want);
    }
}

isolated_test! {
    fn sigterm_keeps_the_live_image_with_owners_and_modes() {
        let mut rig = Rig::new();
        let m = rig.mnt.clone();
        fs::write(rig.backing.join("gone"), b"x").expect("seed");
        fs::write(rig.backing.join("kept"), b"old").expect("seed");
        let fs = rig.start();
        fs::remove_file(m.join("gone")).expect("unlink");
        fs::write(m.join("kept"), b"new, never synced").expect("write");
        fs::create_dir_all(m.join("d/e")).expect("mkdir");
        fs::write(m.join("d/e/f"), b"f").expect("write");
        fs::set_permissions(m.join("d/e/f"), fs::Permissions::from_mode(0o640)).expect("chmod");
        fs::set_permissions(&m, fs::Permissions::from_mode(0o777)).expect("chmod root");
        // Another user creates a file: it is theirs (allow_other, owner from the caller).
        let out = Command::new("setpriv")
            .args(["--reuid=1234", "--regid=1234", "--clear-groups", "touch"])
            .arg(m.join("theirs"))
            .output()
            .expect("run setpriv");
        assert!(out.status.success(), "{out:?}");
        let theirs = fs::metadata(m.join("theirs")).expect("stat");
        assert_eq!((theirs.uid(), theirs.gid()), (1234, 1234));
        let out = Command::new("stat").args(["-f", "-c", "%t %S %b %a"]).arg(&m).output();
        let out = String::from_utf8(out.expect("run stat -f").stdout).expect("utf-8");
        let fields: Vec<u64> = out.split_whitespace().skip(1).map(|f| f.parse().expect("number")).collect();
        assert!(fields[0] == 4096 && fields[1] > 0 && fields[2] > 0, "statfs: {out}");

        let stderr = fs.stop(Signal::SIGTERM);
        assert!(stderr.contains("clean stop: kept"), "{stderr}");
        assert!(stderr.contains("cause: SIGTERM"), "{stderr}");
        let want = expect_tree(&[
            ("d", None),
            ("d/e", None),
            ("d/e/f", Some("f")),
            ("kept", Some("new, never synced")),
            ("theirs", Some("")),
        ]);
        assert_eq!(rig.backing_tree(), want);
        let theirs = fs::metadata(rig.backing.join("theirs")).expect("stat");
        assert_eq!((theirs.uid(), theirs.gid()), (1234, 1234));
        let f = fs::metadata(rig.backing.join("d/e/f")).expect("stat");
        assert_eq!(f.permissions().mode() & 0o7777, 0o640);
    }
}

isolated_test! {
    fn an_external_umount_keeps_the_live_image_too() {
        let mut rig = Rig::new();
        let m = rig.mnt.clone();
        let fs = rig.start();
        fs::write(m.join("f"), b"unsynced").expect("write");
        let out = Command::new("umount").arg(&m).output().expect("run umount");
        assert!(out.status.success(), "{out:?}");
        let stderr = fs.expect_exit_zero();
        assert!(stderr.contains("clean stop: kept 1 files (8 bytes)"), "{stderr}");
        assert!(stderr.contains("cause: unmounted by someone else"), "{stderr}");
        assert_eq!(rig.backing_tree(), expect_tree(&[("f", Some("unsynced"))]));
    }
}

isolated_test! {
    fn after_a_cut_the_mount_fails_and_a_restart_serves_exactly_the_durable_image() {
        let mut rig = Rig::new();
        let m = rig.mnt.clone();
        fs::create_dir_all(rig.backing.join("dir/sub")).expect("seed");
        fs::write(rig.backing.join("dir/x"), b"x").expect("seed");
        fs::write(rig.backing.join("dir/sub/y"), b"y").expect("seed");
        fs::write(rig.backing.join("stale"), b"stale").expect("seed");
        fs::write(rig.backing.join("z"), b"z").expect("seed");
        let fs = rig.start();
        assert_eq!(fs::read(m.join("dir/sub/y")).expect("read through the mount"), b"y");
        fs::remove_file(m.join("stale")).expect("unlink");
        fs::create_dir(m.join("new")).expect("mkdir");
        write_synced(&m.join("new/n"), b"n");
        fsync_dir(&m.join("new"));
        fsync_dir(&m);
        fs::write(m.join("dir/unsynced"), b"u").expect("write");
        fs::write(m.join("dir/x"), b"x2").expect("write");
        // Held across the cut: the mount is busy, so it is detached lazily.
        let held = open_rw(&m.join("z"));
        held.write_all_at(b"Z", 0).expect("write before the cut");

        let log = fs.cut();
        let counts = "kept 4 files (4 bytes), 3 directories; dropped 1 files, 4 bytes not synced";
        assert!(log.contains(counts), "{log}");
        assert!(log.contains("(Detached)"), "the held file kept the mount busy: {log}");
        let err = held.write_all_at(b"late", 0).expect_err("a write after the cut fails");
        assert!(
            matches!(err.raw_os_error(), Some(libc::EIO | libc::ENOTCONN)),
            "write after the cut: {err}"
        );
        assert!(held.sync_all().is_err(), "fsync after the cut fails");
        drop(held);
        assert_eq!(fs::read_dir(&m).expect("ls mount point").count(), 0, "mount point is bare");
        let want = expect_tree(&[
            ("dir", None),
            ("dir/sub", None),
            ("dir/sub/y", Some("y")),
            ("dir/x", Some("x")),
            ("new", None),
            ("new/n", Some("n")),
            ("z", Some("z")),
        ]);
        assert_eq!(rig.backing_tree(), want);

        let fs = rig.start();
        assert_eq!(tree(&m), want, "a second start serves the durable image");
        fs.stop(Signal::SIGINT);
        assert_eq!(rig.backing_tree(), want);
    }
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// A change to the file, kept until the next sync to replay it on the expected durable
/// content (cheaper than copying 4 MiB at every sync).
enum Op {
    Write(usize, Vec<u8>),
    SetLen(usize),
}

impl Op {
    /// What the operation does to a buffer.
    fn apply(&self, buf: &mut Vec<u8>) {
        match self {
            Op::Write(offset, bytes) => {
                let end = offset + bytes.len();
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[*offset..end].copy_from_slice(bytes);
            }
            Op::SetLen(len) => buf.resize(*len, 0),
        }
    }

    fn perform(&self, file: &File) {
        match self {
            Op::Write(offset, bytes) => file.write_all_at(bytes, *offset as u64).expect("pwrite"),
            Op::SetLen(len) => file.set_len(*len as u64).expect("truncate"),
        }
    }
}

/// One phase of the pwrite test: `rounds` random pwrites (now and then a shrink and regrow),
/// two in three followed by fsync or fdatasync; then unsynced changes, and a cut. `live`
/// must hold the file's content at the start; on return it holds the durable content.
fn pwrite_phase(rig: &mut Rig, rng: &mut Rng, live: &mut Vec<u8>, rounds: u32) {
    let fs = rig.start();
    let path = rig.mnt.join("db");
    let file = open_rw(&path);
    let mut durable = live.clone();
    let mut pending = Vec::new();
    let run = |op: Op, live: &mut Vec<u8>, pending: &mut Vec<Op>| {
        op.perform(&file);
        op.apply(live);
        pending.push(op);
    };
    for round in 0..rounds {
        if rng.next(10) == 0 {
            // Shrink by up to three pages and regrow by as much: pages cut off must come
            // back as zeros, in the live and the durable image.
            let shrunk = live.len().saturating_sub(rng.next(3 * 4096) as usize);
            let regrown = shrunk + rng.next(3 * 4096) as usize;
            run(Op::SetLen(shrunk), live, &mut pending);
            run(Op::SetLen(regrown), live, &mut pending);
        } else {
            let offset = rng.next(live.len() as u64 + 4096) as usize;
            let len = 1 + rng.next(9000) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (round as usize + i) as u8 | 1).collect();
            run(Op::Write(offset, bytes), live, &mut pending);
        }
        match rng.next(3) {
            0 => file.sync_all().expect("fsync"),
            1 => file.sync_data().expect("fdatasync"),
            _ => continue,
        }
        for op in pending.drain(..) {
            op.apply(&mut durable);
        }
    }
    run(Op::SetLen(live.len() + 10_000), live, &mut pending);
    run(Op::Write(12_345, b"never synced".to_vec()), live, &mut pending);
    let back = fs::read(&path).expect("read back through the mount");
    assert_eq!(back.len(), live.len(), "live size");
    assert!(back == *live, "live content read back through the mount");
    drop(file);

    fs.cut();
    let got = fs::read(rig.backing.join("db")).expect("read the durable db");
    assert_eq!(got.len(), durable.len(), "durable size");
    let first_diff = got.iter().zip(&durable).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "durable content differs");
    *live = durable;
}

isolated_test! {
    fn many_small_pwrites_and_fsyncs_on_a_multi_mb_file() {
        let mut rig = Rig::new();
        let mut content: Vec<u8> = (0..4 << 20).map(|i| (i % 253) as u8).collect();
        fs::write(rig.backing.join("db"), &content).expect("seed");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let started = std::time::Instant::now();
        for _ in 0..4 {
            pwrite_phase(&mut rig, &mut rng, &mut content, 600);
        }
        println!("4 x 600 pwrites, 2 in 3 fsynced, on a 4 MiB file: {:?}", started.elapsed());
    }
}

isolated_test! {
    fn refuses_what_it_cannot_serve_with_status_2() {
        let mut rig = Rig::new();
        let (backing, mnt) = (rig.backing.clone(), rig.mnt.clone());
        let missing = backing.join("missing");
        let cases: Vec<(Vec<&Path>, &str)> = vec![
            (vec![&backing], "expected 2 arguments, got 1"),
            (vec![Path::new("relative"), &mnt], "is not an absolute path"),
            (vec![&backing, &missing], "MOUNT_POINT"),
            (vec![&backing, &backing], "one inside the other"),
        ];
        for (args, why) in cases {
            let mut fs = rig.spawn(&args);
            let status = fs.wait_exit(DEADLINE).expect("exits at once");
            assert_eq!(status.code(), Some(2), "{args:?}");
            assert!(fs.stderr().contains(why) && fs.stderr().contains("usage:"), "{}", fs.stderr());
        }
        fs::create_dir(backing.join("d")).expect("mkdir");
        std::os::unix::fs::symlink("/etc/hostname", backing.join("d/link")).expect("symlink");
        let mut fs = rig.spawn(&[&backing, &mnt]);
        let status = fs.wait_exit(DEADLINE).expect("exits at once");
        assert_eq!(status.code(), Some(2));
        assert!(fs.stderr().contains("d/link is a symbolic link"), "{}", fs.stderr());
        assert_eq!(mount_at(&mnt), None);
        assert!(backing.join("d/link").symlink_metadata().is_ok(), "backing dir untouched");
    }
}
