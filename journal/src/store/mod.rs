//! The durable store: the only sled user.
//!
//! One sled tree holds every target's records (keyed by target and seq), a request-key
//! index and per-target snapshots; [`keys`] describes the layout. What the store
//! guarantees:
//!
//! - [`Journal::append`] is atomic (one sled batch) and durable (flushed, and its files
//!   synced to stable storage: [`stable`]) before it returns,
//!   which is what lets the engine perform the effects the records license (DESIGN §3.1).
//!   Concurrent appends are combined into one batch and one flush ([`combine`]); flushes
//!   are shared with compaction ([`commit`]).
//! - [`Journal::open`] replays everything into a [`JournalState`](crate::JournalState) and never panics on what
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
mod inbox;
mod keys;
mod open;
mod read;
mod seal;
mod stable;
mod types;

use crate::codec;
use crate::event::Record;
use crate::ids::{RequestKey, TargetId, Timestamp};
use combine::Combiner;
use commit::{lock, GroupCommit};
use damage::Damage;
use seal::{Mark, Seal, Sidecar};
use stable::Stable;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub use inbox::{InboxEntry, ParkId, Parked, ParkedAction};
pub use seal::Loss;
pub use types::{
    CompactionReport, History, Problem, ProblemKind, Replay, Seq, SnapshotEntry, StoreError,
    Stored, Ticket,
};

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
    /// Synced after every sled flush: sled's flush alone survives a crash of the process,
    /// not a power cut ([`stable`]).
    stable: Stable,
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

impl Journal {
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

    /// Make everything applied so far durable (sharing the flush with concurrent
    /// appenders): what a stop does last.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.wait_durable(self.commit.applied())
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

    /// The journal's identity: random, made when it was first sealed, kept for its life
    /// (32 hex digits). What outside state that belongs to this journal is named by.
    pub fn id(&self) -> String {
        uuid::Uuid::from_bytes(self.seal_id).simple().to_string()
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
            self.stable.sync()?;
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
