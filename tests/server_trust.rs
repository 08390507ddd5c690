//! Trust nothing on the host, end to end: what the real dms-server does at start with
//! processes that pretend to be a helper and with PID files that are not files. Each test
//! runs in a private mount namespace with the real broker, real FUSE mounts (`dms-testfs`)
//! and a real Barbican.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::ctl::Ctl;
use e2e::host::{alive, assert_no_secret, is_dead_mount, not_mounted, sigkill, wait_until};
use e2e::journal::{self as jrnl, event_names};
use e2e::recovery::{
    assert_lost_signals_nothing, setup, unmount_ok, Left, Reap, LIMIT, SECRET_KEY, TOKEN,
};
use e2e::{runtime, Daemon};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use support::mountns::run_isolated_with_timeout;

/// A process that claims `path` as a helper would: the helper's environment (the daemon's
/// marker too) and `argv[0]` set to the helper's path, running `program`, as `uid`.
fn forger(program: &str, path: &str, target: &str, uid: u32) -> Reap {
    let mut command = Command::new(program);
    command
        .arg0(e2e::testfs_bin())
        .arg("1000")
        .env_clear()
        .env("vault_data_directory", path)
        .env("DMS_HELPER_TARGET", target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if uid != 0 {
        command.uid(uid).gid(uid);
    }
    let child = Reap(command.spawn().unwrap());
    let pid = child.0.id();
    support::wait_for("the forger to exec", e2e::host::SETTLE, || {
        e2e::host::environ_var(pid, "vault_data_directory").map(drop)
    })
    .unwrap();
    child
}

#[test]
fn processes_that_only_claim_a_dead_helpers_path_are_never_signalled_and_are_reported() {
    let name = "processes_that_only_claim_a_dead_helpers_path_are_never_signalled_and_are_reported";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-forged");
        let node = "trust-forged";
        let rt = runtime();
        let Left { path, helper, env, journal, .. } = s.mount_and_stop(&rt, node, "fg-1");
        sigkill(helper, "helper");
        assert!(is_dead_mount(&path));
        // As nobody with the helper's environment; as nobody with argv[0] the helper's path
        // as well; as root, but running another executable.
        let forgers = [
            forger("/usr/bin/sleep", &path, "fg-1", 65534),
            forger("/usr/bin/sleep", &path, "fg-1", 65534),
            forger("/usr/bin/sleep", &path, "fg-1", 0),
        ];
        let pids: Vec<u32> = forgers.iter().map(|f| f.0.id()).collect();

        let mut daemon = Daemon::spawn(s.dir.path(), node, env);
        for pid in &pids {
            daemon.wait_log(&format!("pid {pid} claims to be a helper for {path}"));
        }
        wait_until("the dead mount and the PID file to be cleaned up", &daemon, || {
            !is_dead_mount(&path) && daemon.pid_files().is_empty()
        });
        for pid in &pids {
            assert!(alive(*pid), "forger {pid} was signalled\n{}", daemon.log_text());
        }
        not_mounted(&path);
        let log = daemon.stop();
        for pid in &pids {
            assert!(alive(*pid), "forger {pid} was signalled at shutdown");
        }
        assert!(log.contains("owned by uid 65534"), "{log}");
        assert!(log.contains("runs /usr/bin/sleep"), "{log}");
        let records = jrnl::history(&journal, "fg-1");
        let lost = records.iter().find(|r| r.record.event.name() == "Lost").unwrap();
        assert_lost_signals_nothing(lost);
        assert_eq!(event_names(&records).last(), Some(&"Cleaned"), "{:?}", event_names(&records));
        assert_no_secret("daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}

/// The peak resident set of `pid` in kB (`VmHWM`).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_ascii_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_fifo_and_a_symlink_to_dev_zero_in_the_pid_directory_are_reported_and_left_alone() {
    let name = "a_fifo_and_a_symlink_to_dev_zero_in_the_pid_directory_are_reported_and_left_alone";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-hostile");
        let node = "trust-pidfiles";
        let rt = runtime();
        let pid_dir = s.dir.path().join("pids");
        std::fs::create_dir_all(&pid_dir).unwrap();
        let fifo = pid_dir.join("x.pid");
        let out = Command::new("mkfifo").arg(&fifo).output().unwrap();
        assert!(out.status.success());
        let zero = pid_dir.join("z.pid");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();

        // Before: the boot pass blocked on the FIFO for good, and `cleanup` read /dev/zero
        // until the daemon held gigabytes.
        let mut daemon = Daemon::start(support::Broker::shared(), s.dir.path(), node, &[]);
        daemon.wait_log(&format!("PID file {} is not a regular file", fifo.display()));
        daemon.wait_log(&format!("PID file {} is a symbolic link", zero.display()));
        let path = s.mount(&rt, &daemon, "hp-1");
        let ctl = Ctl::new(&daemon, s.dir.path());
        let (code, health, _) = ctl.run(&["health"]);
        assert!(code == 0 || code == 1, "health: {code} {health}");
        let (code, cleanup, _) = ctl.run(&["cleanup"]);
        assert_eq!(code, 0, "cleanup: {cleanup}");
        let peak = peak_rss_kb(daemon.child.pid());
        assert!(peak < 200 * 1024, "the daemon grew to {peak} kB");
        unmount_ok(&rt, &daemon, "hp-1", &path);
        let log = daemon.stop();
        let kind = |p: &Path| std::fs::symlink_metadata(p).unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind(&fifo)), "the FIFO was touched");
        assert!(kind(&zero).is_symlink(), "the symlink was touched");
        assert_no_secret("daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}

#[test]
fn a_journal_that_lost_history_stops_the_daemon_until_the_loss_is_accepted() {
    let name = "a_journal_that_lost_history_stops_the_daemon_until_the_loss_is_accepted";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-lost");
        let node = "trust-journal";
        let rt = runtime();
        let Left { path, env, journal, .. } = s.mount_and_stop(&rt, node, "jl-1");
        assert_eq!(jrnl::tool(&journal, &["verify"]).0, 0);
        // The journal directory restored from a backup of sled's files only: its sidecar
        // (the mark of what was durable) is gone, so nothing proves the history complete.
        std::fs::remove_file(journal.join("dms-seal")).unwrap();

        let (code, out, err) = jrnl::tool(&journal, &["verify"]);
        assert_eq!(code, 1, "verify: {out}{err}");
        assert!(out.contains("lost") && out.contains("dms-seal"), "{out}");

        let mut refused = Daemon::launch(s.dir.path(), node, env.clone());
        let status = refused.child.wait_timeout(e2e::T).expect("the daemon refuses to start");
        assert!(!status.success());
        let log = refused.log_text();
        assert!(log.contains("lost history") && log.contains("accept-loss"), "{log}");
        assert!(!log.contains("consuming"), "it served requests: {log}");

        let (code, out, err) = jrnl::tool(&journal, &["accept-loss"]);
        assert_eq!(code, 0, "accept-loss: {out}{err}");
        assert!(out.contains("accepted:"), "{out}");
        assert_eq!(jrnl::tool(&journal, &["verify"]).0, 0, "sealed again");

        // The mount is still the journal's: the daemon starts and unmounts it.
        let daemon = Daemon::spawn(s.dir.path(), node, env);
        unmount_ok(&rt, &daemon, "jl-1", &path);
        let log = daemon.stop();
        assert_no_secret("daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}

#[test]
fn a_slow_mount_is_reported_in_flight_and_health_stays_ok_while_it_runs() {
    let name = "a_slow_mount_is_reported_in_flight_and_health_stays_ok_while_it_runs";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-slow");
        let dir = s.dir.path();
        let slow = e2e::faulty_helper(dir, "mount-delay=8000");
        // A resync every second: passes run while the mount is in flight.
        let extra = [
            ("DMS_S3VAULTFUSE_BIN", slow.display().to_string()),
            ("DMS_RESYNC_INTERVAL", "1".to_owned()),
        ];
        let daemon = Daemon::start(support::Broker::shared(), dir, "trust-health", &extra);
        let ctl = Ctl::new(&daemon, dir);
        let path = daemon.path("sl-1");
        let body = e2e::s3_mount("sl-1", &path, &s.secret_ref, TOKEN);
        std::thread::scope(|scope| {
            let reply = scope.spawn(|| e2e::call(&runtime(), &daemon, &body, &e2e::uuid()));
            let stats = || {
                let (code, out, _) = ctl.run(&["stats", "--json"]);
                assert_eq!(code, 0, "{out}");
                serde_json::from_str::<serde_json::Value>(&out).unwrap()
            };
            let in_flight = |s: &serde_json::Value| {
                s["in_flight"].as_array().is_some_and(|a| {
                    a.iter().any(|l| l.as_str().is_some_and(|l| l.starts_with("sl-1: ")))
                })
            };
            wait_until("the mount to be in flight", &daemon, || in_flight(&stats()));
            // Two resync passes see the mount in flight; health must not call it trouble.
            std::thread::sleep(std::time::Duration::from_millis(2500));
            let (code, health, _) = ctl.run(&["health"]);
            assert_eq!(code, 0, "health while a mount runs: {health}");
            let now = stats();
            assert_eq!(now["disagreements"], serde_json::json!([]), "{now}");
            assert!(in_flight(&now), "{now}");
            assert_eq!(reply.join().unwrap(), e2e::mounted_msg(&path), "{}", daemon.log_text());
        });
        let (code, health, _) = ctl.run(&["health"]);
        assert_eq!(code, 0, "health after the mount: {health}");
        unmount_ok(&runtime(), &daemon, "sl-1", &path);
        daemon.stop();
    });
}

#[test]
fn a_target_inside_another_mounted_target_is_refused_before_anything_runs() {
    let name = "a_target_inside_another_mounted_target_is_refused_before_anything_runs";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-nest");
        let rt = runtime();
        let daemon = Daemon::start(support::Broker::shared(), s.dir.path(), "trust-nest", &[]);
        let outer = s.mount(&rt, &daemon, "ns-outer");
        // Before: its directory was created inside the outer filesystem (in the bucket),
        // and unmounting the outer target left the inner one "mounted" in the journal.
        let inner = format!("{outer}/inner");
        let body = e2e::s3_mount("ns-inner", &inner, &s.secret_ref, TOKEN);
        let reply = e2e::call(&rt, &daemon, &body, &e2e::uuid());
        let msg = reply["error_msg"].as_str().unwrap_or_default();
        assert_eq!(reply["status"], "error", "{reply}");
        assert!(
            msg.contains("lies inside the mount path of target ns-outer")
                && msg.contains("targets never nest"),
            "{reply}"
        );
        assert!(!Path::new(&inner).exists(), "the inner directory was created in the bucket");
        unmount_ok(&rt, &daemon, "ns-outer", &outer);
        let journal = daemon.journal.clone();
        daemon.stop();
        let records = jrnl::history(&journal, "ns-inner");
        assert_eq!(event_names(&records), ["Answered"], "the refused target journaled more");
    });
}
