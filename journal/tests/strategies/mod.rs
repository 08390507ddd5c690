//! proptest strategies for journal values: every `Record` and `TargetState` the types can
//! express with valid identifiers (validation happens in the id constructors, so strings
//! the constructors refuse are never generated here; the codec tests feed those in as raw
//! bytes instead).
//!
//! Used by `tests/codec.rs`; other test files may `mod strategies;` it too.

#![allow(dead_code)]

use dms_journal::state::{Decided, Operation};
use dms_journal::{
    Action, BootId, Cleanup, Event, FailureClass, HelperIdentity, MountStep, OperationId, Outcome,
    Phase, Record, RequestKey, SpawnNonce, TargetId, TargetKind, TargetSpec, TargetState,
    Timestamp, UnmountStep,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use uuid::Uuid;

/// Free text as it appears in reasons, paths and secret refs: any Unicode, control
/// characters included (records do not validate these fields).
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9/ :._-]{0,24}", 1 => any::<String>()]
}

pub fn target_id() -> impl Strategy<Value = TargetId> {
    "[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}".prop_map(|s| TargetId::new(&s).expect("valid id"))
}

/// Printable, whitespace-free tokens, some of them multi-byte; at most 3 bytes a char, so
/// 80 chars stay under `RequestKey::MAX_LEN` bytes.
pub fn request_key() -> impl Strategy<Value = RequestKey> {
    "[!-~\u{a1}-\u{17f}\u{4e00}-\u{4e20}]{1,80}"
        .prop_map(|s| RequestKey::new(&s).expect("valid key"))
}

pub fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

pub fn boot_id() -> impl Strategy<Value = BootId> {
    uuid().prop_map(BootId)
}

pub fn operation_id() -> impl Strategy<Value = OperationId> {
    uuid().prop_map(OperationId)
}

pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<u64>().prop_map(Timestamp)
}

pub fn helper() -> impl Strategy<Value = HelperIdentity> {
    (any::<u32>(), any::<u64>(), boot_id()).prop_map(|(pid, start_ticks, boot)| HelperIdentity {
        pid,
        start_ticks,
        boot,
    })
}

pub fn kind() -> impl Strategy<Value = TargetKind> {
    prop_oneof![
        text().prop_map(|secret_ref| TargetKind::S3 { secret_ref }),
        (text(), text()).prop_map(|(export, options)| TargetKind::Nfs { export, options }),
    ]
}

pub fn spec() -> impl Strategy<Value = TargetSpec> {
    (kind(), text()).prop_map(|(kind, mount_path)| TargetSpec { kind, mount_path })
}

pub fn cleanup() -> impl Strategy<Value = Cleanup> {
    (option::of(helper()), any::<bool>(), any::<bool>())
        .prop_map(|(helper, mount, pid_file)| Cleanup { helper, mount, pid_file })
}

pub fn failure_class() -> impl Strategy<Value = FailureClass> {
    prop_oneof![Just(FailureClass::Final), cleanup().prop_map(FailureClass::Uncertain)]
}

pub fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (text(), text()).prop_map(|(kind, path)| Outcome::Mounted { kind, path }),
        text().prop_map(|path| Outcome::AlreadyMounted { path }),
        text().prop_map(|path| Outcome::Unmounted { path }),
        text().prop_map(|path| Outcome::NotMounted { path }),
        text().prop_map(|reason| Outcome::Failed { reason }),
    ]
}

/// Every `Event` variant, with equal weight.
pub fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        spec().prop_map(|spec| Event::Requested { spec }),
        Just(Event::CredsFetched),
        helper().prop_map(|helper| Event::Spawned { helper }),
        Just(Event::Verified),
        text().prop_map(|mount_path| Event::UnmountRequested { mount_path }),
        Just(Event::HelperStopped),
        Just(Event::Unmounted),
        (text(), failure_class()).prop_map(|(reason, class)| Event::Failed { reason, class }),
        outcome().prop_map(|outcome| Event::Answered { outcome }),
        (spec(), option::of(helper()), text()).prop_map(|(spec, helper, reason)| Event::Adopted {
            spec,
            helper,
            reason
        }),
        (text(), cleanup()).prop_map(|(reason, cleanup)| Event::Lost { reason, cleanup }),
        (text(), cleanup()).prop_map(|(reason, cleanup)| Event::Abandoned { reason, cleanup }),
        text().prop_map(|what| Event::Cleaned { what }),
        cleanup().prop_map(|cleanup| Event::Detached { cleanup }),
        any::<u128>().prop_map(|n| Event::SpawnIntended { nonce: SpawnNonce::from_u128(n) }),
    ]
}

pub fn record() -> impl Strategy<Value = Record> {
    (
        target_id(),
        timestamp(),
        boot_id(),
        option::of(request_key()),
        option::of(operation_id()),
        event(),
    )
        .prop_map(|(target, at, boot, request, op, event)| Record {
            target,
            at,
            boot,
            request,
            op,
            event,
        })
}

pub fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Unmounted),
        Just(Phase::Mounting(MountStep::Requested)),
        Just(Phase::Mounting(MountStep::CredsFetched)),
        Just(Phase::Mounting(MountStep::Spawned)),
        Just(Phase::Mounted),
        Just(Phase::Unmounting(UnmountStep::Requested)),
        Just(Phase::Unmounting(UnmountStep::HelperStopped)),
        cleanup().prop_map(Phase::Dirty),
        any::<u128>()
            .prop_map(|n| Phase::Mounting(MountStep::SpawnIntended(SpawnNonce::from_u128(n)))),
    ]
}

pub fn operation() -> impl Strategy<Value = Operation> {
    (
        option::of(operation_id()),
        option::of(request_key()),
        prop_oneof![Just(Action::Mount), Just(Action::Unmount)],
        timestamp(),
    )
        .prop_map(|(id, request, action, started_at)| Operation {
            id,
            request,
            action,
            started_at,
        })
}

pub fn decided() -> impl Strategy<Value = Decided> {
    (outcome(), timestamp()).prop_map(|(outcome, at)| Decided { outcome, at })
}

/// Any target state the types can express (not only the reachable ones: a snapshot must
/// round-trip whatever it holds).
pub fn target_state() -> impl Strategy<Value = TargetState> {
    (
        target_id(),
        phase(),
        option::of(spec()),
        option::of(helper()),
        option::of(operation()),
        btree_map(request_key(), decided(), 0..6),
        (timestamp(), option::of(boot_id()), any::<u64>()),
    )
        .prop_map(
            |(target, phase, spec, helper, op, requests, (updated_at, boot, records))| {
                TargetState { target, phase, spec, helper, op, requests, updated_at, boot, records }
            },
        )
}

/// A few records, for tests that need a batch.
pub fn records(max: usize) -> impl Strategy<Value = Vec<Record>> {
    vec(record(), 0..max)
}
