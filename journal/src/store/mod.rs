//! The durable store: the only sled user.
//!
//! One sled tree holds every target's records (keyed by target and seq), a request-key
//! index and per-target snapshots; [`keys`] describes the layout. What the store
//! guarantees:
//!
//! - [`Journal::append`] is atomic (one sled batch) and durable (flushed) before it returns,
//!   which is what lets the engine perform the effects the records license (DESIGN §3.1).
//!   Concurrent appends are combined into one batch and one flush ([`combine`]); flushes
//!   are shared with compaction ([`commit`]).
//! - [`Journal::open`] replays everything into a [`JournalState`] and never panics on what
//!   it finds: a record that does not decode ends that target's replay there and is
//!   reported as a [`Problem`]; other targets are unaffected ([`read`]).
//! - [`Journal::compact`] bounds growth without losing any current state or unfinished
//!   operation ([`compact`]).
//! - History sled lost (a damaged or truncated file it "recovered" from) is noticed at
//!   open and reported as [`Replay::losses`]; such a journal takes no writes until the loss
//!   is accepted ([`seal`]).

mod combine;
mod commit;
mod compact;
mod damage;
mod keys;
mod read;
mod seal;

use crate::codec::{self, CodecError};
use crate::event::Record;
use crate::ids::{RequestKey, TargetId, Timestamp};
use crate::state::{JournalState, TargetState};
use combine::Combiner;
use commit::{lock, GroupCommit};
use damage::Damage;
use seal::{Found, Mark, Seal, Sidecar};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub use seal::Loss;

/// A record's position in the journal. Allocated in append order and never reused for a
/// durable record, across restarts too.
pub type Seq = u64;

/// What [`Journal::make_durable`] waits for: a deferred append's place in the flush order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: Seq,
    pub record: Record,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The bytes do not decode (CRC, torn write, garbage, unknown version): replay of the
    /// target stops before it.
    Corrupt,
    /// The record decodes but was not legal in the state it was appended to. Replay applies
    /// it anyway (apply is total): the record says what happened, legal or not.
    Illegal,
}

/// Something wrong found in the journal. A finding, not an error: replay continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub target: String,
    pub seq: Seq,
    pub kind: ProblemKind,
    pub error: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::Illegal => "illegal",
        };
        write!(f, "target {}, seq {}: {kind} record: {}", self.target, self.seq, self.error)
    }
}

impl std::error::Error for Problem {}

/// What [`Journal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub state: JournalState,
    /// Records folded during this replay (records covered by a snapshot are not counted).
    pub records: u64,
    pub problems: Vec<Problem>,
    /// History lost outside any record's reach (sled dropped part of its file). While any
    /// is listed and not accepted ([`Journal::accept_losses`]), appends are refused.
    pub losses: Vec<Loss>,
}

/// One target's journal as stored: its snapshot and the records after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub target: TargetId,
    /// The compacted state and the seq it covers. Records up to that seq are not listed.
    pub snapshot: Option<(Seq, TargetState)>,
    /// In seq order. A damaged snapshot shows up here as the first entry (an `Err` carrying
    /// the snapshot's seq); a damaged record as an `Err` in its place, and the listing goes
    /// on past it.
    pub records: Vec<Result<Stored, Problem>>,
}

/// One snapshot as [`Journal::snapshots`] lists it: target, covered seq, decoded state.
pub type SnapshotEntry = (TargetId, Seq, Result<TargetState, Problem>);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CompactionReport {
    /// Targets whose snapshot was (re)written or whose records were removed.
    pub targets_compacted: usize,
    pub records_removed: u64,
    /// Decided requests older than the retention window dropped from snapshots; a
    /// redelivery of one of them is treated as a new request.
    pub requests_forgotten: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("journal {} is locked by another process (is the daemon running?)", path.display())]
    Locked { path: PathBuf },
    #[error("cannot open journal {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("cannot write {what} to journal {}: {source}", path.display())]
    Write {
        path: PathBuf,
        what: String,
        #[source]
        source: sled::Error,
    },
    #[error("cannot flush journal {}: {source}", path.display())]
    Flush {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("cannot read {what} from journal {}: {source}", path.display())]
    Read {
        path: PathBuf,
        what: String,
        #[source]
        source: sled::Error,
    },
    #[error("cannot encode {what} for journal {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        what: String,
        #[source]
        source: CodecError,
    },
    #[error("journal {} holds a damaged {what}: {error}", path.display())]
    Corrupt { path: PathBuf, what: String, error: String },
    #[error("journal {} lost history ({}); it takes no writes until `dms-journal accept-loss`", path.display(), losses.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unaccepted { path: PathBuf, losses: Vec<Loss> },
    #[error("journal {} is damaged: sled cannot read its own files (`conf` or `db`): {detail}; restore it from a backup, or move it aside to start an empty journal", path.display())]
    Damaged { path: PathBuf, detail: String },
    #[error("cannot write the seal {}: {source}", path.display())]
    Seal {
        path: PathBuf,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
}

/// The journal of this node. Share it through an `Arc`: every method takes `&self`.
pub struct Journal {
    db: sled::Db,
    path: PathBuf,
    /// Held while a batch is applied, so seq order is apply order and compaction can
    /// update the request index without racing an append.
    writer: Mutex<Writer>,
    commit: GroupCommit,
    /// Concurrent appends are applied and flushed together by one of their writers.
    combiner: Combiner<Vec<Encoded>, StoreError>,
    /// Compactions are rare and must not interleave with each other.
    compacting: Mutex<()>,
    /// Written after every flush with what it made durable ([`seal`]).
    sidecar: Mutex<Sidecar>,
    /// The highest seq applied so far: a flush started after reading it covers it.
    applied_high_water: AtomicU64,
    seal_id: [u8; 16],
}

/// A record encoded outside any lock, waiting for its seq.
#[derive(Debug)]
struct Encoded {
    target: TargetId,
    request: Option<RequestKey>,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct Writer {
    next: Seq,
    /// Damage found at open, set aside by the first append to its target ([`damage`]).
    damaged: BTreeMap<TargetId, Damage>,
    /// What the tree holds, written with every batch.
    seal: Seal,
    /// Losses found at open and not accepted: writes are refused.
    unaccepted: Vec<Loss>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("writer", &*lock(&self.writer))
            .field("flushes", &self.flushes())
            .finish_non_exhaustive()
    }
}

/// sled's own page cache default is 1 GiB; a journal of small records needs far less.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

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

    /// Append `records` atomically and durably; returns their seqs, in order. The records
    /// may be for different targets. On error nothing may be assumed either way (the batch
    /// may or may not survive a crash): the caller must not perform the effects the records
    /// license. The first append to a target whose replay stopped at damage also sets that
    /// damage aside ([`damage`]), so these records are replayed on top of the state the
    /// caller decided on.
    pub fn append(&self, records: &[Record]) -> Result<Vec<Seq>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let job = self.encode(records)?;
        let count = job.len() as u64;
        let first = self.combiner.submit(job, count, |jobs| self.apply_durably(jobs))?;
        Ok((first..first + count).collect())
    }

    /// [`Self::append`] without waiting for the disk: the records are applied (the next
    /// flush, by anyone, carries them) and durable once [`Self::make_durable`] returns for
    /// the ticket. For records that license nothing outside the journal yet: a crash before
    /// that flush loses them together with everything that followed them, never alone.
    pub fn append_deferred(&self, records: &[Record]) -> Result<(Vec<Seq>, Ticket), StoreError> {
        let job = self.encode(records)?;
        let count = job.len() as u64;
        let (first, ticket) = self.apply(vec![job])?;
        Ok(((first..first + count).collect(), Ticket(ticket)))
    }

    /// Wait until everything applied up to `ticket` is durable (sharing the flush with
    /// concurrent appenders).
    pub fn make_durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        self.wait_durable(ticket.0)
    }

    fn encode(&self, records: &[Record]) -> Result<Vec<Encoded>, StoreError> {
        records
            .iter()
            .map(|r| {
                let bytes = codec::encode_record(r).map_err(|source| StoreError::Encode {
                    path: self.path.clone(),
                    what: format!("{} record of target {}", r.event.name(), r.target),
                    source,
                })?;
                Ok(Encoded { target: r.target.clone(), request: r.request.clone(), bytes })
            })
            .collect::<Result<Vec<_>, StoreError>>()
    }

    /// The leader's part of [`Self::append`]: every queued job in one batch, one flush.
    fn apply_durably(&self, jobs: Vec<Vec<Encoded>>) -> Result<Seq, StoreError> {
        let (first, ticket) = self.apply(jobs)?;
        self.wait_durable(ticket)?;
        Ok(first)
    }

    /// Apply `jobs` as one sled batch with consecutive seqs; the first seq and the flush
    /// ticket that covers them.
    fn apply(&self, jobs: Vec<Vec<Encoded>>) -> Result<(Seq, u64), StoreError> {
        let applied = {
            let mut writer = lock(&self.writer);
            if !writer.unaccepted.is_empty() {
                let losses = writer.unaccepted.clone();
                return Err(StoreError::Unaccepted { path: self.path.clone(), losses });
            }
            let first = writer.next;
            let mut seal = writer.seal;
            let mut batch = sled::Batch::default();
            let targets: BTreeSet<&TargetId> = jobs.iter().flatten().map(|e| &e.target).collect();
            let damaged: Vec<TargetId> =
                targets.into_iter().filter(|t| writer.damaged.contains_key(*t)).cloned().collect();
            for target in &damaged {
                if let Some(damage) = writer.damaged.get(target) {
                    let (records, snapshots) =
                        damage::set_aside(&self.db, &self.path, target, *damage, &mut batch)?;
                    seal.records -= records.min(seal.records);
                    seal.snapshots -= snapshots.min(seal.snapshots);
                }
            }
            let mut seq = first;
            for encoded in jobs.into_iter().flatten() {
                batch.insert(keys::record(&encoded.target, seq), encoded.bytes);
                if let Some(key) = &encoded.request {
                    batch.insert(keys::request(key), encoded.target.as_str().as_bytes());
                }
                seq += 1;
            }
            seal.records += seq - first;
            seal.high_water = seal.high_water.max(seq - 1);
            batch.insert(seal::KEY, seal.encode());
            self.db.apply_batch(batch).map_err(|source| self.write_error("records", source))?;
            writer.next = seq;
            writer.seal = seal;
            self.applied_high_water.store(seal.high_water, Ordering::SeqCst);
            for target in &damaged {
                writer.damaged.remove(target);
            }
            (first, self.commit.applied())
        };
        Ok(applied)
    }

    /// The target's snapshot and the records after it, damaged ones included as problems.
    pub fn history(&self, target: &TargetId) -> Result<History, StoreError> {
        read::history(&self.db, &self.path, target)
    }

    /// Which target the request with this key was last journaled for. Requests forgotten
    /// by compaction are not found.
    pub fn request_target(&self, key: &RequestKey) -> Result<Option<TargetId>, StoreError> {
        let value = self.db.get(keys::request(key)).map_err(|source| StoreError::Read {
            path: self.path.clone(),
            what: format!("request index entry {key}"),
            source,
        })?;
        value
            .map(|v| {
                keys::parse_index_value(&v).map_err(|error| StoreError::Corrupt {
                    path: self.path.clone(),
                    what: format!("request index entry {key}"),
                    error,
                })
            })
            .transpose()
    }

    /// Every record not covered by a snapshot: grouped by target (in target order), in seq
    /// order within a target. Damaged records (and read errors) are `Err` items in place.
    pub fn records(&self) -> impl Iterator<Item = Result<Stored, Problem>> + '_ {
        read::records(&self.db)
    }

    /// Every snapshot with the seq it covers, in target order. Snapshot keys that do not
    /// name a valid target cannot be listed here; [`Journal::open`] reports them.
    pub fn snapshots(&self) -> Result<Vec<SnapshotEntry>, StoreError> {
        read::snapshots(&self.db, &self.path)
    }

    /// Fold each target's old, finished history into its snapshot and delete it. Records
    /// with `at < now - retention_ms` are eligible up to the last point where the target
    /// was at rest; decided requests older than that cutoff are forgotten.
    pub fn compact(
        &self,
        now: Timestamp,
        retention_ms: u64,
    ) -> Result<CompactionReport, StoreError> {
        let _one_at_a_time = lock(&self.compacting);
        compact::run(self, now.saturating_sub_millis(retention_ms))
    }

    /// Physical flushes performed so far (by appends, compaction and test writes).
    pub fn flushes(&self) -> u64 {
        self.commit.flushes()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fault injection for crash tests: store `bytes` as the record `seq` of `target`, as a
    /// torn or corrupted write would leave it, and flush. Production code never calls this.
    #[doc(hidden)]
    pub fn write_raw_for_tests(
        &self,
        target: &TargetId,
        seq: Seq,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.write_raw(keys::record(target, seq), bytes, seq)
    }

    /// Fault injection for crash tests: store `envelope` as `target`'s snapshot covering
    /// `seq`, and flush. Production code never calls this.
    #[doc(hidden)]
    pub fn write_raw_snapshot_for_tests(
        &self,
        target: &TargetId,
        seq: Seq,
        envelope: &[u8],
    ) -> Result<(), StoreError> {
        self.write_raw(keys::snapshot(target), &keys::snapshot_value(seq, envelope), seq)
    }

    fn write_raw(&self, key: Vec<u8>, value: &[u8], seq: Seq) -> Result<(), StoreError> {
        let ticket = {
            let mut writer = lock(&self.writer);
            let mut seal = writer.seal;
            let new = !self.db.contains_key(&key).unwrap_or(true);
            match (new, key.first()) {
                (true, Some(&keys::RECORD)) => seal.records += 1,
                (true, Some(&keys::SNAPSHOT)) => seal.snapshots += 1,
                _ => {}
            }
            seal.high_water = seal.high_water.max(seq);
            let mut batch = sled::Batch::default();
            batch.insert(key, value);
            batch.insert(seal::KEY, seal.encode());
            self.db
                .apply_batch(batch)
                .map_err(|source| self.write_error("raw test value", source))?;
            writer.next = writer.next.max(seq.saturating_add(1));
            writer.seal = seal;
            self.applied_high_water.store(seal.high_water, Ordering::SeqCst);
            self.commit.applied()
        };
        self.wait_durable(ticket)
    }

    /// Flushes also move the sidecar's mark to what they made durable.
    fn wait_durable(&self, ticket: u64) -> Result<(), StoreError> {
        self.commit.wait_durable(ticket, || {
            let high_water = self.applied_high_water.load(Ordering::SeqCst);
            self.db
                .flush()
                .map_err(|source| StoreError::Flush { path: self.path.clone(), source })?;
            let id = self.seal_id;
            lock(&self.sidecar)
                .write(Mark { id, high_water }, false)
                .map_err(|e| self.seal_error(e))
        })
    }

    fn seal_error(&self, source: std::io::Error) -> StoreError {
        StoreError::Seal { path: Sidecar::path_in(&self.path), source: std::sync::Arc::new(source) }
    }

    fn write_error(&self, what: &str, source: sled::Error) -> StoreError {
        StoreError::Write { path: self.path.clone(), what: what.to_owned(), source }
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
