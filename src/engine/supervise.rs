//! Runtime supervision: a helper that dies leaves a dead mount (`ENOTCONN`) behind. The
//! exit is noticed when the helper is reaped and handed to the machine as
//! [`Command::HelperExited`]: if the journal still says the target is mounted by exactly
//! that helper, the target is journaled `Lost` and its dead mount and PID file are cleaned
//! up, so the next request sees the truth (DESIGN §3.4).

use super::{perform, Engine, EngineError};
use crate::exec::ports::{Credentials, Mounts, Processes};
use dms_journal::{Command, HelperIdentity, TargetId};
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
        let before = self.target_state(target).records;
        let span = tracing::info_span!("supervise", target_id = %target, helper_pid = helper.pid);
        let exited = Command::HelperExited { helper, status: status.to_owned() };
        perform::Run::detached(self, target.clone()).drive(exited).instrument(span).await?;
        Ok(self.target_state(target).records != before)
    }
}
