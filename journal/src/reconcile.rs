//! The boot-time (and periodic) reconcile plan: journal state + what reality looks like →
//! records to journal and effects to perform. Pure; the daemon gathers the observations
//! and performs the plan.
//!
//! Rules, in the order of the guarantees they keep (DESIGN §3):
//! - A process is treated as our helper only with proof: its full journaled identity
//!   (pid + start ticks + boot) matches, or the gatherer proved it a helper for the
//!   target's mount path ([`Process::helper_for`]). A helper the journal does not name is
//!   taken for a path where a mount exists only if it holds that mount's FUSE connection
//!   ([`Process::serves_mount`]), so a process that merely claims a dead mount's path is
//!   never signalled, and nothing is adopted that does not serve the mount. Everything else
//!   named by a PID file is never signalled; at most the PID file goes.
//! - A new boot id voids every claim: no helper and no FUSE mount survives a reboot.
//! - Interrupted mounts are rolled back (`Abandoned`) unless reality shows they completed
//!   (`Adopted`); their requests stay unanswered, so a redelivery runs them again. Credentials
//!   are never journaled, so a mount cannot be resumed without its request.
//! - Interrupted unmounts are resumed: their effects are idempotent.
//! - A mount nobody claims is reported, not touched: it may be someone else's.

use crate::event::{Cleanup, Clock, Event, Record, TargetKind, TargetSpec};
use crate::host::{FsKind, MountBase};
use crate::ids::{HelperIdentity, TargetId};
use crate::machine::Effect;
use crate::state::{JournalState, MountStep, Phase, TargetState};
use std::collections::{BTreeMap, BTreeSet};

/// One entry of the mount table at or under the mount base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub path: String,
    /// As the mount table spells it (for findings).
    pub fstype: String,
    /// What `fstype` is, by the host's one rule ([`crate::host::FsTypes`]).
    pub kind: FsKind,
    /// The mount does not answer (a FUSE mount whose helper died: `ENOTCONN`).
    pub dead: bool,
}

/// A file in the PID directory: `name` is the file stem (`<name>.pid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    pub name: String,
    /// `None` when the content is not one decimal PID.
    pub pid: Option<u32>,
}

/// A live process the gatherer looked at: every PID named by a PID file or by the journal,
/// and every process running the helper binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub start_ticks: u64,
    /// `Some(path)` when the gatherer proved the process a helper for that path: owned by
    /// the daemon's user, its environment names `vault_data_directory=path`, and it runs the
    /// configured helper binary or holds the FUSE connection of the mount at that path.
    pub helper_for: Option<String>,
    /// It holds the FUSE connection of the mount at `helper_for`: it is the server of that
    /// mount. Required before a helper the journal does not name is adopted, or taken for
    /// a path where a mount exists.
    pub serves_mount: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observations {
    pub mount_base: MountBase,
    pub mounts: Vec<MountEntry>,
    pub pid_files: Vec<PidFile>,
    pub processes: Vec<Process>,
    /// What the gatherer would not trust (a PID file that is a FIFO or a symlink, a process
    /// that claims to be a helper without proof): reported as findings, never acted on.
    pub distrusted: Vec<Finding>,
}

/// What to do for one target: journal `records` (durably), then perform `effects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub target: TargetId,
    pub records: Vec<Record>,
    pub effects: Vec<Effect>,
}

/// Something noticed and deliberately left alone; the daemon logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub target: Option<TargetId>,
    pub what: String,
}

/// `<target>: <what>`, or just `<what>` when no target is concerned.
impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Some(t) => write!(f, "{t}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub findings: Vec<Finding>,
}

/// Compute the plan. Nothing destructive is decided before every target was looked at,
/// and the plan is a value the caller can log or refuse before performing it.
pub fn plan(journal: &JournalState, obs: &Observations, clock: Clock) -> Plan {
    let world = World::new(obs, clock);
    let mut plan = Plan::default();
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for state in journal.targets.values() {
        if state.phase != Phase::Unmounted {
            if let Some(path) = state.mount_path() {
                claimed.insert(path);
            }
        }
        let mut step = StepDraft::new(state, clock);
        world.target(state, &mut step, &mut plan.findings);
        step.finish(&mut plan.steps);
    }
    world.stray_pid_files(journal, &mut plan, &mut claimed);
    plan.findings.extend(obs.distrusted.iter().cloned());
    for m in &obs.mounts {
        if !claimed.contains(m.path.as_str()) {
            plan.findings.push(Finding {
                target: None,
                what: format!(
                    "{} mount at {} is not claimed by any target; left alone",
                    m.fstype, m.path
                ),
            });
        }
    }
    plan
}

/// Observations indexed for lookups.
struct World<'a> {
    obs: &'a Observations,
    clock: Clock,
    mounts: BTreeMap<&'a str, &'a MountEntry>,
    pid_files: BTreeMap<&'a str, &'a PidFile>,
    processes: BTreeMap<u32, &'a Process>,
}

impl<'a> World<'a> {
    fn new(obs: &'a Observations, clock: Clock) -> Self {
        Self {
            obs,
            clock,
            mounts: obs.mounts.iter().map(|m| (m.path.as_str(), m)).collect(),
            pid_files: obs.pid_files.iter().map(|p| (p.name.as_str(), p)).collect(),
            processes: obs.processes.iter().map(|p| (p.pid, p)).collect(),
        }
    }

    fn alive(&self, helper: &HelperIdentity) -> bool {
        helper.boot == self.clock.boot
            && self.processes.get(&helper.pid).is_some_and(|p| p.start_ticks == helper.start_ticks)
    }

    fn identity(&self, p: &Process) -> HelperIdentity {
        HelperIdentity { pid: p.pid, start_ticks: p.start_ticks, boot: self.clock.boot }
    }

    /// A live helper proven to serve `path`: the journaled one if alive, else one the
    /// gatherer proved a helper for it (spawned but not yet journaled, or started by hand),
    /// which must hold the FUSE connection of the mount at `path` if there is one. The PID
    /// file's process wins a tie, then the lowest PID, so the choice is deterministic.
    fn helper_for(&self, state: &TargetState, path: &str) -> Option<HelperIdentity> {
        if let Some(h) = state.helper.filter(|h| self.alive(h)) {
            return Some(h);
        }
        let named = self.pid_files.get(state.target.as_str()).and_then(|f| f.pid);
        let mounted = self.mounts.contains_key(path);
        let mut candidates: Vec<&Process> = self
            .obs
            .processes
            .iter()
            .filter(|p| p.helper_for.as_deref() == Some(path) && (p.serves_mount || !mounted))
            .collect();
        candidates.sort_by_key(|p| (Some(p.pid) != named, p.pid));
        candidates.first().map(|p| self.identity(p))
    }

    /// The mount at `path` if it is of the kind the target expects, or dead (a dead mount
    /// at our path is useless to anyone and safe to detach).
    fn mount_of(&self, kind: &TargetKind, path: &str) -> Option<&'a MountEntry> {
        self.mounts.get(path).copied().filter(|m| m.dead || m.kind == kind.fs_kind())
    }

    fn pid_file(&self, target: &TargetId) -> Option<&'a PidFile> {
        self.pid_files.get(target.as_str()).copied()
    }

    fn target(&self, state: &TargetState, step: &mut StepDraft, findings: &mut Vec<Finding>) {
        let Some(spec) = state.spec.clone() else {
            return; // never mounted: only stray PID files can concern it (handled later)
        };
        let path = spec.mount_path.as_str();
        let new_boot = state.boot.is_some_and(|b| b != self.clock.boot);
        if let Some(m) = self.mounts.get(path).filter(|m| !m.dead) {
            if m.kind != spec.kind.fs_kind() && state.phase != Phase::Unmounted {
                findings.push(Finding {
                    target: Some(state.target.clone()),
                    what: format!(
                        "{} mount at {path} is not a {} mount; left alone",
                        m.fstype,
                        spec.kind.name()
                    ),
                });
            }
        }
        let mount = self.mount_of(&spec.kind, path);
        let pid_file = self.pid_file(&state.target).is_some();
        // At `Requested` no spawn was licensed yet: a helper serving the path is not ours.
        let may_have_helper = spec.kind.has_helper()
            && !new_boot
            && state.phase != Phase::Mounting(MountStep::Requested);
        let helper = if may_have_helper { self.helper_for(state, path) } else { None };
        // What would have to go if the target ends up unmounted now. After a reboot only a
        // dead mount is ours to detach: a live one was made by someone in this boot.
        let leftovers =
            Cleanup { helper, mount: mount.is_some_and(|m| m.dead || !new_boot), pid_file };
        let live_mount = mount.is_some_and(|m| !m.dead);
        match state.phase {
            Phase::Unmounted => {}
            Phase::Mounted if new_boot => {
                let reason = "host rebooted (boot id changed)".to_owned();
                step.push(Event::Lost { reason, cleanup: leftovers });
            }
            Phase::Mounted => match (spec.kind.has_helper(), helper, mount) {
                (true, Some(h), Some(m)) if !m.dead => {
                    if state.helper != Some(h) {
                        let reason = format!("helper replaced: pid {} serves {path}", h.pid);
                        step.push(Event::Adopted { spec: spec.clone(), helper: Some(h), reason });
                    }
                    self.restore_pid_file(state, h, step);
                }
                (true, Some(_), Some(_)) => step.push(Event::Lost {
                    reason: format!("mount at {path} is dead (helper alive but not answering)"),
                    cleanup: leftovers,
                }),
                (true, Some(h), None) => step.push(Event::Lost {
                    reason: format!("mount at {path} is gone while helper pid {} runs", h.pid),
                    cleanup: leftovers,
                }),
                (true, None, _) => {
                    step.push(Event::Lost { reason: self.helper_gone(state), cleanup: leftovers })
                }
                (false, _, Some(m)) if !m.dead => {}
                (false, _, Some(_)) => step.push(Event::Lost {
                    reason: format!("NFS mount at {path} is dead"),
                    cleanup: leftovers,
                }),
                (false, _, None) => step.push(Event::Lost {
                    reason: format!("NFS mount at {path} is gone"),
                    cleanup: leftovers,
                }),
            },
            Phase::Mounting(_) if new_boot => {
                let reason = "mount interrupted by a reboot".to_owned();
                step.push(Event::Abandoned { reason, cleanup: leftovers });
            }
            Phase::Mounting(m_step) => {
                let completed = live_mount && (helper.is_some() || !spec.kind.has_helper());
                if completed {
                    let reason = "interrupted mount had completed".to_owned();
                    step.push(Event::Adopted { spec: spec.clone(), helper, reason });
                    if let Some(h) = helper {
                        self.restore_pid_file(state, h, step);
                    }
                } else {
                    let reason = format!("mount interrupted at {m_step:?}; rolled back");
                    step.push(Event::Abandoned { reason, cleanup: leftovers });
                }
            }
            Phase::Unmounting(_) => self.resume_unmount(state, leftovers, step),
            Phase::Dirty(_) if leftovers.is_empty() => {
                step.push_plain(Event::Cleaned { what: "nothing left behind".into() });
            }
            Phase::Dirty(_) => {
                step.effect(Effect::Cleanup { cleanup: leftovers, mount_path: Some(path.into()) });
            }
        }
        // Leftovers of a target that ends up dirty are cleaned right away.
        if let Some(Event::Lost { cleanup, .. } | Event::Abandoned { cleanup, .. }) =
            step.records.last().map(|r| &r.event)
        {
            if !cleanup.is_empty() {
                let cleanup = *cleanup;
                step.effect(Effect::Cleanup { cleanup, mount_path: Some(path.into()) });
            }
        }
    }

    /// A PID file that does not name the live helper is rewritten (it went missing or was
    /// overwritten by hand).
    fn restore_pid_file(&self, state: &TargetState, helper: HelperIdentity, step: &mut StepDraft) {
        if self.pid_file(&state.target).and_then(|f| f.pid) != Some(helper.pid) {
            step.effect(Effect::WritePidFile { helper });
        }
    }

    /// Why the journaled helper is not ours any more.
    fn helper_gone(&self, state: &TargetState) -> String {
        match state.helper {
            None => "no helper is known for this target".to_owned(),
            Some(h) if h.boot != self.clock.boot => {
                format!("helper pid {} belongs to an earlier boot", h.pid)
            }
            Some(h) if self.processes.contains_key(&h.pid) => {
                format!("helper pid {} exited and the PID now belongs to another process", h.pid)
            }
            Some(h) => format!("helper pid {} exited", h.pid),
        }
    }

    /// Continue an unmount: detach (S3) or unmount (NFS) a mount still present, else
    /// record it done. An S3 unmount whose mount is gone has its answer (`Detached`) whatever
    /// became of the helper, which is stopped afterwards as a cleanup: the requester may
    /// already have been told "unmounted", and a redelivery must hear the same.
    fn resume_unmount(&self, state: &TargetState, left: Cleanup, step: &mut StepDraft) {
        let op = state.op.as_ref().and_then(|o| o.id);
        let mount_path = state.mount_path().unwrap_or_default().to_owned();
        match (op, state.is_s3()) {
            (None, _) => {
                let reason = "unmount without an operation id".to_owned();
                step.push(Event::Abandoned { reason, cleanup: left });
            }
            (Some(op), true) if left.mount => step.effect(Effect::Detach { op, mount_path }),
            (Some(_), true) => {
                let cleanup = Cleanup { mount: false, ..left };
                step.push(Event::Detached { cleanup });
                if !cleanup.is_empty() {
                    step.effect(Effect::Cleanup { cleanup, mount_path: Some(mount_path) });
                }
            }
            (Some(op), false) if left.mount => step.effect(Effect::Unmount { op, mount_path }),
            (Some(_), false) => {
                step.push(Event::Unmounted);
                if let Some(file) = self.pid_file(&state.target) {
                    step.effect(Effect::RemoveStalePidFile { pid: file.pid });
                }
            }
        }
    }

    /// PID files of targets the journal does not track as mounted: adopt a live helper with a
    /// live mount (a helper started by hand), remove files naming anything else.
    fn stray_pid_files<'s>(
        &'s self,
        journal: &JournalState,
        plan: &mut Plan,
        claimed: &mut BTreeSet<&'s str>,
    ) {
        for file in &self.obs.pid_files {
            let Ok(target) = TargetId::new(&file.name) else {
                plan.findings.push(Finding {
                    target: None,
                    what: format!(
                        "PID file {:?} is not named after a valid target id; left alone",
                        file.name
                    ),
                });
                continue;
            };
            let state = journal.target_or_new(&target);
            if state.phase != Phase::Unmounted {
                continue; // the target's own rules looked at it
            }
            let mut step = StepDraft::new(&state, self.clock);
            let process = file.pid.and_then(|pid| self.processes.get(&pid).copied());
            match (file.pid, process) {
                (None, _) => {
                    step.push_plain(Event::Cleaned { what: "unreadable PID file removed".into() });
                    step.effect(Effect::RemoveStalePidFile { pid: None });
                }
                (Some(pid), None) => {
                    step.push_plain(Event::Cleaned {
                        what: format!("stale PID file removed: pid {pid} is not running"),
                    });
                    step.effect(Effect::RemoveStalePidFile { pid: Some(pid) });
                }
                (Some(pid), Some(p)) => match p.helper_for.as_deref() {
                    None => {
                        let what = format!(
                            "stale PID file removed: pid {pid} is not a helper (not signalled)"
                        );
                        step.push_plain(Event::Cleaned { what });
                        step.effect(Effect::RemoveStalePidFile { pid: Some(pid) });
                    }
                    Some(path) if !self.obs.mount_base.contains(path) => {
                        plan.findings.push(Finding {
                            target: Some(target.clone()),
                            what: format!(
                            "helper pid {pid} serves {path}, outside the mount base; left alone"
                        ),
                        })
                    }
                    Some(path) => match self.mounts.get(path) {
                        Some(m) if !m.dead && m.kind == FsKind::Fuse && !p.serves_mount => {
                            plan.findings.push(Finding {
                                target: Some(target.clone()),
                                what: format!(
                                    "pid {pid} does not hold the FUSE connection of the mount \
                                     at {path}; not adopted, not signalled"
                                ),
                            })
                        }
                        Some(m) if !m.dead && m.kind == FsKind::Fuse => {
                            let spec = TargetSpec {
                                kind: TargetKind::S3 { secret_ref: String::new() },
                                mount_path: path.to_owned(),
                            };
                            let reason = format!(
                                "helper pid {pid} found through a PID file written by hand"
                            );
                            step.push_plain(Event::Adopted {
                                spec,
                                helper: Some(self.identity(p)),
                                reason,
                            });
                            claimed.insert(m.path.as_str());
                        }
                        _ => plan.findings.push(Finding {
                            target: Some(target.clone()),
                            what: format!(
                                "helper pid {pid} has no live mount at {path} yet; left alone"
                            ),
                        }),
                    },
                },
            }
            step.finish(&mut plan.steps);
        }
    }
}

/// Records and effects for one target, built against its state with the operation's
/// context (request key, op id) so the records read like the rest of its history.
struct StepDraft<'a> {
    state: &'a TargetState,
    clock: Clock,
    records: Vec<Record>,
    effects: Vec<Effect>,
}

impl<'a> StepDraft<'a> {
    fn new(state: &'a TargetState, clock: Clock) -> Self {
        Self { state, clock, records: Vec::new(), effects: Vec::new() }
    }

    /// A record in the context of the operation in flight, if any.
    fn push(&mut self, event: Event) {
        let op = self.state.op.as_ref();
        self.records.push(Record {
            target: self.state.target.clone(),
            at: self.clock.now,
            boot: self.clock.boot,
            request: op.and_then(|o| o.request.clone()),
            op: op.and_then(|o| o.id),
            event,
        });
    }

    /// A record no request caused.
    fn push_plain(&mut self, event: Event) {
        self.records.push(Record {
            target: self.state.target.clone(),
            at: self.clock.now,
            boot: self.clock.boot,
            request: None,
            op: None,
            event,
        });
    }

    fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    fn finish(self, steps: &mut Vec<Step>) {
        if !self.records.is_empty() || !self.effects.is_empty() {
            steps.push(Step {
                target: self.state.target.clone(),
                records: self.records,
                effects: self.effects,
            });
        }
    }
}
