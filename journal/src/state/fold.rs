//! The fold of records into a [`TargetState`]: [`TargetState::check`], whether a record is
//! legal where it lands (one exhaustive match), and [`TargetState::apply`], total.

use super::{
    Action, Decided, HealStep, Healing, Illegal, MountStep, Operation, Phase, TargetState,
    UnmountStep,
};
use crate::event::{Event, FailureClass, Outcome, Record};

impl TargetState {
    /// The legality rule: one exhaustive match over (phase, event). No wildcard arm on the
    /// phase side, so a new phase or event does not compile until its rules are written.
    pub fn check(&self, event: &Event) -> Result<(), Illegal> {
        use MountStep as M;
        use Phase as P;
        let s3 = self.spec.as_ref().is_some_and(|s| s.kind.has_helper());
        let ok = match (&self.phase, event) {
            (P::Unmounted, Event::Requested { .. }) => true,
            (P::Unmounted, Event::Adopted { .. } | Event::Cleaned { .. }) => true,
            (P::Mounting(M::Requested), Event::CredsFetched) => s3,
            (P::Mounting(M::Requested), Event::Verified) => !s3,
            (P::Mounting(M::CredsFetched), Event::SpawnIntended { .. }) => s3,
            (P::Mounting(M::SpawnIntended(_)), Event::Spawned { .. }) => s3,
            // `CredsFetched` then `Spawned` is what daemons wrote before spawn intents.
            (P::Mounting(M::CredsFetched), Event::Spawned { .. }) => s3,
            (P::Mounting(M::Spawned), Event::Verified) => true,
            (P::Mounting(_), Event::Failed { .. } | Event::Abandoned { .. }) => true,
            (P::Mounting(_), Event::Adopted { .. }) => true,
            (P::Mounted, Event::UnmountRequested { .. } | Event::Lost { .. }) => true,
            (P::Mounted, Event::Adopted { .. }) => true,
            (P::Unmounting(UnmountStep::Requested), Event::HelperStopped) => self.helper.is_some(),
            // S3 `Unmounted` (after `HelperStopped`) is what older daemons wrote.
            (P::Unmounting(_), Event::Unmounted | Event::Failed { .. }) => true,
            (P::Unmounting(_), Event::Detached { .. }) => s3,
            (P::Dirty(_), Event::UnmountRequested { .. } | Event::Cleaned { .. }) => true,
            (P::Dirty(_), Event::Adopted { .. }) => true,
            // Healing: the chain of a mount, from a dead helper to a verified replacement;
            // a replacement that fails is another death; a heal given up is `Lost`.
            (P::Mounted, Event::HelperDied { .. }) => s3,
            (P::Healing(h), Event::HelperDied { .. }) => h.step == HealStep::Spawned,
            (P::Healing(h), Event::Cleaned { .. }) => h.step == HealStep::Dead,
            (P::Healing(h), Event::SpawnIntended { .. }) => h.step == HealStep::Detached,
            (P::Healing(h), Event::Spawned { .. }) => {
                matches!(h.step, HealStep::SpawnIntended(_))
            }
            (P::Healing(h), Event::Verified) => h.step == HealStep::Spawned,
            (P::Healing(_), Event::Lost { .. } | Event::Adopted { .. }) => true,
            // Answers change nothing and are legal whenever no operation is in flight.
            (P::Unmounted | P::Mounted | P::Dirty(_), Event::Answered { .. }) => true,
            (P::Mounting(_) | P::Unmounting(_) | P::Healing(_), Event::Answered { .. }) => false,
            (
                P::Unmounted
                | P::Mounting(_)
                | P::Mounted
                | P::Unmounting(_)
                | P::Dirty(_)
                | P::Healing(_),
                Event::Requested { .. }
                | Event::CredsFetched
                | Event::Spawned { .. }
                | Event::Verified
                | Event::UnmountRequested { .. }
                | Event::HelperStopped
                | Event::Unmounted
                | Event::Failed { .. }
                | Event::Adopted { .. }
                | Event::Lost { .. }
                | Event::Abandoned { .. }
                | Event::Cleaned { .. }
                | Event::Detached { .. }
                | Event::SpawnIntended { .. }
                | Event::HelperDied { .. },
            ) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Illegal {
                target: self.target.clone(),
                phase: self.phase.to_string(),
                event: event.name(),
            })
        }
    }

    /// Fold one record in. Total: any record yields a state.
    pub fn apply(&mut self, record: &Record) {
        self.records += 1;
        self.updated_at = self.updated_at.max(record.at);
        self.boot = Some(record.boot);
        match &record.event {
            Event::Requested { spec } => {
                self.spec = Some(spec.clone());
                self.helper = None;
                self.start(record, Action::Mount);
                self.phase = Phase::Mounting(MountStep::Requested);
            }
            Event::CredsFetched => self.phase = Phase::Mounting(MountStep::CredsFetched),
            Event::SpawnIntended { nonce } => {
                self.phase = match self.phase {
                    Phase::Healing(h) => {
                        Phase::Healing(Healing { step: HealStep::SpawnIntended(*nonce), ..h })
                    }
                    _ => Phase::Mounting(MountStep::SpawnIntended(*nonce)),
                }
            }
            Event::Spawned { helper } => {
                self.helper = Some(*helper);
                self.phase = match self.phase {
                    Phase::Healing(h) => Phase::Healing(Healing { step: HealStep::Spawned, ..h }),
                    _ => Phase::Mounting(MountStep::Spawned),
                }
            }
            Event::HelperDied { deaths, .. } => {
                // The dead helper is nobody's now; the heal is an operation of its own.
                self.helper = None;
                self.start(record, Action::Heal);
                self.phase = Phase::Healing(Healing { step: HealStep::Dead, deaths: *deaths });
            }
            Event::Verified => {
                self.phase = Phase::Mounted;
                let outcome = self.mounted_outcome();
                self.finish(record, outcome);
            }
            Event::UnmountRequested { .. } => {
                self.start(record, Action::Unmount);
                self.phase = Phase::Unmounting(UnmountStep::Requested);
            }
            Event::HelperStopped => {
                self.helper = None;
                self.phase = Phase::Unmounting(UnmountStep::HelperStopped);
            }
            Event::Unmounted => {
                self.helper = None;
                self.phase = Phase::Unmounted;
                let path = self.mount_path().unwrap_or_default().to_owned();
                self.finish(record, Outcome::Unmounted { path });
            }
            Event::Failed { reason, class } => {
                (self.phase, self.helper) = match class {
                    FailureClass::Final => (Phase::Unmounted, None),
                    FailureClass::Uncertain(c) => (Phase::Dirty(*c), c.helper),
                };
                self.finish(record, Outcome::Failed { reason: reason.clone() });
            }
            Event::Answered { outcome } => {
                if let Some(key) = &record.request {
                    self.requests
                        .insert(key.clone(), Decided { outcome: outcome.clone(), at: record.at });
                }
            }
            Event::Adopted { spec, helper, .. } => {
                self.spec = Some(spec.clone());
                self.helper = *helper;
                self.phase = Phase::Mounted;
                // An interrupted mount that had in fact completed: its request succeeded.
                if self.op.as_ref().is_some_and(|op| op.action == Action::Mount) {
                    let outcome = self.mounted_outcome();
                    self.finish(record, outcome);
                }
                self.op = None;
            }
            Event::Lost { cleanup, .. } | Event::Abandoned { cleanup, .. } => {
                // No outcome: the request (if any) was never answered and may be redelivered.
                self.op = None;
                self.helper = cleanup.helper;
                self.phase =
                    if cleanup.is_empty() { Phase::Unmounted } else { Phase::Dirty(*cleanup) };
            }
            Event::Detached { cleanup } => {
                self.helper = cleanup.helper;
                self.phase =
                    if cleanup.is_empty() { Phase::Unmounted } else { Phase::Dirty(*cleanup) };
                let path = self.mount_path().unwrap_or_default().to_owned();
                self.finish(record, Outcome::Unmounted { path });
            }
            Event::Cleaned { .. } => match self.phase {
                Phase::Dirty(_) => {
                    self.phase = Phase::Unmounted;
                    self.helper = None;
                }
                Phase::Healing(h) => {
                    self.phase = Phase::Healing(Healing { step: HealStep::Detached, ..h })
                }
                Phase::Unmounted | Phase::Mounting(_) | Phase::Mounted | Phase::Unmounting(_) => {}
            },
        }
    }

    fn mounted_outcome(&self) -> Outcome {
        match &self.spec {
            Some(spec) => Outcome::Mounted {
                kind: spec.kind.name().to_owned(),
                path: spec.mount_path.clone(),
            },
            None => Outcome::Mounted { kind: "unknown".to_owned(), path: String::new() },
        }
    }

    fn start(&mut self, record: &Record, action: Action) {
        self.op = Some(Operation {
            id: record.op,
            request: record.request.clone(),
            action,
            started_at: record.at,
        });
    }

    fn finish(&mut self, record: &Record, outcome: Outcome) {
        let request = self.op.take().and_then(|op| op.request).or_else(|| record.request.clone());
        if let Some(key) = request {
            self.requests.insert(key, Decided { outcome, at: record.at });
        }
    }
}
