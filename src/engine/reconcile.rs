//! The engine's side of a reconcile pass: each planned step decided and performed under its
//! target's turn, like a request.

use super::{perform, Credentials, Engine, EngineError, Mounts, Processes};
use crate::wire::Wire;
use dms_journal::reconcile::Plan;
use dms_journal::{decide, JournalState};
use tracing::Instrument;

impl<C: Credentials, P: Processes, M: Mounts> Engine<C, P, M> {
    /// Perform a reconcile plan computed from `seen` (a snapshot taken *before* reality was
    /// observed): each step's command is decided like a request's, its records made durable
    /// before its effects run (write-ahead), and effect outcomes go through the machine.
    ///
    /// A step runs only if its target is free and still exactly as seen, checked under the
    /// target's turn: a target with a request in flight, or that a request moved on since
    /// reality was observed, is left for the next pass, so a plan made from an older picture
    /// never undoes newer work and one slow target never stalls the pass. At boot nothing is
    /// in flight and every step runs. Returns how many steps ran.
    pub async fn reconcile(&self, plan: Plan, seen: &JournalState) -> Result<usize, EngineError> {
        let mut performed = 0;
        for step in plan.steps {
            // A target whose turn is taken has a request in flight: its records will change,
            // so the step would be skipped anyway, and waiting would stall the whole pass
            // behind one slow (or hung) target.
            let Some(_serial) = self.try_serialize(&step.target) else {
                continue;
            };
            let was = seen.target(&step.target).map_or(0, |t| t.records);
            if self.target_state(&step.target).records != was {
                continue;
            }
            let span = tracing::info_span!(
                "reconcile",
                target_id = %step.target,
                helper_pid = tracing::field::Empty
            );
            let ran = async {
                let state = self.target_state(&step.target);
                let decision = match decide(&state, &step.command, self.clock(), &Wire) {
                    Ok(decision) => decision,
                    Err(rejection) => return Ok(Err(rejection)),
                };
                self.append(decision.records).await?;
                let run = perform::Run::detached(self, step.target.clone());
                run.drive_effects(decision.effects).await.map(Ok)
            }
            .instrument(span)
            .await;
            match ran {
                Ok(Ok(())) => performed += 1,
                // A plan step the model got wrong is skipped, not the whole pass.
                Ok(Err(rejection)) => tracing::error!(
                    target_id = %step.target, %rejection,
                    "reconcile step refused: {rejection}; nothing journaled or done for it"
                ),
                Err(EngineError::Illegal(illegal)) => tracing::error!(
                    target_id = %step.target, %illegal,
                    "reconcile step refused: {illegal}; nothing journaled or done for it"
                ),
                Err(e) => return Err(e),
            }
        }
        Ok(performed)
    }
}
