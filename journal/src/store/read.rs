//! Reading the journal back: replay at open, per-target history, listings for `verify`.
//!
//! Nothing here trusts the bytes: every key and value is parsed into a `Result`, and a
//! failure becomes a [`Problem`], never a panic.

use super::damage::{self, Damage};
use super::{keys, History, Problem, ProblemKind, Replay, Seq, SnapshotEntry, StoreError, Stored};
use crate::codec;
use crate::event::Record;
use crate::ids::TargetId;
use crate::state::{JournalState, TargetState};
use std::collections::BTreeMap;
use std::path::Path;

/// A snapshot as found: the seq it covers (readable even when the envelope is not) and the
/// state, if it decodes.
pub(super) struct Snapshot {
    pub seq: Seq,
    pub state: Result<TargetState, Problem>,
}

pub(super) fn corrupt(target: &str, seq: Seq, error: impl Into<String>) -> Problem {
    Problem { target: target.to_owned(), seq, kind: ProblemKind::Corrupt, error: error.into() }
}

fn read_error(e: &sled::Error) -> Problem {
    corrupt("?", 0, format!("journal read failed: {e}"))
}

pub(super) fn decode_snapshot(target: &TargetId, value: &[u8]) -> Snapshot {
    let (seq, envelope) = keys::split_snapshot_value(value);
    let state = match codec::decode_snapshot(envelope) {
        Ok(state) if state.target == *target => Ok(state),
        Ok(state) => Err(format!("snapshot of target {} stored under {target}", state.target)),
        Err(e) => Err(e.to_string()),
    }
    .map_err(|e| corrupt(target.as_str(), seq, format!("snapshot: {e}")));
    Snapshot { seq, state }
}

pub(super) fn decode_record(target: &TargetId, seq: Seq, bytes: &[u8]) -> Result<Record, Problem> {
    match codec::decode_record(bytes) {
        Ok(record) if record.target == *target => Ok(record),
        Ok(record) => Err(corrupt(
            target.as_str(),
            seq,
            format!("record of target {} stored under {target}", record.target),
        )),
        Err(e) => Err(corrupt(target.as_str(), seq, e.to_string())),
    }
}

pub(super) fn load_snapshot(
    db: &sled::Db,
    path: &Path,
    target: &TargetId,
) -> Result<Option<Snapshot>, StoreError> {
    let value = db.get(keys::snapshot(target)).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        what: format!("snapshot of {target}"),
        source,
    })?;
    Ok(value.map(|v| decode_snapshot(target, &v)))
}

/// Folds one target: snapshot first, then the records it does not cover, checking each
/// before applying it. The first damaged record ends the fold: what comes after it was
/// appended to a state this replay cannot know.
struct TargetFold {
    target: TargetId,
    covered: Seq,
    state: Option<TargetState>,
    /// Index in `problems` of the damage that stopped the fold, and where it is.
    stopped: Option<(usize, Damage)>,
    skipped: u64,
    folded: u64,
    problems: Vec<Problem>,
}

impl TargetFold {
    fn new(target: TargetId, snapshot: Option<Snapshot>) -> Self {
        let mut fold = TargetFold {
            target,
            covered: 0,
            state: None,
            stopped: None,
            skipped: 0,
            folded: 0,
            problems: Vec::new(),
        };
        if let Some(snapshot) = snapshot {
            fold.covered = snapshot.seq;
            match snapshot.state {
                Ok(state) => fold.state = Some(state),
                Err(problem) => fold.stop(problem, Damage::Snapshot),
            }
        }
        fold
    }

    fn stop(&mut self, problem: Problem, damage: Damage) {
        self.stopped = Some((self.problems.len(), damage));
        self.problems.push(problem);
    }

    fn push(&mut self, seq: Seq, bytes: &[u8]) {
        if seq <= self.covered {
            return; // left behind by a compaction interrupted after its snapshot
        }
        if self.stopped.is_some() {
            self.skipped += 1;
            return;
        }
        match decode_record(&self.target, seq, bytes) {
            Err(problem) => self.stop(problem, Damage::Record(seq)),
            Ok(record) => {
                let state = self.state.get_or_insert_with(|| TargetState::new(self.target.clone()));
                if let Err(illegal) = state.check(&record.event) {
                    self.problems.push(Problem {
                        target: self.target.to_string(),
                        seq,
                        kind: ProblemKind::Illegal,
                        error: illegal.to_string(),
                    });
                }
                state.apply(&record);
                self.folded += 1;
            }
        }
    }

    fn finish(mut self, out: &mut Replayed) {
        if let Some((at, damage)) = self.stopped {
            if let (Some(problem), n @ 1..) = (self.problems.get_mut(at), self.skipped) {
                problem
                    .error
                    .push_str(&format!("; {n} later record(s) of this target not replayed"));
            }
            out.damaged.insert(self.target.clone(), damage);
        }
        if let Some(state) = self.state {
            out.replay.state.targets.insert(self.target, state);
        }
        out.replay.records += self.folded;
        out.replay.problems.extend(self.problems);
    }
}

/// The journal folded, plus what the writer needs to carry on from it.
pub(super) struct Replayed {
    pub replay: Replay,
    /// The highest seq in use, so new seqs follow it.
    pub last_seq: Seq,
    /// Targets whose replay stopped at damage, to be set aside on their next append.
    pub damaged: BTreeMap<TargetId, Damage>,
    /// Keys in the record and snapshot spaces, for the seal.
    pub records_stored: u64,
    pub snapshots_stored: u64,
}

/// Fold the whole journal: each target from its snapshot, then its records in seq order.
pub(super) fn replay(db: &sled::Db, path: &Path) -> Result<Replayed, StoreError> {
    let read =
        |source| StoreError::Read { path: path.to_path_buf(), what: "journal".into(), source };
    let (set_aside, set_aside_seq) = damage::reported(db).map_err(read)?;
    let mut out = Replayed {
        replay: Replay {
            state: JournalState::default(),
            records: 0,
            problems: set_aside,
            losses: Vec::new(),
        },
        last_seq: set_aside_seq,
        damaged: BTreeMap::new(),
        records_stored: 0,
        snapshots_stored: 0,
    };

    let mut snapshots = BTreeMap::new();
    for entry in db.scan_prefix([keys::SNAPSHOT]) {
        let (key, value) = entry.map_err(read)?;
        out.snapshots_stored += 1;
        match keys::parse_snapshot(&key) {
            Ok(target) => {
                let snapshot = decode_snapshot(&target, &value);
                out.last_seq = out.last_seq.max(snapshot.seq);
                snapshots.insert(target, snapshot);
            }
            Err(bad) => {
                let problem = corrupt(&bad.target, 0, format!("snapshot key: {}", bad.error));
                out.replay.problems.push(problem);
            }
        }
    }

    let mut current: Option<TargetFold> = None;
    for entry in db.scan_prefix([keys::RECORD]) {
        let (key, value) = entry.map_err(read)?;
        out.records_stored += 1;
        let (target, seq) = match keys::parse_record(&key) {
            Ok(parsed) => parsed,
            Err(bad) => {
                let problem = corrupt(&bad.target, 0, format!("record key: {}", bad.error));
                out.replay.problems.push(problem);
                continue;
            }
        };
        out.last_seq = out.last_seq.max(seq);
        if current.as_ref().is_some_and(|fold| fold.target != target) {
            if let Some(done) = current.take() {
                done.finish(&mut out);
            }
        }
        let fold = current.get_or_insert_with(|| {
            let snapshot = snapshots.remove(&target);
            TargetFold::new(target, snapshot)
        });
        fold.push(seq, &value);
    }
    if let Some(done) = current.take() {
        done.finish(&mut out);
    }
    for (target, snapshot) in snapshots {
        TargetFold::new(target, Some(snapshot)).finish(&mut out);
    }
    out.replay.problems.sort_by(|a, b| (&a.target, a.seq).cmp(&(&b.target, b.seq)));
    Ok(out)
}

pub(super) fn history(
    db: &sled::Db,
    path: &Path,
    target: &TargetId,
) -> Result<History, StoreError> {
    let mut history = History { target: target.clone(), snapshot: None, records: Vec::new() };
    let mut covered = 0;
    if let Some(snapshot) = load_snapshot(db, path, target)? {
        covered = snapshot.seq;
        match snapshot.state {
            Ok(state) => history.snapshot = Some((snapshot.seq, state)),
            Err(problem) => history.records.push(Err(problem)),
        }
    }
    for entry in db.scan_prefix(keys::record_prefix(target)) {
        let (key, value) = entry.map_err(|source| StoreError::Read {
            path: path.to_path_buf(),
            what: format!("records of {target}"),
            source,
        })?;
        match keys::parse_record(&key) {
            Ok((_, seq)) if seq <= covered => {}
            Ok((_, seq)) => history
                .records
                .push(decode_record(target, seq, &value).map(|record| Stored { seq, record })),
            Err(bad) => history.records.push(Err(corrupt(&bad.target, 0, bad.error))),
        }
    }
    Ok(history)
}

pub(super) fn records(db: &sled::Db) -> impl Iterator<Item = Result<Stored, Problem>> + '_ {
    let mut covered = BTreeMap::new();
    let mut problems = Vec::new();
    for entry in db.scan_prefix([keys::SNAPSHOT]) {
        match entry {
            Ok((key, value)) => {
                if let Ok(target) = keys::parse_snapshot(&key) {
                    covered.insert(target, keys::split_snapshot_value(&value).0);
                }
            }
            Err(e) => problems.push(Err(read_error(&e))),
        }
    }
    let listed = db.scan_prefix([keys::RECORD]).filter_map(move |entry| {
        let (key, value) = match entry {
            Ok(kv) => kv,
            Err(e) => return Some(Err(read_error(&e))),
        };
        match keys::parse_record(&key) {
            Ok((target, seq)) if covered.get(&target).is_some_and(|c| seq <= *c) => None,
            Ok((target, seq)) => {
                Some(decode_record(&target, seq, &value).map(|record| Stored { seq, record }))
            }
            Err(bad) => Some(Err(corrupt(&bad.target, 0, format!("record key: {}", bad.error)))),
        }
    });
    problems.into_iter().chain(listed)
}

pub(super) fn snapshots(db: &sled::Db, path: &Path) -> Result<Vec<SnapshotEntry>, StoreError> {
    let mut out = Vec::new();
    for entry in db.scan_prefix([keys::SNAPSHOT]) {
        let (key, value) = entry.map_err(|source| StoreError::Read {
            path: path.to_path_buf(),
            what: "snapshots".into(),
            source,
        })?;
        if let Ok(target) = keys::parse_snapshot(&key) {
            let snapshot = decode_snapshot(&target, &value);
            out.push((target, snapshot.seq, snapshot.state));
        }
    }
    Ok(out)
}
