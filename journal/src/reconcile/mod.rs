//! The boot-time (and periodic) reconcile plan: journal state + what reality looks like →
//! one [`Command::Reconcile`] per target whose host state calls for a change. Pure; the
//! daemon gathers the observations and runs each step's command through `decide` (which
//! writes the records and effects, as for requests).
//!
//! Rules, in the order of the guarantees they keep (DESIGN §3); the gathering ones live in
//! [`world`], what they mean for a phase in `machine/reconciled.rs`:
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
//!   are never journaled, so a mount cannot be resumed without its request — except past its
//!   spawn: the helper of an open spawn intent (found by the nonce in its environment) holds
//!   its credentials already, and its mount is waited for as the request would have.
//! - Interrupted unmounts are resumed: their effects are idempotent.
//! - A mount nobody claims is reported, not touched: it may be someone else's.

mod world;

use crate::cause::Wording;
use crate::event::Clock;
use crate::host::{FsKind, MountBase};
use crate::ids::{SpawnNonce, TargetId};
use crate::machine::{decide, Command, Decision, Rejection, Seen};
use crate::state::{JournalState, Phase};
use std::collections::BTreeSet;
use world::World;

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
/// every process running the helper binary, and every one carrying an open spawn intent's
/// nonce.
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
    /// The spawn nonce in its environment, when the gatherer read one from a process of
    /// the daemon's user that leads its own process group (a helper's children inherit the
    /// environment, not the group leadership): one of the journal's open spawn intents.
    pub nonce: Option<SpawnNonce>,
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

/// What a pass saw of one target, for `decide` (under the target's turn, against the state
/// the plan was made from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub target: TargetId,
    pub command: Command,
}

impl Step {
    fn new(target: &TargetId, seen: Seen) -> Self {
        Self { target: target.clone(), command: Command::Reconcile { seen } }
    }

    /// What the machine decides for this step against `journal` (what performing it would
    /// journal and do; the admin's differences show it).
    pub fn decision(
        &self,
        journal: &JournalState,
        clock: Clock,
        wording: &dyn Wording,
    ) -> Result<Decision, Rejection> {
        decide(&journal.target_or_new(&self.target), &self.command, clock, wording)
    }
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
pub fn plan(
    journal: &JournalState,
    obs: &Observations,
    clock: Clock,
    wording: &dyn Wording,
) -> Plan {
    let world = World::new(obs, clock);
    let mut plan = Plan::default();
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for state in journal.targets.values() {
        if state.phase != Phase::Unmounted {
            if let Some(path) = state.mount_path() {
                claimed.insert(path);
            }
        }
        if let Some(seen) = world.target(state, &mut plan.findings) {
            plan.push(journal, Step::new(&state.target, seen), clock, wording);
        }
    }
    for (target, stray) in world.stray_pid_files(journal, &mut plan.findings, &mut claimed) {
        plan.push(journal, Step::new(&target, Seen::StrayPidFile(stray)), clock, wording);
    }
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

impl Plan {
    /// Keep `step` if the machine would do something for it: a pass that finds the host as
    /// the journal says plans nothing.
    fn push(&mut self, journal: &JournalState, step: Step, clock: Clock, wording: &dyn Wording) {
        match step.decision(journal, clock, wording) {
            Ok(d) if d.records.is_empty() && d.effects.is_empty() => {}
            Ok(_) => self.steps.push(step),
            // The gatherer only sends what fits the phase; anything else is a model bug,
            // reported rather than acted on.
            Err(rejection) => self.findings.push(Finding {
                target: Some(step.target),
                what: format!("reconcile step refused: {rejection}; left alone"),
            }),
        }
    }
}
