//! Runtime supervision: a helper that dies leaves a dead mount (`ENOTCONN`) behind. The
//! exit is noticed when the helper is reaped; if the journal still says the target is
//! mounted by exactly that helper, the target is journaled `Lost` and its dead mount and
//! PID file are cleaned up, so the next request sees the truth (DESIGN §3.4).

use super::ports::{Credentials, Mounts, Processes};
use super::{perform, Engine, EngineError};
use dms_journal::{Cleanup, Effect, Event, HelperIdentity, Phase, Record, TargetId};
use tracing::Instrument;

impl<C: Credentials, P: Processes, M: Mounts> Engine<C, P, M> {
    /// React to the exit of `helper`, serving `target`. Exits of helpers the daemon stopped
    /// itself, or of helpers no longer current, change nothing.
    pub async fn helper_exited(
        &self,
        target: &TargetId,
        helper: HelperIdentity,
        status: &str,
    ) -> Result<bool, EngineError> {
        let _serial = self.serialize(target).await;
        let state = self.target_state(target);
        if state.phase != Phase::Mounted || state.helper != Some(helper) {
            return Ok(false);
        }
        let cleanup = Cleanup { helper: None, mount: true, pid_file: true };
        let clock = self.clock();
        let lost = Record {
            target: target.clone(),
            at: clock.now,
            boot: clock.boot,
            request: None,
            op: None,
            event: Event::Lost {
                reason: format!("helper pid {} exited ({status})", helper.pid),
                cleanup,
            },
        };
        let mount_path = state.mount_path().map(str::to_owned);
        let span = tracing::info_span!("supervise", target_id = %target, helper_pid = helper.pid);
        async {
            self.append(vec![lost]).await?;
            perform::Run::detached(self, target.clone())
                .drive_effects(vec![Effect::Cleanup { cleanup, mount_path }])
                .await
        }
        .instrument(span)
        .await?;
        Ok(true)
    }
}
