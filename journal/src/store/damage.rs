//! What happens to damage after replay reported it.
//!
//! Replay stops a target at its first damaged value and the engine carries on from the
//! state before it. Left in place, the damage would stop every later replay at the same
//! spot, and the records the engine appends from now on (with higher seqs) would never be
//! replayed: the target would fall back to a state older than what the daemon acted on.
//! So the first append to a damaged target moves, in the same atomic batch, the damaged
//! value and everything of that target after it into the `q` space, where replay still
//! reports it (evidence for `verify`) but no longer folds it. Opening alone writes
//! nothing, so `dms-journal inspect` leaves the journal as it found it.

use super::read::{corrupt, decode_record, decode_snapshot};
use super::{keys, Problem, Seq, StoreError};
use crate::ids::TargetId;
use std::path::Path;

/// Where a target's replay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Damage {
    /// The snapshot does not decode: nothing of the target can be replayed.
    Snapshot,
    /// The record with this seq does not decode.
    Record(Seq),
}

/// Add to `batch` the moves that set aside `target`'s damage and all that follows it;
/// how many records and snapshots leave their spaces (for the seal).
pub(super) fn set_aside(
    db: &sled::Db,
    path: &Path,
    target: &TargetId,
    damage: Damage,
    batch: &mut sled::Batch,
) -> Result<(u64, u64), StoreError> {
    let read = |source| StoreError::Read {
        path: path.to_path_buf(),
        what: format!("damaged records of {target}"),
        source,
    };
    let mut moved = (0, 0);
    let from = match damage {
        Damage::Record(seq) => seq,
        Damage::Snapshot => {
            if let Some(value) = db.get(keys::snapshot(target)).map_err(read)? {
                let (seq, _) = keys::split_snapshot_value(&value);
                batch.insert(keys::set_aside(target, seq, keys::SNAPSHOT), value);
                batch.remove(keys::snapshot(target));
                moved.1 += 1;
            }
            // Without its snapshot, even the records it covered would come back to life.
            0
        }
    };
    for entry in db.range(keys::record(target, from)..keys::record_prefix_end(target)) {
        let (key, value) = entry.map_err(read)?;
        if let Ok((_, seq)) = keys::parse_record(&key) {
            batch.insert(keys::set_aside(target, seq, keys::RECORD), value);
            batch.remove(key);
            moved.0 += 1;
        }
    }
    Ok(moved)
}

/// One problem per value set aside by an earlier append; also the highest seq among them.
pub(super) fn reported(db: &sled::Db) -> Result<(Vec<Problem>, Seq), sled::Error> {
    let mut problems = Vec::new();
    let mut last_seq = 0;
    for entry in db.scan_prefix([keys::SET_ASIDE]) {
        let (key, value) = entry?;
        let problem = match keys::parse_set_aside(&key) {
            Err(bad) => corrupt(&bad.target, 0, format!("set-aside key: {}", bad.error)),
            Ok((target, seq, what)) => {
                last_seq = last_seq.max(seq);
                let damage = match what {
                    keys::SNAPSHOT => decode_snapshot(&target, &value).state.err(),
                    _ => decode_record(&target, seq, &value).err(),
                };
                let why = match damage {
                    Some(problem) => problem.error,
                    None => "intact, but follows a damaged value of this target".to_owned(),
                };
                corrupt(target.as_str(), seq, format!("set aside by an earlier append: {why}"))
            }
        };
        problems.push(problem);
    }
    Ok((problems, last_seq))
}
