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

use crate::exec::helper::{HelperExit, Helpers};
use crate::observe::{Host, ObserveError};
use crate::server::HostEngine;
use dms_journal::{reconcile, BootId, HelperIdentity, Phase};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot observe the host: {0}")]
    Observe(#[from] ObserveError),
    #[error("the observer task failed: {0}")]
    Task(String),
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

#[derive(Debug)]
pub struct Supervisor {
    engine: Arc<HostEngine>,
    host: Host,
    helpers: Helpers,
    boot: BootId,
    exits_tx: mpsc::UnboundedSender<HelperExit>,
    exits: mpsc::UnboundedReceiver<HelperExit>,
    /// Helpers with a pidfd watch in place.
    watched: HashSet<HelperIdentity>,
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

/// Where helper exits arrive: from the spawner's reapers (tasks on the helpers' pidfds,
/// through the sender handed to the spawner) and from the supervisor's pidfd watches.
#[derive(Debug)]
pub struct Exits {
    tx: mpsc::UnboundedSender<HelperExit>,
    rx: mpsc::UnboundedReceiver<HelperExit>,
}

impl Exits {
    /// Also returns the sender for the spawner's reapers (an unbounded sender works from
    /// any thread, so no bridge is needed).
    pub fn new() -> (Exits, mpsc::UnboundedSender<HelperExit>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Exits { tx: tx.clone(), rx }, tx)
    }
}

impl Supervisor {
    pub fn new(engine: Arc<HostEngine>, host: Host, helpers: Helpers, exits: Exits) -> Self {
        let boot = helpers.boot;
        let (ask, asked) = mpsc::channel(4);
        Supervisor {
            asked,
            ask,
            engine,
            host,
            helpers,
            boot,
            exits_tx: exits.tx,
            exits: exits.rx,
            watched: HashSet::new(),
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
        let observer = self.host.clone();
        let journal = seen.clone();
        let observed = tokio::task::spawn_blocking(move || observer.observe(&journal))
            .await
            .map_err(|e| SuperviseError::Task(e.to_string()))??;
        let plan = reconcile::plan(&seen, &observed, crate::engine::wall_clock(self.boot));
        self.log_findings(&plan.findings);
        let (differ, _) = crate::admin::views::differences(&plan, &self.engine.busy());
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

    /// Act on helper exits as they come and resync every `every`, until the engine stops.
    pub async fn run(mut self, every: Duration) {
        let mut resync = tokio::time::interval(every);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await; // the boot pass just ran
        loop {
            tokio::select! {
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
        let engine = Arc::clone(&self.engine);
        tokio::spawn(async move { journal_exit(&engine, exit).await });
    }

    /// A pidfd watch for every helper of a mounted target that has none. A helper that is
    /// already gone (or whose PID now names another process) is reported as exited now.
    fn watch_mounted(&mut self) {
        let snapshot = self.engine.snapshot();
        for state in snapshot.targets.values().filter(|t| t.phase == Phase::Mounted) {
            // A helper this process spawned has a reaper that reports its exit already.
            let unwatched =
                |h: &HelperIdentity| !self.watched.contains(h) && !self.helpers.reaping.contains(h);
            let Some(helper) = state.helper.filter(unwatched) else {
                continue;
            };
            let target = state.target.clone();
            let exit = |status: &str| HelperExit {
                target: target.clone(),
                helper,
                status: status.to_owned(),
            };
            match self.helpers.pidfd(helper) {
                Ok(Some(pidfd)) => match crate::exec::helper::register(pidfd) {
                    Ok(pidfd) => {
                        self.watched.insert(helper);
                        let (tx, exited) =
                            (self.exits_tx.clone(), exit("exited (seen through its pidfd)"));
                        tokio::spawn(async move {
                            if pidfd.readable().await.is_ok() {
                                let _ = tx.send(exited);
                            }
                        });
                    }
                    Err(e) => tracing::warn!(
                        target_id = %target, helper_pid = helper.pid, error = %e,
                        "cannot watch the helper; the resync will notice its death"
                    ),
                },
                Ok(None) => {
                    let _ = self.exits_tx.send(exit("gone"));
                }
                Err(crate::exec::helper::HelperError::NotOurs { .. }) => {
                    let _ = self.exits_tx.send(exit("gone; its PID now names another process"));
                }
                Err(e) => tracing::warn!(
                    target_id = %target, helper_pid = helper.pid, error = %e,
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

async fn journal_exit(engine: &HostEngine, exit: HelperExit) {
    let (target, pid, status) = (exit.target.to_string(), exit.helper.pid, &exit.status);
    match engine.helper_exited(&exit.target, exit.helper, status).await {
        Ok(true) => tracing::warn!(
            target_id = %target, helper_pid = pid, %status,
            "helper of target {target} died: target lost, dead mount detached"
        ),
        Ok(false) => {
            tracing::debug!(target_id = %target, helper_pid = pid, %status, "helper exited")
        }
        Err(e) => tracing::error!(
            target_id = %target, helper_pid = pid, error = %e,
            "cannot journal a helper's death; the next resync retries"
        ),
    }
}
