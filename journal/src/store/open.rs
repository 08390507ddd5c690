//! Opening a journal: sled's lock (retried briefly), replay, and the seal check.

use super::combine::Combiner;
use super::commit::{lock, GroupCommit};
use super::seal::{self, Found, Mark, Seal, Sidecar};
use super::stable::Stable;
use super::{read, Journal, Loss, Replay, Seq, StoreError, Writer};
use crate::ids::Timestamp;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// sled's own page cache default is 1 GiB; a journal of small records needs far less. The
/// daemon appends at the tail and reads old history only at open, in compaction and on an
/// operator's query, so a small cache costs little: at 1,000 mounts (one server_bench run
/// each, on a busy machine) the daemon's RSS was 31.2 MiB with 32 MiB here, 28.6 MiB with
/// 8 MiB, and 4 MiB gave no less (29.6 MiB).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

impl Journal {
    /// Open (creating if needed) and replay. Fails with [`StoreError::Locked`] when another
    /// handle, in this process or another one, has the journal open.
    pub fn open(path: &Path) -> Result<(Journal, Replay), StoreError> {
        let db = open_db(path)?;
        let mut replayed = read::replay(&db, path)?;
        let seal_error = |source: std::io::Error| StoreError::Seal {
            path: Sidecar::path_in(path),
            source: std::sync::Arc::new(source),
        };
        let stored = db
            .get(seal::KEY)
            .map_err(|source| StoreError::Read {
                path: path.to_path_buf(),
                what: "seal".into(),
                source,
            })?
            .map(|v| Seal::decode(&v));
        let (sidecar, mark) = Sidecar::open(path).map_err(seal_error)?;
        let stable = Stable::open(path, || sidecar.sync())?;
        let found = Found {
            last_seq: replayed.last_seq,
            records: replayed.records_stored,
            snapshots: replayed.snapshots_stored,
        };
        let here = Seal::new(found.last_seq, found.records, found.snapshots);
        let (seal, unaccepted, first) = match seal::check(stored, mark, found, sidecar.path()) {
            Ok(Some(seal)) => (seal, Vec::new(), false),
            Ok(None) => (here, Vec::new(), true),
            Err(losses) => {
                let id = stored.flatten().map(|s| s.id).or(mark.flatten().map(|m| m.id));
                (Seal { id: id.unwrap_or(here.id), ..here }, losses, false)
            }
        };
        replayed.replay.losses = unaccepted.clone();
        // Seqs of lost records are never handed out again either.
        let lost_high_water =
            [stored.flatten().map(|s| s.high_water), mark.flatten().map(|m| m.high_water)];
        let next = lost_high_water.into_iter().flatten().fold(replayed.last_seq, Seq::max) + 1;
        let journal = Journal {
            db,
            path: path.to_path_buf(),
            writer: Mutex::new(Writer { next, damaged: replayed.damaged, seal, unaccepted }),
            commit: GroupCommit::default(),
            combiner: Combiner::default(),
            compacting: Mutex::new(()),
            sidecar: Mutex::new(sidecar),
            stable,
            applied_high_water: AtomicU64::new(seal.high_water),
            seal_id: seal.id,
        };
        if first {
            journal.write_seal(seal)?;
        }
        Ok((journal, replayed.replay))
    }

    /// Write `seal` to the tree and the sidecar, durably (a first seal, an acceptance).
    fn write_seal(&self, seal: Seal) -> Result<(), StoreError> {
        self.db
            .insert(seal::KEY, seal.encode())
            .map_err(|source| self.write_error("seal", source))?;
        self.db.flush().map_err(|source| StoreError::Flush { path: self.path.clone(), source })?;
        self.stable.sync()?;
        let mark = Mark { id: seal.id, high_water: seal.high_water };
        lock(&self.sidecar).write(mark, true).map_err(|e| self.seal_error(e))
    }

    /// Accept the losses found at open: re-seal what the journal holds now and journal the
    /// acceptance (listed by [`Self::accepted_losses`]). Returns what was accepted.
    pub fn accept_losses(&self, now: Timestamp) -> Result<Vec<Loss>, StoreError> {
        let mut writer = lock(&self.writer);
        let accepted = std::mem::take(&mut writer.unaccepted);
        if accepted.is_empty() {
            return Ok(accepted);
        }
        let text: Vec<String> = accepted.iter().map(ToString::to_string).collect();
        let mut key = vec![seal::ACCEPTED];
        key.extend_from_slice(&now.0.to_be_bytes());
        self.db
            .insert(key, text.join("\n").into_bytes())
            .map_err(|source| self.write_error("accepted loss", source))?;
        self.write_seal(writer.seal)?;
        Ok(accepted)
    }

    /// Losses accepted so far, oldest first: when (unix ms) and what.
    pub fn accepted_losses(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.scan_prefix([seal::ACCEPTED]) {
            let (key, value) = entry.map_err(|source| StoreError::Read {
                path: self.path.clone(),
                what: "accepted losses".into(),
                source,
            })?;
            let at = key.get(1..9).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
            out.push((at, String::from_utf8_lossy(&value).into_owned()));
        }
        Ok(out)
    }
}

/// Between fork and exec, a child process of *any* thread holds a copy of every open
/// descriptor, the journal's included, and with it the journal's flock(2) lock: a handle
/// dropped and reopened meanwhile finds the journal locked by its own process for a few
/// milliseconds. So a lock is retried briefly before it is reported; a running daemon
/// holds it far longer than this.
const LOCK_RETRIES_MS: [u64; 5] = [5, 10, 20, 40, 80];

fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let mut retries = LOCK_RETRIES_MS.iter();
    loop {
        let opened = sled::Config::new().path(path).cache_capacity(CACHE_BYTES).open();
        let result = opened.map_err(|source| open_error(path, source));
        match (&result, retries.next()) {
            (Err(StoreError::Locked { .. }), Some(ms)) => {
                std::thread::sleep(std::time::Duration::from_millis(*ms));
            }
            _ => return result,
        }
    }
}

/// sled 0.34 reports a held lock as `Error::Io` of kind `Other` whose message starts with
/// "could not acquire lock on" (its `try_lock` wraps fs2's `WouldBlock`). flock(2) locks
/// belong to the open file description, so a second open in the same process is refused
/// the same way as one from another process.
fn open_error(path: &Path, source: sled::Error) -> StoreError {
    let locked = match &source {
        sled::Error::Io(e) => {
            e.kind() == std::io::ErrorKind::WouldBlock
                || e.to_string().contains("could not acquire lock")
        }
        _ => false,
    };
    // sled reads its `conf` file first and takes anything it cannot parse for a database
    // of a sled version before 0.29: say what is really wrong.
    let conf_damaged = matches!(&source, sled::Error::Unsupported(m) if m.contains("0.29"))
        || matches!(&source, sled::Error::Corruption { .. });
    if locked {
        StoreError::Locked { path: path.to_path_buf() }
    } else if conf_damaged {
        let detail = source.to_string();
        StoreError::Damaged { path: path.to_path_buf(), detail }
    } else {
        StoreError::Open { path: path.to_path_buf(), source }
    }
}
