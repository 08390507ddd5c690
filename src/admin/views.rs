//! What the admin socket reports, computed from the engine's state and a fresh look at the
//! host. The structs are the JSON of the protocol; `dms-ctl` renders the same structs.

use crate::supervisor::differences;
use dms_journal::reconcile::{Observations, Plan};
use dms_journal::{Clock, JournalState, Phase, TargetId, TargetKind, TargetState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub queue: String,
    pub version: String,
    pub pid: u32,
    pub boot_id: String,
    pub uptime_secs: u64,
    pub broker_connected: bool,
    /// The broker host consumed from (`host:port`, no credentials), while connected.
    #[serde(default)]
    pub broker_host: Option<String>,
    pub targets: usize,
    pub mounted: usize,
    pub journal_path: String,
    /// Records found damaged or illegal when the journal was replayed at start.
    pub journal_problems: usize,
    /// NFS servers whose circuit breaker is not closed (their mounts fail fast).
    #[serde(default)]
    pub nfs_breakers: Vec<BreakerLine>,
    /// Requests parked in the journal's inbox (waiting for their target, delivery acked).
    #[serde(default)]
    pub requests_parked: usize,
    /// Why intake is paused (the journal cannot be written), while it is.
    #[serde(default)]
    pub intake_paused: Option<String>,
}

/// One NFS server's breaker, open (failing fast) or probing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerLine {
    pub server: String,
    pub state: String,
    pub since: String,
    pub until: String,
    pub cause: String,
}

impl From<crate::engine::BreakerView> for BreakerLine {
    fn from(b: crate::engine::BreakerView) -> Self {
        BreakerLine {
            server: b.server,
            state: b.state.to_owned(),
            since: b.since.to_string(),
            until: b.until.to_string(),
            cause: b.cause,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetView {
    pub target: String,
    /// `s3` or `nfs`; `None` for a target only ever refused.
    pub kind: Option<String>,
    pub state: String,
    pub mount_path: Option<String>,
    pub helper_pid: Option<u32>,
    /// Whether the journaled helper is alive with its journaled identity (`None`: no helper).
    pub helper_alive: Option<bool>,
    pub uptime_secs: Option<u64>,
    /// `--detailed` only: CPU use over a short sample, and resident memory.
    pub cpu_percent: Option<f32>,
    pub rss_bytes: Option<u64>,
    /// When the journal last changed this target (ms since the epoch).
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Targets that are not unmounted (mounted, in flight or dirty).
    pub tracked: usize,
    /// Every target the journal knows, by state (`unmounted`, `mounting`, `mounted`,
    /// `unmounting`, `dirty`).
    pub by_state: BTreeMap<String, usize>,
    /// Mounted S3 targets, each of which should have one live helper.
    pub helpers_expected: usize,
    pub helpers_alive: usize,
    pub pid_files_on_disk: usize,
    pub mounts_under_base: usize,
    /// Memory (the journal) and disk (PID files, the mount table, processes) agree, but
    /// for what is in flight or has not yet outlived a resync pass.
    pub agreement: bool,
    /// What a cleanup would do, and what it would leave alone, that was already there at
    /// the last resync pass: what an operator should look at.
    pub disagreements: Vec<String>,
    /// Differences that appeared since the last resync pass: usually work finishing, or a
    /// change the next pass converges. Not a problem (yet).
    #[serde(default)]
    pub settling: Vec<String>,
    /// Targets with a request in flight right now: their journal and host differ while
    /// the request runs, by design.
    #[serde(default)]
    pub in_flight: Vec<String>,
}

/// One target's row; `alive` and `uptime` come from the host (the caller checks identity).
pub fn target_view(state: &TargetState, uptime: Option<std::time::Duration>) -> TargetView {
    let spec = state.spec.as_ref();
    TargetView {
        target: state.target.to_string(),
        kind: spec.map(|s| {
            match s.kind {
                TargetKind::S3 { .. } => "s3",
                TargetKind::Nfs { .. } => "nfs",
            }
            .to_owned()
        }),
        state: state.phase.to_string(),
        mount_path: spec.map(|s| s.mount_path.clone()),
        helper_pid: state.helper.map(|h| h.pid),
        helper_alive: state.helper.map(|_| uptime.is_some()),
        uptime_secs: uptime.map(|u| u.as_secs()),
        cpu_percent: None,
        rss_bytes: None,
        updated_at_ms: state.updated_at.millis(),
    }
}

/// What the host looked like against the journal: counts, and the [`differences`], of
/// which only those already seen at the last resync pass (`last_pass`) are disagreements.
#[derive(Debug)]
pub struct Seen<'a> {
    pub journal: &'a JournalState,
    pub obs: &'a Observations,
    pub plan: &'a Plan,
    /// When the plan was made (its decisions depend on the boot).
    pub clock: Clock,
    pub alive: usize,
    pub busy: &'a BTreeSet<TargetId>,
    pub last_pass: &'a BTreeSet<String>,
}

/// Statistics from the journal and one observation of the host, with the reconcile plan
/// over both.
pub fn stats(seen: Seen<'_>) -> Stats {
    let Seen { journal, obs, plan, clock, alive, busy, last_pass } = seen;
    let mut by_state = BTreeMap::new();
    for state in journal.targets.values() {
        *by_state.entry(state.phase.tag().to_owned()).or_insert(0) += 1;
    }
    let mounted_s3 =
        journal.targets.values().filter(|t| t.phase == Phase::Mounted && t.is_s3()).count();
    let (differ, in_flight) = differences(plan, journal, clock, busy);
    let (disagreements, settling): (Vec<String>, Vec<String>) =
        differ.into_iter().partition(|d| last_pass.contains(d));
    Stats {
        tracked: journal.targets.values().filter(|t| t.phase != Phase::Unmounted).count(),
        by_state,
        helpers_expected: mounted_s3,
        helpers_alive: alive,
        pid_files_on_disk: obs.pid_files.len(),
        mounts_under_base: obs.mounts.len(),
        agreement: disagreements.is_empty(),
        disagreements,
        settling,
        in_flight,
    }
}

/// CPU use (over `sample`) and resident memory of `pids`, through sysinfo. CPU needs two
/// readings, hence the sample; the caller runs this on the blocking pool.
pub fn resources(pids: &[u32], sample: std::time::Duration) -> BTreeMap<u32, (f32, u64)> {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    if pids.is_empty() {
        return BTreeMap::new();
    }
    let wanted: Vec<Pid> = pids.iter().map(|p| Pid::from_u32(*p)).collect();
    let kind = ProcessRefreshKind::nothing().with_cpu().with_memory();
    let mut system = System::new();
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&wanted), true, kind);
    std::thread::sleep(sample.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL));
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&wanted), true, kind);
    wanted
        .iter()
        .filter_map(|pid| system.process(*pid).map(|p| (pid.as_u32(), (p.cpu_usage(), p.memory()))))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use dms_journal::machine::facts::StrayPidFile;
    use dms_journal::reconcile::{Finding, Step};
    use dms_journal::{BootId, Command, Timestamp};

    /// What the machine decides for an unreadable stray PID file of target `idle`.
    const IDLE: &str =
        "idle: cleanup would do Cleaned (unreadable PID file removed), then RemoveStalePidFile";

    fn clock() -> Clock {
        Clock { now: Timestamp(1), boot: BootId(uuid::Uuid::from_bytes([7; 16])) }
    }

    fn plan_for(targets: &[&str]) -> Plan {
        let t = |s: &str| TargetId::new(s).unwrap();
        Plan {
            steps: targets
                .iter()
                .map(|s| Step {
                    target: t(s),
                    command: Command::Reconcile {
                        seen: dms_journal::Seen::StrayPidFile(StrayPidFile::Unreadable),
                    },
                })
                .collect(),
            findings: vec![
                Finding { target: Some(t("busy")), what: "helper has no mount yet".into() },
                Finding { target: None, what: "fuse mount at /x is not claimed".into() },
            ],
        }
    }

    #[test]
    fn given_busy_targets_when_differences_are_taken_then_theirs_are_in_flight() {
        let busy = BTreeSet::from([TargetId::new("busy").unwrap()]);
        let journal = JournalState::default();
        let plan = plan_for(&["busy", "idle"]);
        let (differ, in_flight) = differences(&plan, &journal, clock(), &busy);
        assert_eq!(differ, [IDLE, "fuse mount at /x is not claimed"]);
        assert_eq!(
            in_flight,
            [IDLE.replace("idle", "busy").as_str(), "busy: helper has no mount yet"]
        );
    }

    #[test]
    fn given_a_last_pass_when_stats_are_made_then_only_what_outlived_it_disagrees() {
        let journal = JournalState::default();
        let obs = Observations {
            mount_base: dms_journal::MountBase::new("/b").unwrap(),
            mounts: vec![],
            pid_files: vec![],
            processes: vec![],
            distrusted: vec![],
        };
        let plan = plan_for(&["idle", "new"]);
        let busy = BTreeSet::from([TargetId::new("busy").unwrap()]);
        let last_pass = BTreeSet::from([IDLE.to_owned()]);
        let stats = stats(Seen {
            journal: &journal,
            obs: &obs,
            plan: &plan,
            clock: clock(),
            alive: 0,
            busy: &busy,
            last_pass: &last_pass,
        });
        assert_eq!(stats.disagreements, [IDLE]);
        let new = IDLE.replace("idle", "new");
        assert_eq!(stats.settling, [new.as_str(), "fuse mount at /x is not claimed"]);
        assert_eq!(stats.in_flight, ["busy: helper has no mount yet"]);
        assert!(!stats.agreement);
    }

    #[test]
    fn given_this_process_when_resources_are_read_then_it_has_memory() {
        let me = std::process::id();
        let found = resources(&[me], std::time::Duration::from_millis(250));
        let (cpu, rss) = found[&me];
        assert!(rss > 1024 * 1024, "rss {rss}");
        assert!(cpu >= 0.0);
        assert!(resources(&[], std::time::Duration::ZERO).is_empty());
    }
}
