//! The `--json` and `export` shapes. Field names are part of the tool's interface: add
//! fields, never rename or remove them.
//!
//! Records keep the model's own serde form (`event` is serde's externally tagged enum:
//! `"Verified"` or `{"Requested":{"spec":...}}`); ids are strings, timestamps are
//! milliseconds since the Unix epoch, with an RFC 3339 twin where a human may read them.

use crate::journal_cli::view::TargetView;
use dms_journal::state::TargetState;
use dms_journal::store::{Problem, Seq, Stored};
use dms_journal::{BootId, Event, HelperIdentity, OperationId, Outcome, RequestKey};
use dms_journal::{TargetId, Timestamp};
use serde::Serialize;

/// One record: a line of `export`, an element of `records` elsewhere.
#[derive(Debug, Serialize)]
pub struct RecordJson<'a> {
    pub seq: Seq,
    pub target: &'a TargetId,
    pub at: Timestamp,
    pub boot: BootId,
    pub request: &'a Option<RequestKey>,
    pub op: Option<OperationId>,
    pub event: &'a Event,
}

impl<'a> From<&'a Stored> for RecordJson<'a> {
    fn from(stored: &'a Stored) -> Self {
        let r = &stored.record;
        Self {
            seq: stored.seq,
            target: &r.target,
            at: r.at,
            boot: r.boot,
            request: &r.request,
            op: r.op,
            event: &r.event,
        }
    }
}

/// `inspect --json`.
#[derive(Debug, Serialize)]
pub struct OverviewJson<'a> {
    pub journal: JournalJson,
    pub summary: SummaryJson,
    /// Absent with `--summary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetJson<'a>>>,
    pub problems: &'a [Problem],
}

#[derive(Debug, Serialize)]
pub struct JournalJson {
    pub path: String,
    /// Where the path came from, e.g. `from --path`.
    pub source: String,
}

#[derive(Debug, Default, Serialize)]
pub struct SummaryJson {
    pub targets: u64,
    pub mounted: u64,
    pub unmounted: u64,
    pub in_flight: u64,
    pub dirty: u64,
    /// Records stored in the journal (not counting those compacted into snapshots).
    pub records: u64,
    pub problems: u64,
}

/// A target's current state (a row of `inspect`).
#[derive(Debug, Serialize)]
pub struct TargetJson<'a> {
    pub target: &'a TargetId,
    /// The state as the text view shows it, e.g. `mounting (Spawned)`.
    pub state: String,
    /// One of `unmounted`, `mounting`, `mounted`, `unmounting`, `dirty`.
    pub phase: &'static str,
    /// `s3`, `nfs`, or null if no mount was ever requested.
    pub kind: Option<&'static str>,
    pub mount_path: Option<&'a str>,
    pub helper: Option<HelperIdentity>,
    pub operation: Option<OperationJson<'a>>,
    /// Name of the newest stored record's event; null if all were compacted.
    pub last_event: Option<&'static str>,
    pub last_seq: Option<Seq>,
    pub updated_at: Timestamp,
    pub updated: String,
    /// Records folded into this state, including compacted ones.
    pub records: u64,
}

impl<'a> TargetJson<'a> {
    pub fn new(view: &TargetView<'a>) -> Self {
        let s = view.state;
        Self {
            target: &s.target,
            state: s.phase.to_string(),
            phase: s.phase.tag(),
            kind: s.spec.as_ref().map(|spec| spec.kind.name()),
            mount_path: s.mount_path(),
            helper: s.helper,
            operation: s.op.as_ref().map(|op| OperationJson {
                action: op.action.name(),
                op: op.id,
                request: op.request.as_ref(),
                started_at: op.started_at,
            }),
            last_event: view.last.map(|(_, name)| name),
            last_seq: view.last.map(|(seq, _)| seq),
            updated_at: s.updated_at,
            updated: s.updated_at.to_string(),
            records: s.records,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OperationJson<'a> {
    /// `mount` or `unmount`.
    pub action: &'static str,
    pub op: Option<OperationId>,
    pub request: Option<&'a RequestKey>,
    pub started_at: Timestamp,
}

/// A decided request: the answer its requester got.
#[derive(Debug, Serialize)]
pub struct AnswerJson<'a> {
    pub request: &'a RequestKey,
    pub outcome: &'a Outcome,
    /// The outcome as text, e.g. `s3 mounted at /mnt/x`.
    pub text: String,
    pub success: bool,
    pub at: Timestamp,
}

pub fn answers(state: &TargetState) -> Vec<AnswerJson<'_>> {
    state
        .requests
        .iter()
        .map(|(request, d)| AnswerJson {
            request,
            outcome: &d.outcome,
            text: d.outcome.to_string(),
            success: d.outcome.is_success(),
            at: d.at,
        })
        .collect()
}

/// `inspect --target ID --json`.
#[derive(Debug, Serialize)]
pub struct HistoryJson<'a> {
    pub target: &'a TargetId,
    /// Present when older records were compacted into a snapshot.
    pub snapshot: Option<SnapshotJson>,
    pub records: Vec<RecordJson<'a>>,
    pub problems: Vec<&'a Problem>,
    pub current: TargetJson<'a>,
    pub requests: Vec<AnswerJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct SnapshotJson {
    pub seq: Seq,
    /// Records folded into the snapshot.
    pub records: u64,
}

/// `inspect --request KEY --json`.
#[derive(Debug, Serialize)]
pub struct RequestJson<'a> {
    pub request: &'a RequestKey,
    pub target: &'a TargetId,
    /// `answered`, `in_flight` or `unanswered` (interrupted and rolled back, or lost).
    pub status: &'static str,
    pub answer: Option<AnswerJson<'a>>,
    pub records: Vec<RecordJson<'a>>,
    pub problems: Vec<&'a Problem>,
}
