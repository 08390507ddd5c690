//! [`decide`](super::decide) for a mounted target whose helper died: heal it (detach the
//! dead mount, spawn a replacement with the environment the helper was started with, verify
//! its mount, journaled as a mount is), within a bound, or give it up (`Lost`, as before
//! healing existed).
//!
//! The bound: at most `heal_attempts` deaths within `heal_window` are healed, and every death
//! after the first in a window waits a backoff before its replacement starts. Deaths are
//! counted from the journal (the engine passes the times of the target's earlier
//! `HelperDied` records), so a daemon restart does not reset the count; a replacement that
//! does not mount is one more death of the same heal.

use super::decide::Draft;
use super::{Effect, HealFacts, MountFailure, Rejection};
use crate::event::{Cleanup, Deaths, Event};
use crate::ids::{HelperIdentity, OperationId, SpawnNonce, Timestamp};
use crate::state::{HealStep, Healing, Phase};

/// What a given-up target's `Lost` reason says, and the engine looks for to tell a heal
/// given up from one that failed.
pub const NOT_HEALED_AGAIN: &str = "not healed again";

/// The longest a replacement waits after the one before it died.
const MAX_BACKOFF_MS: u64 = 30_000;

/// How long the replacement for the `count`th death in a window waits: none for the first
/// (the backup writing through the mount is waiting), then 1 s, 2 s, 4 s ... up to 30 s.
pub fn backoff_ms(count: u32) -> u64 {
    match count {
        0 | 1 => 0,
        n => 1000u64.checked_shl(n - 2).unwrap_or(MAX_BACKOFF_MS).min(MAX_BACKOFF_MS),
    }
}

impl Draft<'_> {
    pub(super) fn helper_exited(&mut self, helper: HelperIdentity, status: &str, heal: &HealFacts) {
        match self.state.phase {
            Phase::Mounted if self.state.helper == Some(helper) => self.died(helper, status, heal),
            // A replacement that dies while its mount is awaited fails that check, and the
            // heal counts the death there; any other exit is of a helper no longer current.
            Phase::Mounted
            | Phase::Unmounted
            | Phase::Mounting(_)
            | Phase::Unmounting(_)
            | Phase::Dirty(_)
            | Phase::Healing(_) => {}
        }
    }

    /// The mounted target's own helper died: heal, or give up.
    fn died(&mut self, helper: HelperIdentity, status: &str, heal: &HealFacts) {
        let now = self.clock.now;
        let path = self.state.mount_path().unwrap_or_default().to_owned();
        // Given up, the target leaves its dead mount and the PID file of the dead helper.
        let left = Cleanup { helper: None, mount: true, pid_file: true };
        let exited = format!("helper pid {} exited ({status})", helper.pid);
        if heal.attempts == 0 {
            return self.lost(exited, left, &path); // healing is off
        }
        if heal.clean_exit {
            let reason = format!(
                "{exited}; not healed: it ended by itself (was its mount removed by hand?)"
            );
            return self.lost(reason, left, &path);
        }
        if !heal.environment {
            let reason = format!(
                "{exited}; not healed: the environment it was started with is not known (the \
                 daemon restarted and could not read it from the running helper)"
            );
            return self.lost(reason, left, &path);
        }
        let window_start = now.saturating_sub_millis(heal.window_ms);
        let earlier: Vec<Timestamp> =
            heal.earlier.iter().copied().filter(|t| (window_start..=now).contains(t)).collect();
        let since = earlier.iter().min().copied().unwrap_or(now);
        let deaths = Deaths { count: earlier.len() as u32 + 1, limit: heal.attempts, since };
        if deaths.count > deaths.limit {
            return self.lost(self.given_up(deaths, status), left, &path);
        }
        let cause = status.to_owned();
        self.record(Some(heal.op), None, Event::HelperDied { helper, cause, deaths });
        // The dead mount goes first: the replacement mounts on the same path.
        let detach = Cleanup { helper: None, mount: true, pid_file: false };
        self.effect(Effect::Cleanup { cleanup: detach, mount_path: Some(path) });
    }

    /// The dead mount (and a failed replacement) is gone: journal it, wait the backoff,
    /// then respawn.
    pub(super) fn heal_detached(&mut self, result: &Result<String, String>, deaths: Deaths) {
        let path = self.state.mount_path().unwrap_or_default().to_owned();
        let op = self.state.op.as_ref().and_then(|o| o.id);
        match (result, op) {
            (Ok(what), Some(op)) => {
                self.in_op(Event::Cleaned { what: what.clone() });
                self.effect(Effect::Respawn { op, after_ms: backoff_ms(deaths.count) })
            }
            (Ok(_), None) => {
                let left = Cleanup { helper: None, mount: false, pid_file: true };
                self.lost("heal without an operation id".into(), left, &path)
            }
            (Err(e), _) => {
                let reason = format!(
                    "helper died; not healed: the dead mount at {path} could not be detached: {e}"
                );
                self.lost(reason, Cleanup { helper: None, mount: true, pid_file: true }, &path)
            }
        }
    }

    /// The backoff is over: journal the replacement's intent, then spawn it.
    pub(super) fn respawn(&mut self, op: OperationId, nonce: SpawnNonce) -> Result<(), Rejection> {
        self.current_op(op, "Respawn")?;
        match self.state.phase {
            Phase::Healing(Healing { step: HealStep::Detached, .. }) => {
                let mount_path = self.state.mount_path().unwrap_or_default().to_owned();
                self.in_op(Event::SpawnIntended { nonce });
                self.effect(Effect::SpawnHelper { op, mount_path, nonce });
                Ok(())
            }
            Phase::Healing(Healing {
                step: HealStep::Dead | HealStep::SpawnIntended(_) | HealStep::Spawned,
                ..
            })
            | Phase::Unmounted
            | Phase::Mounting(_)
            | Phase::Mounted
            | Phase::Unmounting(_)
            | Phase::Dirty(_) => Err(self.unexpected("Respawn")),
        }
    }

    /// The replacement started (journaled before its mount is awaited), or did not.
    pub(super) fn heal_spawned(
        &mut self,
        op: OperationId,
        result: &Result<HelperIdentity, String>,
    ) {
        let path = self.state.mount_path().unwrap_or_default().to_owned();
        match result {
            Ok(helper) => {
                self.in_op(Event::Spawned { helper: *helper });
                self.effect(Effect::VerifyMount { op, helper: *helper, mount_path: path });
            }
            Err(e) => {
                let reason = format!("helper died; not healed: the replacement did not start: {e}");
                self.lost(reason, Cleanup { helper: None, mount: false, pid_file: true }, &path)
            }
        }
    }

    /// The replacement's mount answers (healed), or the replacement failed: one more death.
    pub(super) fn heal_checked(&mut self, result: &Result<(), MountFailure>, deaths: Deaths) {
        let path = self.state.mount_path().unwrap_or_default().to_owned();
        let replacement = self.state.helper;
        match (result, replacement) {
            (Ok(()), _) => self.in_op(Event::Verified),
            (Err(MountFailure { reason, .. }), Some(helper)) => {
                let next = Deaths { count: deaths.count + 1, ..deaths };
                if next.count > next.limit {
                    let left = Cleanup { helper: Some(helper), mount: true, pid_file: true };
                    return self.lost(self.given_up(next, reason), left, &path);
                }
                let cause = reason.clone();
                self.in_op(Event::HelperDied { helper, cause, deaths: next });
                let undo = Cleanup { helper: Some(helper), mount: true, pid_file: false };
                self.effect(Effect::Cleanup { cleanup: undo, mount_path: Some(path) });
            }
            (Err(MountFailure { reason, .. }), None) => {
                let left = Cleanup { helper: None, mount: true, pid_file: true };
                self.lost(format!("helper died; not healed: {reason}"), left, &path)
            }
        }
    }

    fn given_up(&self, deaths: Deaths, last: &str) -> String {
        let secs = self.clock.now.millis().saturating_sub(deaths.since.millis()) / 1000;
        format!("helper died {} times in {secs} s; {NOT_HEALED_AGAIN} (last: {last})", deaths.count)
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_from_the_second_death_and_is_capped() {
        let waits: Vec<u64> = (0..8).map(backoff_ms).collect();
        assert_eq!(waits, [0, 0, 1000, 2000, 4000, 8000, 16_000, 30_000]);
        assert_eq!(backoff_ms(u32::MAX), 30_000);
    }
}
