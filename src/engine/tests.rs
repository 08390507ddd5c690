//! The engine against recording fakes and a real journal in a temp dir.
#![allow(clippy::unwrap_used)]

use super::fake::{FakeCredentials, FakeMounts, FakeProcesses, World};
use super::*;
use crate::exec::death::DeathCause;
use dms_journal::{Phase, RequestKey, TargetKind, TargetSpec};
use secrecy::SecretString;

type TestEngine = Engine<FakeCredentials, FakeProcesses, FakeMounts>;

const BASE: &str = "/var/lib/trilio/triliovault-mounts";
const LIMITS: Limits = Limits {
    node: 8,
    nfs_per_server: 4,
    nfs_breaker_backoff: std::time::Duration::from_secs(30),
    heal: crate::config::Heal { attempts: 3, window: std::time::Duration::from_secs(600) },
};

struct Rig {
    _dir: tempfile::TempDir,
    world: Arc<World>,
    engine: Arc<TestEngine>,
}

fn rig() -> Rig {
    rig_with(LIMITS)
}

fn rig_with(limits: Limits) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (journal, replay) = Journal::open(&dir.path().join("journal")).unwrap();
    let world = World::new();
    let boot = BootId(uuid::Uuid::from_u128(7));
    let exec = Executors {
        credentials: FakeCredentials(Arc::clone(&world)),
        processes: FakeProcesses { world: Arc::clone(&world), boot },
        mounts: FakeMounts(Arc::clone(&world)),
    };
    let engine = Arc::new(Engine::new(Arc::new(journal), replay.state, exec, boot, limits));
    Rig { _dir: dir, world, engine }
}

fn s3_mount(target: &str, key: &str) -> Job {
    let t = TargetId::new(target).unwrap();
    Job {
        key: Some(RequestKey::new(key).unwrap()),
        ask: Ask::Mount(TargetSpec {
            kind: TargetKind::S3 {
                secret_ref: format!("http://barbican:9311/v1/secrets/{target}"),
            },
            mount_path: format!("{BASE}/{target}"),
        }),
        target: t,
        token: Some(SecretString::from("tok")),
    }
}

fn nfs_mount(target: &str, key: &str) -> Job {
    let mut r = s3_mount(target, key);
    r.ask = Ask::Mount(TargetSpec {
        kind: TargetKind::Nfs {
            export: "10.0.0.5:/exports/b".into(),
            options: "nosuid,nodev".into(),
        },
        mount_path: format!("{BASE}/{target}"),
    });
    r.token = None;
    r
}

fn unmount(target: &str, key: &str) -> Job {
    let mut r = s3_mount(target, key);
    r.ask = Ask::Unmount { mount_path: format!("{BASE}/{target}") };
    r.token = None;
    r
}

fn history(rig: &Rig, target: &str) -> Vec<&'static str> {
    // The engine's own journal handle: read the target's records back from disk.
    let h = rig.engine.journal.history(&TargetId::new(target).unwrap()).unwrap();
    h.records.into_iter().map(|r| r.unwrap().record.event.name()).collect()
}

#[tokio::test]
async fn given_an_s3_mount_when_handled_then_creds_spawn_verify_in_order_and_the_chain_is_journaled(
) {
    let rig = rig();
    let outcome = rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    assert_eq!(outcome, Outcome::Mounted { kind: "s3".into(), path: format!("{BASE}/t1") });
    assert_eq!(
        rig.world.calls(),
        [
            "fetch http://barbican:9311/v1/secrets/t1 token=true".to_owned(),
            format!("spawn t1 {BASE}/t1 keys=true"),
            format!("verify {BASE}/t1 pid 1000"),
        ]
    );
    assert_eq!(
        history(&rig, "t1"),
        ["Requested", "CredsFetched", "SpawnIntended", "Spawned", "Verified"]
    );
    assert_eq!(rig.engine.target_state(&TargetId::new("t1").unwrap()).phase, Phase::Mounted);

    // A redelivery is answered from the journal; nothing runs again.
    let again = rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    assert_eq!(again, outcome);
    assert_eq!(rig.world.calls().len(), 3);
}

#[tokio::test]
async fn given_a_helper_that_never_mounts_when_handled_then_error_and_everything_is_cleaned() {
    let rig = rig();
    rig.world.fail("verify", "no FUSE mount after 30s");
    let outcome = rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Failed { reason: "Mount verification failed: no FUSE mount after 30s".into() }
    );
    let calls = rig.world.calls();
    assert_eq!(
        &calls[3..],
        [
            "stop t1 pid 1000".to_owned(),
            format!("unmount {BASE}/t1 nfs=false"),
            "remove pid file t1".to_owned(),
        ]
    );
    assert_eq!(
        history(&rig, "t1"),
        ["Requested", "CredsFetched", "SpawnIntended", "Spawned", "Failed", "Cleaned"]
    );
    assert_eq!(rig.engine.target_state(&TargetId::new("t1").unwrap()).phase, Phase::Unmounted);
    assert!(rig.world.helpers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn given_refused_credentials_when_handled_then_no_helper_is_started() {
    let rig = rig();
    rig.world.fail("fetch", "Failed to fetch secret from Barbican: Invalid or expired Keystone token. Token authentication failed.");
    let outcome = rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Failed {
            reason: "Failed to fetch credentials: Failed to fetch secret from Barbican: Invalid or expired Keystone token. Token authentication failed.".into()
        }
    );
    assert!(rig.world.calls().iter().all(|c| !c.starts_with("spawn")));
}

#[tokio::test]
async fn given_a_mounted_s3_target_when_unmounted_then_detach_stop_pid_file_and_directory_in_order()
{
    let rig = rig();
    rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    let outcome = rig.engine.handle(&unmount("t1", "u1")).await.unwrap();
    assert_eq!(outcome, Outcome::Unmounted { path: format!("{BASE}/t1") });
    assert_eq!(
        &rig.world.calls()[3..],
        [
            format!("detach {BASE}/t1"),
            "stop t1 pid 1000".to_owned(),
            "remove pid file t1".to_owned(),
            format!("rmdir {BASE}/t1"),
        ]
    );
    assert_eq!(history(&rig, "t1")[5..], ["UnmountRequested", "Detached", "Cleaned"]);
    assert_eq!(rig.engine.target_state(&TargetId::new("t1").unwrap()).phase, Phase::Unmounted);
    let outcome = rig.engine.handle(&unmount("t1", "u2")).await.unwrap();
    assert_eq!(outcome, Outcome::NotMounted { path: format!("{BASE}/t1") });
}

/// The unmount is answered once the mount is detached and that is durable; the helper is
/// stopped after the answer, on the target's turn, so a mount asked for meanwhile waits for
/// it and finds the target clean instead of "needs cleanup".
#[tokio::test]
async fn given_an_s3_unmount_when_served_then_answered_before_the_helper_stops_and_the_turn_is_kept(
) {
    let rig = rig();
    let t1 = TargetId::new("t1").unwrap();
    rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    let served = rig.engine.serve(&unmount("t1", "u1")).await.unwrap();
    assert_eq!(served.outcome, Outcome::Unmounted { path: format!("{BASE}/t1") });
    assert_eq!(rig.world.calls()[3..], [format!("detach {BASE}/t1")]);
    // The answer is on disk (the engine's own handle reads it back), the helper still owed.
    assert_eq!(history(&rig, "t1").last(), Some(&"Detached"));
    assert!(matches!(rig.engine.target_state(&t1).phase, Phase::Dirty(c) if c.helper.is_some()));

    let engine = Arc::clone(&rig.engine);
    let again = tokio::spawn(async move { engine.handle(&s3_mount("t1", "k2")).await });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!again.is_finished(), "a mount must wait for the unmount's turn");
    served.finish().await.unwrap();
    let outcome = again.await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Mounted { kind: "s3".into(), path: format!("{BASE}/t1") });
    let calls = rig.world.calls();
    let stop = calls.iter().position(|c| c == "stop t1 pid 1000").unwrap();
    let spawn = calls.iter().rposition(|c| c.starts_with("spawn t1")).unwrap();
    assert!(stop < spawn, "the old helper stops before the new one starts: {calls:?}");
}

#[tokio::test]
async fn given_nfs_when_mounted_and_unmounted_then_mount_8_and_umount_8_only() {
    let rig = rig();
    let outcome = rig.engine.handle(&nfs_mount("n1", "k1")).await.unwrap();
    assert_eq!(outcome, Outcome::Mounted { kind: "nfs".into(), path: format!("{BASE}/n1") });
    rig.engine.handle(&unmount("n1", "u1")).await.unwrap();
    assert_eq!(
        rig.world.calls(),
        [
            format!("mount nfs 10.0.0.5:/exports/b {BASE}/n1 -o nosuid,nodev"),
            format!("unmount {BASE}/n1 nfs=true"),
            format!("rmdir {BASE}/n1"),
        ]
    );
    assert_eq!(history(&rig, "n1"), ["Requested", "Verified", "UnmountRequested", "Unmounted"]);
}

#[tokio::test]
async fn given_many_targets_and_racing_requests_when_handled_concurrently_then_each_target_mounts_once(
) {
    let rig = rig();
    let mut tasks = Vec::new();
    for n in 0..20 {
        for k in 0..2 {
            let engine = Arc::clone(&rig.engine);
            tasks.push(tokio::spawn(async move {
                engine.handle(&s3_mount(&format!("t{n}"), &format!("k{n}-{k}"))).await
            }));
        }
    }
    let mut mounted = 0;
    let mut already = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Outcome::Mounted { .. } => mounted += 1,
            Outcome::AlreadyMounted { .. } => already += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((mounted, already), (20, 20), "per target: one mount, one 'already mounted'");
    let spawns = rig.world.calls().iter().filter(|c| c.starts_with("spawn")).count();
    assert_eq!(spawns, 20, "a target never gets two helpers");
}

#[tokio::test]
async fn given_a_journal_written_by_the_engine_when_reopened_then_the_same_state_is_replayed() {
    let rig = rig();
    rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    rig.engine.handle(&nfs_mount("n1", "k2")).await.unwrap();
    let live = rig.engine.snapshot();
    let path = rig.engine.journal.path().to_path_buf();
    let Rig { engine, _dir, .. } = rig;
    drop(engine);
    let (_journal, replay) = Journal::open(&path).unwrap();
    assert_eq!(replay.state, live);
    assert!(replay.problems.is_empty());
}

#[tokio::test]
async fn given_old_finished_history_when_compacted_then_journal_and_memory_forget_it_and_state_stays(
) {
    let rig = rig();
    rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    rig.engine.handle(&unmount("t1", "u1")).await.unwrap();
    rig.engine.handle(&nfs_mount("n1", "k2")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let report = rig.engine.compact(std::time::Duration::from_millis(1)).await.unwrap();
    assert!(report.records_removed > 0, "{report:?}");
    let t1 = rig.engine.target_state(&TargetId::new("t1").unwrap());
    assert_eq!(t1.phase, Phase::Unmounted);
    assert!(t1.requests.is_empty(), "old answers are forgotten in memory too");
    assert_eq!(rig.engine.target_state(&TargetId::new("n1").unwrap()).phase, Phase::Mounted);
    // The compacted journal replays to the same states.
    let live = rig.engine.snapshot();
    let path = rig.engine.journal.path().to_path_buf();
    let Rig { engine, _dir, .. } = rig;
    drop(engine);
    let (_journal, replay) = Journal::open(&path).unwrap();
    assert_eq!(replay.state, live);
}

#[tokio::test]
async fn given_a_mounted_helper_that_dies_when_its_exit_is_reported_then_it_is_healed() {
    let rig = rig();
    rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    let t1 = TargetId::new("t1").unwrap();
    let helper = rig.engine.target_state(&t1).helper.unwrap();
    let before = rig.world.calls().len();
    let effect = rig
        .engine
        .helper_exited(&t1, helper, "signal: 9 (SIGKILL)", DeathCause::Signal(9))
        .await
        .unwrap();
    let ExitEffect::Healed { helper: new } = effect else { panic!("{effect:?}") };
    assert_ne!(new, helper);
    // The dead mount goes, then a replacement starts with the dead one's environment (the
    // credentials are not fetched again: nobody's token is at hand) and its mount is checked.
    assert_eq!(
        rig.world.calls()[before..],
        [
            format!("unmount {BASE}/t1 nfs=false"),
            format!("spawn t1 {BASE}/t1 keys=true"),
            format!("verify {BASE}/t1 pid {}", new.pid),
        ]
    );
    assert_eq!(
        history(&rig, "t1")[5..],
        ["HelperDied", "Cleaned", "SpawnIntended", "Spawned", "Verified"]
    );
    let state = rig.engine.target_state(&t1);
    assert_eq!((state.phase, state.helper), (Phase::Mounted, Some(new)));
    let again = rig.engine.handle(&s3_mount("t1", "k2")).await.unwrap();
    assert_eq!(again, Outcome::AlreadyMounted { path: format!("{BASE}/t1") });
}

#[tokio::test]
async fn given_healing_off_when_a_mounted_helper_dies_then_lost_and_cleaned() {
    let mut limits = LIMITS;
    limits.heal.attempts = 0;
    let rig = rig_with(limits);
    rig.engine.handle(&s3_mount("t1", "k1")).await.unwrap();
    let t1 = TargetId::new("t1").unwrap();
    let helper = rig.engine.target_state(&t1).helper.unwrap();
    // An exit of some other (stale) helper changes nothing.
    let stale = dms_journal::HelperIdentity { pid: 4242, ..helper };
    let effect =
        rig.engine.helper_exited(&t1, stale, "exit status: 1", DeathCause::Exit(1)).await.unwrap();
    assert_eq!(effect, ExitEffect::None);
    assert_eq!(rig.engine.target_state(&t1).phase, Phase::Mounted);

    let effect = rig
        .engine
        .helper_exited(&t1, helper, "signal: 9 (SIGKILL)", DeathCause::Signal(9))
        .await
        .unwrap();
    assert!(matches!(effect, ExitEffect::Lost { .. }), "{effect:?}");
    assert_eq!(
        &rig.world.calls()[3..],
        [format!("unmount {BASE}/t1 nfs=false"), "remove pid file t1".to_owned()]
    );
    assert_eq!(
        history(&rig, "t1"),
        ["Requested", "CredsFetched", "SpawnIntended", "Spawned", "Verified", "Lost", "Cleaned"]
    );
    assert_eq!(rig.engine.target_state(&t1).phase, Phase::Unmounted);
    // The next request sees the truth and mounts again.
    let outcome = rig.engine.handle(&s3_mount("t1", "k2")).await.unwrap();
    assert!(matches!(outcome, Outcome::Mounted { .. }), "{outcome:?}");
    // After an unmount, the exit of the helper the daemon stopped itself is ignored.
    rig.engine.handle(&unmount("t1", "u1")).await.unwrap();
    let second = dms_journal::HelperIdentity { pid: 1001, start_ticks: 10010, ..helper };
    let effect =
        rig.engine.helper_exited(&t1, second, "exit status: 0", DeathCause::Exit(0)).await.unwrap();
    assert_eq!(effect, ExitEffect::None);
}

/// `s3_mount` of `target` at `path` instead of its own directory.
fn s3_mount_at(target: &str, key: &str, path: &str) -> Job {
    let mut r = s3_mount(target, key);
    if let Ask::Mount(spec) = &mut r.ask {
        spec.mount_path = path.to_owned();
    }
    r
}

#[tokio::test]
async fn given_a_mounted_target_when_a_nested_or_containing_path_is_mounted_then_refused_and_nothing_runs(
) {
    let rig = rig();
    rig.engine.handle(&s3_mount("outer", "k1")).await.unwrap();
    let calls = rig.world.calls().len();
    let cases = [
        ("inner", format!("{BASE}/outer/inner"), "lies inside the mount path of target outer"),
        ("above", BASE.to_owned(), "contains the mount path of target outer"),
        ("twin", format!("{BASE}/outer"), "is the mount path of target outer"),
    ];
    for (i, (target, path, why)) in cases.iter().enumerate() {
        let outcome =
            rig.engine.handle(&s3_mount_at(target, &format!("n{i}"), path)).await.unwrap();
        let Outcome::Failed { reason } = &outcome else { panic!("{outcome:?}") };
        assert!(reason.contains(why) && reason.contains("targets never nest"), "{reason}");
        assert_eq!(history(&rig, target), ["Answered"], "{target}");
    }
    assert_eq!(rig.world.calls().len(), calls, "something ran: {:?}", rig.world.calls());
    // A sibling whose name merely shares a prefix is not nested.
    let sibling = rig.engine.handle(&s3_mount_at("outer2", "k9", &format!("{BASE}/outer2"))).await;
    assert!(matches!(sibling.unwrap(), Outcome::Mounted { .. }));
}

#[test]
fn given_a_mount_being_admitted_when_a_nested_one_is_admitted_meanwhile_then_it_sees_the_reservation(
) {
    let admissions = admission::Admissions::default();
    let journal = JournalState::default();
    let t = |s: &str| TargetId::new(s).unwrap();
    let mount = |path: &str| {
        let spec = TargetSpec {
            kind: TargetKind::Nfs { export: "h:/x".into(), options: String::new() },
            mount_path: path.into(),
        };
        Command::Mount {
            op: OperationId::random(),
            request: None,
            spec,
            nested: None,
            outage: None,
        }
    };
    let mut first = mount("/b/a");
    let held = admissions.admit(&journal, &t("a"), &mut first);
    let mut second = mount("/b/a/deep");
    let _refused = admissions.admit(&journal, &t("b"), &mut second);
    let Command::Mount { nested: Some(nesting), .. } = &second else { panic!("{second:?}") };
    assert_eq!(nesting.other, t("a"));
    drop(held);
    let mut third = mount("/b/a/deep");
    let _ok = admissions.admit(&journal, &t("b"), &mut third);
    assert!(matches!(third, Command::Mount { nested: None, .. }), "the reservation ended");
}

#[tokio::test]
async fn given_an_nfs_mount_that_timed_out_when_the_same_server_is_asked_again_then_it_fails_fast()
{
    let rig = rig();
    rig.world.fail("mount_nfs_timeout", "mount did not finish within 20s");
    let first = rig.engine.handle(&nfs_mount("n1", "k1")).await.unwrap();
    assert!(matches!(&first, Outcome::Failed { reason } if reason.contains("within 20s")));
    let breakers = rig.engine.breakers();
    assert_eq!(breakers.len(), 1, "{breakers:?}");
    assert_eq!((breakers[0].server.as_str(), breakers[0].state), ("10.0.0.5", "open"));

    let second = rig.engine.handle(&nfs_mount("n2", "k2")).await.unwrap();
    let Outcome::Failed { reason } = second else { panic!("{second:?}") };
    assert!(
        reason.starts_with("NFS mount failed: NFS server 10.0.0.5 is not answering"),
        "{reason}"
    );
    assert!(reason.contains("fail fast until"), "{reason}");
    let mounts = rig.world.calls().iter().filter(|c| c.starts_with("mount nfs")).count();
    assert_eq!(mounts, 1, "no mount(8) ran while the breaker is open: {:?}", rig.world.calls());
    assert_eq!(history(&rig, "n2"), ["Answered"], "refused before anything ran");

    let mut elsewhere = nfs_mount("n3", "k3");
    if let Ask::Mount(spec) = &mut elsewhere.ask {
        spec.kind = TargetKind::Nfs { export: "10.0.0.6:/b".into(), options: "nosuid".into() };
    }
    let third = rig.engine.handle(&elsewhere).await.unwrap();
    assert_eq!(third, Outcome::Mounted { kind: "nfs".into(), path: format!("{BASE}/n3") });
    assert_eq!(rig.engine.gauges().nfs_breakers_open, 1);
}

#[tokio::test]
async fn given_an_illegal_record_or_a_refused_plan_step_then_nothing_is_written() {
    let rig = rig();
    rig.engine.handle(&nfs_mount("n1", "k1")).await.unwrap();
    let before = rig.engine.snapshot();
    let written = || rig.engine.journal.records().count();
    let count = written();
    let target = TargetId::new("n1").unwrap();
    let verified = Record {
        target: target.clone(),
        at: rig.engine.clock().now,
        boot: rig.engine.boot,
        request: None,
        op: None,
        event: dms_journal::Event::Verified,
    };

    let refused = rig.engine.append(vec![verified.clone()]).await;
    assert!(
        matches!(&refused, Err(EngineError::Illegal(i)) if i.event == "Verified"),
        "{refused:?}"
    );
    assert_eq!(written(), count, "an illegal record reached the journal");
    assert_eq!(rig.engine.snapshot(), before);

    // A plan step the machine refuses (a stray PID file's for a mounted target) is skipped;
    // the pass goes on with the next step.
    let stray = dms_journal::machine::facts::StrayPidFile::Unreadable;
    let bad = dms_journal::reconcile::Step {
        target: target.clone(),
        command: Command::Reconcile { seen: dms_journal::Seen::StrayPidFile(stray) },
    };
    let plan = dms_journal::reconcile::Plan { steps: vec![bad], findings: vec![] };
    assert_eq!(rig.engine.reconcile(plan, &before).await.unwrap(), 0);
    assert_eq!(written(), count);
    assert_eq!(rig.engine.snapshot(), before);
    assert_eq!(history(&rig, "n1"), ["Requested", "Verified"]);
}
