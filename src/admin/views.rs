//! What the admin socket reports, computed from the engine's state and a fresh look at the
//! host. The structs are the JSON of the protocol; `dms-ctl` renders the same structs.

use dms_journal::reconcile::{Observations, Plan};
use dms_journal::{JournalState, Phase, TargetKind, TargetState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub queue: String,
    pub version: String,
    pub pid: u32,
    pub boot_id: String,
    pub uptime_secs: u64,
    pub broker_connected: bool,
    pub targets: usize,
    pub mounted: usize,
    pub journal_path: String,
    /// Records found damaged or illegal when the journal was replayed at start.
    pub journal_problems: usize,
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
    /// Memory (the journal) and disk (PID files, the mount table, processes) agree.
    pub agreement: bool,
    /// What a cleanup would do, and what it would leave alone.
    pub disagreements: Vec<String>,
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

/// Statistics from the journal and one observation of the host, with the reconcile plan
/// over both: its steps and findings are exactly where memory and disk disagree.
pub fn stats(journal: &JournalState, obs: &Observations, plan: &Plan, alive: usize) -> Stats {
    let mut by_state = BTreeMap::new();
    for state in journal.targets.values() {
        *by_state.entry(state.phase.tag().to_owned()).or_insert(0) += 1;
    }
    let mounted_s3 =
        journal.targets.values().filter(|t| t.phase == Phase::Mounted && t.is_s3()).count();
    let mut disagreements: Vec<String> = plan
        .steps
        .iter()
        .map(|step| {
            let mut what: Vec<String> = step
                .records
                .iter()
                .map(|r| match r.event.details() {
                    d if d.is_empty() => r.event.name().to_owned(),
                    d => format!("{} ({d})", r.event.name()),
                })
                .collect();
            what.extend(step.effects.iter().map(|e| e.name().to_owned()));
            format!("{}: cleanup would do {}", step.target, what.join(", then "))
        })
        .collect();
    disagreements.extend(plan.findings.iter().map(ToString::to_string));
    Stats {
        tracked: journal.targets.values().filter(|t| t.phase != Phase::Unmounted).count(),
        by_state,
        helpers_expected: mounted_s3,
        helpers_alive: alive,
        pid_files_on_disk: obs.pid_files.len(),
        mounts_under_base: obs.mounts.len(),
        agreement: disagreements.is_empty(),
        disagreements,
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
