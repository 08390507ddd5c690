//! Intake in process, for harnesses: jobs sent on a channel instead of deliveries from the
//! broker, each answered on its own. Only for tests (`cfg(test)` or the `testing` feature):
//! the daemon's intake is the broker transport.

use crate::engine::{Engine, EngineError, Job};
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::transport::TransportError;
use dms_journal::Outcome;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

type Asked = (Job, oneshot::Sender<Result<Outcome, String>>);

/// Where a harness sends jobs ([`channel`]).
#[derive(Debug, Clone)]
pub struct Sender(mpsc::Sender<Asked>);

/// What [`super::Intake::Jobs`] serves.
#[derive(Debug)]
pub struct Receiver(mpsc::Receiver<Asked>);

pub fn channel() -> (Sender, Receiver) {
    let (tx, rx) = mpsc::channel(64);
    (Sender(tx), Receiver(rx))
}

impl Sender {
    /// Serve `job` to its outcome (what follows the answer included). `Err`: the engine
    /// failed, or the daemon is not taking jobs.
    pub async fn ask(&self, job: Job) -> Result<Outcome, String> {
        let (tx, rx) = oneshot::channel();
        self.0.send((job, tx)).await.map_err(|_| "the daemon takes no jobs".to_owned())?;
        rx.await.map_err(|_| "the daemon dropped the job".to_owned())?
    }
}

/// Serve jobs until `shutdown`, each in a task of its own (a job waiting for its target's
/// turn holds up no other); then wait for those in flight. A journal that cannot be
/// written ends intake, as the broker transport's does.
pub(super) async fn serve<C: Credentials, P: Processes, M: Mounts>(
    engine: Arc<Engine<C, P, M>>,
    Receiver(mut jobs): Receiver,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), TransportError> {
    let mut in_flight = tokio::task::JoinSet::new();
    let (fatal_tx, mut fatal) = mpsc::channel::<EngineError>(1);
    let failed = loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break None,
            Some(e) = fatal.recv() => break Some(e),
            asked = jobs.recv() => {
                let Some((job, answer)) = asked else { break None };
                let (engine, fatal) = (Arc::clone(&engine), fatal_tx.clone());
                in_flight.spawn(async move {
                    let outcome = engine.handle(&job).await;
                    let _ = answer.send(outcome.as_ref().map(Clone::clone).map_err(|e| e.to_string()));
                    if let Err(e @ EngineError::Journal(_)) = outcome {
                        let _ = fatal.try_send(e);
                    }
                });
            }
        }
    };
    while in_flight.join_next().await.is_some() {}
    match failed {
        Some(e) => Err(TransportError::Engine(e)),
        None => Ok(()),
    }
}
