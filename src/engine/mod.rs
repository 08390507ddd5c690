//! The engine: the one owner of the journal's state. For each request it runs the loop
//! command → [`decide`] → durable append → effects → outcome as the next command, until
//! the machine answers.
//!
//! Requests for one target are serialized (a per-target lock); host work is bounded per
//! effect, not per request ([`permits`]), so a target that waits holds nothing the others
//! need. Credentials live in the request's own task
//! and die with it. A journal that cannot be written is a broken system, not a "no":
//! [`EngineError::Journal`] tells the transport to stop taking requests and not to ack.
//! Every append is checked against the state first ([`JournalState::check_all`]): a record
//! that would be illegal where it lands is never written ([`EngineError::Illegal`]).

mod admission;
mod breaker;
/// Recording fakes: for tests only, never in a release build (`--features testing` for
/// tests outside this crate).
#[cfg(any(test, feature = "testing"))]
pub mod fake;
#[cfg(any(test, feature = "testing"))]
pub mod fake_observer;
mod heal;
mod job;
mod oplines;
mod perform;
mod permits;
mod reconcile;
mod supervise;
mod turn;

use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::wire::{failed, Wire};
use dms_journal::store::{CompactionReport, Journal, StoreError, Ticket};
use dms_journal::{
    decide, BootId, Cause, Clock, Command, Decision, Effect, JournalState, OperationId, Outcome,
    Phase, Record, TargetId, TargetState, Timestamp,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::exec::mounts::Heard;
pub use breaker::BreakerView;
pub use job::{Ask, Job};
pub use supervise::ExitEffect;
pub use turn::Served;
use turn::{Serial, TargetLocks};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the journal cannot be written: {0}")]
    Journal(#[from] StoreError),
    #[error("the engine is shutting down")]
    Closed,
    /// A decision or plan step produced a record that is not legal where it would land (a
    /// bug in the model): refused before anything was written.
    #[error("refused to journal an illegal record: {0}")]
    Illegal(#[from] dms_journal::Illegal),
}

/// The executors one engine drives.
#[derive(Debug)]
pub struct Executors<C, P, M> {
    pub credentials: C,
    pub processes: P,
    pub mounts: M,
}

/// How much host work may run at once ([`permits`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Credential fetches, helper starts and stops, S3 unmounts, node-wide.
    pub node: usize,
    /// mount(8)/umount(8) runs against one NFS server.
    pub nfs_per_server: usize,
    /// The first fail-fast window of an NFS server's breaker ([`breaker`]).
    pub nfs_breaker_backoff: std::time::Duration,
    /// How often a mounted target's dying helper is replaced ([`supervise`]).
    pub heal: crate::config::Heal,
}

pub struct Engine<C, P, M> {
    journal: Arc<Journal>,
    state: Mutex<JournalState>,
    targets: TargetLocks,
    permits: permits::Permits,
    breakers: breaker::Breakers,
    /// Paths of mounts being admitted, so concurrent ones cannot nest ([`admission`]).
    admissions: admission::Admissions,
    exec: Arc<Executors<C, P, M>>,
    boot: BootId,
    /// How often a dying helper is replaced.
    heal: crate::config::Heal,
    /// The environments mounted targets' helpers were started with ([`heal`]).
    environments: heal::Environments,
}

impl<C, P, M> std::fmt::Debug for Engine<C, P, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("journal", &self.journal)
            .field("boot", &self.boot)
            .finish_non_exhaustive()
    }
}

impl<C: Credentials, P: Processes, M: Mounts> Engine<C, P, M> {
    pub fn new(
        journal: Arc<Journal>,
        state: JournalState,
        exec: Executors<C, P, M>,
        boot: BootId,
        limits: Limits,
    ) -> Self {
        Self {
            journal,
            state: Mutex::new(state),
            targets: Mutex::new(HashMap::new()),
            permits: permits::Permits::new(limits.node, limits.nfs_per_server),
            breakers: breaker::Breakers::new(limits.nfs_breaker_backoff),
            admissions: admission::Admissions::default(),
            exec: Arc::new(exec),
            boot,
            heal: limits.heal,
            environments: heal::Environments::default(),
        }
    }

    /// The journal (for read-only queries: the admin socket's online `dms-journal`).
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    pub fn executors(&self) -> &Executors<C, P, M> {
        &self.exec
    }

    /// A copy of one target's state (for the admin view and tests).
    pub fn target_state(&self, target: &TargetId) -> TargetState {
        lock(&self.state).target_or_new(target)
    }

    /// How many targets the journal tracks, and how many of them are mounted (for status
    /// lines: counted under the lock, nothing cloned).
    pub fn counts(&self) -> (usize, usize) {
        let state = lock(&self.state);
        let mounted = state.targets.values().filter(|t| t.phase == Phase::Mounted).count();
        (state.targets.len(), mounted)
    }

    /// The metrics gauges, counted under the lock (a scrape copies nothing).
    pub fn gauges(&self) -> crate::metrics::Gauges {
        let mut gauges = crate::metrics::Gauges::from_targets(lock(&self.state).targets.values());
        gauges.nfs_breakers_open = self.breakers.views().len() as u64;
        gauges
    }

    /// Targets with a request, reconcile step or supervision action in flight or waiting
    /// for its turn: the target-lock map holds exactly those.
    pub fn busy(&self) -> std::collections::BTreeSet<TargetId> {
        lock(&self.targets).keys().cloned().collect()
    }

    /// Operations running against each NFS server now (servers with none are not listed).
    pub fn nfs_in_use(&self) -> Vec<(String, usize)> {
        self.permits.nfs_in_use()
    }

    /// NFS servers whose breaker is open or probing.
    pub fn breakers(&self) -> Vec<BreakerView> {
        self.breakers.views()
    }

    /// For an NFS mount, the fact whether its server's breaker lets it run mount(8); the
    /// probe's guard, if this mount is the probe.
    fn gate(&self, command: &mut Command) -> Option<breaker::Probe<'_>> {
        let Command::Mount { spec, outage, .. } = command else { return None };
        let dms_journal::TargetKind::Nfs { export, .. } = &spec.kind else { return None };
        match self.breakers.gate(permits::nfs_server(export), self.clock().now) {
            breaker::Gate::Pass => None,
            breaker::Gate::Probe(probe) => Some(probe),
            breaker::Gate::Refuse(found) => {
                *outage = Some(found);
                None
            }
        }
    }

    /// What an NFS operation showed about its server; logged when its breaker changes.
    fn nfs_report(&self, server: &str, heard: &Heard) {
        let now = self.clock().now;
        match self.breakers.report(server, heard, now) {
            None => {}
            Some(breaker::Change::Opened { until }) => {
                crate::metrics::global().nfs_breaker_tripped();
                let cause = match heard {
                    Heard::TimedOut(cause) => cause.as_str(),
                    Heard::Nothing | Heard::Answered => "no answer",
                };
                tracing::warn!(
                    nfs_server = %server,
                    until = %until,
                    "NFS server {server} did not answer ({cause}); its mounts fail fast until \
                     {until}, then one probes it"
                )
            }
            Some(breaker::Change::Closed) => tracing::info!(
                nfs_server = %server,
                "NFS server {server} answered again; its breaker is closed"
            ),
        }
    }

    /// A copy of the whole folded journal.
    pub fn snapshot(&self) -> JournalState {
        lock(&self.state).clone()
    }

    /// Serve one job to its outcome, including what follows the answer.
    pub async fn handle(&self, job: &Job) -> Result<Outcome, EngineError> {
        let served = self.serve(job).await?;
        let outcome = served.outcome.clone();
        served.finish().await?;
        Ok(outcome)
    }

    /// Serve one job up to its answer, journaled durably: the caller answers and acks, then
    /// runs [`Served::finish`] for what the machine decided to do after the answer (an S3
    /// unmount stops its detached helper), still on the target's turn.
    pub async fn serve(&self, job: &Job) -> Result<Served<'_, C, P, M>, EngineError> {
        // Only the target's turn is held for the whole request; permits are taken per
        // effect, so requests queued behind one slow target hold nothing others need.
        let serial = self.serialize(&job.target).await;
        let mut command = job.command(OperationId::random());
        let admitted = self.admissions.admit(&lock(&self.state), &job.target, &mut command);
        let probe = self.gate(&mut command);
        let mut run = perform::Run::new(self, job, command);
        let outcome = run.until_answer().await?.unwrap_or_else(|| failed(&Cause::NoAnswer));
        Ok(Served { outcome, run, _turn: (serial, admitted, probe) })
    }

    /// Compact finished history older than `retention` (on the blocking pool), and forget
    /// the same old answers in memory so the daemon's footprint stays bounded too.
    pub async fn compact(
        &self,
        retention: std::time::Duration,
    ) -> Result<CompactionReport, EngineError> {
        let now = self.clock().now;
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let journal = Arc::clone(&self.journal);
        let report = tokio::task::spawn_blocking(move || journal.compact(now, retention_ms))
            .await
            .map_err(|_| EngineError::Closed)??;
        let cutoff = now.saturating_sub_millis(retention_ms);
        for state in lock(&self.state).targets.values_mut() {
            state.forget_requests_before(cutoff);
        }
        Ok(report)
    }

    /// Wait for `target`'s turn: everything done while the guard lives is serialized
    /// with the target's other requests, reconcile steps and supervision.
    async fn serialize(&self, target: &TargetId) -> Serial<'_> {
        turn::serialize(&self.targets, target).await
    }

    /// The target's turn if nobody holds it now.
    fn try_serialize(&self, target: &TargetId) -> Option<Serial<'_>> {
        turn::try_serialize(&self.targets, target)
    }

    pub fn clock(&self) -> Clock {
        wall_clock(self.boot)
    }

    /// Decide, journal the records, then fold them into the state. They are durable at
    /// once when an effect of the decision needs them to be (write-ahead); otherwise they
    /// are only applied, and the ticket returned says what to make durable before anything
    /// depends on them (the next durable append carries them anyway).
    async fn decide_and_append(
        &self,
        target: &TargetId,
        command: &Command,
    ) -> Result<Result<(Decision, Option<Ticket>), dms_journal::Rejection>, EngineError> {
        let state = self.target_state(target);
        let decision = match decide(&state, command, self.clock(), &Wire) {
            Ok(d) => d,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let ticket = if decision.effects.iter().any(Effect::needs_write_ahead) {
            self.append(decision.records.clone()).await?;
            None
        } else {
            self.append_deferred(decision.records.clone()).await?
        };
        Ok(Ok((decision, ticket)))
    }

    /// Append durably (on the blocking pool: it waits for the disk), then apply.
    pub async fn append(&self, records: Vec<Record>) -> Result<(), EngineError> {
        if records.is_empty() {
            return Ok(());
        }
        lock(&self.state).check_all(&records)?;
        let journal = Arc::clone(&self.journal);
        let records =
            tokio::task::spawn_blocking(move || journal.append(&records).map(|_| records))
                .await
                .map_err(|_| EngineError::Closed)??;
        self.applied(&records);
        Ok(())
    }

    /// Append without waiting for the disk, then apply; the ticket to make it durable.
    async fn append_deferred(&self, records: Vec<Record>) -> Result<Option<Ticket>, EngineError> {
        if records.is_empty() {
            return Ok(None);
        }
        lock(&self.state).check_all(&records)?;
        let journal = Arc::clone(&self.journal);
        let (records, ticket) = tokio::task::spawn_blocking(move || {
            journal.append_deferred(&records).map(|(_, ticket)| (records, ticket))
        })
        .await
        .map_err(|_| EngineError::Closed)??;
        self.applied(&records);
        Ok(Some(ticket))
    }

    /// Wait until every record up to `ticket` is durable.
    async fn make_durable(&self, ticket: Ticket) -> Result<(), EngineError> {
        let journal = Arc::clone(&self.journal);
        tokio::task::spawn_blocking(move || journal.make_durable(ticket))
            .await
            .map_err(|_| EngineError::Closed)??;
        Ok(())
    }

    /// Records just journaled: failpoints, the loss counter, the in-memory state.
    fn applied(&self, records: &[Record]) {
        for record in records {
            crate::failpoint::hit("append", record.event.name());
        }
        // The one place losses are counted: every `Lost` (helper death, reconcile) is
        // appended here, once (always durably: its cleanup changes the host).
        let lost = records.iter().filter(|r| matches!(r.event, dms_journal::Event::Lost { .. }));
        crate::metrics::global().helpers_lost(lost.count() as u64);
        let mut state = lock(&self.state);
        for record in records {
            state.apply(record);
        }
        let phase_of = |t: &TargetId| state.target(t).map_or(Phase::Unmounted, |s| s.phase);
        self.environments.forget_unmounted(records, phase_of);
    }
}

/// The wall clock and boot the daemon's decisions are taken at: read here, at the edge, and
/// passed into the pure model (which never reads time itself).
pub fn wall_clock(boot: BootId) -> Clock {
    let now =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    Clock { now: Timestamp(now), boot }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
