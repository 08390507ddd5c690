//! Compaction: bounded growth without losing what matters.
//!
//! For each target, the eligible records are the longest prefix (after its snapshot) of
//! records that decode and are older than the cutoff. Within it, the compaction point is
//! the last record after which the target was at rest (no operation in flight): an
//! unfinished operation is never folded away, so replay still sees every record of it.
//! The state at that point, minus decided requests older than the cutoff, becomes the new
//! snapshot.
//!
//! Crash safety comes from ordering: the snapshot is written and flushed before anything is
//! deleted, and replay ignores records at or below a snapshot's seq. A crash in between
//! leaves covered records behind; the next compaction removes them.

use super::read::{self, Snapshot};
use super::{keys, lock, seal, CompactionReport, Journal, Seq, StoreError};
use crate::codec;
use crate::event::Record;
use crate::ids::{RequestKey, TargetId, Timestamp};
use crate::state::TargetState;
use std::collections::BTreeSet;

pub(super) fn run(journal: &Journal, cutoff: Timestamp) -> Result<CompactionReport, StoreError> {
    let unaccepted = lock(&journal.writer).unaccepted.clone();
    if !unaccepted.is_empty() {
        return Err(StoreError::Unaccepted { path: journal.path.clone(), losses: unaccepted });
    }
    let mut report = CompactionReport::default();
    for target in targets(journal)? {
        let (removed, forgotten, rewrote) = compact_target(journal, &target, cutoff)?;
        if rewrote || removed > 0 {
            report.targets_compacted += 1;
        }
        report.records_removed += removed;
        report.requests_forgotten += forgotten;
    }
    if report.records_removed > 0 {
        // Not needed for correctness (replay skips covered records); makes the space
        // reclaim survive a crash instead of being redone.
        journal.wait_durable(journal.commit.applied())?;
    }
    Ok(report)
}

/// Every target with a snapshot or a record, found by skipping from one target's records
/// to the next instead of reading them all.
fn targets(journal: &Journal) -> Result<BTreeSet<TargetId>, StoreError> {
    let read = |source| StoreError::Read {
        path: journal.path.clone(),
        what: "target list".into(),
        source,
    };
    let mut found = BTreeSet::new();
    for entry in journal.db.scan_prefix([keys::SNAPSHOT]) {
        let (key, _) = entry.map_err(read)?;
        if let Ok(target) = keys::parse_snapshot(&key) {
            found.insert(target);
        }
    }
    let mut from = vec![keys::RECORD];
    while let Some(entry) = journal.db.range(from.as_slice()..).next() {
        let (key, _) = entry.map_err(read)?;
        if key.first() != Some(&keys::RECORD) {
            break;
        }
        match keys::parse_record(&key) {
            Ok((target, _)) => {
                from = keys::record_prefix_end(&target);
                found.insert(target);
            }
            Err(_) => {
                from = key.to_vec();
                from.push(0);
            }
        }
    }
    Ok(found)
}

/// Returns (records removed, requests forgotten, snapshot rewritten).
fn compact_target(
    journal: &Journal,
    target: &TargetId,
    cutoff: Timestamp,
) -> Result<(u64, u64, bool), StoreError> {
    let loaded = read::load_snapshot(&journal.db, &journal.path, target)?;
    let had_snapshot = loaded.is_some();
    let (covered, base) = match loaded {
        None => (0, TargetState::new(target.clone())),
        Some(Snapshot { seq, state: Ok(state) }) => (seq, state),
        // A damaged snapshot is evidence for `verify`; leave the target as it is.
        Some(Snapshot { state: Err(_), .. }) => return Ok((0, 0, false)),
    };
    let mut leftovers: Vec<Seq> = Vec::new();
    let mut after: Vec<(Seq, Option<Record>)> = Vec::new();
    for entry in journal.db.scan_prefix(keys::record_prefix(target)) {
        let (key, value) = entry.map_err(|source| StoreError::Read {
            path: journal.path.clone(),
            what: format!("records of {target}"),
            source,
        })?;
        let Ok((_, seq)) = keys::parse_record(&key) else { continue };
        if seq <= covered {
            leftovers.push(seq);
        } else {
            after.push((seq, read::decode_record(target, seq, &value).ok()));
        }
    }

    let mut probe = base.clone();
    let mut point: Option<usize> = None;
    for (i, (_, record)) in after.iter().enumerate() {
        match record {
            Some(record) if record.at < cutoff => probe.apply(record),
            _ => break,
        }
        if probe.op.is_none() {
            point = Some(i);
        }
    }
    let folded = point.map_or(0, |p| p + 1);
    let (gone, kept) = after.split_at(folded);
    let mut snapshot = base;
    for record in gone.iter().filter_map(|(_, r)| r.as_ref()) {
        snapshot.apply(record);
    }
    let snapshot_seq = gone.last().map_or(covered, |(seq, _)| *seq);
    let forgotten: Vec<RequestKey> = snapshot
        .requests
        .iter()
        .filter(|(_, decided)| decided.at < cutoff)
        .map(|(key, _)| key.clone())
        .collect();
    snapshot.forget_requests_before(cutoff);

    let rewrite = snapshot_seq > covered || !forgotten.is_empty();
    if rewrite {
        let envelope = codec::encode_snapshot(&snapshot).map_err(|source| StoreError::Encode {
            path: journal.path.clone(),
            what: format!("snapshot of {target}"),
            source,
        })?;
        let ticket = {
            let mut writer = lock(&journal.writer);
            let mut seal = writer.seal;
            seal.snapshots += u64::from(!had_snapshot);
            let mut batch = sled::Batch::default();
            batch.insert(keys::snapshot(target), keys::snapshot_value(snapshot_seq, &envelope));
            batch.insert(seal::KEY, seal.encode());
            journal
                .db
                .apply_batch(batch)
                .map_err(|source| journal.write_error(&format!("snapshot of {target}"), source))?;
            writer.seal = seal;
            journal.commit.applied()
        };
        journal.wait_durable(ticket)?;
    }

    let doomed: Vec<Seq> = leftovers.into_iter().chain(gone.iter().map(|(seq, _)| *seq)).collect();
    // Index entries to drop: requests no longer answerable from this target, whose entry
    // still points here (a later request with the same key may have moved it elsewhere).
    let still_known: BTreeSet<&RequestKey> = snapshot
        .requests
        .keys()
        .chain(kept.iter().filter_map(|(_, r)| r.as_ref()?.request.as_ref()))
        .collect();
    let unindex: BTreeSet<&RequestKey> = forgotten
        .iter()
        .chain(gone.iter().filter_map(|(_, r)| r.as_ref()?.request.as_ref()))
        .filter(|key| !still_known.contains(key))
        .collect();
    if doomed.is_empty() && unindex.is_empty() {
        return Ok((0, forgotten.len() as u64, rewrite));
    }
    let mut batch = sled::Batch::default();
    for seq in &doomed {
        batch.remove(keys::record(target, *seq));
    }
    // Under the writer lock, so no append can repoint an entry between check and removal.
    let mut writer = lock(&journal.writer);
    // Counted under the lock: a first append to a damaged target may have set some aside.
    let present = doomed
        .iter()
        .filter(|seq| journal.db.contains_key(keys::record(target, **seq)).unwrap_or(true))
        .count() as u64;
    let mut seal = writer.seal;
    seal.records -= present.min(seal.records);
    batch.insert(seal::KEY, seal.encode());
    for key in unindex {
        let entry = keys::request(key);
        let points_here = journal
            .db
            .get(&entry)
            .map_err(|source| StoreError::Read {
                path: journal.path.clone(),
                what: format!("request index entry {key}"),
                source,
            })?
            .is_some_and(|v| v.as_ref() == target.as_str().as_bytes());
        if points_here {
            batch.remove(entry);
        }
    }
    journal
        .db
        .apply_batch(batch)
        .map_err(|source| journal.write_error(&format!("compaction of {target}"), source))?;
    writer.seal = seal;
    journal.commit.applied();
    Ok((doomed.len() as u64, forgotten.len() as u64, rewrite))
}
