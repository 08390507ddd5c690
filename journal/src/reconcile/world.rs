//! The observations indexed for lookups, and read per target into the facts `decide` needs
//! ([`TargetFacts`], [`StrayPidFile`]). Deciding nothing: what is proven, what is where.

use super::{Finding, MountEntry, Observations, PidFile, Process};
use crate::event::{Clock, TargetKind};
use crate::host::FsKind;
use crate::ids::{HelperIdentity, SpawnNonce, TargetId};
use crate::machine::facts::{MountSeen, PidFileSeen, Seen, StrayPidFile, TargetFacts};
use crate::state::{HealStep, Healing, JournalState, MountStep, Phase, TargetState};
use std::collections::{BTreeMap, BTreeSet};

pub(super) struct World<'a> {
    obs: &'a Observations,
    clock: Clock,
    mounts: BTreeMap<&'a str, &'a MountEntry>,
    pid_files: BTreeMap<&'a str, &'a PidFile>,
    processes: BTreeMap<u32, &'a Process>,
}

impl<'a> World<'a> {
    pub(super) fn new(obs: &'a Observations, clock: Clock) -> Self {
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

    /// The process that carries `nonce` (the gatherer reports only group leaders of the
    /// daemon's user); the lowest PID if, against all odds, there are several.
    fn carrying(&self, nonce: SpawnNonce) -> Option<HelperIdentity> {
        let carriers = self.obs.processes.iter().filter(|p| p.nonce == Some(nonce));
        carriers.min_by_key(|p| p.pid).map(|p| self.identity(p))
    }

    /// The mount at `path` if it is of the kind the target expects, or dead.
    fn mount_of(&self, kind: &TargetKind, path: &str) -> Option<MountSeen> {
        let m = self.mounts.get(path)?;
        match (m.dead, m.kind == kind.fs_kind()) {
            (true, _) => Some(MountSeen::Dead),
            (false, true) => Some(MountSeen::Live),
            (false, false) => None,
        }
    }

    fn pid_file(&self, target: &TargetId) -> Option<PidFileSeen> {
        self.pid_files.get(target.as_str()).map(|f| match f.pid {
            Some(pid) => PidFileSeen::Names(pid),
            None => PidFileSeen::Unreadable,
        })
    }

    /// The facts of a target the journal has a spec for; a live mount of another kind at
    /// its path is reported, never touched.
    pub(super) fn target(&self, state: &TargetState, findings: &mut Vec<Finding>) -> Option<Seen> {
        let spec = state.spec.as_ref()?; // never mounted: only a stray PID file concerns it
        let path = spec.mount_path.as_str();
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
        let helper = if spec.kind.has_helper() { self.helper_for(state, path) } else { None };
        let intended = match state.phase {
            Phase::Mounting(MountStep::SpawnIntended(nonce))
            | Phase::Healing(Healing { step: HealStep::SpawnIntended(nonce), .. }) => {
                self.carrying(nonce)
            }
            Phase::Mounting(
                MountStep::Requested | MountStep::CredsFetched | MountStep::Spawned,
            )
            | Phase::Healing(Healing {
                step: HealStep::Dead | HealStep::Detached | HealStep::Spawned,
                ..
            })
            | Phase::Unmounted
            | Phase::Mounted
            | Phase::Unmounting(_)
            | Phase::Dirty(_) => None,
        };
        let journaled_pid_runs = state.helper.is_some_and(|h| self.processes.contains_key(&h.pid));
        Some(Seen::Target(TargetFacts {
            new_boot: state.boot.is_some_and(|b| b != self.clock.boot),
            mount: self.mount_of(&spec.kind, path),
            helper,
            intended,
            journaled_pid_runs,
            pid_file: self.pid_file(&state.target),
        }))
    }

    /// PID files of targets the journal does not track as mounted: what each names. A
    /// helper adopted through one claims its mount (`claimed`).
    pub(super) fn stray_pid_files<'s>(
        &'s self,
        journal: &JournalState,
        findings: &mut Vec<Finding>,
        claimed: &mut BTreeSet<&'s str>,
    ) -> Vec<(TargetId, StrayPidFile)> {
        let mut strays = Vec::new();
        for file in &self.obs.pid_files {
            let Ok(target) = TargetId::new(&file.name) else {
                findings.push(Finding {
                    target: None,
                    what: format!(
                        "PID file {:?} is not named after a valid target id; left alone",
                        file.name
                    ),
                });
                continue;
            };
            if journal.target(&target).is_some_and(|s| s.phase != Phase::Unmounted) {
                continue; // the target's own rules looked at it
            }
            let process = file.pid.and_then(|pid| self.processes.get(&pid).copied());
            let stray = match (file.pid, process) {
                (None, _) => StrayPidFile::Unreadable,
                (Some(pid), None) => StrayPidFile::NotRunning { pid },
                (Some(pid), Some(p)) => match self.claimant(&target, pid, p, findings) {
                    Some(stray) => {
                        if let StrayPidFile::HandStarted { mount_path, .. } = &stray {
                            if let Some((path, _)) = self.mounts.get_key_value(mount_path.as_str())
                            {
                                claimed.insert(path);
                            }
                        }
                        stray
                    }
                    None => continue,
                },
            };
            strays.push((target, stray));
        }
        strays
    }

    /// What the running process `p` a stray PID file names is; `None` (and a finding) when
    /// it must be left alone.
    fn claimant(
        &self,
        target: &TargetId,
        pid: u32,
        p: &Process,
        findings: &mut Vec<Finding>,
    ) -> Option<StrayPidFile> {
        let Some(path) = p.helper_for.as_deref() else {
            return Some(StrayPidFile::NotAHelper { pid });
        };
        let what = if !self.obs.mount_base.contains(path) {
            format!("helper pid {pid} serves {path}, outside the mount base; left alone")
        } else {
            match self.mounts.get(path) {
                Some(m) if !m.dead && m.kind == FsKind::Fuse && p.serves_mount => {
                    let helper = self.identity(p);
                    return Some(StrayPidFile::HandStarted { helper, mount_path: path.to_owned() });
                }
                Some(m) if !m.dead && m.kind == FsKind::Fuse => format!(
                    "pid {pid} does not hold the FUSE connection of the mount at {path}; not \
                     adopted, not signalled"
                ),
                _ => format!("helper pid {pid} has no live mount at {path} yet; left alone"),
            }
        };
        findings.push(Finding { target: Some(target.clone()), what });
        None
    }
}
