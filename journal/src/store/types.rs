//! The store's public values: positions, what replay found, and its errors.

use super::seal::Loss;
use crate::codec::CodecError;
use crate::event::Record;
use crate::ids::TargetId;
use crate::state::{JournalState, TargetState};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// A record's position in the journal. Allocated in append order and never reused for a
/// durable record, across restarts too.
pub type Seq = u64;

/// What [`Journal::make_durable`] waits for: a deferred append's place in the flush order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(pub(super) u64);

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
    /// An fsync after sled's flush failed ([`super::stable`]): the flush made nothing durable.
    #[error("cannot make journal {} durable ({what}): {source}", path.display())]
    Sync {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("cannot write the seal {}: {source}", path.display())]
    Seal {
        path: PathBuf,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
}

impl StoreError {
    /// Whether opening failed for want of permission (sled opens its files read-write, which
    /// a non-root user may not): `dms-journal` then asks the daemon instead. sled's error
    /// carries no source chain, hence the match here, next to the only sled user.
    pub fn is_permission_denied(&self) -> bool {
        matches!(
            self,
            StoreError::Open { source: sled::Error::Io(e), .. }
                if e.kind() == std::io::ErrorKind::PermissionDenied
        )
    }
}
