//! The reconciler's port: what the supervisor and the admin socket read of the host (the
//! boot, the [`Observations`] a reconcile plan is made from, a watch on each helper's exit).
//! Beside the engine's three executor ports ([`super::ports`]), so supervision and the
//! admin commands run against a recording fake (`crate::engine::fake_observer`, tests only) as
//! well as the host ([`HostObserver`]), and nothing above this trait reaches around it to
//! `/proc` or a pidfd.

use crate::exec::credentials::payload::helper_env_from_environ;
use crate::exec::helper::{HelperEnv, HelperError, Helpers};
use crate::observe::{Host, ObserveError};
use dms_journal::reconcile::Observations;
use dms_journal::{BootId, HelperIdentity, JournalState};
use std::future::Future;
use std::pin::Pin;

#[derive(Debug, thiserror::Error)]
pub enum ObservationError {
    #[error("cannot observe the host: {0}")]
    Host(#[from] ObserveError),
    /// The observation did not finish (its blocking task was lost, or a fake was told to
    /// fail).
    #[error("the observation did not finish: {0}")]
    Unfinished(String),
}

/// The exit of one helper, as the supervisor can learn it.
pub enum Watch {
    /// Someone reports this helper's exit already (the reaper of a helper this process
    /// spawned): no second watch.
    Reported,
    /// Resolves once the helper has exited.
    Exits(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// The helper is not running (any more): its exit, with this status, is due now.
    Gone(&'static str),
    /// It cannot be watched; the next resync pass notices its death instead.
    Unwatchable(String),
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Watch::Reported => f.write_str("Reported"),
            Watch::Exits(_) => f.write_str("Exits(..)"),
            Watch::Gone(status) => f.debug_tuple("Gone").field(status).finish(),
            Watch::Unwatchable(why) => f.debug_tuple("Unwatchable").field(why).finish(),
        }
    }
}

/// What the reconciler reads of the host. Observing only reads; nothing here changes it.
pub trait Observer: Send + Sync + 'static {
    /// This boot: a journaled helper of another boot is gone by definition.
    fn boot(&self) -> BootId;
    /// Everything a reconcile plan over `journal` looks at, read once (off the runtime's
    /// workers: a hung mount blocks whoever looks at it).
    fn observe(
        &self,
        journal: JournalState,
    ) -> impl Future<Output = Result<Observations, ObservationError>> + Send;
    /// A watch on `helper`'s exit (it must be the same process as journaled).
    fn watch(&self, helper: HelperIdentity) -> Watch;
    /// The environment `helper` was started with (read while it runs: after a restart,
    /// what a replacement would be started with if it died). `None` if it is not running
    /// as journaled, or its environment holds no keys.
    fn helper_env(&self, helper: HelperIdentity) -> Option<HelperEnv>;
}

/// This host: `/proc`, the PID directory and the mount table ([`Host`]), and the helpers'
/// pidfds ([`Helpers`]).
#[derive(Debug, Clone)]
pub struct HostObserver {
    pub host: Host,
    pub helpers: Helpers,
}

impl Observer for HostObserver {
    fn boot(&self) -> BootId {
        self.helpers.boot
    }

    async fn observe(&self, journal: JournalState) -> Result<Observations, ObservationError> {
        let host = self.host.clone();
        tokio::task::spawn_blocking(move || host.observe(&journal))
            .await
            .map_err(|e| ObservationError::Unfinished(e.to_string()))?
            .map_err(ObservationError::from)
    }

    fn watch(&self, helper: HelperIdentity) -> Watch {
        // A helper this process spawned has a reaper that reports its exit already.
        if self.helpers.reaping.contains(&helper) {
            return Watch::Reported;
        }
        match self.helpers.pidfd(helper) {
            Ok(Some(pidfd)) => match crate::exec::helper::register(pidfd) {
                // Readable once the process has exited.
                Ok(pidfd) => Watch::Exits(Box::pin(async move {
                    if pidfd.readable().await.is_err() {
                        // The reactor is gone (the runtime stops): no exit to report.
                        std::future::pending::<()>().await;
                    }
                })),
                Err(e) => Watch::Unwatchable(e.to_string()),
            },
            Ok(None) => Watch::Gone("gone"),
            Err(HelperError::NotOurs { .. }) => {
                Watch::Gone("gone; its PID now names another process")
            }
            Err(e) => Watch::Unwatchable(e.to_string()),
        }
    }

    fn helper_env(&self, helper: HelperIdentity) -> Option<HelperEnv> {
        let (procfs, boot) = (&self.host.procfs, self.helpers.boot);
        let environ = procfs.environ(helper.pid).filter(|_| procfs.is_same(&helper, boot))?;
        // Still the same process after the read: the environment read was its own.
        procfs.is_same(&helper, boot).then(|| helper_env_from_environ(&environ)).flatten()
    }
}
