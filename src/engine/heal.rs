//! What the engine keeps and gathers for healing a target whose helper died: the
//! environment each mounted target's helper was started with (its credentials among it),
//! and the target's earlier deaths, read from the journal.
//!
//! The environment lives in memory only: taken from the mount that fetched the credentials,
//! or, after a restart, read once from the running helper's own `/proc/<pid>/environ` (the
//! daemon gave it that environment). Never journaled, never logged; its values are zeroed
//! when it is dropped, which happens as soon as the target is no longer mounted.

use super::{lock, Credentials, Engine, EngineError, Mounts, Processes};
use crate::exec::death::DeathCause;
use crate::exec::helper::HelperEnv;
use dms_journal::machine::HealFacts;
use dms_journal::{Event, OperationId, Phase, Record, TargetId, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The helper environments of the targets that are mounted (or being mounted or healed).
#[derive(Debug, Default)]
pub(super) struct Environments(Mutex<HashMap<TargetId, HelperEnv>>);

impl Environments {
    pub(super) fn remember(&self, target: &TargetId, env: HelperEnv) {
        lock(&self.0).insert(target.clone(), env);
    }

    pub(super) fn get(&self, target: &TargetId) -> Option<HelperEnv> {
        lock(&self.0).get(target).cloned()
    }

    pub(super) fn contains(&self, target: &TargetId) -> bool {
        lock(&self.0).contains_key(target)
    }

    /// Forget (and zero) the environment of every target `records` left without a helper
    /// to replace: unmounted, dirty or being unmounted.
    pub(super) fn forget_unmounted(
        &self,
        records: &[Record],
        phase_of: impl Fn(&TargetId) -> Phase,
    ) {
        let mut envs = lock(&self.0);
        if envs.is_empty() {
            return;
        }
        for record in records {
            match phase_of(&record.target) {
                Phase::Unmounted | Phase::Dirty(_) | Phase::Unmounting(_) => {
                    envs.remove(&record.target);
                }
                Phase::Mounting(_) | Phase::Mounted | Phase::Healing(_) => {}
            }
        }
    }
}

impl<C: Credentials, P: Processes, M: Mounts> Engine<C, P, M> {
    /// Keep the environment `target`'s helper runs with (read back from a helper adopted at
    /// boot), so the helper can be replaced if it dies.
    pub fn remember_environment(&self, target: &TargetId, env: HelperEnv) {
        self.environments.remember(target, env);
    }

    /// Whether a dead helper of `target` could be replaced by one started the same way.
    pub fn knows_environment(&self, target: &TargetId) -> bool {
        self.environments.contains(target)
    }

    /// What `decide` needs to choose between healing `target` and giving it up: a fresh
    /// operation id, the policy, whether the environment is known, and when the target's
    /// helpers died before (its `HelperDied` records, read from the journal on the blocking
    /// pool; deaths are rare, and a restart must not reset the count).
    pub(super) async fn heal_facts(
        &self,
        target: &TargetId,
        cause: DeathCause,
    ) -> Result<HealFacts, EngineError> {
        let journal = Arc::clone(&self.journal);
        let id = target.clone();
        let history = tokio::task::spawn_blocking(move || journal.history(&id))
            .await
            .map_err(|_| EngineError::Closed)??;
        let earlier: Vec<Timestamp> = history
            .records
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|s| matches!(s.record.event, Event::HelperDied { .. }))
            .map(|s| s.record.at)
            .collect();
        Ok(HealFacts {
            op: OperationId::random(),
            earlier,
            attempts: self.heal.attempts,
            window_ms: u64::try_from(self.heal.window.as_millis()).unwrap_or(u64::MAX),
            environment: self.environments.contains(target),
            clean_exit: cause == DeathCause::Exit(0),
        })
    }
}
