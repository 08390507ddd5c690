//! Real processes: a shell script stands in for the helper binary.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::observe::pidfile::Content;
use std::os::unix::fs::PermissionsExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Its child is started before it says it started, so a stop that follows the line reaches
/// the child with the group's signal too (the other way round, a stop between the line and
/// the fork left a `sleep` behind), and the trap takes the child along anyway. Even so, one
/// CI run's leftovers check found this `sleep` of target r1 orphaned (cause not found): it
/// is bounded to a minute, far beyond any test here, so it can never outlive the suite.
const SCRIPT: &str = r#"#!/bin/sh
trap 'echo "got TERM"; kill $child 2>/dev/null; exit 0' TERM
env | sort
sleep 60 &
child=$!
echo "started for $vault_data_directory"
wait
"#;

const STUBBORN: &str = r#"#!/bin/sh
trap '' TERM
echo "ignoring TERM"
while :; do sleep 0.05; done
"#;

/// Helpers are reaped by tasks on their pidfds, so each rig has a runtime of its own (one
/// worker, running beside the test's thread) to spawn them in.
struct Rig {
    dir: tempfile::TempDir,
    helpers: Helpers,
    exits: UnboundedReceiver<HelperExit>,
    tx: UnboundedSender<HelperExit>,
    runtime: tokio::runtime::Runtime,
    /// Every helper the rig started, stopped when it is dropped: a failing test leaves none.
    spawned: std::sync::Mutex<Vec<(TargetId, HelperIdentity)>>,
}

impl Rig {
    fn spawn(&self, target: &str, env: &HelperEnv) -> Result<HelperIdentity, HelperError> {
        let _inside = self.runtime.enter();
        let helper = self.helpers.spawn(&t(target), env, self.tx.clone())?;
        self.spawned.lock().unwrap().push((t(target), helper));
        Ok(helper)
    }

    /// The next exit reported, if one comes within `timeout`.
    fn next_exit(&mut self, timeout: Duration) -> Option<HelperExit> {
        let exits = &mut self.exits;
        self.runtime.block_on(async { tokio::time::timeout(timeout, exits.recv()).await }).ok()?
    }
}

fn rig(script: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("fake-s3vaultfuse");
    std::fs::write(&bin, script).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let procfs = Procfs::default();
    let helpers = Helpers {
        bin,
        log_dir: dir.path().join("logs"),
        pid_dir: PidDir::new(dir.path().join("pids")),
        boot: procfs.boot_id().unwrap(),
        procfs,
        stop_grace: Duration::from_millis(300),
        reaping: Default::default(),
        cgroups: None,
    };
    let (tx, exits) = unbounded_channel();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    Rig { dir, helpers, exits, tx, runtime, spawned: Default::default() }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let spawned = std::mem::take(self.spawned.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (target, helper) in spawned {
            // Already stopped by the test: gone, nothing signalled.
            let _ = self.helpers.stop(&target, helper);
        }
    }
}

fn t(s: &str) -> TargetId {
    TargetId::new(s).unwrap()
}

fn env_for(path: &str) -> HelperEnv {
    let mut env = HelperEnv::default();
    env.set("vault_data_directory", path);
    env.set("AWS_SECRET_ACCESS_KEY", "s3cr3t-value");
    env.set("vault_s3_ssl_cert", "");
    env
}

fn wait_for_log(rig: &Rig, target: &str, needle: &str) -> String {
    let path = rig.dir.path().join(format!("logs/{target}.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn given_a_spawned_helper_then_it_has_its_identity_pid_file_session_log_and_only_the_explicit_env()
{
    let mut rig = rig(SCRIPT);
    let helper = rig.spawn("t1", &env_for("/mnt/t1")).unwrap();
    assert_eq!(rig.helpers.procfs.identity(helper.pid, rig.helpers.boot).unwrap(), Some(helper));
    assert_eq!(rig.helpers.pid_dir.read(&t("t1")).unwrap(), Content::Pid(helper.pid));
    let pid = Pid::from_raw(helper.pid as i32).unwrap();
    assert_eq!(rustix::process::getsid(Some(pid)).unwrap(), pid, "leads its own session");

    let log = wait_for_log(&rig, "t1", "started for");
    assert!(log.contains("started for /mnt/t1"), "{log}");
    assert!(log.contains("DMS_HELPER_TARGET=t1"), "{log}");
    assert!(!log.contains("vault_s3_ssl_cert"), "empty values are left out: {log}");
    // Nothing of the daemon's own environment (cargo sets these for the test process).
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    assert!(!log.contains("CARGO_MANIFEST_DIR"), "daemon environment leaked: {log}");
    assert!(!format!("{:?}", env_for("/x")).contains("s3cr3t"), "Debug redacts values");

    let uptime = rig.helpers.uptime(helper).unwrap();
    assert!(uptime < Duration::from_secs(60), "{uptime:?}");
    rig.helpers.stop(&t("t1"), helper).unwrap();
    assert_eq!(rig.helpers.uptime(helper), None, "a stopped helper has no uptime");
    let exit = rig.next_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(exit.helper, helper);
    assert_eq!(exit.status, "exit status: 0");
    assert_eq!(rig.helpers.pid_dir.read(&t("t1")).unwrap(), Content::Absent, "PID file removed");
    assert!(wait_for_log(&rig, "t1", "got TERM").contains("got TERM"));
}

#[test]
fn given_a_helper_that_ignores_sigterm_when_stopped_then_sigkill_after_the_grace() {
    let mut rig = rig(STUBBORN);
    let helper = rig.spawn("t2", &env_for("/mnt/t2")).unwrap();
    wait_for_log(&rig, "t2", "ignoring TERM");
    let started = Instant::now();
    rig.helpers.stop(&t("t2"), helper).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300), "the grace period was honoured");
    let exit = rig.next_exit(Duration::from_secs(10)).unwrap();
    assert!(
        exit.status.contains("SIGKILL") || exit.status.contains("signal: 9"),
        "{}",
        exit.status
    );
}

#[test]
fn given_an_identity_whose_pid_now_belongs_to_another_process_when_stopped_then_nothing_is_signalled_and_the_stop_is_done(
) {
    let mut rig = rig(SCRIPT);
    let running = rig.spawn("t3", &env_for("/mnt/t3")).unwrap();
    // The journaled helper exited and its PID was reused: the process there now is another.
    let journaled = HelperIdentity { start_ticks: running.start_ticks + 1, ..running };
    let removed = rig.helpers.stop(&t("t3"), journaled).unwrap();
    assert!(rig.next_exit(Duration::from_millis(300)).is_none(), "it was not signalled");
    assert!(rig.helpers.procfs.is_same(&running, rig.helpers.boot), "the other process runs");
    assert!(removed.is_some(), "the PID file naming the journaled helper's PID was removed");
    assert_eq!(rig.helpers.pid_dir.read(&t("t3")).unwrap(), Content::Absent);
    rig.helpers.stop(&t("t3"), running).unwrap();
}

#[test]
fn given_a_helper_of_an_earlier_boot_when_stopped_then_it_is_gone_by_definition() {
    let rig = rig(SCRIPT);
    let helper = rig.spawn("t4", &env_for("/mnt/t4")).unwrap();
    let old = HelperIdentity { boot: BootId(uuid::Uuid::nil()), ..helper };
    rig.helpers.stop(&t("t4"), old).unwrap();
    assert!(rig.helpers.procfs.is_same(&helper, rig.helpers.boot), "the live process was not hit");
    rig.helpers.stop(&t("t4"), helper).unwrap();
}

#[test]
fn given_a_helper_that_exits_at_once_when_spawned_then_the_failure_is_seen() {
    let mut rig = rig("#!/bin/sh\nexit 0\n");
    match rig.spawn("t5", &env_for("/mnt/t5")) {
        Err(HelperError::ExitedAtOnce { status }) => assert!(status.contains('0'), "{status}"),
        Err(other) => panic!("unexpected error {other}"),
        // It may still have been running when its identity was read: then its exit
        // must be reported by the waiter.
        Ok(helper) => {
            let exit = rig.next_exit(Duration::from_secs(10)).unwrap();
            assert_eq!(exit.helper, helper);
            assert_eq!(exit.status, "exit status: 0");
        }
    }
}

#[test]
fn given_a_missing_binary_when_spawned_then_an_exec_error_and_no_pid_file() {
    let mut rig = rig(SCRIPT);
    rig.helpers.bin = rig.dir.path().join("does-not-exist");
    let err = rig.spawn("t6", &env_for("/mnt/t6")).unwrap_err();
    assert!(matches!(err, HelperError::Exec { .. }), "{err}");
    assert_eq!(rig.helpers.pid_dir.read(&t("t6")).unwrap(), Content::Absent);
}

/// The reaper is a task on the child's own pidfd (one descriptor per helper, no thread),
/// and the helper is known as reaped until its exit is reported, so the supervisor opens no
/// second watch for it.
#[test]
fn given_a_runtime_when_a_helper_is_spawned_then_it_is_reaped_on_one_pidfd_until_its_exit() {
    let mut rig = rig(SCRIPT);
    let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let before = threads();
    // This process's pidfds naming `pid` (fdinfo says which process a pidfd is for).
    let pidfds = |pid: u32| {
        let fdinfo = std::fs::read_dir("/proc/self/fdinfo").unwrap();
        let texts = fdinfo.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok());
        texts.filter(|t| t.lines().any(|l| l == format!("Pid:\t{pid}"))).count()
    };
    let helper = rig.spawn("r1", &env_for("/mnt/r1")).unwrap();
    assert!(rig.helpers.reaping.contains(&helper));
    assert_eq!(pidfds(helper.pid), 1, "one pidfd per reaped helper");
    assert_eq!(threads(), before, "and no thread");
    wait_for_log(&rig, "r1", "started for");
    rig.helpers.stop(&t("r1"), helper).unwrap();
    let exit = rig.next_exit(Duration::from_secs(10)).unwrap();
    assert_eq!((exit.helper, exit.status.as_str()), (helper, "exit status: 0"));
    assert!(!rig.helpers.reaping.contains(&helper));
}

/// No runtime, no watch of its exit: no helper is started, and nothing is left behind.
#[test]
fn given_no_runtime_when_a_helper_is_spawned_then_it_is_refused_before_it_starts() {
    let rig = rig(SCRIPT);
    let err = rig.helpers.spawn(&t("n1"), &env_for("/mnt/n1"), rig.tx.clone()).unwrap_err();
    assert!(matches!(err, HelperError::NoWatch { .. }), "{err}");
    assert!(err.to_string().starts_with("cannot watch the exit of helper"), "{err}");
    assert_eq!(rig.helpers.pid_dir.read(&t("n1")).unwrap(), Content::Absent);
    assert!(!rig.dir.path().join("logs/n1.log").exists(), "not even its log was opened");
}
