//! Reading a stopped daemon's journal in-process (the `dms_journal` store API) and through
//! the `dms-journal` tool, for end-to-end assertions on what was journaled. The daemon must
//! be stopped first: a running daemon holds the journal's lock.
#![allow(dead_code, clippy::unwrap_used)]

use dms_journal::store::{Journal, Problem, Replay, Stored};
use dms_journal::{Event, TargetId, TargetState};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The records of one mount and its unmount, as the daemon journals them.
pub const MOUNT_UNMOUNT: [&str; 8] = [
    "Requested",
    "CredsFetched",
    "SpawnIntended",
    "Spawned",
    "Verified",
    "UnmountRequested",
    "Detached",
    "Cleaned",
];

pub fn target(id: &str) -> TargetId {
    TargetId::new(id).unwrap()
}

/// Open the journal at `path` (panics if a daemon still holds it).
pub fn open(path: &Path) -> (Journal, Replay) {
    Journal::open(path).unwrap_or_else(|e| panic!("open journal {}: {e}", path.display()))
}

/// The target's records as stored (damaged ones left out), in seq order.
pub fn history(path: &Path, id: &str) -> Vec<Stored> {
    let (journal, _) = open(path);
    let history = journal.history(&target(id)).unwrap();
    history.records.into_iter().filter_map(Result::ok).collect()
}

/// The names of the target's events, in seq order (what `dms-journal inspect` prints).
pub fn event_names(records: &[Stored]) -> Vec<&'static str> {
    records.iter().map(|s| s.record.event.name()).collect()
}

/// The target's folded state after replay.
pub fn state(path: &Path, id: &str) -> TargetState {
    let (_, replay) = open(path);
    replay.state.target_or_new(&target(id))
}

/// What replay reported as damaged or illegal.
pub fn problems(path: &Path) -> Vec<Problem> {
    open(path).1.problems
}

/// How many outcome-bearing records each request key has (`Adopted` gives one to an
/// interrupted mount that had completed): exactly-once means 1 for every key.
pub fn outcomes_per_key(records: &[Stored]) -> BTreeMap<String, usize> {
    let mut outcomes = BTreeMap::new();
    for stored in records {
        let record = &stored.record;
        let decides = matches!(
            record.event,
            Event::Verified
                | Event::Unmounted
                | Event::Detached { .. }
                | Event::Failed { .. }
                | Event::Answered { .. }
                | Event::Adopted { .. }
        );
        if let (true, Some(key)) = (decides, &record.request) {
            *outcomes.entry(key.to_string()).or_default() += 1;
        }
    }
    outcomes
}

/// The reasons of the target's `Lost` records, in seq order.
pub fn lost_reasons(records: &[Stored]) -> Vec<String> {
    records
        .iter()
        .filter_map(|s| match &s.record.event {
            Event::Lost { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// The `dms-journal` tool of this workspace's debug build, a bin of package `dms` (cargo
/// builds it with the integration tests; this file is also part of examples, for which
/// cargo names no binary, hence the lookup by name).
pub fn tool_bin() -> PathBuf {
    super::workspace_bin("dms-journal")
}

/// Run `dms-journal --path <journal> <args>`: (exit code, stdout, stderr).
pub fn tool(path: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tool_bin())
        .arg("--path")
        .arg(path)
        .args(args)
        .env_remove("DMS_JOURNAL_PATH")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
