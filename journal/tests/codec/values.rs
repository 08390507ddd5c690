//! The golden values: a fixed set of records and snapshots covering every variant, and the
//! exhaustive matches that number the variants.

use dms_journal::codec::{encode_record, encode_snapshot};
use dms_journal::state::{Decided, Operation};
use dms_journal::{
    Action, BootId, Cleanup, Deaths, Event, FailureClass, HealStep, Healing, HelperIdentity,
    MountStep, OperationId, Outcome, Phase, Record, RequestKey, SpawnNonce, TargetId, TargetKind,
    TargetSpec, TargetState, Timestamp, UnmountStep,
};
use std::collections::BTreeSet;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// The golden set
// ---------------------------------------------------------------------------------------

pub fn tid(s: &str) -> TargetId {
    TargetId::new(s).unwrap()
}

pub fn key(s: &str) -> RequestKey {
    RequestKey::new(s).unwrap()
}

pub const BOOT: BootId = BootId(Uuid::from_u128(0x3f1b2c4d_1111_4222_8333_944455556666));
pub const OP: OperationId = OperationId(Uuid::from_u128(0x0b6c3f5e_7d2a_4a43_9c55_0d4c8b0a1e22));
pub const AT: Timestamp = Timestamp(1_795_000_000_123);

pub fn helper_identity() -> HelperIdentity {
    HelperIdentity { pid: 4242, start_ticks: 987_654_321, boot: BOOT }
}

pub fn s3_spec() -> TargetSpec {
    TargetSpec {
        kind: TargetKind::S3 {
            secret_ref: "https://barbican:9311/v1/secrets/5c0a7f1e-0d1b-4c55-9a57-3c2b1e0f9d88"
                .to_owned(),
        },
        mount_path: "/var/lib/dms/mnt/target-1".to_owned(),
    }
}

pub fn nfs_spec() -> TargetSpec {
    TargetSpec {
        kind: TargetKind::Nfs {
            export: "nfs.example:/exports/backup".to_owned(),
            options: "vers=4.1,ro".to_owned(),
        },
        mount_path: "/var/lib/dms/mnt/target-2".to_owned(),
    }
}

pub fn full_cleanup() -> Cleanup {
    Cleanup { helper: Some(helper_identity()), mount: true, pid_file: true }
}

pub fn rec(event: Event) -> Record {
    Record {
        target: tid("target-1"),
        at: AT,
        boot: BOOT,
        request: Some(key("0b6c3f5e-7d2a-4a43-9c55-0d4c8b0a1e22")),
        op: Some(OP),
        event,
    }
}

/// A reconciler observation: no request, no operation.
pub fn observation(event: Event) -> Record {
    Record { request: None, op: None, ..rec(event) }
}

pub fn golden_records() -> Vec<(&'static str, Record)> {
    let path = "/var/lib/dms/mnt/target-1".to_owned();
    vec![
        ("record-01-requested-s3", rec(Event::Requested { spec: s3_spec() })),
        (
            "record-02-requested-nfs",
            Record { target: tid("target-2"), ..rec(Event::Requested { spec: nfs_spec() }) },
        ),
        ("record-03-creds-fetched", rec(Event::CredsFetched)),
        ("record-04-spawned", rec(Event::Spawned { helper: helper_identity() })),
        ("record-05-verified", rec(Event::Verified)),
        ("record-06-unmount-requested", rec(Event::UnmountRequested { mount_path: path.clone() })),
        ("record-07-helper-stopped", rec(Event::HelperStopped)),
        ("record-08-unmounted", rec(Event::Unmounted)),
        (
            "record-09-failed-final",
            rec(Event::Failed {
                reason: "Failed to fetch credentials: 403 Forbidden".to_owned(),
                class: FailureClass::Final,
            }),
        ),
        (
            "record-10-failed-uncertain",
            rec(Event::Failed {
                reason: "Mount verification failed: tïmeout ✓ after 30s".to_owned(),
                class: FailureClass::Uncertain(full_cleanup()),
            }),
        ),
        (
            "record-11-answered-mounted",
            rec(Event::Answered {
                outcome: Outcome::Mounted { kind: "s3".to_owned(), path: path.clone() },
            }),
        ),
        (
            "record-12-answered-already-mounted",
            rec(Event::Answered { outcome: Outcome::AlreadyMounted { path: path.clone() } }),
        ),
        (
            "record-13-answered-unmounted",
            rec(Event::Answered { outcome: Outcome::Unmounted { path: path.clone() } }),
        ),
        (
            "record-14-answered-not-mounted",
            rec(Event::Answered { outcome: Outcome::NotMounted { path: String::new() } }),
        ),
        (
            "record-15-answered-failed",
            rec(Event::Answered {
                outcome: Outcome::Failed { reason: "Target target-1 is busy".to_owned() },
            }),
        ),
        (
            "record-16-adopted-with-helper",
            observation(Event::Adopted {
                spec: s3_spec(),
                helper: Some(helper_identity()),
                reason: "live helper with PID file".to_owned(),
            }),
        ),
        (
            "record-17-adopted-without-helper",
            observation(Event::Adopted {
                spec: nfs_spec(),
                helper: None,
                reason: "interrupted mount had completed".to_owned(),
            }),
        ),
        (
            "record-18-lost",
            observation(Event::Lost {
                reason: "new boot".to_owned(),
                cleanup: Cleanup { helper: None, mount: true, pid_file: false },
            }),
        ),
        (
            "record-19-abandoned",
            Record {
                op: None,
                ..rec(Event::Abandoned {
                    reason: "interrupted before Spawned".to_owned(),
                    cleanup: Cleanup {
                        helper: Some(helper_identity()),
                        mount: false,
                        pid_file: true,
                    },
                })
            },
        ),
        ("record-20-cleaned", observation(Event::Cleaned { what: "removed PID file".to_owned() })),
        ("record-21-detached", rec(Event::Detached { cleanup: full_cleanup() })),
        ("record-22-spawn-intended", rec(Event::SpawnIntended { nonce: nonce() })),
        (
            "record-23-helper-died",
            Record {
                request: None,
                ..rec(Event::HelperDied {
                    helper: helper_identity(),
                    cause: "signal: 9 (SIGKILL)".to_owned(),
                    deaths: deaths(),
                })
            },
        ),
    ]
}

/// Two deaths of three healed, in a window that began at `AT`.
pub fn deaths() -> Deaths {
    Deaths { count: 2, limit: 3, since: AT }
}

pub fn healing(step: HealStep) -> Phase {
    Phase::Healing(Healing { step, deaths: deaths() })
}

pub fn heal_op() -> Operation {
    Operation { id: Some(OP), request: None, action: Action::Heal, started_at: AT }
}

/// A fixed spawn nonce (its bytes are pinned like every other value's).
pub fn nonce() -> SpawnNonce {
    SpawnNonce::from_u128(0x5a5a_0000_1111_4222_8333_4444_5555_6666)
}

pub fn decided(outcome: Outcome, at: u64) -> Decided {
    Decided { outcome, at: Timestamp(at) }
}

pub fn snapshot(phase: Phase, spec: Option<TargetSpec>, op: Option<Operation>) -> TargetState {
    TargetState {
        phase,
        spec,
        op,
        updated_at: AT,
        boot: Some(BOOT),
        records: 3,
        ..TargetState::new(tid("target-1"))
    }
}

pub fn mount_op() -> Operation {
    Operation {
        id: Some(OP),
        request: Some(key("req-mount-1")),
        action: Action::Mount,
        started_at: Timestamp(1_795_000_000_000),
    }
}

pub fn unmount_op() -> Operation {
    Operation { id: None, request: None, action: Action::Unmount, started_at: AT }
}

pub fn golden_snapshots() -> Vec<(&'static str, TargetState)> {
    // The rich one: a helper, an operation in flight and decided requests.
    let mut spawned =
        snapshot(Phase::Mounting(MountStep::Spawned), Some(s3_spec()), Some(mount_op()));
    spawned.helper = Some(helper_identity());
    spawned.records = 17;
    spawned.requests.insert(
        key("req-mount-0"),
        decided(
            Outcome::Mounted {
                kind: "s3".to_owned(),
                path: "/var/lib/dms/mnt/target-1".to_owned(),
            },
            1_794_000_000_000,
        ),
    );
    spawned.requests.insert(
        key("req-unmount-0"),
        decided(Outcome::Failed { reason: "Unmount failed: busy".to_owned() }, 1_794_500_000_000),
    );
    let mut mounted = snapshot(Phase::Mounted, Some(nfs_spec()), None);
    mounted.requests.insert(
        key("req-nfs"),
        decided(Outcome::AlreadyMounted { path: "/var/lib/dms/mnt/target-2".to_owned() }, 7),
    );
    let mut helper_stopped = snapshot(
        Phase::Unmounting(UnmountStep::HelperStopped),
        Some(s3_spec()),
        Some(unmount_op()),
    );
    helper_stopped
        .requests
        .insert(key("req-x"), decided(Outcome::NotMounted { path: "/elsewhere".to_owned() }, 9));
    helper_stopped.requests.insert(
        key("req-y"),
        decided(Outcome::Unmounted { path: "/var/lib/dms/mnt/target-1".to_owned() }, 10),
    );
    let mut healing_spawned =
        snapshot(healing(HealStep::Spawned), Some(s3_spec()), Some(heal_op()));
    healing_spawned.helper = Some(helper_identity());
    let mut dirty = snapshot(Phase::Dirty(full_cleanup()), Some(s3_spec()), None);
    dirty.helper = Some(helper_identity());
    vec![
        ("snapshot-1-unmounted-fresh", TargetState::new(tid("t"))),
        (
            "snapshot-2-mounting-requested",
            snapshot(Phase::Mounting(MountStep::Requested), Some(nfs_spec()), Some(mount_op())),
        ),
        (
            "snapshot-3-mounting-creds-fetched",
            snapshot(Phase::Mounting(MountStep::CredsFetched), Some(s3_spec()), Some(mount_op())),
        ),
        ("snapshot-4-mounting-spawned", spawned),
        ("snapshot-5-mounted", mounted),
        (
            "snapshot-6-unmounting-requested",
            snapshot(
                Phase::Unmounting(UnmountStep::Requested),
                Some(s3_spec()),
                Some(unmount_op()),
            ),
        ),
        ("snapshot-7-unmounting-helper-stopped", helper_stopped),
        ("snapshot-8-dirty", dirty),
        (
            "snapshot-10-healing-dead",
            snapshot(healing(HealStep::Dead), Some(s3_spec()), Some(heal_op())),
        ),
        (
            "snapshot-11-healing-spawn-intended",
            snapshot(healing(HealStep::SpawnIntended(nonce())), Some(s3_spec()), Some(heal_op())),
        ),
        ("snapshot-12-healing-spawned", healing_spawned),
        (
            "snapshot-13-healing-detached",
            snapshot(healing(HealStep::Detached), Some(s3_spec()), Some(heal_op())),
        ),
        (
            "snapshot-9-mounting-spawn-intended",
            snapshot(
                Phase::Mounting(MountStep::SpawnIntended(nonce())),
                Some(s3_spec()),
                Some(mount_op()),
            ),
        ),
    ]
}

/// Every golden value, encoded.
pub fn golden_set() -> Vec<(&'static str, Vec<u8>)> {
    let records = golden_records().into_iter().map(|(n, r)| (n, encode_record(&r).unwrap()));
    let snapshots = golden_snapshots().into_iter().map(|(n, s)| (n, encode_snapshot(&s).unwrap()));
    records.chain(snapshots).collect()
}

// ---------------------------------------------------------------------------------------
// Coverage of the golden set. The matches are exhaustive on purpose: a new variant does not
// compile until it is given a number here, and then fails the coverage test until a golden
// value uses it.
// ---------------------------------------------------------------------------------------

pub fn event_variant(e: &Event) -> u8 {
    match e {
        Event::Requested { .. } => 0,
        Event::CredsFetched => 1,
        Event::Spawned { .. } => 2,
        Event::Verified => 3,
        Event::UnmountRequested { .. } => 4,
        Event::HelperStopped => 5,
        Event::Unmounted => 6,
        Event::Failed { .. } => 7,
        Event::Answered { .. } => 8,
        Event::Adopted { .. } => 9,
        Event::Lost { .. } => 10,
        Event::Abandoned { .. } => 11,
        Event::Cleaned { .. } => 12,
        Event::Detached { .. } => 13,
        Event::SpawnIntended { .. } => 14,
        Event::HelperDied { .. } => 15,
    }
}
pub const EVENT_VARIANTS: u8 = 16;

pub fn kind_variant(k: &TargetKind) -> u8 {
    match k {
        TargetKind::S3 { .. } => 0,
        TargetKind::Nfs { .. } => 1,
    }
}

pub fn class_variant(c: &FailureClass) -> u8 {
    match c {
        FailureClass::Final => 0,
        FailureClass::Uncertain(_) => 1,
    }
}

pub fn outcome_variant(o: &Outcome) -> u8 {
    match o {
        Outcome::Mounted { .. } => 0,
        Outcome::AlreadyMounted { .. } => 1,
        Outcome::Unmounted { .. } => 2,
        Outcome::NotMounted { .. } => 3,
        Outcome::Failed { .. } => 4,
    }
}

pub fn phase_variant(p: &Phase) -> u8 {
    match p {
        Phase::Unmounted => 0,
        Phase::Mounting(MountStep::Requested) => 1,
        Phase::Mounting(MountStep::CredsFetched) => 2,
        Phase::Mounting(MountStep::Spawned) => 3,
        Phase::Mounted => 4,
        Phase::Unmounting(UnmountStep::Requested) => 5,
        Phase::Unmounting(UnmountStep::HelperStopped) => 6,
        Phase::Dirty(_) => 7,
        Phase::Mounting(MountStep::SpawnIntended(_)) => 8,
        Phase::Healing(Healing { step: HealStep::Dead, .. }) => 9,
        Phase::Healing(Healing { step: HealStep::SpawnIntended(_), .. }) => 10,
        Phase::Healing(Healing { step: HealStep::Spawned, .. }) => 11,
        Phase::Healing(Healing { step: HealStep::Detached, .. }) => 12,
    }
}

pub fn action_variant(a: &Action) -> u8 {
    match a {
        Action::Mount => 0,
        Action::Unmount => 1,
        Action::Heal => 2,
    }
}

pub fn all(n: u8) -> BTreeSet<u8> {
    (0..n).collect()
}
