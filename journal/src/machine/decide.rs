//! [`decide`]: one match over (phase, command), and the draft that builds its records and
//! effects against the target's state.

use super::{Command, Decision, Effect, MountFailure, Rejection};
use crate::cause::{Cause, Wording};
use crate::event::{Cleanup, Clock, Event, FailureClass, Outcome, Record, TargetKind, TargetSpec};
use crate::ids::{HelperIdentity, OperationId, RequestKey, SpawnNonce};
use crate::nesting::Nesting;
use crate::outage::Outage;
use crate::state::{Action, HealStep, Healing, MountStep, Phase, TargetState};

/// Decide what `command` means for `state`. One match over (phase, command). A failure's
/// text is worded by `wording` (the daemon's wire module) and journaled as worded.
pub fn decide(
    state: &TargetState,
    command: &Command,
    clock: Clock,
    wording: &dyn Wording,
) -> Result<Decision, Rejection> {
    let mut d = Draft { state, clock, wording, decision: Decision::default() };
    match command {
        Command::Mount { op, request, spec, nested, outage } => {
            d.mount(*op, request, spec, nested, outage)?
        }
        Command::Unmount { op, request, mount_path } => d.unmount(*op, request, mount_path)?,
        Command::CredsFetched { op, result, nonce } => d.creds_fetched(*op, result, *nonce)?,
        Command::HelperSpawned { op, result } => d.helper_spawned(*op, result)?,
        Command::MountChecked { op, result } => d.mount_checked(*op, result)?,
        Command::Detached { op, result } => d.detached(*op, result)?,
        Command::UnmountDone { op, result } => d.unmount_done(*op, result)?,
        Command::CleanupDone { result } => d.cleanup_done(result)?,
        Command::HelperExited { helper, status, heal } => d.helper_exited(*helper, status, heal),
        Command::Respawn { op, nonce } => d.respawn(*op, *nonce)?,
        Command::Reconcile { seen } => d.reconcile(seen)?,
    }
    Ok(d.decision)
}

/// A decision under construction. Records are built with the state's context.
pub(super) struct Draft<'a> {
    pub(super) state: &'a TargetState,
    pub(super) clock: Clock,
    wording: &'a dyn Wording,
    decision: Decision,
}

impl Draft<'_> {
    pub(super) fn record(
        &mut self,
        op: Option<OperationId>,
        request: Option<RequestKey>,
        event: Event,
    ) {
        self.decision.records.push(Record {
            target: self.state.target.clone(),
            at: self.clock.now,
            boot: self.clock.boot,
            request,
            op,
            event,
        });
    }

    pub(super) fn effect(&mut self, effect: Effect) {
        self.decision.effects.push(effect);
    }

    /// Journal an answer that needs no work, and send it.
    fn answer(&mut self, op: OperationId, request: &Option<RequestKey>, outcome: Outcome) {
        self.record(Some(op), request.clone(), Event::Answered { outcome: outcome.clone() });
        self.effect(Effect::Reply { request: request.clone(), outcome });
    }

    /// Journal a failure that needs no work, and send it.
    fn refuse(&mut self, op: OperationId, request: &Option<RequestKey>, cause: Cause) {
        let reason = self.wording.failure(&cause);
        self.answer(op, request, Outcome::Failed { reason });
    }

    /// The request was decided before: send the same answer again, do nothing else.
    fn replay(&mut self, request: &Option<RequestKey>) -> bool {
        let Some(key) = request else { return false };
        match self.state.requests.get(key) {
            Some(decided) => {
                let outcome = decided.outcome.clone();
                self.effect(Effect::Reply { request: request.clone(), outcome });
                true
            }
            None => false,
        }
    }

    fn busy(&self, request: &Option<RequestKey>) -> Rejection {
        let running = self.state.op.as_ref().and_then(|op| op.request.as_ref());
        if let (Some(running), Some(asked)) = (running, request) {
            if running == asked {
                let target = self.state.target.clone();
                return Rejection::InFlight { target, request: asked.clone() };
            }
        }
        let (action, since) = match &self.state.op {
            Some(op) => (op.action, op.started_at.to_string()),
            None => (Action::Mount, "unknown".to_owned()),
        };
        Rejection::Busy { target: self.state.target.clone(), action, since }
    }

    /// The operation an outcome must belong to.
    pub(super) fn current_op(
        &self,
        got: OperationId,
        outcome: &'static str,
    ) -> Result<(), Rejection> {
        match self.state.op.as_ref().and_then(|op| op.id) {
            Some(current) if current == got => Ok(()),
            Some(current) => Err(Rejection::StaleOutcome { got, current: current.to_string() }),
            None => Err(self.unexpected(outcome)),
        }
    }

    pub(super) fn unexpected(&self, outcome: &'static str) -> Rejection {
        Rejection::Unexpected {
            target: self.state.target.clone(),
            phase: self.state.phase.to_string(),
            outcome,
        }
    }

    fn request(&self) -> Option<RequestKey> {
        self.state.op.as_ref().and_then(|op| op.request.clone())
    }

    /// End the current operation with an error reply.
    fn fail(&mut self, op: OperationId, cause: Cause, class: FailureClass) {
        let reason = self.wording.failure(&cause);
        let request = self.request();
        self.record(Some(op), request.clone(), Event::Failed { reason: reason.clone(), class });
        if let FailureClass::Uncertain(cleanup) = class {
            let mount_path = self.state.mount_path().map(str::to_owned);
            self.effect(Effect::Cleanup { cleanup, mount_path });
        }
        self.effect(Effect::Reply { request, outcome: Outcome::Failed { reason } });
    }

    fn mount(
        &mut self,
        op: OperationId,
        request: &Option<RequestKey>,
        spec: &TargetSpec,
        nested: &Option<Nesting>,
        outage: &Option<Outage>,
    ) -> Result<(), Rejection> {
        if self.replay(request) {
            return Ok(());
        }
        let current = self.state.mount_path();
        match self.state.phase {
            Phase::Mounting(_) | Phase::Unmounting(_) | Phase::Healing(_) => {
                return Err(self.busy(request))
            }
            Phase::Mounted if current == Some(spec.mount_path.as_str()) => {
                let path = spec.mount_path.clone();
                self.answer(op, request, Outcome::AlreadyMounted { path });
            }
            Phase::Mounted => {
                let target = self.state.target.clone();
                let path = current.unwrap_or("?").to_owned();
                self.refuse(op, request, Cause::MountedElsewhere { target, path });
            }
            Phase::Dirty(cleanup) => {
                let target = self.state.target.clone();
                self.refuse(op, request, Cause::NeedsCleanup { target, cleanup });
            }
            Phase::Unmounted => {
                if let Some(nesting) = nested {
                    let (path, nesting) = (spec.mount_path.clone(), nesting.clone());
                    self.refuse(op, request, Cause::Nests { path, nesting });
                    return Ok(());
                }
                if let (TargetKind::Nfs { .. }, Some(outage)) = (&spec.kind, outage) {
                    self.refuse(op, request, Cause::NfsOutage(outage.clone()));
                    return Ok(());
                }
                self.record(Some(op), request.clone(), Event::Requested { spec: spec.clone() });
                match &spec.kind {
                    TargetKind::S3 { secret_ref } => {
                        self.effect(Effect::FetchCredentials { op, secret_ref: secret_ref.clone() })
                    }
                    TargetKind::Nfs { export, options } => self.effect(Effect::MountNfs {
                        op,
                        export: export.clone(),
                        options: options.clone(),
                        mount_path: spec.mount_path.clone(),
                    }),
                }
            }
        }
        Ok(())
    }

    fn unmount(
        &mut self,
        op: OperationId,
        request: &Option<RequestKey>,
        mount_path: &str,
    ) -> Result<(), Rejection> {
        if self.replay(request) {
            return Ok(());
        }
        let at_path = self.state.mount_path() == Some(mount_path);
        match self.state.phase {
            Phase::Mounting(_) | Phase::Unmounting(_) | Phase::Healing(_) => {
                return Err(self.busy(request))
            }
            Phase::Unmounted => {
                let path = mount_path.to_owned();
                self.answer(op, request, Outcome::NotMounted { path });
            }
            Phase::Mounted | Phase::Dirty(_) if !at_path => {
                let path = mount_path.to_owned();
                self.answer(op, request, Outcome::NotMounted { path });
            }
            Phase::Mounted | Phase::Dirty(_) => {
                let path = mount_path.to_owned();
                self.record(
                    Some(op),
                    request.clone(),
                    Event::UnmountRequested { mount_path: path.clone() },
                );
                // S3: detach and answer; the helper is stopped after the answer.
                match self.state.is_s3() {
                    true => self.effect(Effect::Detach { op, mount_path: path }),
                    false => self.effect(Effect::Unmount { op, mount_path: path }),
                }
            }
        }
        Ok(())
    }

    fn creds_fetched(
        &mut self,
        op: OperationId,
        result: &Result<(), String>,
        nonce: SpawnNonce,
    ) -> Result<(), Rejection> {
        self.current_op(op, "CredsFetched")?;
        if self.state.phase != Phase::Mounting(MountStep::Requested) || !self.state.is_s3() {
            return Err(self.unexpected("CredsFetched"));
        }
        match result {
            Ok(()) => {
                // The intent is durable before the spawn (write-ahead), so a crash before
                // `Spawned` leaves the helper known by its nonce, not a stranger.
                let request = self.request();
                self.record(Some(op), request.clone(), Event::CredsFetched);
                self.record(Some(op), request, Event::SpawnIntended { nonce });
                let mount_path = self.state.mount_path().unwrap_or_default().to_owned();
                self.effect(Effect::SpawnHelper { op, mount_path, nonce });
            }
            Err(e) => self.fail(op, Cause::Credentials(e.clone()), FailureClass::Final),
        }
        Ok(())
    }

    fn helper_spawned(
        &mut self,
        op: OperationId,
        result: &Result<HelperIdentity, String>,
    ) -> Result<(), Rejection> {
        self.current_op(op, "HelperSpawned")?;
        match self.state.phase {
            Phase::Mounting(MountStep::SpawnIntended(_)) => {}
            Phase::Healing(Healing { step: HealStep::SpawnIntended(_), .. }) => {
                self.heal_spawned(op, result);
                return Ok(());
            }
            Phase::Mounting(
                MountStep::Requested | MountStep::CredsFetched | MountStep::Spawned,
            )
            | Phase::Healing(Healing {
                step: HealStep::Dead | HealStep::Detached | HealStep::Spawned,
                ..
            })
            | Phase::Unmounted
            | Phase::Mounted
            | Phase::Unmounting(_)
            | Phase::Dirty(_) => return Err(self.unexpected("HelperSpawned")),
        }
        match result {
            Ok(helper) => {
                let request = self.request();
                self.record(Some(op), request, Event::Spawned { helper: *helper });
                let mount_path = self.state.mount_path().unwrap_or_default().to_owned();
                self.effect(Effect::VerifyMount { op, helper: *helper, mount_path });
            }
            // The spawner removes its own half-written PID file before reporting failure.
            Err(e) => self.fail(op, Cause::HelperStart(e.clone()), FailureClass::Final),
        }
        Ok(())
    }

    fn mount_checked(
        &mut self,
        op: OperationId,
        result: &Result<(), MountFailure>,
    ) -> Result<(), Rejection> {
        self.current_op(op, "MountChecked")?;
        let s3 = self.state.is_s3();
        let step_ok = match self.state.phase {
            Phase::Mounting(MountStep::Spawned) => s3,
            Phase::Mounting(MountStep::Requested) => !s3,
            Phase::Healing(Healing { step: HealStep::Spawned, deaths }) => {
                self.heal_checked(result, deaths);
                return Ok(());
            }
            Phase::Mounting(MountStep::CredsFetched | MountStep::SpawnIntended(_))
            | Phase::Healing(Healing {
                step: HealStep::Dead | HealStep::Detached | HealStep::SpawnIntended(_),
                ..
            })
            | Phase::Unmounted
            | Phase::Mounted
            | Phase::Unmounting(_)
            | Phase::Dirty(_) => false,
        };
        if !step_ok {
            return Err(self.unexpected("MountChecked"));
        }
        match result {
            Ok(()) => {
                let request = self.request();
                self.record(Some(op), request.clone(), Event::Verified);
                let spec = self.state.spec.as_ref();
                let outcome = Outcome::Mounted {
                    kind: spec.map_or("unknown", |s| s.kind.name()).to_owned(),
                    path: spec.map(|s| s.mount_path.clone()).unwrap_or_default(),
                };
                self.effect(Effect::Reply { request, outcome });
            }
            Err(MountFailure { reason, .. }) if s3 => {
                // The helper runs (or ran): it, its mount and its PID file must go.
                let cleanup = Cleanup { helper: self.state.helper, mount: true, pid_file: true };
                let cause = Cause::MountVerification(reason.clone());
                self.fail(op, cause, FailureClass::Uncertain(cleanup));
            }
            Err(MountFailure { reason, maybe_mounted }) => {
                let class = if *maybe_mounted {
                    FailureClass::Uncertain(Cleanup { helper: None, mount: true, pid_file: false })
                } else {
                    FailureClass::Final
                };
                self.fail(op, Cause::NfsMount(reason.clone()), class);
            }
        }
        Ok(())
    }

    fn detached(&mut self, op: OperationId, result: &Result<(), String>) -> Result<(), Rejection> {
        self.current_op(op, "Detached")?;
        if !matches!(self.state.phase, Phase::Unmounting(_)) || !self.state.is_s3() {
            return Err(self.unexpected("Detached"));
        }
        let request = self.request();
        let mount_path = self.state.mount_path().unwrap_or_default().to_owned();
        match result {
            Ok(()) => {
                // The mount is gone: that is the answer. What served it goes next.
                let cleanup = Cleanup { helper: self.state.helper, mount: false, pid_file: true };
                self.record(Some(op), request.clone(), Event::Detached { cleanup });
                let outcome = Outcome::Unmounted { path: mount_path.clone() };
                self.effect(Effect::Reply { request, outcome });
                // The helper first: on SIGTERM it unmounts its path itself, which must still
                // be there (a helper that finds it gone may exit with an error).
                self.effect(Effect::Cleanup { cleanup, mount_path: Some(mount_path.clone()) });
                self.effect(Effect::RemoveMountPoint { mount_path });
            }
            Err(e) => {
                let cleanup = Cleanup { helper: self.state.helper, mount: true, pid_file: true };
                self.fail(op, Cause::Unmount(e.clone()), FailureClass::Uncertain(cleanup));
            }
        }
        Ok(())
    }

    fn unmount_done(
        &mut self,
        op: OperationId,
        result: &Result<(), String>,
    ) -> Result<(), Rejection> {
        self.current_op(op, "UnmountDone")?;
        if !matches!(self.state.phase, Phase::Unmounting(_)) || self.state.is_s3() {
            return Err(self.unexpected("UnmountDone"));
        }
        let request = self.request();
        match result {
            Ok(()) => {
                self.record(Some(op), request.clone(), Event::Unmounted);
                let path = self.state.mount_path().unwrap_or_default().to_owned();
                let outcome = Outcome::Unmounted { path: path.clone() };
                self.effect(Effect::Reply { request, outcome });
                self.effect(Effect::RemoveMountPoint { mount_path: path });
            }
            Err(e) => {
                let cleanup = Cleanup { helper: None, mount: true, pid_file: false };
                self.fail(op, Cause::Unmount(e.clone()), FailureClass::Uncertain(cleanup));
            }
        }
        Ok(())
    }

    fn cleanup_done(&mut self, result: &Result<String, String>) -> Result<(), Rejection> {
        match self.state.phase {
            Phase::Dirty(_) => {}
            Phase::Healing(Healing { step: HealStep::Dead, deaths }) => {
                self.heal_detached(result, deaths);
                return Ok(());
            }
            Phase::Unmounted
            | Phase::Mounting(_)
            | Phase::Mounted
            | Phase::Unmounting(_)
            | Phase::Healing(_) => return Err(self.unexpected("CleanupDone")),
        }
        // A failed cleanup changes nothing: the target stays dirty for the next attempt.
        if let Ok(what) = result {
            self.record(None, None, Event::Cleaned { what: what.clone() });
        }
        Ok(())
    }
}
