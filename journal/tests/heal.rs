//! Healing (issue 29): a mounted target whose helper dies gets a replacement at the same
//! path, journaled step by step, within a bound; past it, or when it cannot be healed, the
//! target is lost with the reason.
#![allow(clippy::unwrap_used)]

mod support;

use dms_journal::machine::{MountFailure, NOT_HEALED_AGAIN};
use dms_journal::{
    Cleanup, Command, Deaths, Effect, Event, HealStep, Healing, Outcome, Phase, Rejection,
    SpawnNonce, Timestamp,
};
use support::*;

const NONCE: SpawnNonce = SpawnNonce::from_u128(0x11);

fn died(pid: u32, heal: dms_journal::machine::HealFacts) -> Command {
    Command::HelperExited { helper: helper(pid), status: "signal: 9 (SIGKILL)".into(), heal }
}

fn ago(secs: u64) -> Timestamp {
    clock().now.saturating_sub_millis(secs * 1000)
}

/// The deaths of a heal: `count` of 3, the window started `since`.
fn deaths(count: u32, since: Timestamp) -> Deaths {
    Deaths { count, limit: 3, since }
}

fn healing(step: HealStep, d: Deaths) -> Phase {
    Phase::Healing(Healing { step, deaths: d })
}

#[test]
fn given_a_mounted_target_whose_helper_dies_when_healed_then_a_replacement_serves_the_same_path() {
    let mut rig = Rig::mounted_s3("t1", 9);
    let d = rig.ok(died(9, heal_facts(3, vec![])));
    let first = deaths(1, clock().now);
    let event =
        Event::HelperDied { helper: helper(9), cause: "signal: 9 (SIGKILL)".into(), deaths: first };
    assert_eq!(d.records.iter().map(|r| &r.event).collect::<Vec<_>>(), [&event]);
    assert_eq!((d.records[0].op, d.records[0].request.clone()), (Some(op(50)), None));
    // The dead mount goes before anything else; the dead helper's PID file is rewritten later.
    let detach = Cleanup { helper: None, mount: true, pid_file: false };
    assert_eq!(d.effects, [Effect::Cleanup { cleanup: detach, mount_path: Some(path_of("t1")) }]);
    assert_eq!((rig.state.phase, rig.state.helper), (healing(HealStep::Dead, first), None));
    assert!(rig.state.phase.in_flight(), "a request waits for the heal");

    let d = rig.ok(Command::CleanupDone { result: Ok("/m/t1 unmounted".into()) });
    assert_eq!(Rig::events(&d), ["Cleaned"]);
    assert_eq!(
        d.effects,
        [Effect::Respawn { op: op(50), after_ms: 0 }],
        "the first heal waits not"
    );
    let d = rig.ok(Command::Respawn { op: op(50), nonce: NONCE });
    assert_eq!(d.records[0].event, Event::SpawnIntended { nonce: NONCE });
    assert_eq!(
        d.effects,
        [Effect::SpawnHelper { op: op(50), mount_path: path_of("t1"), nonce: NONCE }]
    );
    assert!(d.effects[0].needs_write_ahead(), "the intent is durable before the spawn");
    let d = rig.ok(Command::HelperSpawned { op: op(50), result: Ok(helper(10)) });
    assert_eq!(Rig::events(&d), ["Spawned"]);
    let verify = Effect::VerifyMount { op: op(50), helper: helper(10), mount_path: path_of("t1") };
    assert_eq!(d.effects, [verify]);
    let d = rig.ok(Command::MountChecked { op: op(50), result: Ok(()) });
    assert_eq!(Rig::events(&d), ["Verified"]);
    assert!(d.effects.iter().all(|e| !matches!(e, Effect::Reply { request: Some(_), .. })));
    assert_eq!((rig.state.phase, rig.state.helper), (Phase::Mounted, Some(helper(10))));
    assert!(rig.state.op.is_none());

    // For the requester it stayed mounted: the mount's answer is kept, a new one is "already".
    let first_answer = &rig.state.requests[&key("m1").unwrap()].outcome;
    assert!(matches!(first_answer, Outcome::Mounted { .. }));
    let again = rig.ok(mount(op(2), key("m2"), s3("t1")));
    let answer = Outcome::AlreadyMounted { path: path_of("t1") };
    assert_eq!(again.effects, [Effect::Reply { request: key("m2"), outcome: answer }]);
    // The replacement is the one that counts now: its death is healed again, not the old's.
    assert_eq!(rig.ok(died(9, heal_facts(3, vec![]))).records, vec![]);
    assert_eq!(Rig::events(&rig.ok(died(10, heal_facts(3, vec![ago(1)])))), ["HelperDied"]);
}

#[test]
fn given_requests_while_a_target_heals_when_decided_then_they_wait_for_it() {
    let mut rig = Rig::mounted_s3("t1", 9);
    rig.ok(died(9, heal_facts(3, vec![])));
    for command in [
        mount(op(2), key("m2"), s3("t1")),
        Command::Unmount { op: op(3), request: key("u"), mount_path: path_of("t1") },
    ] {
        assert!(matches!(rig.run(command), Err(Rejection::Busy { .. })));
    }
}

#[test]
fn given_earlier_deaths_when_a_helper_dies_then_only_those_in_the_window_count_and_backoff_grows() {
    // Two earlier deaths in the window: the third is healed, after a 2 s backoff.
    let mut rig = Rig::mounted_s3("t1", 9);
    let earlier = vec![ago(700), ago(120), ago(30)]; // the first is outside 10 minutes
    let d = rig.ok(died(9, heal_facts(3, earlier)));
    let third = deaths(3, ago(120));
    assert!(matches!(&d.records[0].event, Event::HelperDied { deaths, .. } if *deaths == third));
    let d = rig.ok(Command::CleanupDone { result: Ok("unmounted".into()) });
    assert_eq!(d.effects, [Effect::Respawn { op: op(50), after_ms: 2000 }]);

    // Three earlier deaths in the window: the fourth is not healed.
    let mut rig = Rig::mounted_s3("t2", 9);
    let d = rig.ok(died(9, heal_facts(3, vec![ago(300), ago(200), ago(100)])));
    let Event::Lost { reason, cleanup } = &d.records[0].event else { panic!("{d:?}") };
    assert_eq!(
        reason,
        &format!("helper died 4 times in 300 s; {NOT_HEALED_AGAIN} (last: signal: 9 (SIGKILL))")
    );
    assert_eq!(*cleanup, Cleanup { helper: None, mount: true, pid_file: true });
    assert!(matches!(rig.state.phase, Phase::Dirty(_)));
}

#[test]
fn given_a_replacement_that_never_mounts_when_checked_then_it_is_one_more_death_until_the_bound() {
    let mut rig = Rig::mounted_s3("t1", 9);
    rig.ok(died(9, heal_facts(3, vec![ago(60)])));
    rig.ok(Command::CleanupDone { result: Ok("unmounted".into()) });
    rig.ok(Command::Respawn { op: op(50), nonce: NONCE });
    rig.ok(Command::HelperSpawned { op: op(50), result: Ok(helper(10)) });
    let exited =
        MountFailure { reason: "the helper exited before mounting".into(), maybe_mounted: false };
    let d = rig.ok(Command::MountChecked { op: op(50), result: Err(exited.clone()) });
    // The failed replacement and whatever it mounted go; then the next attempt.
    let Event::HelperDied { helper: h, deaths: d3, .. } = &d.records[0].event else { panic!() };
    assert_eq!((*h, d3.count), (helper(10), 3));
    let undo = Cleanup { helper: Some(helper(10)), mount: true, pid_file: false };
    assert_eq!(d.effects, [Effect::Cleanup { cleanup: undo, mount_path: Some(path_of("t1")) }]);
    rig.ok(Command::CleanupDone { result: Ok("stopped".into()) });
    rig.ok(Command::Respawn { op: op(50), nonce: SpawnNonce::from_u128(0x12) });
    rig.ok(Command::HelperSpawned { op: op(50), result: Ok(helper(11)) });
    // The fourth death in the window: given up, everything of the last one cleaned.
    let d = rig.ok(Command::MountChecked { op: op(50), result: Err(exited) });
    let Event::Lost { reason, cleanup } = &d.records[0].event else { panic!("{d:?}") };
    assert!(reason.starts_with("helper died 4 times in 60 s; not healed again"), "{reason}");
    assert_eq!(*cleanup, Cleanup { helper: Some(helper(11)), mount: true, pid_file: true });
    assert!(matches!(d.effects[..], [Effect::Cleanup { .. }]));
    assert_eq!(rig.state.phase, Phase::Dirty(*cleanup));
}

#[test]
fn given_a_target_that_cannot_be_healed_when_its_helper_dies_then_it_is_lost_with_the_reason() {
    // No environment known (no credentials to start a replacement with).
    let mut rig = Rig::mounted_s3("t1", 9);
    let facts = dms_journal::machine::HealFacts { environment: false, ..heal_facts(3, vec![]) };
    let d = rig.ok(died(9, facts));
    let Event::Lost { reason, .. } = &d.records[0].event else { panic!("{d:?}") };
    assert!(reason.contains("not healed: the environment it was started with is not known"));

    // It exited 0 by itself: its filesystem was unmounted, which is not undone.
    let mut rig = Rig::mounted_s3("t0", 9);
    let facts = dms_journal::machine::HealFacts { clean_exit: true, ..heal_facts(3, vec![]) };
    let d = rig.ok(died(9, facts));
    let Event::Lost { reason, .. } = &d.records[0].event else { panic!("{d:?}") };
    assert!(reason.contains("not healed: it ended by itself"), "{reason}");

    // The dead mount cannot be detached.
    let mut rig = Rig::mounted_s3("t2", 9);
    rig.ok(died(9, heal_facts(3, vec![])));
    let d = rig.ok(Command::CleanupDone { result: Err("umount: busy".into()) });
    let Event::Lost { reason, .. } = &d.records[0].event else { panic!("{d:?}") };
    assert!(reason.contains("could not be detached: umount: busy"), "{reason}");

    // The replacement does not start.
    let mut rig = Rig::mounted_s3("t3", 9);
    rig.ok(died(9, heal_facts(3, vec![])));
    rig.ok(Command::CleanupDone { result: Ok("unmounted".into()) });
    rig.ok(Command::Respawn { op: op(50), nonce: NONCE });
    let d = rig.ok(Command::HelperSpawned { op: op(50), result: Err("ENOENT".into()) });
    let Event::Lost { reason, cleanup } = &d.records[0].event else { panic!("{d:?}") };
    assert!(reason.contains("the replacement did not start: ENOENT"), "{reason}");
    assert_eq!(*cleanup, Cleanup { helper: None, mount: false, pid_file: true });
    assert_eq!(rig.state.phase, Phase::Dirty(*cleanup));
}

#[test]
fn given_outcomes_out_of_order_when_healing_then_they_are_refused() {
    let mut rig = Rig::mounted_s3("t1", 9);
    rig.ok(died(9, heal_facts(3, vec![])));
    // No respawn before the dead mount is gone, no outcome of another operation.
    assert!(matches!(
        rig.run(Command::Respawn { op: op(50), nonce: NONCE }),
        Err(Rejection::Unexpected { .. })
    ));
    assert!(matches!(
        rig.run(Command::Respawn { op: op(1), nonce: NONCE }),
        Err(Rejection::StaleOutcome { .. })
    ));
    rig.ok(Command::CleanupDone { result: Ok("unmounted".into()) });
    assert!(rig.run(Command::HelperSpawned { op: op(50), result: Ok(helper(10)) }).is_err());
}
