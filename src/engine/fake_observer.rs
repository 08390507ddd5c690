//! A recording fake of the reconciler's port ([`crate::exec::observer::Observer`]): it shows the
//! fake host of [`super::fake::World`] as the reconciler would see the real one (mounts,
//! PID files, helper processes), and lets a test kill a helper, which leaves its mount dead
//! and fires its exit watch, as a crashed s3vaultfuse does.

use super::fake::World;
use crate::exec::helper::HelperEnv;
use crate::exec::observer::{ObservationError, Observer, Watch};
use dms_journal::reconcile::{MountEntry, Observations, PidFile, Process};
use dms_journal::{
    BootId, FsKind, HelperIdentity, JournalState, MountBase, SpawnNonce, TargetState,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub struct FakeObserver {
    pub world: Arc<World>,
    pub boot: BootId,
    pub mount_base: MountBase,
    /// Paths whose helper a test killed: dead while still mounted.
    dead: Arc<Mutex<BTreeSet<String>>>,
    /// Watches set up, by helper PID.
    watches: Arc<Mutex<HashMap<u32, Vec<oneshot::Sender<()>>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeObserver {
    pub fn new(world: Arc<World>, boot: BootId, mount_base: MountBase) -> Self {
        Self { world, boot, mount_base, dead: Arc::default(), watches: Arc::default() }
    }

    /// Helper `pid` dies: it is no longer running, the mount at `mount_path` stays but no
    /// longer answers, and its exit watches fire.
    pub fn kill(&self, pid: u32, mount_path: &str) {
        self.record(format!("kill pid {pid}"));
        lock(&self.world.helpers).remove(&pid);
        lock(&self.dead).insert(mount_path.to_owned());
        for exited in lock(&self.watches).remove(&pid).unwrap_or_default() {
            let _ = exited.send(());
        }
    }

    /// Exit watches currently set up.
    pub fn watched(&self) -> BTreeSet<u32> {
        lock(&self.watches).keys().copied().collect()
    }

    fn record(&self, call: String) {
        lock(&self.world.calls).push(call);
    }

    /// The injected failure for `op` (see [`World::fail`]), consumed.
    fn failure(&self, op: &str) -> Option<String> {
        let mut fail = lock(&self.world.fail);
        let i = fail.iter().position(|(o, _)| o == op)?;
        Some(fail.remove(i).1)
    }

    /// The fake host as the gatherer would read it; PID files name the journaled helper.
    fn look(&self, journal: &JournalState) -> Observations {
        let at = |path: &str| journal.targets.values().find(|t| t.mount_path() == Some(path));
        let mounted = lock(&self.world.mounted).clone();
        let mut dead = lock(&self.dead);
        dead.retain(|path| mounted.contains(path));
        let mounts = mounted
            .iter()
            .map(|path| {
                let s3 = at(path).is_none_or(TargetState::is_s3);
                let (fstype, kind) =
                    if s3 { ("fuse.s3vaultfuse", FsKind::Fuse) } else { ("nfs4", FsKind::Nfs) };
                MountEntry {
                    path: path.clone(),
                    fstype: fstype.into(),
                    kind,
                    dead: dead.contains(path),
                }
            })
            .collect();
        let helper_of = |name: &str| {
            journal.targets.values().find(|t| t.target.as_str() == name).and_then(|t| t.helper)
        };
        let pid_files = lock(&self.world.pid_files)
            .iter()
            .map(|name| PidFile { name: name.clone(), pid: helper_of(name).map(|h| h.pid) })
            .collect();
        let serving =
            |pid: u32| journal.targets.values().find(|t| t.helper.is_some_and(|h| h.pid == pid));
        let processes = lock(&self.world.helpers)
            .iter()
            .map(|&pid| {
                let helper_for = serving(pid).and_then(|t| t.mount_path()).map(str::to_owned);
                let serves_mount = helper_for.as_ref().is_some_and(|p| mounted.contains(p));
                let envs = lock(&self.world.envs);
                let carried = envs.get(&pid).and_then(|e| e.get(SpawnNonce::ENV));
                let nonce = carried.and_then(SpawnNonce::from_env_value);
                Process { pid, start_ticks: u64::from(pid) * 10, helper_for, serves_mount, nonce }
            })
            .collect();
        Observations {
            mount_base: self.mount_base.clone(),
            mounts,
            pid_files,
            processes,
            distrusted: vec![],
        }
    }
}

impl Observer for FakeObserver {
    fn boot(&self) -> BootId {
        self.boot
    }

    async fn observe(&self, journal: JournalState) -> Result<Observations, ObservationError> {
        self.record("observe".into());
        if let Some(e) = self.failure("observe") {
            return Err(ObservationError::Unfinished(e));
        }
        Ok(self.look(&journal))
    }

    fn watch(&self, helper: HelperIdentity) -> Watch {
        self.record(format!("watch pid {}", helper.pid));
        if !lock(&self.world.helpers).contains(&helper.pid) {
            return Watch::Gone("gone");
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.watches).entry(helper.pid).or_default().push(tx);
        Watch::Exits(Box::pin(async move {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        }))
    }

    fn helper_env(&self, helper: HelperIdentity) -> Option<HelperEnv> {
        self.record(format!("read env pid {}", helper.pid));
        if !lock(&self.world.helpers).contains(&helper.pid) {
            return None;
        }
        let mut env = lock(&self.world.envs).get(&helper.pid).cloned()?;
        env.set(SpawnNonce::ENV, ""); // only the helper's own names are read back
        Some(env)
    }
}
