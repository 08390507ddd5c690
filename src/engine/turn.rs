//! A target's turn: requests, reconcile steps and supervision of one target run one at a
//! time; a request answered early keeps its turn until the rest of its run is done.

use super::{admission, breaker, lock, perform, EngineError};
use crate::exec::ports::{Credentials, Mounts, Processes};
use dms_journal::{Outcome, TargetId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A request answered, with the rest of its run (see [`Engine::serve`](super::Engine::serve)).
#[must_use = "the rest of the run holds the target's turn until finished"]
pub struct Served<'a, C, P, M> {
    pub outcome: Outcome,
    pub(super) run: perform::Run<'a, C, P, M>,
    pub(super) _turn: (Serial<'a>, admission::Admitted<'a>, Option<breaker::Probe<'a>>),
}

impl<C, P, M> std::fmt::Debug for Served<'_, C, P, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").field("outcome", &self.outcome).finish_non_exhaustive()
    }
}

impl<C: Credentials, P: Processes, M: Mounts> Served<'_, C, P, M> {
    /// Perform what the machine decided to do after the answer; the target's turn is
    /// released when this returns (or when `self` is dropped unfinished).
    pub async fn finish(self) -> Result<(), EngineError> {
        self.run.finish().await
    }
}

pub(super) type TargetLocks = Mutex<HashMap<TargetId, Arc<tokio::sync::Mutex<()>>>>;

/// A target's turn. On drop the target's lock is forgotten once nobody else holds or
/// waits for it, so the map stays as small as the set of targets in flight.
pub(super) struct Serial<'a> {
    targets: &'a TargetLocks,
    target: TargetId,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Serial<'_> {
    fn drop(&mut self) {
        let mut targets = lock(self.targets);
        drop(self.held.take());
        if targets.get(&self.target).is_some_and(|l| Arc::strong_count(l) == 1) {
            targets.remove(&self.target);
        }
    }
}

/// Wait for `target`'s turn.
pub(super) async fn serialize<'a>(targets: &'a TargetLocks, target: &TargetId) -> Serial<'a> {
    let target_lock = Arc::clone(lock(targets).entry(target.clone()).or_default());
    Serial { targets, target: target.clone(), held: Some(target_lock.lock_owned().await) }
}

/// `target`'s turn if nobody holds it now.
pub(super) fn try_serialize<'a>(targets: &'a TargetLocks, target: &TargetId) -> Option<Serial<'a>> {
    let target_lock = Arc::clone(lock(targets).entry(target.clone()).or_default());
    let held = target_lock.try_lock_owned().ok();
    // Built even when the lock is busy, so its drop forgets an unused entry.
    let serial = Serial { targets, target: target.clone(), held };
    serial.held.is_some().then_some(serial)
}
