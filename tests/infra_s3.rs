//! moto (S3) and the s3vaultfuse stand-in (`scripts/infra/s3vaultfuse-s3fs`, Debian's
//! s3fs) work for real: started the way the daemon starts its helper (no arguments, an
//! explicit helper environment), inside a private mount namespace, a file written through
//! the FUSE mount lands in the bucket, and SIGTERM unmounts.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use support::mountns::{self, wait_for_mount, wait_for_unmount};
use support::proc::GroupChild;
use support::S3;

#[test]
fn moto_bucket_put_list_get() {
    let s3 = S3::start();
    println!("moto started in {:?}", s3.startup_time());
    s3.put_object("dir/a.txt", b"hello moto");
    assert_eq!(s3.list_keys(), vec!["dir/a.txt".to_string()]);
    assert_eq!(s3.get_object("dir/a.txt").unwrap(), b"hello moto");
    assert_eq!(s3.get_object("missing"), None);
}

#[test]
fn s3fs_helper_mounts_bucket_in_private_namespace() {
    mountns::run_isolated("s3fs_helper_mounts_bucket_in_private_namespace", || {
        let s3 = S3::start();
        let dir = support::temp_dir("dms-s3fs-mnt-");
        let mnt = dir.path().join("target-1");
        std::fs::create_dir(&mnt).unwrap();

        // Exactly as the daemon starts s3vaultfuse: no arguments, and only the helper
        // environment of DESIGN §2 (not even PATH).
        let helper = support::s3vaultfuse_s3fs();
        let mut cmd = Command::new(&helper);
        cmd.env_clear().envs(s3.helper_env(&mnt));
        let t0 = std::time::Instant::now();
        let mut child = GroupChild::spawn("s3vaultfuse-s3fs", cmd, &dir.path().join("helper.log"));
        let entry = wait_for_mount(&mnt, "fuse.s3fs", Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}; helper log:\n{}", support::log_tail(child.log(), 40)));
        println!("s3fs mounted in {:?}: {entry:?}", t0.elapsed());

        // `exec`: the helper PID is s3fs itself, and no key is on its command line.
        let pid = child.pid();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "s3fs");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(!cmdline.contains(s3.secret_access_key()), "secret key in argv");
        assert!(!cmdline.contains(s3.access_key_id()), "access key in argv");

        // A file written through the mount lands in the bucket.
        let data = b"written through s3fs\n";
        {
            let mut f = std::fs::File::create(mnt.join("hello.txt")).unwrap();
            f.write_all(data).unwrap();
            f.sync_all().unwrap();
        }
        let got = support::wait_for("hello.txt in the bucket", Duration::from_secs(20), || {
            s3.get_object("hello.txt")
        })
        .unwrap();
        assert_eq!(got, data);
        assert!(s3.list_keys().contains(&"hello.txt".to_string()));

        // And an object put into the bucket is visible through the mount.
        s3.put_object("from-s3.txt", b"from the bucket");
        let through_mount = std::fs::read(mnt.join("from-s3.txt")).unwrap();
        assert_eq!(through_mount, b"from the bucket");

        // SIGTERM unmounts cleanly and s3fs exits.
        child.signal_group(rustix::process::Signal::TERM);
        let status =
            child.wait_timeout(Duration::from_secs(20)).expect("s3fs did not exit after SIGTERM");
        println!("s3fs exited with {status}");
        wait_for_unmount(&mnt, Duration::from_secs(10)).unwrap();
    });
}

/// What a crashed helper leaves behind (DESIGN §5): SIGKILL leaves the mount in the table
/// but every access fails with ENOTCONN; `umount -l` clears it.
#[test]
fn s3fs_sigkill_leaves_enotconn_mount_that_lazy_umount_clears() {
    mountns::run_isolated("s3fs_sigkill_leaves_enotconn_mount_that_lazy_umount_clears", || {
        let s3 = S3::start();
        let dir = support::temp_dir("dms-s3fs-mnt-");
        let mnt = dir.path().join("target-2");
        std::fs::create_dir(&mnt).unwrap();
        let mut cmd = Command::new(support::s3vaultfuse_s3fs());
        cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").envs(s3.helper_env(&mnt));
        let mut child = GroupChild::spawn("s3vaultfuse-s3fs", cmd, &dir.path().join("helper.log"));
        wait_for_mount(&mnt, "fuse.s3fs", Duration::from_secs(20)).unwrap();

        child.kill();
        let err = std::fs::metadata(&mnt).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc_enotconn()), "{err}");
        assert!(mountns::mount_at(&mnt).is_some(), "dead mount still listed");

        let st = Command::new("umount").arg("-l").arg(&mnt).status().unwrap();
        assert!(st.success());
        wait_for_unmount(&mnt, Duration::from_secs(10)).unwrap();
        assert!(std::fs::metadata(&mnt).unwrap().is_dir());
    });
}

fn libc_enotconn() -> i32 {
    rustix::io::Errno::NOTCONN.raw_os_error()
}

#[test]
fn helper_refuses_to_start_without_mount_path() {
    let s3 = S3::start();
    let out = Command::new(support::s3vaultfuse_s3fs())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(
            s3.helper_env(std::path::Path::new("/nonexistent"))
                .into_iter()
                .filter(|(k, _)| k != "vault_data_directory"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vault_data_directory is not set"), "{stderr}");
    assert!(!stderr.contains(s3.secret_access_key()));
}
