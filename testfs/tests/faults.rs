//! `DMS_TESTFS_FAULT` switches and the refusal to start without credentials.

mod common;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use common::{stat_within, wait_until, Helper, DEADLINE};
use nix::sys::signal::Signal;

fn with_fault(fault: &'static str) -> impl FnOnce(&mut Vec<(String, String)>) {
    move |env| env.push(("DMS_TESTFS_FAULT".into(), fault.into()))
}

isolated_test! {
    fn exit_at_once_exits_zero_without_mounting() {
        let mut h = Helper::start(with_fault("exit-at-once"));
        let status = h.wait_exit(DEADLINE).expect("exits at once");
        assert_eq!(status.code(), Some(0));
        assert_eq!(h.mounted(), None);
    }
}

isolated_test! {
    fn never_mount_stays_alive_unmounted_until_sigterm() {
        let mut h = Helper::start(with_fault("never-mount"));
        assert!(
            !wait_until(Duration::from_millis(1500), || h.mounted().is_some()),
            "mounted despite never-mount"
        );
        assert!(h.child.try_wait().expect("try_wait").is_none(), "helper exited");
        h.signal(Signal::SIGTERM);
        let status = h.wait_exit(DEADLINE).expect("exits on SIGTERM");
        assert_eq!(status.code(), Some(0));
        assert_eq!(h.mounted(), None);
    }
}

isolated_test! {
    fn hang_mounts_but_never_answers() {
        let mut h = Helper::start(with_fault("hang"));
        h.wait_mounted();
        assert!(
            stat_within(&h.mountpoint, Duration::from_millis(1500)).is_none(),
            "stat on a hung mount returned"
        );
        assert!(h.child.try_wait().expect("try_wait").is_none(), "helper exited");
        // Killing the server aborts the connection: a fresh stat fails fast, not hangs.
        h.signal(Signal::SIGKILL);
        h.wait_exit(DEADLINE).expect("killed helper exits");
        let err = stat_within(&h.mountpoint, DEADLINE)
            .expect("stat returns once the server is gone")
            .expect_err("dead mount");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    }
}

isolated_test! {
    fn hang_still_unmounts_on_sigterm() {
        let mut h = Helper::start(with_fault("hang"));
        h.wait_mounted();
        assert!(stat_within(&h.mountpoint, Duration::from_millis(300)).is_none());
        h.signal(Signal::SIGTERM);
        let status = h.wait_exit(DEADLINE).expect("exits on SIGTERM");
        assert_eq!(status.code(), Some(0), "stderr: {}", h.stderr());
        assert_eq!(h.mounted(), None);
    }
}

isolated_test! {
    fn die_after_leaves_a_dead_mount() {
        let mut h = Helper::start(with_fault("die-after=0.5"));
        h.wait_mounted();
        fs::write(h.mountpoint.join("f"), b"x").expect("serves before dying");
        let status = h.wait_exit(DEADLINE).expect("dies on its own");
        assert_eq!(status.code(), Some(1));
        assert!(h.mounted().is_some(), "mount should stay behind");
        let err = stat_within(&h.mountpoint, DEADLINE)
            .expect("stat returns")
            .expect_err("dead mount");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    }
}

isolated_test! {
    fn mount_delay_postpones_the_mount() {
        let started = Instant::now();
        let h = Helper::start(with_fault("mount-delay=800"));
        thread::sleep(Duration::from_millis(200));
        assert_eq!(h.mounted(), None, "mounted before the delay");
        h.wait_mounted();
        assert!(started.elapsed() >= Duration::from_millis(800));
    }
}

/// Starts a helper with `edit` and expects a refusal: status 2, the missing names on
/// stderr, and none of the secret values.
fn refuses(edit: impl FnOnce(&mut Vec<(String, String)>), names: &[&str]) {
    let mut h = Helper::start(edit);
    let status = h.wait_exit(DEADLINE).expect("refuses at once");
    let stderr = h.stderr();
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(h.mounted(), None);
    for name in names {
        assert!(stderr.contains(name), "{name} not named: {stderr}");
    }
    for secret in ["AKIDTESTFS", "secret-TESTFS-value"] {
        assert!(!stderr.contains(secret), "secret leaked: {stderr}");
    }
}

fn without(name: &'static str) -> impl FnOnce(&mut Vec<(String, String)>) {
    move |env| env.retain(|(k, _)| k != name)
}

isolated_test! {
    fn missing_credentials_or_bucket_exit_two_without_leaking() {
        refuses(without("AWS_ACCESS_KEY_ID"), &["AWS_ACCESS_KEY_ID"]);
        refuses(without("AWS_SECRET_ACCESS_KEY"), &["AWS_SECRET_ACCESS_KEY"]);
        refuses(without("vault_s3_bucket"), &["vault_s3_bucket"]);
        refuses(without("vault_data_directory"), &["vault_data_directory"]);
        refuses(
            |env| {
                for (k, v) in env.iter_mut() {
                    if k == "AWS_ACCESS_KEY_ID" {
                        v.clear(); // empty counts as missing
                    }
                }
            },
            &["AWS_ACCESS_KEY_ID"],
        );
        refuses(with_fault("explode"), &["DMS_TESTFS_FAULT"]);
    }
}

isolated_test! {
    fn require_env_replaces_the_default_list() {
        let extra = |env: &mut Vec<(String, String)>| {
            env.retain(|(k, _)| !k.starts_with("AWS_"));
            env.push(("DMS_TESTFS_REQUIRE_ENV".into(), "DMS_TEST_TOKEN".into()));
        };
        refuses(extra, &["DMS_TEST_TOKEN"]);
        let h = Helper::start(|env| {
            extra(env);
            env.push(("DMS_TEST_TOKEN".into(), "t".into()));
        });
        h.wait_mounted();
    }
}
