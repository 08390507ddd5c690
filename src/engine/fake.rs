//! Recording fakes of the engine's ports, with failures on demand: for fast tests of the
//! engine's logic beside the real-host tests. All three share one call log, so a test can
//! assert the order of effects across boundaries.

use crate::exec::credentials::S3Credentials;
use crate::exec::helper::HelperEnv;
use crate::exec::mounts::{Heard, Ran};
use crate::exec::ports::{Credentials, Mounts, Processes};
use dms_journal::machine::MountFailure;
use dms_journal::{BootId, HelperIdentity, TargetId};
use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The shared call log and the fake host's state.
#[derive(Debug, Default)]
pub struct World {
    pub calls: Mutex<Vec<String>>,
    pub mounted: Mutex<BTreeSet<String>>,
    pub helpers: Mutex<BTreeSet<u32>>,
    pub pid_files: Mutex<BTreeSet<String>>,
    /// Each helper's environment, by PID (the fake observer reads it as the host's reads
    /// `/proc/<pid>/environ`: the spawn nonce, the environment a replacement gets).
    pub envs: Mutex<BTreeMap<u32, HelperEnv>>,
    /// Failures on demand, by operation name: "fetch", "spawn", "verify", "mount_nfs",
    /// "stop", "unmount". The value is the error text.
    pub fail: Mutex<Vec<(String, String)>>,
    next_pid: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl World {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { next_pid: AtomicU32::new(1000), ..Self::default() })
    }

    pub fn fail(&self, op: &str, error: &str) {
        lock(&self.fail).push((op.to_owned(), error.to_owned()));
    }

    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    fn record(&self, call: String) {
        lock(&self.calls).push(call);
    }

    /// The injected failure for `op`, consumed.
    fn failure(&self, op: &str) -> Option<String> {
        let mut fail = lock(&self.fail);
        let i = fail.iter().position(|(o, _)| o == op)?;
        Some(fail.remove(i).1)
    }
}

/// A failure injected into a fake: its text is the reason, as a host error's `Display` is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FakeError(pub String);

#[derive(Debug, Clone)]
pub struct FakeCredentials(pub Arc<World>);

impl Credentials for FakeCredentials {
    type Error = FakeError;

    async fn fetch(
        &self,
        secret_ref: &str,
        token: &SecretString,
    ) -> Result<S3Credentials, FakeError> {
        self.0.record(format!("fetch {secret_ref} token={}", !token.expose_secret().is_empty()));
        if let Some(e) = self.0.failure("fetch") {
            return Err(FakeError(e));
        }
        S3Credentials::parse(br#"{"aws_access_key_id":"AKIAFAKE","aws_secret_access_key":"fake-secret","bucket":"b"}"#)
            .map_err(|e| FakeError(e.to_string()))
    }
}

#[derive(Debug, Clone)]
pub struct FakeProcesses {
    pub world: Arc<World>,
    pub boot: BootId,
}

impl Processes for FakeProcesses {
    type Error = FakeError;

    fn spawn(&self, target: &TargetId, env: &HelperEnv) -> Result<HelperIdentity, FakeError> {
        let path = env.get("vault_data_directory").unwrap_or("?");
        let keys =
            env.get("AWS_ACCESS_KEY_ID").is_some() && env.get("AWS_SECRET_ACCESS_KEY").is_some();
        self.world.record(format!("spawn {target} {path} keys={keys}"));
        if let Some(e) = self.world.failure("spawn") {
            return Err(FakeError(e));
        }
        let pid = self.world.next_pid.fetch_add(1, Ordering::SeqCst);
        lock(&self.world.helpers).insert(pid);
        lock(&self.world.envs).insert(pid, env.clone());
        lock(&self.world.pid_files).insert(target.to_string());
        Ok(HelperIdentity { pid, start_ticks: u64::from(pid) * 10, boot: self.boot })
    }

    fn stop(
        &self,
        target: &TargetId,
        helper: HelperIdentity,
    ) -> Result<Option<PathBuf>, FakeError> {
        self.world.record(format!("stop {target} pid {}", helper.pid));
        if let Some(e) = self.world.failure("stop") {
            return Err(FakeError(e));
        }
        lock(&self.world.helpers).remove(&helper.pid);
        let removed = lock(&self.world.pid_files).remove(target.as_str());
        Ok(removed.then(|| self.pid_file(target)))
    }

    fn remove_pid_file(&self, target: &TargetId) -> Result<Option<PathBuf>, FakeError> {
        self.world.record(format!("remove pid file {target}"));
        let removed = lock(&self.world.pid_files).remove(target.as_str());
        Ok(removed.then(|| self.pid_file(target)))
    }

    fn pid_file(&self, target: &TargetId) -> PathBuf {
        PathBuf::from(format!("/fake/pids/{target}.pid"))
    }

    fn uptime(&self, helper: HelperIdentity) -> Option<Duration> {
        lock(&self.world.helpers).contains(&helper.pid).then(|| Duration::from_secs(5025))
    }

    fn remove_stale_pid_file(&self, target: &TargetId, pid: Option<u32>) -> Result<(), FakeError> {
        self.world.record(format!("remove stale pid file {target} {pid:?}"));
        lock(&self.world.pid_files).remove(target.as_str());
        Ok(())
    }

    fn write_pid_file(&self, target: &TargetId, pid: u32) -> Result<(), FakeError> {
        self.world.record(format!("write pid file {target} {pid}"));
        lock(&self.world.pid_files).insert(target.to_string());
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct FakeMounts(pub Arc<World>);

impl Mounts for FakeMounts {
    type Error = FakeError;

    fn wait_for_helper_mount(
        &self,
        path: &str,
        helper: HelperIdentity,
    ) -> Result<(), MountFailure> {
        self.0.record(format!("verify {path} pid {}", helper.pid));
        if let Some(reason) = self.0.failure("verify") {
            return Err(MountFailure { reason, maybe_mounted: false });
        }
        lock(&self.0.mounted).insert(path.to_owned());
        Ok(())
    }

    async fn mount_nfs(
        &self,
        export: &str,
        options: &str,
        path: &str,
    ) -> Ran<Result<(), MountFailure>> {
        self.0.record(format!("mount nfs {export} {path} -o {options}"));
        if let Some(reason) = self.0.failure("mount_nfs_timeout") {
            let failure = MountFailure { reason: reason.clone(), maybe_mounted: true };
            return Ran { result: Err(failure), heard: Heard::TimedOut(reason) };
        }
        if let Some(reason) = self.0.failure("mount_nfs") {
            return Ran::answered(Err(MountFailure { reason, maybe_mounted: false }));
        }
        lock(&self.0.mounted).insert(path.to_owned());
        Ran::answered(Ok(()))
    }

    async fn unmount(&self, path: &str, nfs: bool) -> Ran<Result<(), FakeError>> {
        self.0.record(format!("unmount {path} nfs={nfs}"));
        if let Some(e) = self.0.failure("umount_timeout") {
            return Ran { result: Err(FakeError(e.clone())), heard: Heard::TimedOut(e) };
        }
        if let Some(e) = self.0.failure("unmount") {
            return Ran::unasked(Err(FakeError(e)));
        }
        lock(&self.0.mounted).remove(path);
        Ran::unasked(Ok(()))
    }

    fn detach(&self, path: &str) -> Result<(), FakeError> {
        self.0.record(format!("detach {path}"));
        if let Some(e) = self.0.failure("detach") {
            return Err(FakeError(e));
        }
        lock(&self.0.mounted).remove(path);
        Ok(())
    }

    fn remove_mount_point(&self, path: &str) -> Result<(), FakeError> {
        self.0.record(format!("rmdir {path}"));
        Ok(())
    }
}
