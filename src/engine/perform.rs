//! One request's run: perform each effect, turn its outcome into the next command.

use super::ports::{Credentials, Mounts, Processes};
use super::{Engine, EngineError, Executors};
use crate::exec::credentials::S3Credentials;
use crate::wire::{Request, Secret};
use dms_journal::machine::MountFailure;
use dms_journal::{Cleanup, Command, Effect, Outcome, TargetId};
use std::collections::VecDeque;
use std::sync::Arc;

pub(super) struct Run<'a, C, P, M> {
    engine: &'a Engine<C, P, M>,
    target: TargetId,
    token: Option<Secret>,
    /// Fetched for this request, used once to spawn the helper, then dropped.
    creds: Option<S3Credentials>,
}

impl<'a, C: Credentials, P: Processes, M: Mounts> Run<'a, C, P, M> {
    pub(super) fn new(engine: &'a Engine<C, P, M>, request: &Request) -> Self {
        Self { engine, target: request.target.clone(), token: request.token.clone(), creds: None }
    }

    /// A run no request asked for (reconciler follow-ups): it has no token.
    pub(super) fn detached(engine: &'a Engine<C, P, M>, target: TargetId) -> Self {
        Self { engine, target, token: None, creds: None }
    }

    pub(super) async fn drive(self, command: Command) -> Result<Outcome, EngineError> {
        Ok(self.drive_optional(command).await?.unwrap_or_else(|| Outcome::Failed {
            reason: "the request ended without an answer".into(),
        }))
    }

    /// Perform effects decided elsewhere (a reconcile step), then drive their outcomes.
    pub(super) async fn drive_effects(mut self, effects: Vec<Effect>) -> Result<(), EngineError> {
        for effect in effects {
            if let Some(next) = self.perform(effect).await {
                let run = Run::detached(self.engine, self.target.clone());
                run.drive_optional(next).await?;
            }
        }
        Ok(())
    }

    /// Run until no command is left; the first reply is the answer.
    pub(super) async fn drive_optional(
        mut self,
        command: Command,
    ) -> Result<Option<Outcome>, EngineError> {
        let mut queue = VecDeque::from([command]);
        let mut answer = None;
        while let Some(command) = queue.pop_front() {
            let decision = match self.engine.decide_and_append(&self.target, &command).await? {
                Ok(decision) => decision,
                Err(rejection) => {
                    answer.get_or_insert(Outcome::Failed { reason: rejection.to_string() });
                    continue;
                }
            };
            for effect in decision.effects {
                if let Effect::Reply { outcome, .. } = effect {
                    answer.get_or_insert(outcome);
                } else if let Some(next) = self.perform(effect).await {
                    queue.push_back(next);
                }
            }
        }
        Ok(answer)
    }

    /// Perform one effect; its outcome, if the machine wants it, as a command.
    async fn perform(&mut self, effect: Effect) -> Option<Command> {
        let name = effect.name();
        let next = self.perform_effect(effect).await;
        crate::failpoint::hit("effect", name);
        next
    }

    async fn perform_effect(&mut self, effect: Effect) -> Option<Command> {
        let target = self.target.clone();
        match effect {
            Effect::FetchCredentials { op, secret_ref } => {
                let result = match &self.token {
                    Some(token) => self.engine.exec.credentials.fetch(&secret_ref, token).await,
                    None => Err("the request carries no keystone_token".into()),
                };
                let result = result.map(|creds| {
                    self.creds = Some(creds);
                });
                Some(Command::CredsFetched { op, result })
            }
            Effect::SpawnHelper { op, mount_path } => {
                let result = match self.creds.take() {
                    Some(creds) => {
                        let env = creds.helper_env(&mount_path);
                        blocking(&self.engine.exec, move |x| x.processes.spawn(&target, &env)).await
                    }
                    None => Err("no credentials in memory for this mount".into()),
                };
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
                let result = blocking(&self.engine.exec, move |x| {
                    Ok(x.mounts.mount_nfs(&export, &options, &mount_path))
                })
                .await
                .unwrap_or_else(|reason| Err(MountFailure { reason, maybe_mounted: true }));
                Some(Command::MountChecked { op, result })
            }
            Effect::StopHelper { op, helper } => {
                let result =
                    blocking(&self.engine.exec, move |x| x.processes.stop(&target, helper)).await;
                Some(Command::HelperStopped { op, result })
            }
            Effect::Unmount { op, mount_path, nfs } => {
                let result = blocking(&self.engine.exec, move |x| {
                    x.mounts.unmount(&mount_path, nfs)?;
                    if !nfs {
                        x.processes.remove_pid_file(&target)?;
                    }
                    Ok(())
                })
                .await;
                Some(Command::UnmountDone { op, result })
            }
            Effect::Cleanup { cleanup, mount_path } => {
                let nfs = !self.engine.target_state(&target).is_s3();
                let result = blocking(&self.engine.exec, move |x| {
                    clean(x, &target, cleanup, mount_path.as_deref(), nfs)
                })
                .await;
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "cleanup incomplete; the target stays dirty");
                }
                Some(Command::CleanupDone { result })
            }
            Effect::RemoveStalePidFile { pid } => {
                let _ = blocking(&self.engine.exec, move |x| {
                    x.processes.remove_stale_pid_file(&target, pid)
                })
                .await;
                None
            }
            Effect::WritePidFile { helper } => {
                let _ = blocking(&self.engine.exec, move |x| {
                    x.processes.write_pid_file(&target, helper.pid)
                })
                .await;
                None
            }
            Effect::Reply { .. } => None,
        }
    }
}

/// Undo what `cleanup` lists; the description is journaled with `Cleaned`. Every step is
/// tried even when an earlier one fails (a PID file naming a process that cannot be
/// verified is stale all the same); any failure keeps the target dirty for the next try.
fn clean<C, P: Processes, M: Mounts>(
    x: &Executors<C, P, M>,
    target: &TargetId,
    cleanup: Cleanup,
    mount_path: Option<&str>,
    nfs: bool,
) -> Result<String, String> {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut note = |result: Result<(), String>, what: String| match result {
        Ok(()) => done.push(what),
        Err(e) => failed.push(e),
    };
    if let Some(helper) = cleanup.helper {
        note(x.processes.stop(target, helper), format!("helper pid {} stopped", helper.pid));
    }
    if let (true, Some(path)) = (cleanup.mount, mount_path) {
        note(x.mounts.unmount(path, nfs), format!("{path} unmounted"));
    }
    if cleanup.pid_file {
        note(x.processes.remove_pid_file(target), "PID file removed".into());
    }
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    Ok(if done.is_empty() { "nothing left behind".into() } else { done.join(", ") })
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
