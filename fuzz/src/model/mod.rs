//! The `state_machine` target: run a [`Script`] against `decide`, as the engine would
//! (decide, journal the records through the codec, apply them), and check after every step
//! what must always hold:
//!
//! * `decide` never panics and is deterministic;
//! * every record it returns is legal (`TargetState::check`) in the state it is applied to,
//!   belongs to the commanded target and carries the clock it was given;
//! * a rejection journals nothing (the harness appends nothing for it), `Busy` only while
//!   an operation is in flight, `StaleOutcome` only for an id that is not the current one;
//! * in-flight phases have an operation with an id, other phases have none;
//! * a reply names the outcome the state recorded for its request, a request is only ever
//!   answered one way, and a decided request, asked again, gets a bare replay of the same
//!   answer (one `Reply`, no records);
//! * `Reboot`: every record decodes from its encoding to itself and re-encodes to the same
//!   bytes, every state survives a snapshot, and replaying the journal into a fresh state
//!   (from scratch, and from the last checkpoint plus the records after it) yields exactly
//!   the live state.

use crate::script::{Check, Op, OpRef, Script, KEYS, PATHS};
use dms_journal::codec::{decode_record, decode_snapshot, encode_record, encode_snapshot};
use dms_journal::machine::MountFailure;
use dms_journal::SpawnNonce;
use dms_journal::{
    decide, BootId, Clock, Command, Decision, Effect, HelperIdentity, JournalState, OperationId,
    Outage, Outcome, Phase, Record, Rejection, RequestKey, TargetId, TargetKind, TargetSpec,
    TargetState, Timestamp,
};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

pub const BOOT: BootId = BootId(Uuid::from_u128(0x5eed_b007_0000_4000_8000_0000_0000_0001));
/// Where the clock starts; every op advances it by a second.
pub const START: Timestamp = Timestamp(1_795_000_000_000);

/// What a run did, for corpus generation and for tests that check the seeds reach far.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Every record journaled, in order.
    pub records: Vec<Record>,
    /// Target states: after every change of phase, at each checkpoint and at the end.
    pub snapshots: Vec<TargetState>,
    /// Names of the rejections seen.
    pub rejections: BTreeSet<&'static str>,
    /// Decided requests whose repeat was replayed (probed or sent by the script).
    pub replays: usize,
    pub reboots: usize,
    pub reboots_from_checkpoint: usize,
}

/// The decision function under test.
pub type DecideFn = fn(&TargetState, &Command, Clock) -> Result<Decision, Rejection>;

/// Run `data` as a script against `dms_journal::decide`. Panics when an invariant does not
/// hold.
pub fn run(data: &[u8]) -> Trace {
    run_with(data, decide_worded)
}

/// `decide` as the daemon calls it, with its wire wording (so the seeds carry the texts a
/// requester reads).
pub fn decide_worded(s: &TargetState, c: &Command, k: Clock) -> Result<Decision, Rejection> {
    decide(s, c, k, &dms::wire::Wire)
}

/// [`run`] against another decision function (the tests use broken ones to show that the
/// harness notices).
pub fn run_with(data: &[u8], decide: DecideFn) -> Trace {
    let script = Script::parse(data);
    let mut h = Harness::new(script.targets, decide);
    for op in &script.ops {
        h.step(op);
    }
    h.reboot();
    h.trace.snapshots.extend(h.journal.targets.values().cloned());
    h.trace
}

struct Harness {
    decide: DecideFn,
    targets: Vec<TargetId>,
    journal: JournalState,
    /// The journal as the store holds it: encoded records, in append order.
    log: Vec<Vec<u8>>,
    /// Encoded snapshots of every target and the log length when they were taken.
    checkpoint: Option<(Vec<Vec<u8>>, usize)>,
    clock: Clock,
    next_id: u128,
    /// Operation ids each target has had, oldest first.
    past_ops: BTreeMap<TargetId, Vec<OperationId>>,
    /// The first answer sent for each (target, request).
    sent: BTreeMap<(TargetId, RequestKey), Outcome>,
    trace: Trace,
}

impl Harness {
    fn new(targets: u8, decide: DecideFn) -> Self {
        let targets = (0..targets)
            .map(|i| TargetId::new(&format!("t{i}")).expect("valid target id"))
            .collect();
        Self {
            decide,
            targets,
            journal: JournalState::default(),
            log: Vec::new(),
            checkpoint: None,
            clock: Clock { now: START, boot: BOOT },
            next_id: 1,
            past_ops: BTreeMap::new(),
            sent: BTreeMap::new(),
            trace: Trace::default(),
        }
    }

    fn fresh_id(&mut self) -> OperationId {
        self.next_id += 1;
        OperationId(Uuid::from_u128(0x9e00_0000_0000_4000_8000_0000_0000_0000 | self.next_id))
    }

    fn target(&self, i: u8) -> TargetId {
        self.targets[usize::from(i) % self.targets.len()].clone()
    }

    fn op_id(&mut self, target: &TargetId, which: OpRef) -> OperationId {
        let current = self.journal.target(target).and_then(|s| s.op.as_ref()).and_then(|o| o.id);
        match which {
            OpRef::Current => current,
            OpRef::Previous => self
                .past_ops
                .get(target)
                .and_then(|ids| ids.iter().rev().find(|id| Some(**id) != current).copied()),
            OpRef::Fresh => None,
        }
        .unwrap_or_else(|| self.fresh_id())
    }

    fn step(&mut self, op: &Op) {
        self.clock.now = Timestamp(self.clock.now.0 + 1000);
        let (target, command) = match *op {
            Op::Reboot => return self.reboot(),
            Op::Checkpoint => return self.take_checkpoint(),
            Op::Mount { target, key, path, kind } => {
                let spec = TargetSpec {
                    kind: spec_kind(kind),
                    mount_path: PATHS[path as usize % PATHS.len()].to_owned(),
                };
                let op = self.fresh_id();
                // The fact the engine gathers: another tracked target this path nests with.
                let nested = self.journal.nesting(&self.target(target), &spec.mount_path);
                // And whether the NFS server's breaker is open: derived from the key, so the
                // input encoding (and the corpus) stays as it was.
                let outage = key.is_some_and(|k| k % 4 == 3).then(|| Outage {
                    server: "nfs.example".to_owned(),
                    cause: "mount(8) timed out".to_owned(),
                    since: self.clock.now,
                    until: Timestamp(self.clock.now.0 + 30_000),
                });
                (target, Command::Mount { op, request: request_key(key), spec, nested, outage })
            }
            Op::Unmount { target, key, path } => {
                let mount_path = PATHS[path as usize % PATHS.len()].to_owned();
                let op = self.fresh_id();
                (target, Command::Unmount { op, request: request_key(key), mount_path })
            }
            Op::CredsFetched { target, op, ok } => {
                let op = self.op_id(&self.target(target), op);
                let nonce = SpawnNonce::from_u128(self.fresh_id().0.as_u128());
                (target, Command::CredsFetched { op, result: result(ok, ()), nonce })
            }
            Op::HelperSpawned { target, op, ok, pid } => {
                let op = self.op_id(&self.target(target), op);
                let helper = HelperIdentity {
                    pid: 1000 + u32::from(pid),
                    start_ticks: u64::from(pid) * 7 + 1,
                    boot: BOOT,
                };
                (target, Command::HelperSpawned { op, result: result(ok, helper) })
            }
            Op::MountChecked { target, op, check } => {
                let op = self.op_id(&self.target(target), op);
                let failure =
                    |maybe_mounted| MountFailure { reason: "timed out".to_owned(), maybe_mounted };
                let result = match check {
                    Check::Ok => Ok(()),
                    Check::Refused => Err(failure(false)),
                    Check::MaybeMounted => Err(failure(true)),
                };
                (target, Command::MountChecked { op, result })
            }
            Op::Detached { target, op, ok } => {
                let op = self.op_id(&self.target(target), op);
                (target, Command::Detached { op, result: result(ok, ()) })
            }
            Op::UnmountDone { target, op, ok } => {
                let op = self.op_id(&self.target(target), op);
                (target, Command::UnmountDone { op, result: result(ok, ()) })
            }
            Op::CleanupDone { target, ok } => {
                let result = result(ok, "removed leftovers".to_owned());
                (target, Command::CleanupDone { result })
            }
        };
        let target = self.target(target);
        self.command(&target, &command);
    }

    fn command(&mut self, target: &TargetId, command: &Command) {
        let before = self.journal.target_or_new(target);
        let decided = (self.decide)(&before, command, self.clock);
        assert_eq!((self.decide)(&before, command, self.clock), decided, "decide is deterministic");
        let decision = match decided {
            Err(rejection) => return self.rejected(&before, &rejection),
            Ok(d) => d,
        };
        // Records: legal, in order, in the state each is applied to; then journaled.
        let mut after = before.clone();
        for record in &decision.records {
            assert_eq!(&record.target, target, "record for another target: {record:?}");
            assert_eq!((record.at, record.boot), (self.clock.now, self.clock.boot));
            if let Err(illegal) = after.check(&record.event) {
                panic!("decide returned an illegal record for {command:?}: {illegal}\n{after:?}");
            }
            after.apply(record);
            self.journal.apply(record);
            self.log.push(encode_record(record).expect("a decided record encodes"));
            self.trace.records.push(record.clone());
        }
        if let Some(op) = after.op.as_ref().and_then(|o| o.id) {
            let past = self.past_ops.entry(target.clone()).or_default();
            if past.last() != Some(&op) {
                past.push(op);
            }
        }
        check_op_invariant(&after);
        check_no_nesting(&self.journal);
        check_no_mount_during_an_outage(command, &decision);
        if after.phase != before.phase {
            self.trace.snapshots.push(after.clone());
        }

        // A decided request asked again: a bare replay.
        if let Some(key) = request_of(command) {
            if let Some(decided) = before.requests.get(key) {
                let replay = vec![Effect::Reply {
                    request: Some(key.clone()),
                    outcome: decided.outcome.clone(),
                }];
                assert!(
                    decision.records.is_empty(),
                    "a replayed request journaled {:?}",
                    decision.records
                );
                assert_eq!(decision.effects, replay, "a decided request must get its answer again");
                self.trace.replays += 1;
            }
        }
        // Replies: at most one, matching what the state recorded, never a second answer.
        let replies: Vec<_> = decision
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::Reply { request, outcome } => Some((request, outcome)),
                _ => None,
            })
            .collect();
        assert!(replies.len() <= 1, "more than one reply: {:?}", decision.effects);
        for (request, outcome) in replies {
            let Some(key) = request else { continue };
            let recorded = after.requests.get(key).map(|d| &d.outcome);
            assert_eq!(recorded, Some(outcome), "reply to {key} differs from the journaled answer");
            let first =
                self.sent.entry((target.clone(), key.clone())).or_insert_with(|| outcome.clone());
            assert_eq!(first, outcome, "{key} was answered two ways");
        }
        // Newly decided requests: probe a repeat, as a mount and as an unmount.
        for (key, decided) in &after.requests {
            if before.requests.get(key) == Some(decided) {
                continue;
            }
            self.probe_repeat(&after, key, &decided.outcome);
        }
    }

    fn probe_repeat(&mut self, state: &TargetState, key: &RequestKey, outcome: &Outcome) {
        let expected = vec![Effect::Reply { request: Some(key.clone()), outcome: outcome.clone() }];
        let request = Some(key.clone());
        let probes = [
            Command::Mount {
                op: self.fresh_id(),
                request: request.clone(),
                spec: TargetSpec { kind: spec_kind(2), mount_path: PATHS[1].to_owned() },
                nested: None,
                outage: None,
            },
            Command::Unmount { op: self.fresh_id(), request, mount_path: PATHS[2].to_owned() },
        ];
        for probe in &probes {
            let d = (self.decide)(state, probe, self.clock)
                .unwrap_or_else(|r| panic!("repeat of decided {key} rejected: {r}"));
            assert!(d.records.is_empty(), "repeat of decided {key} journaled {:?}", d.records);
            assert_eq!(d.effects, expected, "repeat of decided {key}");
            self.trace.replays += 1;
        }
    }

    fn rejected(&mut self, state: &TargetState, rejection: &Rejection) {
        // Nothing is appended for a rejection: the log and the state are as they were.
        let _ = rejection.to_string();
        let name = match rejection {
            Rejection::InFlight { request, .. } => {
                let running = state.op.as_ref().and_then(|o| o.request.as_ref());
                assert!(state.phase.in_flight(), "InFlight while {}", state.phase);
                assert_eq!(running, Some(request), "InFlight for a request that is not running");
                "InFlight"
            }
            Rejection::Busy { .. } => {
                assert!(state.phase.in_flight(), "Busy while {}", state.phase);
                "Busy"
            }
            Rejection::StaleOutcome { got, .. } => {
                let current = state.op.as_ref().and_then(|o| o.id);
                assert!(
                    current.is_some() && current != Some(*got),
                    "StaleOutcome for the current op"
                );
                "StaleOutcome"
            }
            Rejection::Unexpected { .. } => "Unexpected",
        };
        self.trace.rejections.insert(name);
    }

    fn take_checkpoint(&mut self) {
        let snapshots = self
            .journal
            .targets
            .values()
            .map(|s| encode_snapshot(s).expect("a state encodes"))
            .collect();
        self.checkpoint = Some((snapshots, self.log.len()));
        self.trace.snapshots.extend(self.journal.targets.values().cloned());
    }

    fn reboot(&mut self) {
        self.trace.reboots += 1;
        // From scratch: every record through the codec.
        let mut replayed = JournalState::default();
        for bytes in &self.log {
            let record = decode_record(bytes).expect("a journaled record decodes");
            assert_eq!(
                &encode_record(&record).expect("re-encodes"),
                bytes,
                "record encoding is stable"
            );
            replayed.apply(&record);
        }
        assert_eq!(replayed, self.journal, "replaying the journal rebuilds the live state");
        // Every state survives a snapshot.
        for state in self.journal.targets.values() {
            let bytes = encode_snapshot(state).expect("a state encodes");
            assert_eq!(&decode_snapshot(&bytes).expect("a snapshot decodes"), state);
        }
        // From the last checkpoint plus the records after it.
        if let Some((snapshots, at)) = &self.checkpoint {
            let mut resumed = JournalState::default();
            for bytes in snapshots {
                let state = decode_snapshot(bytes).expect("a checkpoint decodes");
                resumed.targets.insert(state.target.clone(), state);
            }
            for bytes in &self.log[*at..] {
                resumed.apply(&decode_record(bytes).expect("a journaled record decodes"));
            }
            assert_eq!(resumed, self.journal, "checkpoint + tail rebuilds the live state");
            self.trace.reboots_from_checkpoint += 1;
        }
        self.journal = replayed;
    }
}

/// In-flight phases have an operation with an id; settled phases have none.
/// An NFS mount decided while its server's breaker is open never runs mount(8).
fn check_no_mount_during_an_outage(command: &Command, decision: &Decision) {
    if let Command::Mount { outage: Some(_), .. } = command {
        let mounts = decision.effects.iter().any(|e| matches!(e, Effect::MountNfs { .. }));
        assert!(!mounts, "mount(8) against a server whose breaker is open: {decision:?}");
    }
}

/// Targets never nest: no two tracked targets' mount paths are the same or one inside the
/// other (given the engine's fact, `decide` refuses every mount that would make them).
fn check_no_nesting(journal: &JournalState) {
    let tracked: Vec<&TargetState> =
        journal.targets.values().filter(|t| t.phase != Phase::Unmounted).collect();
    for (i, a) in tracked.iter().enumerate() {
        for b in &tracked[i + 1..] {
            if let (Some(pa), Some(pb)) = (a.mount_path(), b.mount_path()) {
                let nest = dms_journal::nesting::relation(pa, pb);
                assert!(nest.is_none(), "{} and {} nest ({nest:?}): {pa} {pb}", a.target, b.target);
            }
        }
    }
}

fn check_op_invariant(state: &TargetState) {
    if state.phase.in_flight() {
        assert!(
            state.op.as_ref().is_some_and(|o| o.id.is_some()),
            "in flight without an op id: {state:?}"
        );
    } else {
        assert!(state.op.is_none(), "{} with a dangling op: {state:?}", state.phase);
    }
}

fn request_of(command: &Command) -> Option<&RequestKey> {
    match command {
        Command::Mount { request, .. } | Command::Unmount { request, .. } => request.as_ref(),
        _ => None,
    }
}

fn request_key(key: Option<u8>) -> Option<RequestKey> {
    key.map(|k| RequestKey::new(KEYS[usize::from(k) % KEYS.len()]).expect("valid key"))
}

pub fn spec_kind(kind: u8) -> TargetKind {
    match kind % 3 {
        0 => TargetKind::S3 { secret_ref: "secrets/ref-1".to_owned() },
        1 => TargetKind::S3 { secret_ref: "secrets/ref-2".to_owned() },
        _ => TargetKind::Nfs {
            export: "nfs.example:/backup".to_owned(),
            options: "vers=4.1".to_owned(),
        },
    }
}

fn result<T>(ok: bool, value: T) -> Result<T, String> {
    if ok {
        Ok(value)
    } else {
        Err("injected failure".to_owned())
    }
}

#[cfg(test)]
mod tests;
