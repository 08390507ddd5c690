//! What the recovery and trust tests share: a Barbican with the test's credentials, a
//! daemon that mounted a target and stopped, and the end states that prove nothing was
//! signalled that is not ours.
#![allow(dead_code, clippy::unwrap_used)]

use super::host::{alive, all_pids, comm, environ_var, not_mounted, pid_of, session_of, SETTLE};
use super::{call, mounted_msg, s3_mount, unmount, unmounted_msg, uuid, Daemon};
use crate::support::{self, Barbican, Broker};
use dms_journal::store::Stored;
use dms_journal::Event;
use rustix::process::{kill_process, Pid, Signal};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const TOKEN: &str = "gAAAAAB-recovery-keystone-token";
pub const KEY_ID: &str = "AKIARECOVERY";
pub const SECRET_KEY: &str = "recovery-secret-key-value";
/// Every test's whole-body limit (the child in its mount namespace is killed after it).
pub const LIMIT: Duration = Duration::from_secs(240);
pub const TESTFS: &str = "fuse.dms-testfs";

/// `setsid sleep 1000`: an unrelated long-lived process in a session of its own, so no
/// group signal meant for something of ours could reach it.
pub fn unrelated_sleeper() -> Child {
    let child = spawn_sleeper();
    sleeper_ready(child.id());
    child
}

pub fn spawn_sleeper() -> Child {
    Command::new("/usr/bin/setsid")
        .args(["sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for the sleeper `pid` to exec and checks that it leads its own session.
pub fn sleeper_ready(pid: u32) {
    support::wait_for("the sleeper to exec", SETTLE, || (comm(pid) == "sleep").then_some(()))
        .unwrap();
    assert_eq!(session_of(pid), Some(pid), "the sleeper leads its own session");
}

/// Kills whatever dms-testfs processes serve a path under this test's directory when the
/// test ends (pass or fail), so no helper outlives its test; their mounts die with the
/// namespace.
pub struct Sweeper(pub PathBuf);

impl Drop for Sweeper {
    fn drop(&mut self) {
        let base = format!("{}/", self.0.display());
        for pid in all_pids() {
            let ours = comm(pid) == "dms-testfs"
                && environ_var(pid, "vault_data_directory").is_some_and(|p| p.starts_with(&base));
            if ours {
                if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                    let _ = kill_process(p, Signal::KILL);
                }
            }
        }
    }
}

/// Kills and reaps a child of the test (the sleeper, a hand-started helper) at the end.
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Setup {
    pub _sweeper: Sweeper,
    pub _barbican: Barbican,
    pub secret_ref: String,
    pub dir: support::TestDir,
}

pub fn setup(bucket: &str) -> Setup {
    let barbican = Barbican::shared();
    let secret_ref =
        barbican.store_secret(TOKEN, &super::testfs_credentials(KEY_ID, SECRET_KEY, bucket));
    let dir = support::temp_dir("dms-recovery-");
    Setup { _sweeper: Sweeper(dir.path().to_path_buf()), _barbican: barbican, secret_ref, dir }
}

/// What a daemon that mounted one target and was stopped left: the helper runs on.
pub struct Left {
    pub path: String,
    pub helper: u32,
    pub env: Vec<(String, String)>,
    pub pid_dir: PathBuf,
    pub journal: PathBuf,
}

impl Setup {
    /// A new request to mount `target`, answered with success; returns its path.
    pub fn mount(&self, rt: &tokio::runtime::Runtime, daemon: &Daemon, target: &str) -> String {
        let path = daemon.path(target);
        let reply = call(rt, daemon, &s3_mount(target, &path, &self.secret_ref, TOKEN), &uuid());
        assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
        path
    }

    /// A daemon started as `node` mounts `target`, then stops.
    pub fn mount_and_stop(&self, rt: &tokio::runtime::Runtime, node: &str, target: &str) -> Left {
        let daemon = Daemon::start(Broker::shared(), self.dir.path(), node, &[]);
        let path = self.mount(rt, &daemon, target);
        let helper = pid_of(&daemon, target);
        let (env, pid_dir, journal) =
            (daemon.env.clone(), daemon.pid_dir.clone(), daemon.journal.clone());
        daemon.stop();
        Left { path, helper, env, pid_dir, journal }
    }
}

/// A new request to unmount `target`, answered with success.
pub fn unmount_ok(rt: &tokio::runtime::Runtime, daemon: &Daemon, target: &str, path: &str) {
    let reply = call(rt, daemon, &unmount(target, path, "s3"), &uuid());
    assert_eq!(reply, unmounted_msg(path), "{}", daemon.log_text());
}

/// The PID file names a live process that is not our helper (its PID was reused, or the
/// file was overwritten): it must never be signalled.
pub fn assert_reused_pid_is_left_alone(sleeper: &mut Child, daemon: &Daemon, target: &str) {
    let pid = sleeper.id();
    assert!(alive(pid), "the unrelated process was killed\n{}", daemon.log_text());
    assert!(sleeper.try_wait().unwrap().is_none(), "the unrelated process exited");
    assert_eq!(comm(pid), "sleep");
    not_mounted(&daemon.path(target));
    assert!(daemon.pid_files().is_empty(), "PID file left: {:?}", daemon.pid_files());
}

/// A `Lost` record whose cleanup detaches the mount and removes the PID file but signals
/// no process.
pub fn assert_lost_signals_nothing(lost: &Stored) {
    match &lost.record.event {
        Event::Lost { cleanup, .. } => {
            assert!(cleanup.helper.is_none(), "a process was to be signalled: {cleanup}");
            assert!(cleanup.mount && cleanup.pid_file, "{cleanup}");
        }
        other => panic!("not a Lost record: {}", other.name()),
    }
}

/// A `Cleaned` record that detached the mount and removed the PID file, stopping nothing.
pub fn assert_cleaned_without_stopping(cleaned: &Stored) {
    match &cleaned.record.event {
        Event::Cleaned { what } => {
            assert!(what.contains("unmounted") && what.contains("PID file removed"), "{what}");
            assert!(!what.contains("stopped"), "{what}");
        }
        other => panic!("not a Cleaned record: {}", other.name()),
    }
}
