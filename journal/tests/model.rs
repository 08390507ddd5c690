//! Model-based test of the store: random operations over a few targets, decided by
//! `dms_journal::decide` on an in-memory model exactly as the engine would, appended to a
//! real sled journal and applied to the model. After every step the store must hold the
//! model's state; after a `Reboot` (drop the journal, reopen it from disk) its replay must
//! equal the model; after a `Compact` it may only have forgotten requests older than the
//! cutoff, and the model adopts that (as a restarted daemon would).
#![allow(clippy::unwrap_used)]

use dms_journal::machine::HealFacts;
use dms_journal::machine::MountFailure;
use dms_journal::store::{CompactionReport, Journal, Seq};
use dms_journal::SpawnNonce;
use dms_journal::{
    decide, BootId, Clock, Command, DebugWording, Effect, HealStep, HelperIdentity, JournalState,
    OperationId, Outcome, Phase, RequestKey, TargetId, TargetKind, TargetSpec, TargetState,
    Timestamp,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use uuid::Uuid;

const TARGETS: [&str; 3] = ["m1", "m2", "m3"];
const KEYS: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    Mount {
        target: usize,
        key: Option<usize>,
        s3: bool,
        path: usize,
    },
    Unmount {
        target: usize,
        key: Option<usize>,
        path: usize,
    },
    /// The outcome of the effect the target is waiting for.
    Outcome {
        target: usize,
        ok: bool,
        maybe_mounted: bool,
    },
    /// An outcome for an operation that is not the current one.
    Stale {
        target: usize,
    },
    /// Redeliver every request answered with this key that the model still remembers.
    Repeat {
        key: usize,
    },
    Tick {
        ms: u64,
    },
    /// The target's current helper dies (healed within the bound, or lost).
    Die {
        target: usize,
        heal: bool,
    },
    Compact {
        retention_ms: u64,
    },
    Reboot,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let target = 0..TARGETS.len();
    let key = proptest::option::weighted(0.8, 0..KEYS);
    prop_oneof![
        4 => (target.clone(), key.clone(), any::<bool>(), 0..2usize)
            .prop_map(|(target, key, s3, path)| Op::Mount { target, key, s3, path }),
        2 => (target.clone(), key, 0..2usize)
            .prop_map(|(target, key, path)| Op::Unmount { target, key, path }),
        6 => (target.clone(), proptest::bool::weighted(0.75), any::<bool>())
            .prop_map(|(target, ok, maybe_mounted)| Op::Outcome { target, ok, maybe_mounted }),
        1 => target.clone().prop_map(|target| Op::Stale { target }),
        2 => (0..KEYS).prop_map(|key| Op::Repeat { key }),
        2 => (1..400u64).prop_map(|ms| Op::Tick { ms }),
        2 => prop_oneof![Just(0u64), Just(50), Just(300), Just(u64::MAX)]
            .prop_map(|retention_ms| Op::Compact { retention_ms }),
        1 => Just(Op::Reboot),
        2 => (target.clone(), proptest::bool::weighted(0.8))
            .prop_map(|(target, heal)| Op::Die { target, heal }),
    ]
}

fn target(i: usize) -> TargetId {
    TargetId::new(TARGETS[i]).unwrap()
}

fn key(i: usize) -> RequestKey {
    RequestKey::new(&format!("req-{i}")).unwrap()
}

fn mount_path(target: usize, path: usize) -> String {
    format!("/mnt/dms/{}-{path}", TARGETS[target])
}

struct Harness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    journal: Option<Journal>,
    model: JournalState,
    clock: Clock,
    counter: u128,
    last_seq: Seq,
    /// Which target each request key was last journaled for (the store's index).
    index: BTreeMap<RequestKey, TargetId>,
    /// The latest cutoff of any compaction: decided requests older than it may be gone.
    cutoff: Timestamp,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal");
        let (journal, replay) = Journal::open(&path).expect("open");
        assert_eq!(replay.state, JournalState::default());
        Harness {
            _dir: dir,
            path,
            journal: Some(journal),
            model: JournalState::default(),
            clock: Clock { now: Timestamp(1_000_000), boot: BootId(Uuid::from_u128(1)) },
            counter: 0,
            last_seq: 0,
            index: BTreeMap::new(),
            cutoff: Timestamp(0),
        }
    }

    fn journal(&self) -> &Journal {
        self.journal.as_ref().expect("journal is open")
    }

    fn fresh(&mut self) -> u128 {
        self.counter += 1;
        self.counter
    }

    fn op_id(&mut self) -> OperationId {
        OperationId(Uuid::from_u128(self.fresh()))
    }

    fn step(&mut self, op: &Op) {
        self.clock.now = Timestamp(self.clock.now.0 + 1);
        match *op {
            Op::Mount { target: t, key: k, s3, path } => {
                let kind = if s3 {
                    TargetKind::S3 { secret_ref: format!("secret-{t}") }
                } else {
                    TargetKind::Nfs { export: "10.0.0.5:/b".into(), options: "nodev".into() }
                };
                let spec = TargetSpec { kind, mount_path: mount_path(t, path) };
                let command = Command::Mount {
                    op: self.op_id(),
                    request: k.map(key),
                    spec,
                    nested: None,
                    outage: None,
                };
                self.run(&target(t), &command);
            }
            Op::Unmount { target: t, key: k, path } => {
                let (op, request) = (self.op_id(), k.map(key));
                let command = Command::Unmount { op, request, mount_path: mount_path(t, path) };
                self.run(&target(t), &command);
            }
            Op::Outcome { target: t, ok, maybe_mounted } => {
                let state = self.model.target_or_new(&target(t));
                let pid = self.fresh() as u32;
                if let Some(command) = outcome_for(&state, ok, maybe_mounted, pid, self.clock) {
                    self.run(&target(t), &command);
                }
            }
            Op::Stale { target: t } => {
                let state = self.model.target_or_new(&target(t));
                if state.op.is_some() {
                    let command = Command::UnmountDone { op: self.op_id(), result: Ok(()) };
                    assert!(
                        decide(&state, &command, self.clock, &DebugWording).is_err(),
                        "stale outcome accepted"
                    );
                }
            }
            Op::Repeat { key: k } => self.repeat(&key(k)),
            Op::Tick { ms } => self.clock.now = Timestamp(self.clock.now.0 + ms),
            Op::Die { target: t, heal } => {
                let state = self.model.target_or_new(&target(t));
                if let Some(helper) = state.helper {
                    let heal = HealFacts {
                        op: self.op_id(),
                        earlier: vec![],
                        attempts: if heal { 2 } else { 0 },
                        window_ms: 600_000,
                        environment: true,
                        clean_exit: false,
                    };
                    let status = "signal: 9 (SIGKILL)".to_owned();
                    self.run(&target(t), &Command::HelperExited { helper, status, heal });
                }
            }
            Op::Compact { retention_ms } => self.compact(retention_ms),
            Op::Reboot => self.reboot(),
        }
        self.check_store();
    }

    /// What the engine does: decide, append durably, then apply.
    fn run(&mut self, target: &TargetId, command: &Command) {
        let state = self.model.target_or_new(target);
        let Ok(decision) = decide(&state, command, self.clock, &DebugWording) else { return };
        let mut probe = state.clone();
        for record in &decision.records {
            if let Err(illegal) = probe.check(&record.event) {
                panic!("decide produced an illegal record: {illegal}");
            }
            probe.apply(record);
        }
        let seqs = self.journal().append(&decision.records).expect("append");
        assert_eq!(seqs.len(), decision.records.len());
        for seq in seqs {
            assert!(seq > self.last_seq, "seq {seq} after {}", self.last_seq);
            self.last_seq = seq;
        }
        for record in &decision.records {
            self.model.apply(record);
            if let Some(key) = &record.request {
                self.index.insert(key.clone(), target.clone());
            }
        }
        // Every answer sent is the one remembered for a redelivery.
        for effect in &decision.effects {
            if let Effect::Reply { request: Some(key), outcome } = effect {
                let remembered = self.model.target(target).and_then(|s| s.requests.get(key));
                assert_eq!(remembered.map(|d| &d.outcome), Some(outcome), "{key} on {target}");
            }
        }
    }

    /// A redelivered request that the model remembers gets the same answer and no work.
    fn repeat(&mut self, key: &RequestKey) {
        let remembered: Vec<(TargetId, Outcome)> = self
            .model
            .targets
            .values()
            .filter_map(|s| Some((s.target.clone(), s.requests.get(key)?.outcome.clone())))
            .collect();
        for (target, outcome) in remembered {
            let state = self.model.target_or_new(&target);
            let spec = TargetSpec {
                kind: TargetKind::Nfs { export: "e:/x".into(), options: String::new() },
                mount_path: "/mnt/dms/other".into(),
            };
            let command = Command::Mount {
                op: self.op_id(),
                request: Some(key.clone()),
                spec,
                nested: None,
                outage: None,
            };
            let decision =
                decide(&state, &command, self.clock, &DebugWording).expect("a repeat is answered");
            assert!(decision.records.is_empty(), "a repeat journals nothing");
            assert_eq!(decision.effects, [Effect::Reply { request: Some(key.clone()), outcome }]);
        }
    }

    fn compact(&mut self, retention_ms: u64) {
        let cutoff = self.clock.now.saturating_sub_millis(retention_ms);
        self.journal().compact(self.clock.now, retention_ms).expect("compact");
        let again = self.journal().compact(self.clock.now, retention_ms).expect("compact");
        assert_eq!(again, CompactionReport::default(), "compaction is idempotent");
        self.cutoff = self.cutoff.max(cutoff);

        let stored = self.stored_state();
        assert_eq!(
            stored.targets.keys().collect::<Vec<_>>(),
            self.model.targets.keys().collect::<Vec<_>>()
        );
        for (id, model) in &mut self.model.targets {
            let store = &stored.targets[id];
            let (mut a, mut b) = (model.clone(), store.clone());
            a.requests.clear();
            b.requests.clear();
            assert_eq!(a, b, "compaction changed more than requests of {id}");
            for (key, decided) in &model.requests {
                match store.requests.get(key) {
                    Some(kept) => assert_eq!(kept, decided, "{key} on {id}"),
                    None => assert!(decided.at < cutoff, "{key} on {id} forgotten too early"),
                }
            }
            assert!(store.requests.keys().all(|k| model.requests.contains_key(k)));
            // The daemon carries on from what the store remembers.
            model.requests = store.requests.clone();
        }
    }

    fn reboot(&mut self) {
        drop(self.journal.take());
        let (journal, replay) = Journal::open(&self.path).expect("reopen");
        self.journal = Some(journal);
        assert!(replay.problems.is_empty(), "{:?}", replay.problems);
        assert_eq!(replay.state, self.model, "replay after reboot");
        self.clock.boot = BootId(Uuid::from_u128(self.fresh()));
    }

    /// The store's current state, folded from what `history` lists.
    fn stored_state(&self) -> JournalState {
        let mut out = JournalState::default();
        for i in 0..TARGETS.len() {
            let history = self.journal().history(&target(i)).expect("history");
            let mut state = history.snapshot.map(|(_, state)| state);
            for stored in history.records {
                let stored = stored.expect("intact record");
                state.get_or_insert_with(|| TargetState::new(target(i))).apply(&stored.record);
            }
            if let Some(state) = state {
                out.targets.insert(target(i), state);
            }
        }
        out
    }

    fn check_store(&self) {
        assert_eq!(self.stored_state(), self.model, "store and model diverged");
        for (key, target) in &self.index {
            let Some(state) = self.model.target(target) else { continue };
            let in_flight = state.op.as_ref().and_then(|op| op.request.as_ref()) == Some(key);
            if state.requests.contains_key(key) || in_flight {
                let found = self.journal().request_target(key).expect("index");
                assert_eq!(found.as_ref(), Some(target), "index entry of {key}");
            }
        }
    }
}

/// The command an executor would report for the effect `state` is waiting on.
fn outcome_for(
    state: &TargetState,
    ok: bool,
    maybe_mounted: bool,
    pid: u32,
    clock: Clock,
) -> Option<Command> {
    let fail = |what: &str| format!("{what} failed in the model");
    if let Phase::Dirty(_) = state.phase {
        let result = if ok { Ok("cleaned".to_owned()) } else { Err(fail("cleanup")) };
        return Some(Command::CleanupDone { result });
    }
    let op = state.op.as_ref()?.id?;
    let unit = |what: &str| if ok { Ok(()) } else { Err(fail(what)) };
    let checked =
        if ok { Ok(()) } else { Err(MountFailure { reason: fail("mount"), maybe_mounted }) };
    use dms_journal::MountStep as M;
    Some(match state.phase {
        Phase::Mounting(M::Requested) if state.is_s3() => {
            Command::CredsFetched { op, result: unit("barbican"), nonce: SpawnNonce::from_u128(7) }
        }
        Phase::Mounting(M::Requested) | Phase::Mounting(M::Spawned) => {
            Command::MountChecked { op, result: checked }
        }
        Phase::Mounting(M::CredsFetched | M::SpawnIntended(_)) => {
            let helper = HelperIdentity { pid, start_ticks: u64::from(pid) * 7, boot: clock.boot };
            Command::HelperSpawned { op, result: if ok { Ok(helper) } else { Err(fail("spawn")) } }
        }
        Phase::Healing(h) => match h.step {
            HealStep::Dead => {
                let result =
                    if ok { Ok("dead mount detached".to_owned()) } else { Err(fail("detach")) };
                Command::CleanupDone { result }
            }
            HealStep::Detached => Command::Respawn { op, nonce: SpawnNonce::from_u128(8) },
            HealStep::SpawnIntended(_) => {
                let helper =
                    HelperIdentity { pid, start_ticks: u64::from(pid) * 7, boot: clock.boot };
                Command::HelperSpawned {
                    op,
                    result: if ok { Ok(helper) } else { Err(fail("spawn")) },
                }
            }
            HealStep::Spawned => Command::MountChecked { op, result: checked },
        },
        Phase::Unmounting(_) if state.is_s3() => Command::Detached { op, result: unit("detach") },
        Phase::Unmounting(_) => Command::UnmountDone { op, result: unit("umount") },
        Phase::Unmounted | Phase::Mounted | Phase::Dirty(_) => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn given_random_operations_with_reboots_and_compactions_then_the_store_matches_the_model(
        ops in proptest::collection::vec(op_strategy(), 1..40)
    ) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.step(op);
        }
        harness.reboot();
    }
}
