//! [`decide`](super::decide) for [`Command::Reconcile`](super::Command::Reconcile): what
//! the host's state means for the target's phase. The rules keep DESIGN §3's guarantees:
//! - a process is the target's helper only with proof (the gatherer's), and never before a
//!   spawn was licensed (`Requested`) or across a reboot;
//! - interrupted mounts are rolled back (`Abandoned`) unless the host shows they completed
//!   (`Adopted`); their requests stay unanswered, so a redelivery runs them again. One
//!   interrupted after its spawn intent whose helper runs (known by its nonce) but has not
//!   mounted yet is resumed: `Spawned`, then the wait for its mount;
//! - interrupted unmounts are resumed (their effects are idempotent), and an S3 unmount
//!   whose mount is gone has its answer (`Detached`) whatever became of the helper: the
//!   requester may already have heard "unmounted", and a redelivery must hear the same;
//! - what a lost or rolled-back target leaves behind is cleaned at once.

use super::decide::Draft;
use super::facts::{MountSeen, Seen, StrayPidFile, TargetFacts};
use super::{Effect, Rejection};
use crate::event::{Cleanup, Event, TargetKind, TargetSpec};
use crate::ids::HelperIdentity;
use crate::state::{MountStep, Phase};

impl Draft<'_> {
    pub(super) fn reconcile(&mut self, seen: &Seen) -> Result<(), Rejection> {
        match (seen, self.state.phase) {
            (Seen::Target(facts), _) => self.reconcile_target(facts),
            (Seen::StrayPidFile(file), Phase::Unmounted) => {
                self.stray_pid_file(file);
                Ok(())
            }
            // A target in any other phase has its PID file looked at by its own rules.
            (
                Seen::StrayPidFile(_),
                Phase::Mounting(_)
                | Phase::Mounted
                | Phase::Unmounting(_)
                | Phase::Dirty(_)
                | Phase::Healing(_),
            ) => Err(self.unexpected("StrayPidFile")),
        }
    }

    fn reconcile_target(&mut self, facts: &TargetFacts) -> Result<(), Rejection> {
        let Some(spec) = self.state.spec.clone() else {
            return Err(self.unexpected("Reconcile"));
        };
        let path = spec.mount_path.clone();
        let s3 = spec.kind.has_helper();
        // At `Requested` no spawn was licensed yet: a helper serving the path is not ours.
        let may_have_helper =
            s3 && !facts.new_boot && self.state.phase != Phase::Mounting(MountStep::Requested);
        // The helper of a journaled spawn intent is ours by its nonce, whatever it runs.
        let intended = facts.intended.filter(|_| may_have_helper);
        let helper = intended.or(facts.helper.filter(|_| may_have_helper));
        // What would have to go if the target ends up unmounted now. After a reboot only a
        // dead mount is ours to detach: a live one was made by someone in this boot.
        let mount = facts.mount.is_some_and(|m| m == MountSeen::Dead || !facts.new_boot);
        let leftovers = Cleanup { helper, mount, pid_file: facts.pid_file.is_some() };
        match self.state.phase {
            Phase::Unmounted => {}
            Phase::Mounted if facts.new_boot => {
                self.lost("host rebooted (boot id changed)".into(), leftovers, &path)
            }
            Phase::Mounted => match (s3, helper, facts.mount) {
                (true, Some(h), Some(MountSeen::Live)) => {
                    if self.state.helper != Some(h) {
                        let reason = format!("helper replaced: pid {} serves {path}", h.pid);
                        self.in_op(Event::Adopted { spec, helper: Some(h), reason });
                    }
                    self.restore_pid_file(facts, h);
                }
                (true, Some(_), Some(MountSeen::Dead)) => self.lost(
                    format!("mount at {path} is dead (helper alive but not answering)"),
                    leftovers,
                    &path,
                ),
                (true, Some(h), None) => self.lost(
                    format!("mount at {path} is gone while helper pid {} runs", h.pid),
                    leftovers,
                    &path,
                ),
                (true, None, _) => self.lost(self.helper_gone(facts), leftovers, &path),
                (false, _, Some(MountSeen::Live)) => {}
                (false, _, Some(MountSeen::Dead)) => {
                    self.lost(format!("NFS mount at {path} is dead"), leftovers, &path)
                }
                (false, _, None) => {
                    self.lost(format!("NFS mount at {path} is gone"), leftovers, &path)
                }
            },
            Phase::Mounting(_) if facts.new_boot => {
                self.abandoned("mount interrupted by a reboot".into(), leftovers, &path)
            }
            Phase::Mounting(step) => {
                let live = facts.mount == Some(MountSeen::Live);
                if live && (helper.is_some() || !s3) {
                    let reason = "interrupted mount had completed".to_owned();
                    self.in_op(Event::Adopted { spec, helper, reason });
                    if let Some(h) = helper {
                        self.restore_pid_file(facts, h);
                    }
                } else if let (Some(h), None) = (intended, facts.mount) {
                    self.resume_spawned(facts, h, path);
                } else {
                    let reason = format!("mount interrupted at {step:?}; rolled back");
                    self.abandoned(reason, leftovers, &path);
                }
            }
            Phase::Healing(_) if facts.new_boot => {
                self.lost("host rebooted (boot id changed)".into(), leftovers, &path)
            }
            // A heal interrupted by a crash: completed, resumed (its replacement runs and is
            // known by its nonce), or given up, as an interrupted mount would be.
            Phase::Healing(healing) => {
                if let (Some(h), Some(MountSeen::Live)) = (helper, facts.mount) {
                    let reason = "interrupted heal had completed".to_owned();
                    self.in_op(Event::Adopted { spec, helper: Some(h), reason });
                    self.restore_pid_file(facts, h);
                } else if let (Some(h), None) = (intended, facts.mount) {
                    self.resume_spawned(facts, h, path);
                } else {
                    let reason = format!("heal interrupted at {:?}; not healed", healing.step);
                    self.lost(reason, leftovers, &path);
                }
            }
            Phase::Unmounting(_) => self.resume_unmount(facts, leftovers, path),
            Phase::Dirty(_) if leftovers.is_empty() => {
                self.record(None, None, Event::Cleaned { what: "nothing left behind".into() })
            }
            Phase::Dirty(_) => {
                self.effect(Effect::Cleanup { cleanup: leftovers, mount_path: Some(path) })
            }
        }
        Ok(())
    }

    /// The helper of a spawn intent runs but has not mounted yet (a crash came between its
    /// spawn and `Spawned`): journal what the crash lost and wait for its mount with the
    /// usual deadline, as the interrupted request would have. It is adopted if it mounts,
    /// else stopped (with its process group) by the failure's cleanup; either way the
    /// request's outcome is journaled and a redelivery hears it. Never a second helper.
    fn resume_spawned(&mut self, facts: &TargetFacts, helper: HelperIdentity, mount_path: String) {
        let Some(op) = self.state.op.as_ref().and_then(|o| o.id) else {
            let left = Cleanup { helper: Some(helper), mount: false, pid_file: true };
            let reason = "spawn intent without an operation id".to_owned();
            return self.abandoned(reason, left, &mount_path);
        };
        self.in_op(Event::Spawned { helper });
        self.restore_pid_file(facts, helper);
        self.effect(Effect::VerifyMount { op, helper, mount_path });
    }

    /// Continue an unmount: detach (S3) or unmount (NFS) a mount still present, else
    /// record it done.
    fn resume_unmount(&mut self, facts: &TargetFacts, left: Cleanup, mount_path: String) {
        let op = self.state.op.as_ref().and_then(|o| o.id);
        match (op, self.state.is_s3()) {
            (None, _) => {
                let reason = "unmount without an operation id".to_owned();
                self.abandoned(reason, left, &mount_path);
            }
            (Some(op), true) if left.mount => self.effect(Effect::Detach { op, mount_path }),
            (Some(_), true) => {
                let cleanup = Cleanup { mount: false, ..left };
                self.in_op(Event::Detached { cleanup });
                if !cleanup.is_empty() {
                    self.effect(Effect::Cleanup { cleanup, mount_path: Some(mount_path) });
                }
            }
            (Some(op), false) if left.mount => self.effect(Effect::Unmount { op, mount_path }),
            (Some(_), false) => {
                self.in_op(Event::Unmounted);
                if let Some(file) = facts.pid_file {
                    self.effect(Effect::RemoveStalePidFile { pid: file.pid() });
                }
            }
        }
    }

    /// A PID file of a target the journal holds as unmounted: adopt a helper started by
    /// hand, remove a file naming anything else (never signalling what it names).
    fn stray_pid_file(&mut self, file: &StrayPidFile) {
        let (what, pid) = match file {
            StrayPidFile::Unreadable => ("unreadable PID file removed".to_owned(), None),
            StrayPidFile::NotRunning { pid } => {
                (format!("stale PID file removed: pid {pid} is not running"), Some(*pid))
            }
            StrayPidFile::NotAHelper { pid } => (
                format!("stale PID file removed: pid {pid} is not a helper (not signalled)"),
                Some(*pid),
            ),
            StrayPidFile::HandStarted { helper, mount_path } => {
                let spec = TargetSpec {
                    kind: TargetKind::S3 { secret_ref: String::new() },
                    mount_path: mount_path.clone(),
                };
                let reason =
                    format!("helper pid {} found through a PID file written by hand", helper.pid);
                let adopted = Event::Adopted { spec, helper: Some(*helper), reason };
                self.record(None, None, adopted);
                return;
            }
        };
        self.record(None, None, Event::Cleaned { what });
        self.effect(Effect::RemoveStalePidFile { pid });
    }

    /// A record in the context of the operation in flight, if any.
    pub(super) fn in_op(&mut self, event: Event) {
        let op = self.state.op.as_ref();
        self.record(op.and_then(|o| o.id), op.and_then(|o| o.request.clone()), event);
    }

    /// The target is lost; what it left behind is cleaned right away.
    pub(super) fn lost(&mut self, reason: String, cleanup: Cleanup, path: &str) {
        self.in_op(Event::Lost { reason, cleanup });
        self.clean(cleanup, path);
    }

    /// The interrupted operation is rolled back; what it left behind is cleaned right away.
    fn abandoned(&mut self, reason: String, cleanup: Cleanup, path: &str) {
        self.in_op(Event::Abandoned { reason, cleanup });
        self.clean(cleanup, path);
    }

    fn clean(&mut self, cleanup: Cleanup, path: &str) {
        if !cleanup.is_empty() {
            self.effect(Effect::Cleanup { cleanup, mount_path: Some(path.to_owned()) });
        }
    }

    /// A PID file that does not name the live helper is rewritten (it went missing or was
    /// overwritten by hand).
    fn restore_pid_file(&mut self, facts: &TargetFacts, helper: HelperIdentity) {
        if facts.pid_file.and_then(|f| f.pid()) != Some(helper.pid) {
            self.effect(Effect::WritePidFile { helper });
        }
    }

    /// Why the journaled helper is not ours any more.
    fn helper_gone(&self, facts: &TargetFacts) -> String {
        match self.state.helper {
            None => "no helper is known for this target".to_owned(),
            Some(h) if h.boot != self.clock.boot => {
                format!("helper pid {} belongs to an earlier boot", h.pid)
            }
            Some(h) if facts.journaled_pid_runs => {
                format!("helper pid {} exited and the PID now belongs to another process", h.pid)
            }
            Some(h) => format!("helper pid {} exited", h.pid),
        }
    }
}
