//! Given/when/then tests of the decision function: every legal transition, every refusal.
#![allow(clippy::unwrap_used)]

mod support;

use dms_journal::machine::MountFailure;
use dms_journal::SpawnNonce;
use dms_journal::{
    Cause, Cleanup, Command, Decision, Effect, Event, FailureClass, MountStep, Outage, Outcome,
    Phase, Rejection, Timestamp,
};
use support::*;

#[test]
fn given_unmounted_when_s3_mount_runs_its_chain_then_requested_credsfetched_spawned_verified() {
    let mut rig = Rig::new("t1");
    let d = rig.ok(mount(op(1), key("k1"), s3("t1")));
    assert_eq!(Rig::events(&d), ["Requested"]);
    assert_eq!(
        d.effects,
        [Effect::FetchCredentials {
            op: op(1),
            secret_ref: "https://barbican:9311/v1/secrets/t1".into()
        }]
    );
    assert_eq!(rig.state.phase, Phase::Mounting(MountStep::Requested));

    // The spawn's nonce is journaled with the credentials' arrival, before the spawn.
    let nonce = SpawnNonce::from_u128(7);
    let d = rig.ok(Command::CredsFetched { op: op(1), result: Ok(()), nonce });
    assert_eq!(Rig::events(&d), ["CredsFetched", "SpawnIntended"]);
    assert_eq!(d.records[1].event, Event::SpawnIntended { nonce });
    assert_eq!(d.effects, [Effect::SpawnHelper { op: op(1), mount_path: path_of("t1"), nonce }]);
    assert!(d.effects[0].needs_write_ahead(), "the intent is durable before the spawn");
    assert_eq!(rig.state.phase, Phase::Mounting(MountStep::SpawnIntended(nonce)));

    let d = rig.ok(Command::HelperSpawned { op: op(1), result: Ok(helper(42)) });
    assert_eq!(Rig::events(&d), ["Spawned"]);
    assert_eq!(
        d.effects,
        [Effect::VerifyMount { op: op(1), helper: helper(42), mount_path: path_of("t1") }]
    );
    assert_eq!(rig.state.helper, Some(helper(42)));

    let d = rig.ok(Command::MountChecked { op: op(1), result: Ok(()) });
    assert_eq!(Rig::events(&d), ["Verified"]);
    let outcome = Outcome::Mounted { kind: "s3".into(), path: path_of("t1") };
    assert_eq!(d.effects, [Effect::Reply { request: key("k1"), outcome: outcome.clone() }]);
    assert_eq!(rig.state.phase, Phase::Mounted);
    assert!(rig.state.op.is_none());
    assert_eq!(rig.state.requests[&key("k1").unwrap()].outcome, outcome);
    // Every record carries the context.
    assert!(d.records.iter().all(|r| r.request == key("k1") && r.op == Some(op(1))));
    assert!(d.records.iter().all(|r| r.at == clock().now && r.boot == clock().boot));
}

#[test]
fn given_unmounted_when_nfs_mount_succeeds_then_requested_then_verified_without_creds() {
    let mut rig = Rig::new("n1");
    let d = rig.ok(mount(op(1), key("k1"), nfs("n1")));
    assert_eq!(Rig::events(&d), ["Requested"]);
    assert!(
        matches!(&d.effects[..], [Effect::MountNfs { options, .. }] if options == "nosuid,nodev")
    );
    let d = rig.ok(Command::MountChecked { op: op(1), result: Ok(()) });
    assert_eq!(Rig::events(&d), ["Verified"]);
    assert!(
        matches!(&d.effects[..], [Effect::Reply { outcome: Outcome::Mounted { kind, .. }, .. }] if kind == "nfs")
    );
    assert!(rig.state.helper.is_none());
}

#[test]
fn given_requested_when_credentials_fail_then_failed_final_and_error_reply() {
    let mut rig = Rig::new("t1");
    rig.ok(mount(op(1), key("k1"), s3("t1")));
    let d = rig.ok(Command::CredsFetched {
        op: op(1),
        result: Err("Barbican returned 401".into()),
        nonce: SpawnNonce::from_u128(7),
    });
    let reason = worded(Cause::Credentials("Barbican returned 401".into()));
    assert_eq!(
        Rig::last_event(&d),
        &Event::Failed { reason: reason.clone(), class: FailureClass::Final }
    );
    assert_eq!(
        d.effects,
        [Effect::Reply { request: key("k1"), outcome: Outcome::Failed { reason } }]
    );
    assert_eq!(rig.state.phase, Phase::Unmounted);
}

#[test]
fn given_creds_fetched_when_spawn_fails_then_failed_final() {
    let mut rig = Rig::new("t1");
    rig.ok(mount(op(1), key("k1"), s3("t1")));
    rig.ok(Command::CredsFetched { op: op(1), result: Ok(()), nonce: SpawnNonce::from_u128(7) });
    let d = rig.ok(Command::HelperSpawned { op: op(1), result: Err("ENOENT".into()) });
    assert!(
        matches!(Rig::last_event(&d), Event::Failed { class: FailureClass::Final, reason } if *reason == worded(Cause::HelperStart("ENOENT".into())))
    );
    assert_eq!(rig.state.phase, Phase::Unmounted);
}

#[test]
fn given_spawned_when_verification_fails_then_uncertain_cleanup_then_cleaned() {
    let mut rig = Rig::new("t1");
    rig.ok(mount(op(1), key("k1"), s3("t1")));
    rig.ok(Command::CredsFetched { op: op(1), result: Ok(()), nonce: SpawnNonce::from_u128(7) });
    rig.ok(Command::HelperSpawned { op: op(1), result: Ok(helper(7)) });
    let d = rig.ok(Command::MountChecked {
        op: op(1),
        result: Err(MountFailure {
            reason: "helper exited with status 0".into(),
            maybe_mounted: false,
        }),
    });
    let cleanup = Cleanup { helper: Some(helper(7)), mount: true, pid_file: true };
    let reason = worded(Cause::MountVerification("helper exited with status 0".into()));
    assert_eq!(
        Rig::last_event(&d),
        &Event::Failed { reason: reason.clone(), class: FailureClass::Uncertain(cleanup) }
    );
    assert_eq!(
        d.effects,
        [
            Effect::Cleanup { cleanup, mount_path: Some(path_of("t1")) },
            Effect::Reply { request: key("k1"), outcome: Outcome::Failed { reason } },
        ]
    );
    assert_eq!(rig.state.phase, Phase::Dirty(cleanup));

    // A failed cleanup changes nothing; a successful one records Cleaned.
    let d = rig.ok(Command::CleanupDone { result: Err("EBUSY".into()) });
    assert!(d.records.is_empty() && d.effects.is_empty());
    assert_eq!(rig.state.phase, Phase::Dirty(cleanup));
    let d = rig.ok(Command::CleanupDone { result: Ok("helper stopped, mount detached".into()) });
    assert_eq!(Rig::events(&d), ["Cleaned"]);
    assert_eq!(rig.state.phase, Phase::Unmounted);
    assert!(rig.state.helper.is_none());
}

#[test]
fn given_nfs_requested_when_mount_fails_cleanly_or_times_out_then_final_or_uncertain() {
    let mut rig = Rig::new("n1");
    rig.ok(mount(op(1), key("k1"), nfs("n1")));
    let d = rig.ok(Command::MountChecked {
        op: op(1),
        result: Err(MountFailure {
            reason: "access denied by server".into(),
            maybe_mounted: false,
        }),
    });
    assert!(
        matches!(Rig::last_event(&d), Event::Failed { class: FailureClass::Final, reason } if *reason == worded(Cause::NfsMount("access denied by server".into())))
    );

    let mut rig = Rig::new("n2");
    rig.ok(mount(op(2), key("k2"), nfs("n2")));
    rig.ok(Command::MountChecked {
        op: op(2),
        result: Err(MountFailure { reason: "timed out after 30s".into(), maybe_mounted: true }),
    });
    assert_eq!(
        rig.state.phase,
        Phase::Dirty(Cleanup { helper: None, mount: true, pid_file: false })
    );
}

#[test]
fn given_mounted_s3_when_unmounted_then_detached_answered_and_then_the_helper_stopped() {
    let mut rig = Rig::mounted_s3("t1", 9);
    let d = rig.ok(Command::Unmount { op: op(2), request: key("u1"), mount_path: path_of("t1") });
    assert_eq!(Rig::events(&d), ["UnmountRequested"]);
    assert_eq!(d.effects, [Effect::Detach { op: op(2), mount_path: path_of("t1") }]);
    let d = rig.ok(Command::Detached { op: op(2), result: Ok(()) });
    assert_eq!(Rig::events(&d), ["Detached"]);
    // The answer first, then the helper and its PID file (the target is dirty with those
    // until the cleanup says they are gone), then the emptied directory.
    let cleanup = Cleanup { helper: Some(helper(9)), mount: false, pid_file: true };
    assert_eq!(
        d.effects,
        [
            Effect::Reply {
                request: key("u1"),
                outcome: Outcome::Unmounted { path: path_of("t1") }
            },
            Effect::Cleanup { cleanup, mount_path: Some(path_of("t1")) },
            Effect::RemoveMountPoint { mount_path: path_of("t1") },
        ]
    );
    assert_eq!(rig.state.phase, Phase::Dirty(cleanup));
    assert!(rig.state.op.is_none(), "the unmount is over");
    let d = rig.ok(Command::CleanupDone { result: Ok("helper pid 9 stopped".into()) });
    assert_eq!(Rig::events(&d), ["Cleaned"]);
    assert_eq!(rig.state.phase, Phase::Unmounted);
    assert!(rig.state.helper.is_none());
    assert_eq!(
        rig.state.requests[&key("u1").unwrap()].outcome,
        Outcome::Unmounted { path: path_of("t1") }
    );
}

#[test]
fn given_mounted_nfs_when_unmounted_then_no_helper_step() {
    let mut rig = Rig::mounted_nfs("n1");
    let d = rig.ok(Command::Unmount { op: op(2), request: key("u1"), mount_path: path_of("n1") });
    assert_eq!(d.effects, [Effect::Unmount { op: op(2), mount_path: path_of("n1") }]);
    // An NFS target has no FUSE mount to detach.
    assert!(matches!(
        rig.run(Command::Detached { op: op(2), result: Ok(()) }),
        Err(Rejection::Unexpected { .. })
    ));
    let d = rig.ok(Command::UnmountDone { op: op(2), result: Ok(()) });
    assert_eq!(Rig::events(&d), ["Unmounted"]);
}

#[test]
fn given_unmounting_when_detach_or_umount_fails_then_uncertain_dirty() {
    let mut rig = Rig::mounted_s3("t1", 9);
    rig.ok(Command::Unmount { op: op(2), request: key("u1"), mount_path: path_of("t1") });
    let d = rig.ok(Command::Detached { op: op(2), result: Err("Operation not permitted".into()) });
    let cleanup = Cleanup { helper: Some(helper(9)), mount: true, pid_file: true };
    assert!(
        matches!(Rig::last_event(&d), Event::Failed { class: FailureClass::Uncertain(c), reason } if *c == cleanup && *reason == worded(Cause::Unmount("Operation not permitted".into())))
    );
    assert_eq!(rig.state.phase, Phase::Dirty(cleanup));

    let mut rig = Rig::mounted_nfs("n1");
    rig.ok(Command::Unmount { op: op(2), request: key("u1"), mount_path: path_of("n1") });
    let d = rig.ok(Command::UnmountDone { op: op(2), result: Err("device is busy".into()) });
    assert!(
        matches!(Rig::last_event(&d), Event::Failed { class: FailureClass::Uncertain(c), .. } if *c == Cleanup { helper: None, mount: true, pid_file: false })
    );
}

#[test]
fn given_mounted_when_mounted_again_at_same_path_then_answered_already_mounted() {
    let mut rig = Rig::mounted_s3("t1", 9);
    let d = rig.ok(mount(op(2), key("k2"), s3("t1")));
    let outcome = Outcome::AlreadyMounted { path: path_of("t1") };
    assert_eq!(Rig::last_event(&d), &Event::Answered { outcome: outcome.clone() });
    assert_eq!(d.effects, [Effect::Reply { request: key("k2"), outcome }]);
    assert_eq!(rig.state.phase, Phase::Mounted);
    assert_eq!(rig.state.helper, Some(helper(9)));
}

#[test]
fn given_mounted_when_mount_asks_for_another_path_then_error_and_nothing_changes() {
    let mut rig = Rig::mounted_s3("t1", 9);
    let mut other = s3("t1");
    other.mount_path = path_of("elsewhere");
    let d = rig.ok(mount(op(2), key("k2"), other));
    let reason = worded(Cause::MountedElsewhere { target: target("t1"), path: path_of("t1") });
    assert_eq!(Rig::last_event(&d), &Event::Answered { outcome: Outcome::Failed { reason } });
    assert_eq!(rig.state.mount_path(), Some(path_of("t1").as_str()));
}

#[test]
fn given_unmounted_or_other_path_when_unmount_then_answered_not_mounted() {
    let mut rig = Rig::new("t1");
    let d = rig.ok(Command::Unmount { op: op(1), request: key("u1"), mount_path: path_of("t1") });
    assert_eq!(
        Rig::last_event(&d),
        &Event::Answered { outcome: Outcome::NotMounted { path: path_of("t1") } }
    );
    let mut rig = Rig::mounted_s3("t1", 9);
    let d = rig.ok(Command::Unmount { op: op(2), request: key("u2"), mount_path: path_of("x") });
    assert_eq!(
        Rig::last_event(&d),
        &Event::Answered { outcome: Outcome::NotMounted { path: path_of("x") } }
    );
    assert_eq!(rig.state.phase, Phase::Mounted);
}

#[test]
fn given_a_decided_request_when_it_is_redelivered_then_same_outcome_and_no_records() {
    // Success, failure and plain answers are all replayed verbatim.
    let mut rig = Rig::mounted_s3("t1", 9);
    let again = rig.ok(mount(op(5), key("m1"), s3("t1")));
    assert!(again.records.is_empty());
    assert_eq!(
        again.effects,
        [Effect::Reply {
            request: key("m1"),
            outcome: Outcome::Mounted { kind: "s3".into(), path: path_of("t1") }
        }]
    );
    // Even after the target moved on, an old request is not redone.
    rig.ok(Command::Unmount { op: op(2), request: key("u1"), mount_path: path_of("t1") });
    rig.ok(Command::Detached { op: op(2), result: Ok(()) });
    rig.ok(Command::CleanupDone { result: Ok("helper pid 9 stopped".into()) });
    let stale = rig.ok(mount(op(6), key("m1"), s3("t1")));
    assert!(stale.records.is_empty(), "a redelivered old mount must not mount again");
    assert_eq!(rig.state.phase, Phase::Unmounted);

    let mut rig = Rig::new("t2");
    rig.ok(mount(op(1), key("f1"), s3("t2")));
    rig.ok(Command::CredsFetched {
        op: op(1),
        result: Err("404".into()),
        nonce: SpawnNonce::from_u128(7),
    });
    let again = rig.ok(mount(op(2), key("f1"), s3("t2")));
    assert!(again.records.is_empty());
    assert!(
        matches!(&again.effects[..], [Effect::Reply { outcome: Outcome::Failed { reason }, .. }] if *reason == worded(Cause::Credentials("404".into())))
    );

    let mut rig = Rig::new("t3");
    rig.ok(Command::Unmount { op: op(1), request: key("a1"), mount_path: path_of("t3") });
    let again =
        rig.ok(Command::Unmount { op: op(2), request: key("a1"), mount_path: path_of("t3") });
    assert!(again.records.is_empty());
}

/// The ordering rule (README, "Ordering"): a request is bound to its first journaled
/// outcome, so an old unmount that comes back after a newer mount replays its answer and
/// leaves the newer mount alone.
#[test]
fn given_a_newer_mount_when_an_old_unmount_is_redelivered_then_it_replays_and_the_mount_stays() {
    let mut rig = Rig::mounted_s3("t1", 9);
    rig.ok(Command::Unmount { op: op(2), request: key("u-old"), mount_path: path_of("t1") });
    rig.ok(Command::Detached { op: op(2), result: Ok(()) });
    rig.ok(Command::CleanupDone { result: Ok("helper pid 9 stopped".into()) });
    rig.ok(mount(op(3), key("m-new"), s3("t1")));
    rig.ok(Command::CredsFetched { op: op(3), result: Ok(()), nonce: SpawnNonce::from_u128(7) });
    rig.ok(Command::HelperSpawned { op: op(3), result: Ok(helper(77)) });
    rig.ok(Command::MountChecked { op: op(3), result: Ok(()) });
    assert_eq!(rig.state.phase, Phase::Mounted);

    let stale =
        rig.ok(Command::Unmount { op: op(4), request: key("u-old"), mount_path: path_of("t1") });
    assert!(stale.records.is_empty(), "a stale unmount must not journal anything");
    assert_eq!(
        stale.effects,
        [Effect::Reply {
            request: key("u-old"),
            outcome: Outcome::Unmounted { path: path_of("t1") }
        }]
    );
    assert_eq!(rig.state.phase, Phase::Mounted);
    assert_eq!(rig.state.helper, Some(helper(77)));
}

#[test]
fn given_an_operation_in_flight_when_another_request_arrives_then_busy() {
    let mut rig = Rig::new("t1");
    rig.ok(mount(op(1), key("k1"), s3("t1")));
    for cmd in [
        mount(op(2), key("k2"), s3("t1")),
        Command::Unmount { op: op(2), request: key("k2"), mount_path: path_of("t1") },
    ] {
        assert!(matches!(rig.run(cmd), Err(Rejection::Busy { .. })));
    }
    // The running request itself, redelivered, is told apart from a competing one.
    assert!(matches!(rig.run(mount(op(3), key("k1"), s3("t1"))), Err(Rejection::InFlight { .. })));
    let mut rig = Rig::mounted_s3("t1", 9);
    rig.ok(Command::Unmount { op: op(2), request: key("u1"), mount_path: path_of("t1") });
    assert!(matches!(rig.run(mount(op(3), key("k3"), s3("t1"))), Err(Rejection::Busy { .. })));
}

#[test]
fn given_an_outcome_for_another_operation_when_decided_then_stale_and_nothing_changes() {
    let mut rig = Rig::new("t1");
    rig.ok(mount(op(1), key("k1"), s3("t1")));
    let before = rig.state.clone();
    assert!(matches!(
        rig.run(Command::CredsFetched {
            op: op(9),
            result: Ok(()),
            nonce: SpawnNonce::from_u128(7)
        }),
        Err(Rejection::StaleOutcome { .. })
    ));
    assert_eq!(rig.state, before);
}

#[test]
fn given_outcomes_that_do_not_fit_the_step_when_decided_then_unexpected() {
    let unexpected = |rig: &mut Rig, cmd: Command| {
        let before = rig.state.clone();
        let r = rig.run(cmd.clone());
        assert!(matches!(r, Err(Rejection::Unexpected { .. })), "{cmd:?} gave {r:?}");
        assert_eq!(rig.state, before);
    };
    // Nothing in flight: every effect outcome is unexpected.
    let mut idle = Rig::new("t0");
    unexpected(
        &mut idle,
        Command::CredsFetched { op: op(1), result: Ok(()), nonce: SpawnNonce::from_u128(7) },
    );
    unexpected(&mut idle, Command::UnmountDone { op: op(1), result: Ok(()) });
    unexpected(&mut idle, Command::CleanupDone { result: Ok("x".into()) });
    // S3 at Requested: only credentials can come next.
    let mut rig = Rig::new("t1");
    rig.ok(mount(op(1), key("k1"), s3("t1")));
    unexpected(&mut rig, Command::HelperSpawned { op: op(1), result: Ok(helper(1)) });
    unexpected(&mut rig, Command::MountChecked { op: op(1), result: Ok(()) });
    unexpected(&mut rig, Command::UnmountDone { op: op(1), result: Ok(()) });
    unexpected(&mut rig, Command::Detached { op: op(1), result: Ok(()) });
    // NFS has no credential step.
    let mut rig = Rig::new("n1");
    rig.ok(mount(op(1), key("k1"), nfs("n1")));
    unexpected(
        &mut rig,
        Command::CredsFetched { op: op(1), result: Ok(()), nonce: SpawnNonce::from_u128(7) },
    );
    // S3 at CredsFetched: not verified before spawned.
    let mut rig = Rig::new("t2");
    rig.ok(mount(op(1), key("k1"), s3("t2")));
    rig.ok(Command::CredsFetched { op: op(1), result: Ok(()), nonce: SpawnNonce::from_u128(7) });
    unexpected(&mut rig, Command::MountChecked { op: op(1), result: Ok(()) });
    // Detached: the unmount is over, it cannot be detached twice; an S3 unmount never
    // goes through umount(8).
    let mut rig = Rig::mounted_s3("t3", 3);
    rig.ok(Command::Unmount { op: op(2), request: key("u"), mount_path: path_of("t3") });
    unexpected(&mut rig, Command::UnmountDone { op: op(2), result: Ok(()) });
    rig.ok(Command::Detached { op: op(2), result: Ok(()) });
    unexpected(&mut rig, Command::Detached { op: op(2), result: Ok(()) });
    unexpected(
        &mut rig,
        Command::CredsFetched { op: op(2), result: Ok(()), nonce: SpawnNonce::from_u128(7) },
    );
}

#[test]
fn given_dirty_when_mount_then_refused_with_reason_and_when_unmount_then_cleanup_chain() {
    let mut rig = Rig::dirty_s3("t1", 5);
    let d = rig.ok(mount(op(2), key("k2"), s3("t1")));
    let Phase::Dirty(cleanup) = rig.state.phase else { panic!("{:?}", rig.state.phase) };
    let reason = worded(Cause::NeedsCleanup { target: target("t1"), cleanup });
    assert_eq!(Rig::last_event(&d), &Event::Answered { outcome: Outcome::Failed { reason } });
    assert!(matches!(rig.state.phase, Phase::Dirty(_)));

    let d = rig.ok(Command::Unmount { op: op(3), request: key("u3"), mount_path: path_of("t1") });
    assert_eq!(Rig::events(&d), ["UnmountRequested"]);
    assert_eq!(d.effects, [Effect::Detach { op: op(3), mount_path: path_of("t1") }]);
    rig.ok(Command::Detached { op: op(3), result: Ok(()) });
    let left = Cleanup { helper: Some(helper(5)), mount: false, pid_file: true };
    assert_eq!(rig.state.phase, Phase::Dirty(left));
    rig.ok(Command::CleanupDone { result: Ok("helper pid 5 stopped".into()) });
    assert_eq!(rig.state.phase, Phase::Unmounted);

    // A dirty NFS target (no helper) goes straight to umount.
    let mut rig = Rig::new("n1");
    rig.ok(mount(op(1), key("k1"), nfs("n1")));
    rig.ok(Command::MountChecked {
        op: op(1),
        result: Err(MountFailure { reason: "timeout".into(), maybe_mounted: true }),
    });
    let d = rig.ok(Command::Unmount { op: op(2), request: key("u2"), mount_path: path_of("n1") });
    assert_eq!(d.effects, [Effect::Unmount { op: op(2), mount_path: path_of("n1") }]);
}

#[test]
fn given_a_request_without_a_key_when_mounted_then_works_and_nothing_is_remembered() {
    let mut rig = Rig::new("t1");
    rig.ok(mount(op(1), None, nfs("t1")));
    let d = rig.ok(Command::MountChecked { op: op(1), result: Ok(()) });
    assert!(matches!(&d.effects[..], [Effect::Reply { request: None, .. }]));
    assert!(rig.state.requests.is_empty());
}

/// The legality table, written out independently of `TargetState::check`: for each phase
/// the events that may follow it. Every other (phase, event) pair must be refused.
#[test]
fn given_every_phase_when_any_event_is_checked_then_only_the_table_allows_it() {
    use dms_journal::{HelperIdentity, TargetState};
    let events = |h: HelperIdentity| {
        vec![
            Event::Requested { spec: s3("t") },
            Event::CredsFetched,
            Event::Spawned { helper: h },
            Event::Verified,
            Event::UnmountRequested { mount_path: path_of("t") },
            Event::HelperStopped,
            Event::Unmounted,
            Event::Failed { reason: "r".into(), class: FailureClass::Final },
            Event::Answered { outcome: Outcome::NotMounted { path: path_of("t") } },
            Event::Adopted { spec: s3("t"), helper: Some(h), reason: "r".into() },
            Event::Lost { reason: "r".into(), cleanup: Cleanup::default() },
            Event::Abandoned { reason: "r".into(), cleanup: Cleanup::default() },
            Event::Cleaned { what: "w".into() },
            Event::Detached { cleanup: Cleanup::default() },
        ]
    };
    let s3_requested = {
        let mut r = Rig::new("t");
        r.ok(mount(op(1), key("k"), s3("t")));
        r.state
    };
    let nfs_requested = {
        let mut r = Rig::new("t");
        r.ok(mount(op(1), key("k"), nfs("t")));
        r.state
    };
    let creds = {
        let mut r = Rig { state: s3_requested.clone() };
        r.ok(Command::CredsFetched { op: op(1), result: Ok(()), nonce: SpawnNonce::from_u128(7) });
        r.state
    };
    let spawned = {
        let mut r = Rig { state: creds.clone() };
        r.ok(Command::HelperSpawned { op: op(1), result: Ok(helper(4)) });
        r.state
    };
    let unmounting = |mut r: Rig| {
        r.ok(Command::Unmount { op: op(2), request: key("u"), mount_path: path_of("t") });
        r.state
    };
    let s3_unmounting = unmounting(Rig::mounted_s3("t", 4));
    let nfs_unmounting = unmounting(Rig::mounted_nfs("t"));
    let helper_stopped = {
        let mut r = Rig { state: s3_unmounting.clone() };
        r.written(Event::HelperStopped);
        r.state
    };
    let table: Vec<(&str, TargetState, &[&str])> = vec![
        (
            "unmounted",
            TargetState::new(target("t")),
            &["Requested", "Answered", "Adopted", "Cleaned"],
        ),
        ("s3 requested", s3_requested, &["CredsFetched", "Failed", "Adopted", "Abandoned"]),
        ("nfs requested", nfs_requested, &["Verified", "Failed", "Adopted", "Abandoned"]),
        ("creds fetched", creds, &["Spawned", "Failed", "Adopted", "Abandoned"]),
        ("spawned", spawned, &["Verified", "Failed", "Adopted", "Abandoned"]),
        (
            "mounted",
            Rig::mounted_s3("t", 4).state,
            &["UnmountRequested", "Answered", "Adopted", "Lost"],
        ),
        // `HelperStopped`, and `Unmounted` for S3, are what older daemons wrote.
        ("s3 unmounting", s3_unmounting, &["HelperStopped", "Unmounted", "Failed", "Detached"]),
        ("nfs unmounting", nfs_unmounting, &["Unmounted", "Failed"]),
        ("helper stopped", helper_stopped, &["Unmounted", "Failed", "Detached"]),
        (
            "dirty",
            Rig::dirty_s3("t", 4).state,
            &["UnmountRequested", "Answered", "Adopted", "Cleaned"],
        ),
    ];
    for (name, state, legal) in table {
        for event in events(helper(4)) {
            let expected = legal.contains(&event.name());
            assert_eq!(
                state.check(&event).is_ok(),
                expected,
                "phase {name}: {} should be {}",
                event.name(),
                if expected { "legal" } else { "illegal" }
            );
        }
    }
}

#[test]
fn given_a_mount_that_would_nest_when_decided_then_refused_with_the_other_target_and_nothing_runs()
{
    let mut rig = Rig::new("inner");
    let nested = Some(dms_journal::Nesting {
        other: target("outer"),
        other_path: path_of("outer"),
        relation: dms_journal::Relation::Inside,
    });
    let d = rig.ok(Command::Mount {
        op: op(1),
        request: key("k1"),
        spec: s3("inner"),
        nested: nested.clone(),
        outage: None,
    });
    assert_eq!(Rig::events(&d), ["Answered"]);
    assert!(d.effects.iter().all(|e| matches!(e, Effect::Reply { .. })), "{:?}", d.effects);
    let Event::Answered { outcome: Outcome::Failed { reason } } = Rig::last_event(&d) else {
        panic!("{d:?}")
    };
    let nesting = nested.clone().unwrap();
    assert_eq!(reason, &worded(Cause::Nests { path: path_of("inner"), nesting }));
    assert_eq!(rig.state.phase, Phase::Unmounted);
    // The same request again: the same answer, from the journal.
    let again = rig.ok(mount(op(2), key("k1"), s3("inner")));
    assert!(again.records.is_empty());
    let outcome = Outcome::Failed { reason: reason.clone() };
    assert_eq!(again.effects, [Effect::Reply { request: key("k1"), outcome }]);
}

fn outage() -> Outage {
    Outage {
        server: "10.0.0.5".into(),
        cause: "mount(8) did not finish within 20s".into(),
        since: Timestamp(1_000),
        until: Timestamp(31_000),
    }
}

#[test]
fn given_its_servers_breaker_open_when_an_nfs_mount_is_asked_then_answered_failed_and_nothing_runs()
{
    let mut rig = Rig::new("n1");
    let d = rig.ok(Command::Mount {
        op: op(1),
        request: key("k1"),
        spec: nfs("n1"),
        nested: None,
        outage: Some(outage()),
    });
    assert_eq!(Rig::events(&d), ["Answered"], "no Requested: the target never left Unmounted");
    let [Effect::Reply { request, outcome: Outcome::Failed { reason } }] = &d.effects[..] else {
        panic!("one failed reply and no mount(8): {:?}", d.effects);
    };
    assert_eq!(request, &key("k1"));
    assert_eq!(reason, &worded(Cause::NfsOutage(outage())));
    assert_eq!(rig.state.phase, Phase::Unmounted);
    // The same key later (the breaker closed meanwhile) gets the same answer, not a mount.
    let again = rig.ok(mount(op(2), key("k1"), nfs("n1")));
    assert!(again.records.is_empty());
    assert!(matches!(&again.effects[..], [Effect::Reply { outcome: Outcome::Failed { .. }, .. }]));
}

#[test]
fn given_an_outage_fact_when_an_s3_mount_is_asked_then_it_runs_as_usual() {
    let mut rig = Rig::new("t1");
    let d = rig.ok(Command::Mount {
        op: op(1),
        request: key("k1"),
        spec: s3("t1"),
        nested: None,
        outage: Some(outage()),
    });
    assert_eq!(Rig::events(&d), ["Requested"]);
    assert!(matches!(&d.effects[..], [Effect::FetchCredentials { .. }]), "{:?}", d.effects);
}

/// A helper's exit is a command like any other outcome: with healing off, the target is lost
/// only when it is mounted by exactly that helper (healing: tests/heal.rs).
#[test]
fn given_a_helper_exit_when_decided_then_lost_only_for_the_current_helper_of_a_mounted_target() {
    let exited = |pid| Command::HelperExited {
        helper: helper(pid),
        status: "signal: 9".into(),
        heal: heal_facts(0, vec![]),
    };
    let mut rig = Rig::mounted_s3("t1", 9);
    // Another process (an older helper, a PID reused): nothing.
    assert_eq!(rig.ok(exited(8)), Decision::default());
    let d = rig.ok(exited(9));
    let cleanup = Cleanup { helper: None, mount: true, pid_file: true };
    assert!(
        matches!(Rig::last_event(&d), Event::Lost { reason, cleanup: c } if reason == "helper pid 9 exited (signal: 9)" && *c == cleanup),
        "{d:?}"
    );
    assert!(d.records.iter().all(|r| r.request.is_none() && r.op.is_none()));
    assert_eq!(d.effects, [Effect::Cleanup { cleanup, mount_path: Some(path_of("t1")) }]);
    assert_eq!(rig.state.phase, Phase::Dirty(cleanup));
    // Exits the daemon caused itself (an unmount stops its helper) change nothing.
    let mut rig = Rig::mounted_s3("t2", 9);
    rig.ok(Command::Unmount { op: op(2), request: key("u"), mount_path: path_of("t2") });
    assert_eq!(rig.ok(exited(9)), Decision::default());
    rig.ok(Command::Detached { op: op(2), result: Ok(()) });
    assert_eq!(rig.ok(exited(9)), Decision::default());
    assert_eq!(Rig::new("t3").ok(exited(9)), Decision::default());
}
