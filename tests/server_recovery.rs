//! Recovery end to end: what the real dms-server does at start with what a reboot, a
//! reused PID, a hand-started helper, a torn journal write or a killed adopted helper left
//! behind. Each test runs in a private mount namespace with the real broker, real FUSE
//! mounts (`dms-testfs`) and a real Barbican, and checks the end state twice: on the host
//! (mount table, /proc, PID files) and in the journal, read after the daemon stopped.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use dms_journal::store::Stored;
use dms_journal::{BootId, Event, Phase};
use e2e::host::{
    alive, assert_no_secret, helpers_serving, is_dead_mount, lazy_unmount, mounted, not_mounted,
    pid_of, session_of, sigkill, wait_dead, wait_until, write_pid_file, SETTLE,
};
use e2e::journal::{self as jrnl, event_names, lost_reasons, MOUNT_UNMOUNT};
use e2e::recovery::{
    assert_cleaned_without_stopping, assert_lost_signals_nothing, assert_reused_pid_is_left_alone,
    setup, sleeper_ready, spawn_sleeper, unmount_ok, unrelated_sleeper, Left, Reap, KEY_ID, LIMIT,
    SECRET_KEY, TESTFS, TOKEN,
};
use e2e::{call, mounted_msg, ok, runtime, s3_mount, uuid, Daemon};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use support::mountns::{self, run_isolated_with_timeout};
use support::Broker;

fn boot_id() -> BootId {
    BootId::parse(&std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap()).unwrap()
}

/// A reboot as far as the daemon can tell: a fresh boot id, bind-mounted over
/// /proc/sys/kernel/random/boot_id in this test's private mount namespace only.
fn new_boot_id(dir: &Path) -> BootId {
    let fresh = uuid::Uuid::new_v4().to_string();
    let file = dir.join("boot_id");
    std::fs::write(&file, format!("{fresh}\n")).unwrap();
    let out = Command::new("mount")
        .arg("--bind")
        .arg(&file)
        .arg("/proc/sys/kernel/random/boot_id")
        .output()
        .unwrap();
    assert!(out.status.success(), "bind a boot id: {}", String::from_utf8_lossy(&out.stderr));
    let now = boot_id();
    assert_eq!(now.to_string(), fresh, "the bind mount did not take");
    now
}

fn remove_pid_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        std::fs::remove_file(entry.path()).unwrap();
    }
}

#[test]
fn reboot_with_a_new_boot_id_journals_every_mounted_target_lost_signals_nothing_and_mounts_again_on_request(
) {
    let name = "reboot_with_a_new_boot_id_journals_every_mounted_target_lost_signals_nothing_and_mounts_again_on_request";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-reboot");
        let node = "recovery-reboot";
        let daemon = Daemon::start(Broker::shared(), s.dir.path(), node, &[]);
        let (pa, pb) = (daemon.path("rb-a"), daemon.path("rb-b"));
        let mount_a = s3_mount("rb-a", &pa, &s.secret_ref, TOKEN);
        let mount_b = s3_mount("rb-b", &pb, &s.secret_ref, TOKEN);
        let (corr_a, corr_b) = (uuid(), uuid());
        let rt = runtime();
        let reply_a = call(&rt, &daemon, &mount_a, &corr_a);
        let reply_b = call(&rt, &daemon, &mount_b, &corr_b);
        assert_eq!(reply_a, mounted_msg(&pa), "{}", daemon.log_text());
        assert_eq!(reply_b, mounted_msg(&pb), "{}", daemon.log_text());
        let old = [pid_of(&daemon, "rb-a"), pid_of(&daemon, "rb-b")];
        let (env, pid_dir, journal) =
            (daemon.env.clone(), daemon.pid_dir.clone(), daemon.journal.clone());
        let old_boot = boot_id();
        let old_log = daemon.stop();

        // The reboot: no process, no FUSE mount and no /run file survives it, and the
        // kernel has a new boot id.
        for (pid, path) in old.iter().zip([&pa, &pb]) {
            sigkill(*pid, "helper");
            assert!(is_dead_mount(path), "{path} should be a dead mount after SIGKILL");
            lazy_unmount(path);
            not_mounted(path);
        }
        remove_pid_files(&pid_dir);
        let new_boot = new_boot_id(s.dir.path());
        assert_ne!(new_boot, old_boot);

        let daemon = Daemon::spawn(s.dir.path(), node, env);
        assert!(daemon.pid_files().is_empty(), "{:?}", daemon.pid_files());
        for path in [&pa, &pb] {
            not_mounted(path);
            assert!(helpers_serving(path).is_empty(), "a helper serves {path}");
        }

        // The old request of B, redelivered: its old answer, and nothing is mounted.
        let again = call(&rt, &daemon, &mount_b, &corr_b);
        assert_eq!(again, reply_b, "{}", daemon.log_text());
        not_mounted(&pb);
        assert!(helpers_serving(&pb).is_empty(), "the redelivery of B mounted again");
        assert!(!daemon.pid_dir.join("rb-b.pid").exists());

        // A new request for A mounts it again, with a new helper.
        let reply = call(&rt, &daemon, &mount_a, &uuid());
        assert_eq!(reply, mounted_msg(&pa), "{}", daemon.log_text());
        mounted(&pa, TESTFS);
        let new_pid = pid_of(&daemon, "rb-a");
        assert!(!old.contains(&new_pid) && alive(new_pid), "new helper {new_pid}, old {old:?}");
        assert_eq!(helpers_serving(&pa), [new_pid]);
        // ... and A's old request, redelivered, gets its old answer without a second mount.
        let again = call(&rt, &daemon, &mount_a, &corr_a);
        assert_eq!(again, reply_a, "{}", daemon.log_text());
        assert_eq!(helpers_serving(&pa), [new_pid]);
        assert_eq!(pid_of(&daemon, "rb-a"), new_pid);

        unmount_ok(&rt, &daemon, "rb-a", &pa);
        wait_dead(new_pid, "the new helper");
        not_mounted(&pa);
        let log = daemon.stop();

        for target in ["rb-a", "rb-b"] {
            let records = jrnl::history(&journal, target);
            let names = event_names(&records);
            let lost: Vec<_> = records
                .iter()
                .filter_map(|s| match &s.record.event {
                    Event::Lost { reason, cleanup } => Some((s.record.boot, reason, cleanup)),
                    _ => None,
                })
                .collect();
            assert_eq!(lost.len(), 1, "{target}: {names:?}");
            let (boot, reason, cleanup) = lost[0];
            assert!(reason.contains("reboot") && reason.contains("boot id"), "{target}: {reason}");
            assert_eq!(boot, new_boot, "{target}: Lost is journaled in the new boot");
            // Nothing to stop, detach or remove: nothing was signalled.
            assert!(cleanup.is_empty(), "{target}: cleanup {cleanup}");
            assert!(
                !records.iter().any(|s| s.record.boot == old_boot
                    && matches!(s.record.event, Event::Detached { .. })),
                "{target}: {names:?}"
            );
        }
        let after_reboot = |target: &str| -> Vec<&str> {
            let records = jrnl::history(&journal, target);
            records
                .iter()
                .filter(|s| s.record.boot == new_boot)
                .map(|s| s.record.event.name())
                .collect()
        };
        // B: Lost, then nothing (the redelivery was answered from the journal).
        assert_eq!(after_reboot("rb-b"), ["Lost"]);
        assert_eq!(jrnl::state(&journal, "rb-b").phase, Phase::Unmounted);
        // A: Lost, one new mount chain, the unmount.
        assert_eq!(after_reboot("rb-a"), [&["Lost"][..], &MOUNT_UNMOUNT].concat());
        assert!(jrnl::problems(&journal).is_empty(), "{:?}", jrnl::problems(&journal));
        assert_no_secret("daemon logs", &format!("{old_log}{log}"), &[TOKEN, SECRET_KEY]);
    });
}

fn assert_lost_and_cleaned(journal: &Path, target: &str, reason_has: &str) {
    let records = jrnl::history(journal, target);
    let names = event_names(&records);
    let reasons = lost_reasons(&records);
    assert_eq!(reasons.len(), 1, "{names:?}");
    assert!(reasons[0].contains(reason_has), "{:?} lacks {reason_has:?}", reasons[0]);
    let lost = records.iter().find(|s| s.record.event.name() == "Lost").unwrap();
    assert_lost_signals_nothing(lost);
    let cleaned = records
        .iter()
        .find(|s| matches!(s.record.event, Event::Cleaned { .. }))
        .unwrap_or_else(|| panic!("no Cleaned record: {names:?}"));
    assert_cleaned_without_stopping(cleaned);
    assert_eq!(names.last(), Some(&"Cleaned"), "{names:?}");
    assert_eq!(jrnl::state(journal, target).phase, Phase::Unmounted);
}

#[test]
fn pid_file_naming_an_unrelated_process_after_the_helper_died_never_signals_it_and_the_target_is_lost(
) {
    let name = "pid_file_naming_an_unrelated_process_after_the_helper_died_never_signals_it_and_the_target_is_lost";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-reuse");
        let node = "recovery-pid-reuse";
        let rt = runtime();
        let Left { path, helper, env, pid_dir, journal } = s.mount_and_stop(&rt, node, "ru-1");

        sigkill(helper, "helper");
        assert!(is_dead_mount(&path));
        let mut sleeper = Reap(unrelated_sleeper());
        let other = sleeper.0.id();
        assert_ne!(other, helper);
        write_pid_file(&pid_dir, "ru-1", other);

        let daemon = Daemon::spawn(s.dir.path(), node, env);
        assert_reused_pid_is_left_alone(&mut sleeper.0, &daemon, "ru-1");
        // Usable again.
        s.mount(&rt, &daemon, "ru-1");
        let new = pid_of(&daemon, "ru-1");
        unmount_ok(&rt, &daemon, "ru-1", &path);
        wait_dead(new, "the new helper");
        assert!(alive(other), "the unrelated process was killed");
        let log = daemon.stop();
        assert!(alive(other), "the unrelated process was killed");
        assert_lost_and_cleaned_then_remounted(&journal, "ru-1", &format!("helper pid {helper}"));
        assert_no_secret("daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}

/// [`assert_lost_and_cleaned`] for the records up to the `Cleaned` that follows the loss
/// (the test mounted and unmounted once more afterwards).
fn assert_lost_and_cleaned_then_remounted(journal: &Path, target: &str, reason_has: &str) {
    let (records, lost_at) = lost_then_remounted(journal, target, reason_has);
    assert_lost_signals_nothing(&records[lost_at]);
    assert_cleaned_without_stopping(&records[lost_at + 1]);
}

/// The target's records, checked to end in one loss (with `reason_has` in its reason), its
/// cleanup, and one more mount and unmount; returns them and where the loss is.
fn lost_then_remounted(journal: &Path, target: &str, reason_has: &str) -> (Vec<Stored>, usize) {
    let records = jrnl::history(journal, target);
    let names = event_names(&records);
    let lost_at = names.iter().position(|n| *n == "Lost").unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(names[lost_at..], [&["Lost", "Cleaned"][..], &MOUNT_UNMOUNT].concat(), "{names:?}");
    let reasons = lost_reasons(&records);
    assert!(reasons.len() == 1 && reasons[0].contains(reason_has), "{reasons:?}");
    (records, lost_at)
}

/// Start `setsid sleep 1000` until the kernel gives it exactly `pid` (steering the next PID
/// through /proc/sys/kernel/ns_last_pid; other processes may race for it, so retry).
fn sleeper_with_pid(pid: u32) -> Child {
    support::wait_for(&format!("PID {pid} to be released"), SETTLE, || {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .unwrap();
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut child = spawn_sleeper();
        if child.id() == pid {
            sleeper_ready(pid);
            return child;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("could not get PID {pid} reused in 200 attempts");
}

#[test]
fn helper_pid_genuinely_reused_by_an_unrelated_process_is_never_signalled_and_the_target_is_lost() {
    let name = "helper_pid_genuinely_reused_by_an_unrelated_process_is_never_signalled_and_the_target_is_lost";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-reuse2");
        let node = "recovery-pid-reuse-2";
        let rt = runtime();
        let Left { path, helper, env, journal, .. } = s.mount_and_stop(&rt, node, "ru-2");

        sigkill(helper, "helper");
        assert!(is_dead_mount(&path));
        // The journal and the PID file (left as the daemon wrote it) both name `helper`,
        // which is now an unrelated process with another start time.
        let mut sleeper = Reap(sleeper_with_pid(helper));
        let daemon = Daemon::spawn(s.dir.path(), node, env);
        assert_reused_pid_is_left_alone(&mut sleeper.0, &daemon, "ru-2");
        let log = daemon.stop();
        assert!(alive(helper), "the process now holding the PID was killed");
        assert_lost_and_cleaned(&journal, "ru-2", "now belongs to another process");
        assert_no_secret("daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}

#[test]
fn helper_started_by_hand_with_a_hand_written_pid_file_is_adopted_answers_already_mounted_and_unmounts(
) {
    let name = "helper_started_by_hand_with_a_hand_written_pid_file_is_adopted_answers_already_mounted_and_unmounts";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-hand");
        let node = "recovery-hand";
        let dir = s.dir.path();
        let path = dir.join("mounts/hand-1").display().to_string();
        std::fs::create_dir_all(&path).unwrap();
        let log = std::fs::File::create(dir.join("hand-helper.log")).unwrap();
        // As the daemon starts it (src/exec/helper.rs, credentials/payload.rs): an explicit
        // environment, its own session, `/` as working directory, output to a log file.
        // No daemon marker: an operator's helper is recognised by its binary.
        let child = Command::new("/usr/bin/setsid")
            .arg(e2e::testfs_bin())
            .env_clear()
            .env("vault_s3_bucket", "bucket-hand")
            .env("vault_s3_region_name", "us-west-2")
            .env("vault_s3_auth_version", "DEFAULT")
            .env("vault_s3_signature_version", "default")
            .env("vault_s3_ssl", "true")
            .env("vault_s3_ssl_verify", "true")
            .env("vault_storage_nfs_export", "bucket-hand")
            .env("bucket_object_lock", "false")
            .env("use_manifest_suffix", "false")
            .env("vault_s3_max_pool_connections", "500")
            .env("vault_data_directory_old", "/var/triliovault")
            .env("vault_data_directory", &path)
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut hand = Reap(child);
        let pid = hand.0.id();
        mountns::wait_for_mount(Path::new(&path), TESTFS, SETTLE).unwrap_or_else(|e| {
            panic!("{e}\n{}", support::log_tail(&dir.join("hand-helper.log"), 20))
        });
        assert_eq!(session_of(pid), Some(pid));
        assert_eq!(helpers_serving(&path), [pid]);
        let pid_dir = dir.join("pids");
        write_pid_file(&pid_dir, "hand-1", pid);

        let daemon = Daemon::start(Broker::shared(), dir, node, &[]);
        assert_eq!(daemon.path("hand-1"), path);
        assert_eq!(pid_of(&daemon, "hand-1"), pid);
        assert!(alive(pid), "the hand-started helper was stopped at boot");
        let rt = runtime();
        let reply = call(&rt, &daemon, &s3_mount("hand-1", &path, &s.secret_ref, TOKEN), &uuid());
        assert_eq!(reply, ok(&format!("Already mounted at {path}")), "{}", daemon.log_text());
        assert_eq!(helpers_serving(&path), [pid], "a second helper was started");

        unmount_ok(&rt, &daemon, "hand-1", &path);
        let status = support::wait_for("the hand-started helper to exit", SETTLE, || {
            hand.0.try_wait().unwrap()
        })
        .unwrap();
        // dms-testfs exits 0 on SIGTERM (after unmounting); a SIGKILL would show here.
        assert!(status.success(), "the helper did not stop on SIGTERM: {status}");
        not_mounted(&path);
        assert_eq!(daemon.pid_files_after_cleanup(), Vec::<String>::new());
        let log = daemon.stop();

        let records = jrnl::history(&daemon_journal(dir), "hand-1");
        let names = event_names(&records);
        assert_eq!(names, ["Adopted", "Answered", "UnmountRequested", "Detached", "Cleaned"]);
        match &records[0].record.event {
            Event::Adopted { helper, reason, spec } => {
                assert_eq!(helper.map(|h| h.pid), Some(pid));
                assert!(reason.contains("PID file written by hand"), "{reason}");
                assert_eq!(spec.mount_path, path);
            }
            _ => unreachable!(),
        }
        assert_no_secret("daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}

fn daemon_journal(dir: &Path) -> PathBuf {
    dir.join("journal")
}

#[test]
fn torn_last_journal_record_is_reported_with_target_and_seq_and_the_live_mount_is_re_adopted() {
    let name =
        "torn_last_journal_record_is_reported_with_target_and_seq_and_the_live_mount_is_re_adopted";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-torn");
        let node = "recovery-torn";
        let daemon = Daemon::start(Broker::shared(), s.dir.path(), node, &[]);
        let path = daemon.path("tw-1");
        let mount = s3_mount("tw-1", &path, &s.secret_ref, TOKEN);
        let corr = uuid();
        let rt = runtime();
        let first = call(&rt, &daemon, &mount, &corr);
        assert_eq!(first, mounted_msg(&path), "{}", daemon.log_text());
        let helper = pid_of(&daemon, "tw-1");
        let (env, journal) = (daemon.env.clone(), daemon.journal.clone());
        daemon.stop();

        // A torn write of the last record: only its first half reached the disk.
        let seq = {
            let (j, _) = jrnl::open(&journal);
            let history = j.history(&jrnl::target("tw-1")).unwrap();
            let last = history.records.last().unwrap().as_ref().unwrap().clone();
            assert_eq!(last.record.event.name(), "Verified");
            let bytes = dms_journal::codec::encode_record(&last.record).unwrap();
            j.write_raw_for_tests(&jrnl::target("tw-1"), last.seq, &bytes[..bytes.len() / 2])
                .unwrap();
            last.seq
        };
        let (_, replay) = jrnl::open(&journal);
        assert_eq!(
            replay.problems.iter().map(|p| (p.target.as_str(), p.seq)).collect::<Vec<_>>(),
            [("tw-1", seq)]
        );
        let before = replay.state.target_or_new(&jrnl::target("tw-1"));
        assert!(matches!(before.phase, Phase::Mounting(_)), "{}", before.phase);
        drop(replay);

        let daemon = Daemon::spawn(s.dir.path(), node, env);
        let text = daemon.log_text();
        let line = text
            .lines()
            .find(|l| l.contains("journal problem found at replay"))
            .unwrap_or_else(|| panic!("no journal problem logged\n{text}"));
        assert!(line.contains(&format!("target tw-1, seq {seq}")), "{line}");
        // Reality wins: the helper and its mount are still there, so the interrupted mount
        // had completed and is adopted; the target stays usable.
        assert!(alive(helper), "the helper was stopped");
        mounted(&path, TESTFS);
        assert_eq!(pid_of(&daemon, "tw-1"), helper);
        let reply = call(&rt, &daemon, &mount, &uuid());
        assert_eq!(reply, ok(&format!("Already mounted at {path}")), "{}", daemon.log_text());
        let again = call(&rt, &daemon, &mount, &corr);
        assert_eq!(again, first, "the old request keeps its answer");
        assert_eq!(helpers_serving(&path), [helper]);
        let env = daemon.env.clone();
        let log = daemon.stop();

        // The damage is still reported (by replay and by `dms-journal verify`), but set
        // aside by the daemon's first append to the target, so later records replay.
        let (j, replay) = jrnl::open(&journal);
        let problem = replay
            .problems
            .iter()
            .find(|p| p.target == "tw-1" && p.seq == seq)
            .unwrap_or_else(|| panic!("{:?}", replay.problems));
        assert!(problem.error.contains("set aside"), "{problem}");
        let state = replay.state.target_or_new(&jrnl::target("tw-1"));
        assert_eq!(state.phase, Phase::Mounted);
        assert_eq!(state.helper.map(|h| h.pid), Some(helper));
        let history = j.history(&jrnl::target("tw-1")).unwrap();
        assert!(history.records.iter().all(Result::is_ok), "damage still in the history");
        let records: Vec<_> = history.records.into_iter().map(Result::unwrap).collect();
        let names = event_names(&records);
        assert_eq!(
            names,
            ["Requested", "CredsFetched", "SpawnIntended", "Spawned", "Adopted", "Answered"]
        );
        assert!(records[4].seq > seq, "the adoption got a fresh seq");
        match &records[4].record.event {
            Event::Adopted { reason, helper: h, .. } => {
                assert!(reason.contains("interrupted mount had completed"), "{reason}");
                assert_eq!(h.map(|h| h.pid), Some(helper));
            }
            _ => unreachable!(),
        }
        drop(j);
        let (code, out, err) = jrnl::tool(&journal, &["verify"]);
        assert_eq!(code, 1, "verify must report the damage\n{out}{err}");
        assert!(out.contains(&format!("target tw-1 seq {seq}:")), "{out}");

        // And the target unmounts normally.
        let daemon = Daemon::spawn(s.dir.path(), node, env);
        unmount_ok(&rt, &daemon, "tw-1", &path);
        wait_dead(helper, "helper");
        not_mounted(&path);
        let log2 = daemon.stop();
        assert_no_secret("daemon logs", &format!("{log}{log2}"), &[TOKEN, SECRET_KEY]);
    });
}

#[test]
fn adopted_helper_killed_with_sigkill_is_noticed_its_dead_mount_detached_and_the_target_mounts_again(
) {
    let name = "adopted_helper_killed_with_sigkill_is_noticed_its_dead_mount_detached_and_the_target_mounts_again";
    run_isolated_with_timeout(name, LIMIT, || {
        let s = setup("bucket-adopted");
        let node = "recovery-adopted-kill";
        let rt = runtime();
        let Left { path, helper, mut env, journal, .. } = s.mount_and_stop(&rt, node, "ak-1");
        let mount = s3_mount("ak-1", &path, &s.secret_ref, TOKEN);
        // Healing off: the loss of an adopted helper (its heal is server_heal.rs's).
        env.push(("DMS_HEAL_ATTEMPTS".into(), "0".into()));

        let daemon = Daemon::spawn(s.dir.path(), node, env);
        let reply = call(&rt, &daemon, &mount, &uuid());
        assert_eq!(reply, ok(&format!("Already mounted at {path}")), "{}", daemon.log_text());
        assert_eq!(pid_of(&daemon, "ak-1"), helper, "adopted, not replaced");

        sigkill(helper, "the adopted helper");
        let pid_file = daemon.pid_dir.join("ak-1.pid");
        wait_until("the daemon to notice the adopted helper's death", &daemon, || {
            !pid_file.exists() && mountns::mount_at(Path::new(&path)).is_none()
        });
        s.mount(&rt, &daemon, "ak-1");
        mounted(&path, TESTFS);
        let new = pid_of(&daemon, "ak-1");
        assert_ne!(new, helper);
        assert_eq!(helpers_serving(&path), [new]);
        unmount_ok(&rt, &daemon, "ak-1", &path);
        wait_dead(new, "the new helper");
        let log = daemon.stop();

        lost_then_remounted(&journal, "ak-1", &format!("helper pid {helper}"));
        assert_no_secret("daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}
