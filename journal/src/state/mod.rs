//! The state of a target, folded from its records.
//!
//! [`TargetState::apply`] is total: it folds any record into some state, so a replay never
//! stops on a record it does not like. Whether a record was *legal* in the state it was
//! appended to is a separate question, answered by [`TargetState::check`] with one
//! exhaustive match; `dms-journal verify` and the model tests use it.

use crate::event::{Cleanup, Deaths, Outcome, Record, TargetKind, TargetSpec};
use crate::ids::{
    BootId, HelperIdentity, OperationId, RequestKey, SpawnNonce, TargetId, Timestamp,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

mod fold;

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountStep {
    Requested,
    CredsFetched,
    Spawned,
    /// The spawn is licensed and its nonce journaled (`SpawnIntended`); the helper may run
    /// before its `Spawned` record. Last: older snapshots keep their variant numbers.
    SpawnIntended(SpawnNonce),
}

/// The step's name, as phases show it (`mounting (Spawned)`); the nonce is never shown.
impl fmt::Debug for MountStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MountStep::Requested => "Requested",
            MountStep::CredsFetched => "CredsFetched",
            MountStep::Spawned => "Spawned",
            MountStep::SpawnIntended(_) => "SpawnIntended",
        })
    }
}

/// Where the healing of a target whose helper died is: its dead mount being detached, then
/// detached (`Cleaned`; the backoff runs), the replacement's spawn intent journaled, the
/// replacement spawned and its mount awaited.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealStep {
    Dead,
    Detached,
    SpawnIntended(SpawnNonce),
    Spawned,
}

/// The step's name; the nonce is never shown.
impl fmt::Debug for HealStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealStep::Dead => "Dead",
            HealStep::Detached => "Detached",
            HealStep::SpawnIntended(_) => "SpawnIntended",
            HealStep::Spawned => "Spawned",
        })
    }
}

/// A heal in progress and the deaths it answers (which bound the next attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healing {
    pub step: HealStep,
    pub deaths: Deaths,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnmountStep {
    Requested,
    HelperStopped,
}

/// Where a target is. In-flight phases (`Mounting`, `Unmounting`, `Healing`) always have an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Unmounted,
    Mounting(MountStep),
    Mounted,
    Unmounting(UnmountStep),
    /// Something may be left behind (a helper, a mount, a PID file) and must be cleaned.
    Dirty(Cleanup),
    /// Mounted, its helper dead and being replaced: still mounted for the requester, but
    /// with an operation in flight. Last: older snapshots keep their variant numbers.
    Healing(Healing),
}

impl Phase {
    /// The phase without its details: what tables show and counters are labelled with.
    pub fn tag(&self) -> &'static str {
        match self {
            Phase::Unmounted => "unmounted",
            Phase::Mounting(_) => "mounting",
            Phase::Mounted => "mounted",
            Phase::Unmounting(_) => "unmounting",
            Phase::Dirty(_) => "dirty",
            Phase::Healing(_) => "healing",
        }
    }

    pub fn in_flight(&self) -> bool {
        matches!(self, Phase::Mounting(_) | Phase::Unmounting(_) | Phase::Healing(_))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Unmounted => f.write_str("unmounted"),
            Phase::Mounting(step) => write!(f, "mounting ({step:?})"),
            Phase::Mounted => f.write_str("mounted"),
            Phase::Unmounting(step) => write!(f, "unmounting ({step:?})"),
            Phase::Dirty(c) => write!(f, "dirty ({c})"),
            Phase::Healing(h) => write!(f, "healing ({:?}, death {})", h.step, h.deaths.count),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Mount,
    Unmount,
    /// Replacing a mounted target's dead helper; no request asked for it.
    Heal,
}

impl Action {
    /// As tables and `--json` show it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Mount => "mount",
            Action::Unmount => "unmount",
            Action::Heal => "heal",
        }
    }
}

/// The operation in flight on a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: Option<OperationId>,
    pub request: Option<RequestKey>,
    pub action: Action,
    pub started_at: Timestamp,
}

/// A request that got its answer, kept so a redelivery gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub outcome: Outcome,
    pub at: Timestamp,
}

/// Everything the model knows about one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetState {
    pub target: TargetId,
    pub phase: Phase,
    /// The spec of the current or last mount: where it is, what it is.
    pub spec: Option<TargetSpec>,
    /// The helper that runs (or may run) for this target.
    pub helper: Option<HelperIdentity>,
    pub op: Option<Operation>,
    pub requests: BTreeMap<RequestKey, Decided>,
    pub updated_at: Timestamp,
    /// The boot of the last record folded in. Reality from another boot is gone: the
    /// reconciler treats every claim made under an older boot as void.
    pub boot: Option<BootId>,
    /// Records folded into this state (including those compacted away).
    pub records: u64,
}

/// Why a record was not legal in the state it was appended to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event} is not legal while {target} is {phase}")]
pub struct Illegal {
    pub target: TargetId,
    pub phase: String,
    pub event: &'static str,
}

impl TargetState {
    pub fn new(target: TargetId) -> Self {
        Self {
            target,
            phase: Phase::Unmounted,
            spec: None,
            helper: None,
            op: None,
            requests: BTreeMap::new(),
            updated_at: Timestamp(0),
            boot: None,
            records: 0,
        }
    }

    pub fn mount_path(&self) -> Option<&str> {
        self.spec.as_ref().map(|s| s.mount_path.as_str())
    }

    /// Whether the target's helper kind is S3 (has a helper) as far as the journal knows.
    pub fn is_s3(&self) -> bool {
        self.spec.as_ref().is_some_and(|s| matches!(s.kind, TargetKind::S3 { .. }))
    }

    /// Forget decided requests older than `cutoff` (compaction); in-flight state is untouched.
    pub fn forget_requests_before(&mut self, cutoff: Timestamp) {
        self.requests.retain(|_, d| d.at >= cutoff);
    }
}

/// The whole journal folded: every target's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalState {
    pub targets: BTreeMap<TargetId, TargetState>,
}

impl JournalState {
    pub fn apply(&mut self, record: &Record) {
        self.targets
            .entry(record.target.clone())
            .or_insert_with(|| TargetState::new(record.target.clone()))
            .apply(record);
    }

    pub fn target(&self, id: &TargetId) -> Option<&TargetState> {
        self.targets.get(id)
    }

    /// The state of `id`, or a fresh unmounted one if the journal never saw it.
    pub fn target_or_new(&self, id: &TargetId) -> TargetState {
        self.targets.get(id).cloned().unwrap_or_else(|| TargetState::new(id.clone()))
    }

    /// Whether `records`, applied in order, are each legal where they land: what a writer
    /// asks before anything reaches the disk, so an illegal record is refused when it is
    /// made, not found at the next boot or by `dms-journal verify`.
    /// Legality reads only phase, spec and helper: the copies folded here leave out the
    /// target's answered requests, which can be thousands and are on every append's path.
    pub fn check_all(&self, records: &[Record]) -> Result<(), Illegal> {
        let mut touched: BTreeMap<&TargetId, TargetState> = BTreeMap::new();
        for record in records {
            let state = touched.entry(&record.target).or_insert_with(|| {
                match self.targets.get(&record.target) {
                    Some(t) => TargetState {
                        target: t.target.clone(),
                        phase: t.phase,
                        spec: t.spec.clone(),
                        helper: t.helper,
                        op: t.op.clone(),
                        requests: BTreeMap::new(),
                        updated_at: t.updated_at,
                        boot: t.boot,
                        records: t.records,
                    },
                    None => TargetState::new(record.target.clone()),
                }
            });
            state.check(&record.event)?;
            state.apply(record);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event::{Event, TargetKind};

    fn record(target: &str, event: Event) -> Record {
        Record {
            target: TargetId::new(target).unwrap(),
            at: Timestamp(1),
            boot: BootId(uuid::Uuid::nil()),
            request: None,
            op: None,
            event,
        }
    }

    fn nfs_requested(target: &str) -> Event {
        let kind = TargetKind::Nfs { export: "nfs:/x".into(), options: String::new() };
        Event::Requested { spec: TargetSpec { kind, mount_path: format!("/base/{target}") } }
    }

    #[test]
    fn given_records_when_checked_then_each_is_checked_where_the_ones_before_it_land() {
        let empty = JournalState::default();
        // Requested then Verified is an NFS mount; Verified alone is not legal anywhere new.
        let chain = [record("a", nfs_requested("a")), record("a", Event::Verified)];
        assert_eq!(empty.check_all(&chain), Ok(()));
        let lone = [record("b", Event::Verified)];
        let illegal = empty.check_all(&lone).unwrap_err();
        assert_eq!((illegal.target.as_str(), illegal.event), ("b", "Verified"));
        // Records of another target do not move this one.
        let mixed = [record("a", nfs_requested("a")), record("b", Event::Verified)];
        assert_eq!(empty.check_all(&mixed).unwrap_err().target.as_str(), "b");

        let mut mounted = JournalState::default();
        for r in &chain {
            mounted.apply(r);
        }
        assert_eq!(mounted.check_all(&chain).unwrap_err().event, "Requested", "already mounted");
    }
}
