//! One request's run: perform each effect, turn its outcome into the next command.

use super::permits::{nfs_server, Pool};
use super::{oplines, Engine, EngineError, Executors, Job};
use crate::exec::credentials::S3Credentials;
use crate::exec::mounts::Heard;
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::wire::failed;
use dms_journal::machine::MountFailure;
use dms_journal::store::Ticket;
use dms_journal::{
    Cause, Cleanup, Command, Effect, HelperIdentity, Outcome, SpawnNonce, TargetId, TargetKind,
};
use secrecy::SecretString;
use std::collections::VecDeque;
use std::sync::Arc;

pub(super) struct Run<'a, C, P, M> {
    engine: &'a Engine<C, P, M>,
    target: TargetId,
    token: Option<SecretString>,
    /// Fetched for this request, used once to spawn the helper, then dropped.
    creds: Option<S3Credentials>,
    /// Commands waiting for their decision.
    queue: VecDeque<Command>,
    /// Effects of the decisions so far, not performed yet (in order).
    pending: VecDeque<Effect>,
    /// The latest records journaled without waiting for the disk (tickets only grow).
    deferred: Option<Ticket>,
}

impl<'a, C: Credentials, P: Processes, M: Mounts> Run<'a, C, P, M> {
    pub(super) fn new(engine: &'a Engine<C, P, M>, job: &Job, command: Command) -> Self {
        let mut run = Self::detached(engine, job.target.clone());
        run.token = job.token.clone();
        run.queue.push_back(command);
        run
    }

    /// A run no request asked for (reconciler follow-ups): it has no token.
    pub(super) fn detached(engine: &'a Engine<C, P, M>, target: TargetId) -> Self {
        Self {
            engine,
            target,
            token: None,
            creds: None,
            queue: VecDeque::new(),
            pending: VecDeque::new(),
            deferred: None,
        }
    }

    /// Decide `command` (no request asked for it: a helper's exit), then run to the end.
    pub(super) async fn drive(mut self, command: Command) -> Result<(), EngineError> {
        self.queue.push_back(command);
        self.finish().await
    }

    /// Perform effects decided elsewhere (a reconcile step), then drive their outcomes.
    pub(super) async fn drive_effects(mut self, effects: Vec<Effect>) -> Result<(), EngineError> {
        self.pending.extend(effects);
        self.finish().await
    }

    /// Run until the first answer and make everything journaled so far durable, so the
    /// requester can be answered and the request acked; what the machine decided to do
    /// after the answer (stopping a detached mount's helper) is left for [`Self::finish`].
    /// `None`: the run ended without an answer.
    pub(super) async fn until_answer(&mut self) -> Result<Option<Outcome>, EngineError> {
        loop {
            if let Some(effect) = self.pending.pop_front() {
                if let Effect::Reply { outcome, .. } = effect {
                    self.settle().await?;
                    return Ok(Some(outcome));
                }
                if let Some(next) = self.perform(effect).await {
                    self.queue.push_back(next);
                }
                continue;
            }
            let Some(command) = self.queue.pop_front() else {
                self.settle().await?;
                return Ok(None);
            };
            let started = std::time::Instant::now();
            match self.engine.decide_and_append(&self.target, &command).await {
                Ok(Ok((decision, ticket))) => {
                    let took_us = started.elapsed().as_micros() as u64;
                    let durable = ticket.is_none() && !decision.records.is_empty();
                    let records: Vec<&str> =
                        decision.records.iter().map(|r| r.event.name()).collect();
                    tracing::debug!(
                        took_us,
                        durable,
                        "decided and journaled {records:?} in {took_us} µs"
                    );
                    self.deferred = ticket.or(self.deferred);
                    self.pending.extend(decision.effects);
                }
                Ok(Err(rejection)) => {
                    self.settle().await?;
                    return Ok(Some(failed(&Cause::Refused(rejection))));
                }
                // The model decided something illegal: nothing of it was journaled or done,
                // and the request is answered with the reason instead of stopping intake.
                Err(EngineError::Illegal(illegal)) => {
                    tracing::error!(%illegal, "decision refused: {illegal}");
                    self.settle().await?;
                    return Ok(Some(failed(&Cause::Internal(illegal.to_string()))));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Run to the end; answers that come up (a reconcile follow-up has nobody to tell)
    /// are dropped.
    pub(super) async fn finish(mut self) -> Result<(), EngineError> {
        while self.until_answer().await?.is_some() {}
        Ok(())
    }

    /// Everything journaled is durable before the caller answers and acks.
    async fn settle(&mut self) -> Result<(), EngineError> {
        if let Some(ticket) = self.deferred.take() {
            self.engine.make_durable(ticket).await?;
        }
        Ok(())
    }

    /// The NFS server of this run's target, if it is an NFS target.
    fn nfs_server(&self) -> Option<String> {
        let state = super::lock(&self.engine.state);
        match state.target(&self.target).and_then(|t| t.spec.as_ref()).map(|s| &s.kind) {
            Some(TargetKind::Nfs { export, .. }) => Some(nfs_server(export).to_owned()),
            _ => None,
        }
    }

    /// Perform one effect; its outcome, if the machine wants it, as a command.
    async fn perform(&mut self, effect: Effect) -> Option<Command> {
        let name = effect.name();
        let pool = Pool::of(&effect, super::lock(&self.engine.state).target(&self.target));
        let Ok(_permit) = self.engine.permits.acquire(&pool).await else {
            // The pools close only with the engine; the effect's outcome stays unknown,
            // which the machine and the reconciler treat as for a crash.
            return None;
        };
        let started = std::time::Instant::now();
        let next = self.perform_effect(effect).await;
        let took_us = started.elapsed().as_micros() as u64;
        tracing::debug!(effect = name, took_us, "performed {name} in {took_us} µs");
        crate::failpoint::hit("effect", name);
        next
    }

    async fn perform_effect(&mut self, effect: Effect) -> Option<Command> {
        let target = self.target.clone();
        match effect {
            Effect::FetchCredentials { op, secret_ref } => {
                let result = match &self.token {
                    Some(token) => {
                        reason(self.engine.exec.credentials.fetch(&secret_ref, token).await)
                    }
                    None => Err("the request carries no keystone_token (a parked request \
                                  resumed after a reboot has none: tokens are never written \
                                  to disk; send it again)"
                        .into()),
                };
                let result = result.map(|creds| {
                    self.creds = Some(creds);
                });
                Some(Command::CredsFetched { op, result, nonce: SpawnNonce::random() })
            }
            Effect::SpawnHelper { op, mount_path, nonce } => {
                // A mount's helper gets the credentials just fetched; a heal's replacement,
                // the environment its dead predecessor was started with.
                let env = match self.creds.take() {
                    Some(creds) => Some(creds.helper_env(&mount_path)),
                    None => self.engine.environments.get(&target),
                };
                let result = match env {
                    Some(mut env) => {
                        oplines::spawning(&target);
                        self.engine.environments.remember(&target, env.clone());
                        env.set(SpawnNonce::ENV, nonce.env_value());
                        let spawn = target.clone();
                        blocking(&self.engine.exec, move |x| {
                            reason(x.processes.spawn(&spawn, &env))
                        })
                        .await
                    }
                    None => Err("no credentials in memory for this mount".into()),
                };
                if let Ok(helper) = &result {
                    tracing::Span::current().record("helper_pid", helper.pid);
                    let pid_file = self.engine.exec.processes.pid_file(&target);
                    // Not journaled yet: this helper is one more than the journal tracks.
                    let tracked = self.engine.gauges().helpers_tracked + 1;
                    oplines::spawned(&target, helper.pid, &mount_path, &pid_file, tracked);
                }
                Some(Command::HelperSpawned { op, result })
            }
            Effect::VerifyMount { op, helper, mount_path } => {
                let result = blocking(&self.engine.exec, move |x| {
                    Ok(x.mounts.wait_for_helper_mount(&mount_path, helper))
                })
                .await
                .unwrap_or_else(|reason| Err(MountFailure { reason, maybe_mounted: true }));
                Some(Command::MountChecked { op, result })
            }
            Effect::MountNfs { op, export, options, mount_path } => {
                let server = nfs_server(&export).to_owned();
                let ran = self.engine.exec.mounts.mount_nfs(&export, &options, &mount_path).await;
                self.engine.nfs_report(&server, &ran.heard);
                Some(Command::MountChecked { op, result: ran.result })
            }
            Effect::Detach { op, mount_path } => {
                let result =
                    blocking(&self.engine.exec, move |x| reason(x.mounts.detach(&mount_path)))
                        .await;
                Some(Command::Detached { op, result })
            }
            Effect::Unmount { op, mount_path } => {
                let server = self.nfs_server();
                let ran = self.engine.exec.mounts.unmount(&mount_path, true).await;
                if let Some(server) = &server {
                    self.engine.nfs_report(server, &ran.heard);
                }
                Some(Command::UnmountDone { op, result: reason(ran.result) })
            }
            Effect::RemoveMountPoint { mount_path } => {
                // The client asked for the target to go: so does its directory. A directory
                // that stays is still guarded, so this fails nothing.
                let removed = blocking(&self.engine.exec, move |x| {
                    reason(x.mounts.remove_mount_point(&mount_path))
                })
                .await;
                if let Err(e) = removed {
                    tracing::warn!(error = %e, "mount point left in place");
                }
                None
            }
            Effect::Cleanup { cleanup, mount_path } => {
                let server = self.nfs_server();
                let nfs = !self.engine.target_state(&target).is_s3();
                let (result, heard) =
                    clean(&self.engine.exec, target, cleanup, mount_path, nfs).await;
                if let Some(server) = &server {
                    self.engine.nfs_report(server, &heard);
                }
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "cleanup incomplete; the target stays dirty");
                }
                Some(Command::CleanupDone { result })
            }
            Effect::RemoveStalePidFile { pid } => {
                let _ = blocking(&self.engine.exec, move |x| {
                    reason(x.processes.remove_stale_pid_file(&target, pid))
                })
                .await;
                None
            }
            Effect::WritePidFile { helper } => {
                let _ = blocking(&self.engine.exec, move |x| {
                    reason(x.processes.write_pid_file(&target, helper.pid))
                })
                .await;
                None
            }
            Effect::Respawn { op, after_ms } => {
                if after_ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(after_ms)).await;
                }
                Some(Command::Respawn { op, nonce: SpawnNonce::random() })
            }
            Effect::Reply { .. } => None,
        }
    }
}

/// Undo what `cleanup` lists; the description is journaled with `Cleaned`. Every step is
/// tried even when an earlier one fails (a PID file naming a process that cannot be
/// verified is stale all the same); any failure keeps the target dirty for the next try.
/// Also what the umount(8) runs showed of the NFS server (for its breaker).
async fn clean<C, P: Processes, M: Mounts>(
    exec: &Arc<Executors<C, P, M>>,
    target: TargetId,
    cleanup: Cleanup,
    mount_path: Option<String>,
    nfs: bool,
) -> (Result<String, String>, Heard)
where
    C: Send + Sync + 'static,
{
    let mut done = Vec::new();
    let mut failed = Vec::new();
    if let Some(helper) = cleanup.helper {
        match stop_helper(exec, target.clone(), helper).await {
            Ok(()) => done.push(format!("helper pid {} stopped", helper.pid)),
            Err(e) => failed.push(e),
        }
    }
    let mut heard = Heard::Nothing;
    if let (true, Some(path)) = (cleanup.mount, mount_path.as_deref()) {
        let ran = exec.mounts.unmount(path, nfs).await;
        heard = ran.heard;
        match ran.result {
            Ok(()) => done.push(format!("{path} unmounted")),
            Err(e) => failed.push(e.to_string()),
        }
    }
    let rest = blocking(exec, move |x| {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        let mut removed = None;
        if cleanup.pid_file {
            match x.processes.remove_pid_file(&target) {
                Ok(path) => {
                    removed = path;
                    done.push("PID file removed".to_owned());
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
        Ok((done, failed, removed))
    })
    .await;
    match rest {
        Ok((more_done, more_failed, removed)) => {
            if let Some(path) = &removed {
                oplines::pid_file_deleted(path);
            }
            done.extend(more_done);
            failed.extend(more_failed);
        }
        Err(e) => failed.push(e),
    }
    if !failed.is_empty() {
        return (Err(failed.join("; ")), heard);
    }
    let done = if done.is_empty() { "nothing left behind".into() } else { done.join(", ") };
    (Ok(done), heard)
}

/// Stop one helper, with the seed's lines around it (the PID and uptime first, so they
/// are read while the process still exists).
async fn stop_helper<C, P: Processes, M>(
    exec: &Arc<Executors<C, P, M>>,
    target: TargetId,
    helper: HelperIdentity,
) -> Result<(), String>
where
    C: Send + Sync + 'static,
    M: Send + Sync + 'static,
{
    tracing::Span::current().record("helper_pid", helper.pid);
    oplines::killing(&target, helper.pid, exec.processes.uptime(helper));
    let stop = target.clone();
    let removed = blocking(exec, move |x| reason(x.processes.stop(&stop, helper))).await?;
    oplines::killed(&target);
    if let Some(path) = removed {
        oplines::pid_file_deleted(&path);
    }
    Ok(())
}

/// A port's error as the reason the machine journals and the requester reads: its
/// `Display`, rendered here and nowhere else.
fn reason<T, E: std::error::Error>(result: Result<T, E>) -> Result<T, String> {
    result.map_err(|e| e.to_string())
}

/// Run blocking executor work on the blocking pool.
async fn blocking<C, P, M, T>(
    exec: &Arc<Executors<C, P, M>>,
    work: impl FnOnce(&Executors<C, P, M>) -> Result<T, String> + Send + 'static,
) -> Result<T, String>
where
    C: Send + Sync + 'static,
    P: Send + Sync + 'static,
    M: Send + Sync + 'static,
    T: Send + 'static,
{
    let exec = Arc::clone(exec);
    tokio::task::spawn_blocking(move || work(&exec))
        .await
        .unwrap_or_else(|e| Err(format!("executor task failed: {e}")))
}
