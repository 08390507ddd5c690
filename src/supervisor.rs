//! Supervision of what the daemon has mounted (DESIGN §3.4), on two levels:
//!
//! - **Edge-triggered:** every helper of a mounted target is watched. Helpers this process
//!   spawned are reaped by a task on their pidfd; every mounted helper — also the ones
//!   adopted at boot, which are not our children — is watched through a pidfd, which polls
//!   readable when the process exits. A death is journaled `Lost` and its dead mount
//!   detached at once.
//! - **Level-triggered:** a reconcile pass (observe → pure plan → perform) at boot and then
//!   every `resync_interval`, the backstop for what no event announces: a mount removed or
//!   a PID file edited by hand, a hung mount, a watch that could not be set up.
//!
//! A pass takes the journal snapshot *before* it observes reality, and the engine performs a
//! step only if the target is still as in that snapshot, so a pass never undoes the work of
//! a request that ran meanwhile.

use crate::engine::{Engine, ExitEffect};
use crate::exec::helper::HelperExit;
use crate::exec::observer::{ObservationError, Observer, Watch};
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::wire::Wire;
use dms_journal::reconcile::{self, Plan};
use dms_journal::{Clock, HelperIdentity, JournalState, Phase, TargetId};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error(transparent)]
    Observe(#[from] ObservationError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

/// What one pass found and did (for the log line and `STATUS=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub steps_planned: usize,
    pub steps_performed: usize,
    pub mounts: usize,
    pub pid_files: usize,
    pub took: Duration,
}

pub struct Supervisor<C, P, M, O> {
    engine: Arc<Engine<C, P, M>>,
    observer: Arc<O>,
    /// Cancelled when the daemon stops: the loop ends after what it is doing, the exit
    /// watches end at once.
    cancel: CancellationToken,
    /// Where the exit watches and the journaling of exits run, so the stop waits for them.
    tasks: TaskTracker,
    exits_tx: mpsc::UnboundedSender<HelperExit>,
    exits: mpsc::UnboundedReceiver<HelperExit>,
    /// Helpers with a pidfd watch in place.
    watched: HashSet<HelperIdentity>,
    /// Adopted helpers whose environment was looked for (once each: a helper whose
    /// environment holds no keys is not read, nor reported, at every pass).
    environment_read: HashSet<HelperIdentity>,
    /// Findings already logged, so a resync repeats nothing until it changes.
    findings: BTreeSet<String>,
    /// Where journal and host differed at the start of the last pass.
    last_pass: LastPass,
    /// Passes asked for now (the admin socket's `cleanup`), answered with their report.
    asked: mpsc::Receiver<oneshot::Sender<Result<PassReport, String>>>,
    ask: mpsc::Sender<oneshot::Sender<Result<PassReport, String>>>,
}

/// The differences between journal and host seen at the start of the last resync pass
/// (targets in flight left out): `dms-ctl health` warns only about those still there, so
/// work that a pass converges, or that finishes, is never reported as trouble.
#[derive(Debug, Clone, Default)]
pub struct LastPass(Arc<std::sync::Mutex<BTreeSet<String>>>);

impl LastPass {
    pub fn get(&self) -> BTreeSet<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    fn set(&self, seen: BTreeSet<String>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = seen;
    }
}

/// Asks the running supervisor for a pass now; the pass runs in its loop, so it never
/// overlaps a periodic one.
#[derive(Debug, Clone)]
pub struct PassNow(mpsc::Sender<oneshot::Sender<Result<PassReport, String>>>);

impl PassNow {
    /// `Err` when the supervisor has stopped or the pass failed.
    pub async fn run(&self) -> Result<PassReport, String> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.map_err(|_| "the supervisor has stopped".to_owned())?;
        rx.await.map_err(|_| "the supervisor has stopped".to_owned())?
    }
}

impl<C, P, M, O> std::fmt::Debug for Supervisor<C, P, M, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("watched", &self.watched.len()).finish_non_exhaustive()
    }
}

/// Where helper exits arrive: from the spawner's reapers (tasks on the helpers' pidfds,
/// through the sender handed to the spawner) and from the supervisor's exit watches.
#[derive(Debug)]
pub struct Exits {
    tx: mpsc::UnboundedSender<HelperExit>,
    rx: mpsc::UnboundedReceiver<HelperExit>,
}

impl Default for Exits {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Exits { tx, rx }
    }
}

impl Exits {
    /// A sender for the reapers: an unbounded sender works from any thread, so no bridge.
    pub fn sender(&self) -> mpsc::UnboundedSender<HelperExit> {
        self.tx.clone()
    }
}

impl<C: Credentials, P: Processes, M: Mounts, O: Observer> Supervisor<C, P, M, O> {
    pub fn new(
        engine: Arc<Engine<C, P, M>>,
        observer: Arc<O>,
        exits: Exits,
        cancel: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        let (ask, asked) = mpsc::channel(4);
        Supervisor {
            asked,
            ask,
            engine,
            observer,
            cancel,
            tasks,
            exits_tx: exits.tx,
            exits: exits.rx,
            watched: HashSet::new(),
            environment_read: HashSet::new(),
            findings: BTreeSet::new(),
            last_pass: LastPass::default(),
        }
    }

    pub fn last_pass(&self) -> LastPass {
        self.last_pass.clone()
    }

    pub fn pass_now(&self) -> PassNow {
        PassNow(self.ask.clone())
    }

    /// One reconcile pass, then watches for every mounted helper not watched yet.
    pub async fn pass(&mut self) -> Result<PassReport, SuperviseError> {
        let started = Instant::now();
        let seen = self.engine.snapshot();
        let observed = self.observer.observe(seen.clone()).await?;
        let clock = self.engine.clock();
        let plan = reconcile::plan(&seen, &observed, clock, &Wire);
        self.log_findings(&plan.findings);
        let (differ, _) = differences(&plan, &seen, clock, &self.engine.busy());
        self.last_pass.set(differ.into_iter().collect());
        let steps_planned = plan.steps.len();
        let steps_performed = self.engine.reconcile(plan, &seen).await?;
        self.watch_mounted();
        crate::metrics::global().reconcile(started.elapsed(), steps_performed);
        Ok(PassReport {
            steps_planned,
            steps_performed,
            mounts: observed.mounts.len(),
            pid_files: observed.pid_files.len(),
            took: started.elapsed(),
        })
    }

    /// Act on helper exits as they come and resync every `every`, until cancelled; a pass
    /// under way when the stop comes is finished first.
    pub async fn run(mut self, every: Duration) {
        let mut resync = tokio::time::interval(every);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await; // the boot pass just ran
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                Some(exit) = self.exits.recv() => self.helper_exited(exit),
                Some(reply) = self.asked.recv() => {
                    let report = self.pass().await.map_err(|e| e.to_string());
                    let _ = reply.send(report);
                }
                _ = resync.tick() => match self.pass().await {
                    Ok(r) if r.steps_performed > 0 => tracing::info!(
                        steps = r.steps_performed, took_ms = r.took.as_millis() as u64,
                        "resync converged the journal with the host"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "resync failed; will retry"),
                },
            }
        }
    }

    /// Handled in a task of its own: it waits for the target's turn (an unmount in flight
    /// stops its own helper), and that wait must not hold up other targets' exits, the
    /// resync or an admin cleanup.
    fn helper_exited(&mut self, exit: HelperExit) {
        self.watched.remove(&exit.helper);
        self.environment_read.remove(&exit.helper);
        let engine = Arc::clone(&self.engine);
        self.tasks.spawn(async move { journal_exit(&engine, exit).await });
    }

    /// An exit watch for every helper of a mounted target that has none. A helper that is
    /// already gone (or whose PID now names another process) is reported as exited now.
    fn watch_mounted(&mut self) {
        let snapshot = self.engine.snapshot();
        for state in snapshot.targets.values().filter(|t| t.phase == Phase::Mounted) {
            // A helper adopted at boot: read what it was started with while it runs, so a
            // replacement can be started the same way if it dies.
            if let Some(helper) = state.helper {
                if state.is_s3()
                    && !self.engine.knows_environment(&state.target)
                    && self.environment_read.insert(helper)
                {
                    match self.observer.helper_env(helper) {
                        Some(env) => self.engine.remember_environment(&state.target, env),
                        None => tracing::warn!(
                            target_id = %state.target, helper_pid = helper.pid,
                            "cannot read the environment of helper pid {}: if it dies, target \
                             {} cannot be healed", helper.pid, state.target
                        ),
                    }
                }
            }
            let Some(helper) = state.helper.filter(|h| !self.watched.contains(h)) else {
                continue;
            };
            let target = state.target.clone();
            let exit = |status: &str| HelperExit {
                target: target.clone(),
                helper,
                status: status.to_owned(),
                // Not this process's child: its exit status cannot be reaped.
                cause: crate::exec::death::DeathCause::Unknown,
            };
            match self.observer.watch(helper) {
                Watch::Reported => {}
                Watch::Exits(exited) => {
                    self.watched.insert(helper);
                    let (tx, exit) =
                        (self.exits_tx.clone(), exit("exited (seen through its pidfd)"));
                    let cancel = self.cancel.clone();
                    self.tasks.spawn(async move {
                        tokio::select! {
                            _ = exited => { let _ = tx.send(exit); }
                            _ = cancel.cancelled() => {}
                        }
                    });
                }
                Watch::Gone(status) => {
                    let _ = self.exits_tx.send(exit(status));
                }
                Watch::Unwatchable(error) => tracing::warn!(
                    target_id = %target, helper_pid = helper.pid, %error,
                    "cannot watch the helper; the resync will notice its death"
                ),
            }
        }
    }

    fn log_findings(&mut self, findings: &[reconcile::Finding]) {
        let now: BTreeSet<String> = findings.iter().map(ToString::to_string).collect();
        for finding in now.difference(&self.findings) {
            tracing::warn!("{finding}");
        }
        self.findings = now;
    }
}

async fn journal_exit<C: Credentials, P: Processes, M: Mounts>(
    engine: &Engine<C, P, M>,
    exit: HelperExit,
) {
    let (target, pid, status) = (exit.target.to_string(), exit.helper.pid, &exit.status);
    match engine.helper_exited(&exit.target, exit.helper, status, exit.cause).await {
        // Healed: the engine logged the heal with its seed-style lines.
        Ok(ExitEffect::Healed { .. }) => {}
        Ok(ExitEffect::Lost { reason }) => tracing::error!(
            target_id = %target, helper_pid = pid, %status, %reason,
            "helper of target {target} died and the target was not healed: {reason}; target \
             lost, dead mount detached"
        ),
        Ok(ExitEffect::None) => {
            tracing::debug!(target_id = %target, helper_pid = pid, %status, "helper exited")
        }
        Err(e) => tracing::error!(
            target_id = %target, helper_pid = pid, error = %e,
            "cannot journal a helper's death; the next resync retries"
        ),
    }
}

/// Where memory and disk differ, from a reconcile plan over both (made from `journal` at
/// `clock`): its steps and findings, except those of targets in `busy` (a request in
/// flight), which are returned apart.
pub fn differences(
    plan: &Plan,
    journal: &JournalState,
    clock: Clock,
    busy: &BTreeSet<TargetId>,
) -> (Vec<String>, Vec<String>) {
    let mut differ = Vec::new();
    let mut in_flight = Vec::new();
    for step in &plan.steps {
        let line = step_line(step, journal, clock);
        match busy.contains(&step.target) {
            true => in_flight.push(line),
            false => differ.push(line),
        }
    }
    for finding in &plan.findings {
        match finding.target.as_ref().is_some_and(|t| busy.contains(t)) {
            true => in_flight.push(finding.to_string()),
            false => differ.push(finding.to_string()),
        }
    }
    (differ, in_flight)
}

/// What performing `step` would journal and do, as the machine decides it.
fn step_line(step: &reconcile::Step, journal: &JournalState, clock: Clock) -> String {
    let decision = match step.decision(journal, clock, &Wire) {
        Ok(decision) => decision,
        Err(rejection) => return format!("{}: cleanup refused: {rejection}", step.target),
    };
    let mut what: Vec<String> = decision
        .records
        .iter()
        .map(|r| match r.event.details() {
            d if d.is_empty() => r.event.name().to_owned(),
            d => format!("{} ({d})", r.event.name()),
        })
        .collect();
    what.extend(decision.effects.iter().map(|e| e.name().to_owned()));
    format!("{}: cleanup would do {}", step.target, what.join(", then "))
}
