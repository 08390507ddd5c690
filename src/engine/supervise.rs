//! Runtime supervision: a helper that dies leaves a dead mount (`ENOTCONN`) behind. The
//! exit is noticed when the helper is reaped and handed to the machine as
//! [`Command::HelperExited`]: if the journal still says the target is mounted by exactly
//! that helper, the target is healed (its dead mount detached, a replacement started with
//! the same environment and verified, all on the target's turn, so a request for it waits
//! and then finds it mounted) within the `heal_attempts` bound, or else journaled `Lost`
//! and cleaned up, so the next request sees the truth (DESIGN §3.4).

use super::{oplines, perform, Engine, EngineError};
use crate::exec::death::DeathCause;
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::metrics::HealOutcome;
use dms_journal::machine::NOT_HEALED_AGAIN;
use dms_journal::{Command, Event, HelperIdentity, Phase, TargetId};
use std::time::Instant;
use tracing::Instrument;

/// What a helper's exit did to its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitEffect {
    /// Nothing: a helper the daemon stopped itself, or one no longer current.
    None,
    /// The target's helper died and a replacement serves its path.
    Healed { helper: HelperIdentity },
    /// The target's helper died and the target is lost, for the reason given.
    Lost { reason: String },
}

impl<C: Credentials, P: Processes, M: Mounts> Engine<C, P, M> {
    /// React to the exit of `helper`, serving `target`.
    pub async fn helper_exited(
        &self,
        target: &TargetId,
        helper: HelperIdentity,
        status: &str,
        cause: DeathCause,
    ) -> Result<ExitEffect, EngineError> {
        let _serial = self.serialize(target).await;
        let before = self.target_state(target);
        if before.phase != Phase::Mounted || before.helper != Some(helper) {
            return Ok(ExitEffect::None);
        }
        let started = Instant::now();
        crate::metrics::global().helper_died(cause);
        let age = crate::observe::procfs::age(helper.start_ticks);
        oplines::died(target, status, age, self.heal.attempts > 0);
        let span = tracing::info_span!("supervise", target_id = %target, helper_pid = helper.pid);
        let heal = self.heal_facts(target, cause).await?;
        let exited = Command::HelperExited { helper, status: status.to_owned(), heal };
        perform::Run::detached(self, target.clone()).drive(exited).instrument(span).await?;
        let after = self.target_state(target);
        let effect = match (after.phase, after.helper) {
            (Phase::Mounted, Some(new)) if new != helper => {
                crate::metrics::global().helper_heal(HealOutcome::Healed);
                let path = after.mount_path().unwrap_or_default();
                oplines::healed(target, new.pid, path, started.elapsed());
                ExitEffect::Healed { helper: new }
            }
            _ => {
                let reason = self.last_loss(target).await.unwrap_or_default();
                let outcome = match reason.contains(NOT_HEALED_AGAIN) {
                    true => HealOutcome::GivenUp,
                    false => HealOutcome::Failed,
                };
                crate::metrics::global().helper_heal(outcome);
                ExitEffect::Lost { reason }
            }
        };
        Ok(effect)
    }

    /// The reason of the target's last `Lost` record (what the journal says became of it).
    async fn last_loss(&self, target: &TargetId) -> Option<String> {
        let journal = std::sync::Arc::clone(&self.journal);
        let id = target.clone();
        let history = tokio::task::spawn_blocking(move || journal.history(&id)).await.ok()?.ok()?;
        history.records.iter().rev().filter_map(|r| r.as_ref().ok()).find_map(|s| {
            match &s.record.event {
                Event::Lost { reason, .. } => Some(reason.clone()),
                _ => None,
            }
        })
    }
}
