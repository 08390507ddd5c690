//! The reconcile plan against the whole matrix of journal states × reality, plus the
//! named situations of DESIGN §3 and the seed's PID-file guide.
#![allow(clippy::unwrap_used)]

mod support;

use dms_journal::machine::MountFailure;
use dms_journal::reconcile::{self, Finding, MountEntry, Observations, PidFile, Process};
use dms_journal::{
    Clock, Command, DebugWording, Effect, Event, FsTypes, HealStep, Healing, JournalState,
    MountBase, MountStep, Phase, SpawnNonce, TargetState, Timestamp, UnmountStep,
};
use support::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum HelperIs {
    Alive,
    Exited,
    PidReused,
    /// Alive, unproven by path (a wrapper that `exec`ed another program), but carrying the
    /// nonce of the spawn intent the crash states journal ([`NONCE`]).
    Intended,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MountIs {
    Live,
    Absent,
    Dead,
}

const PID: u32 = 4242;
/// The nonce every spawn intent of these tests journals.
const NONCE: SpawnNonce = SpawnNonce::from_u128(7);

fn journal_of(states: Vec<TargetState>) -> JournalState {
    let mut j = JournalState::default();
    for s in states {
        j.targets.insert(s.target.clone(), s);
    }
    j
}

fn mount_entry(path: String, fstype: &str, dead: bool) -> MountEntry {
    let kind = FsTypes::default().kind_of(fstype);
    MountEntry { path, fstype: fstype.to_owned(), kind, dead }
}

fn obs() -> Observations {
    Observations {
        mount_base: MountBase::new(BASE).unwrap(),
        mounts: vec![],
        pid_files: vec![],
        processes: vec![],
        distrusted: vec![],
    }
}

/// Reality for target `name`: a helper process in the given condition (with a PID file
/// naming it), and a mount in the given condition.
fn reality(name: &str, s3: bool, h: HelperIs, m: MountIs) -> Observations {
    let mut o = obs();
    if s3 {
        o.pid_files.push(PidFile { name: name.into(), pid: Some(PID) });
        match h {
            HelperIs::Alive => o.processes.push(Process {
                pid: PID,
                start_ticks: helper(PID).start_ticks,
                helper_for: Some(path_of(name)),
                serves_mount: m == MountIs::Live,
                nonce: None,
            }),
            HelperIs::Exited => {}
            HelperIs::PidReused => o.processes.push(Process {
                pid: PID,
                start_ticks: 1,
                helper_for: None,
                serves_mount: false,
                nonce: None,
            }),
            HelperIs::Intended => o.processes.push(Process {
                pid: PID,
                start_ticks: helper(PID).start_ticks,
                helper_for: None,
                serves_mount: false,
                nonce: Some(NONCE),
            }),
        }
    }
    let fstype = if s3 { "fuse.s3vaultfuse" } else { "nfs4" };
    match m {
        MountIs::Live => o.mounts.push(mount_entry(path_of(name), fstype, false)),
        MountIs::Dead => o.mounts.push(mount_entry(path_of(name), fstype, true)),
        MountIs::Absent => {}
    }
    o
}

fn clock_of(new_boot: bool) -> Clock {
    Clock { now: Timestamp(1_790_000_100_000), boot: if new_boot { boot(2) } else { boot(1) } }
}

/// Every journal state a target can be left in by a crash, as (label, is_s3, state).
fn crash_states() -> Vec<(&'static str, bool, TargetState)> {
    let name = "t";
    let step = |s: &mut Rig, c: Command| {
        s.ok(c);
    };
    let mut out = Vec::new();
    let mut r = Rig::new(name);
    step(&mut r, mount(op(1), key("k"), s3(name)));
    out.push(("s3 Requested", true, r.state.clone()));
    // Where an older daemon could crash: credentials fetched, no spawn intent journaled.
    let mut old = Rig { state: r.state.clone() };
    old.written(Event::CredsFetched);
    out.push(("s3 CredsFetched (older daemon)", true, old.state));
    step(&mut r, Command::CredsFetched { op: op(1), result: Ok(()), nonce: NONCE });
    out.push(("s3 SpawnIntended", true, r.state.clone()));
    step(&mut r, Command::HelperSpawned { op: op(1), result: Ok(helper(PID)) });
    out.push(("s3 Spawned", true, r.state.clone()));
    step(&mut r, Command::MountChecked { op: op(1), result: Ok(()) });
    out.push(("s3 Mounted", true, r.state.clone()));
    // Its helper died and it is being healed: every step a crash can interrupt.
    let mut heal = Rig { state: r.state.clone() };
    let status = "signal: 9".to_owned();
    let facts = heal_facts(3, vec![]);
    step(&mut heal, Command::HelperExited { helper: helper(PID), status, heal: facts });
    out.push(("s3 Healing Dead", true, heal.state.clone()));
    step(&mut heal, Command::CleanupDone { result: Ok("unmounted".into()) });
    out.push(("s3 Healing Detached", true, heal.state.clone()));
    step(&mut heal, Command::Respawn { op: op(50), nonce: NONCE });
    out.push(("s3 Healing SpawnIntended", true, heal.state.clone()));
    step(&mut heal, Command::HelperSpawned { op: op(50), result: Ok(helper(PID)) });
    out.push(("s3 Healing Spawned", true, heal.state.clone()));
    step(&mut r, Command::Unmount { op: op(2), request: key("u"), mount_path: path_of(name) });
    out.push(("s3 UnmountRequested", true, r.state.clone()));
    // Where an older daemon could crash: it stopped the helper before the unmount.
    let mut old = Rig { state: r.state.clone() };
    old.written(Event::HelperStopped);
    out.push(("s3 HelperStopped (older daemon)", true, old.state));
    step(&mut r, Command::Detached { op: op(2), result: Ok(()) });
    out.push(("s3 Detached", true, r.state.clone()));
    out.push(("s3 Dirty", true, Rig::dirty_s3(name, PID).state));
    let mut r = Rig::new(name);
    step(&mut r, mount(op(1), key("k"), nfs(name)));
    out.push(("nfs Requested", false, r.state.clone()));
    step(&mut r, Command::MountChecked { op: op(1), result: Ok(()) });
    out.push(("nfs Mounted", false, r.state.clone()));
    step(&mut r, Command::Unmount { op: op(2), request: key("u"), mount_path: path_of(name) });
    out.push(("nfs UnmountRequested", false, r.state.clone()));
    out
}

/// Apply a plan's records to the journal, checking each is legal.
/// A plan with each step's decision: what performing it would journal and do.
#[derive(Debug, Default, PartialEq)]
struct Planned {
    steps: Vec<Decided>,
    findings: Vec<Finding>,
}

#[derive(Debug, PartialEq)]
struct Decided {
    target: dms_journal::TargetId,
    records: Vec<dms_journal::Record>,
    effects: Vec<Effect>,
}

/// The plan, each step decided against the journal it was made from (as the engine does
/// under the target's turn).
fn plan(journal: &JournalState, o: &Observations, clock: Clock) -> Planned {
    let p = reconcile::plan(journal, o, clock, &DebugWording);
    let steps = p
        .steps
        .iter()
        .map(|s| {
            let d =
                s.decision(journal, clock, &DebugWording).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            Decided { target: s.target.clone(), records: d.records, effects: d.effects }
        })
        .collect();
    Planned { steps, findings: p.findings }
}

fn apply(journal: &mut JournalState, p: &Planned) {
    for step in &p.steps {
        for r in &step.records {
            let state = journal.target_or_new(&r.target);
            state.check(&r.event).unwrap_or_else(|e| panic!("plan produced {e}"));
            journal.apply(r);
        }
    }
}

fn effects(p: &Planned) -> Vec<&Effect> {
    p.steps.iter().flat_map(|s| &s.effects).collect()
}

fn signalled(p: &Planned) -> Vec<u32> {
    effects(p)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Cleanup { cleanup, .. } => cleanup.helper.map(|h| h.pid),
            _ => None,
        })
        .collect()
}

#[test]
fn given_any_crash_state_and_any_reality_when_planned_then_invariants_hold() {
    use HelperIs::*;
    use MountIs::*;
    let mut cells = 0;
    for (label, is_s3, state) in crash_states() {
        let intent = matches!(
            state.phase,
            Phase::Mounting(MountStep::SpawnIntended(_))
                | Phase::Healing(Healing { step: HealStep::SpawnIntended(_), .. })
        );
        for h in [Alive, Exited, PidReused, Intended] {
            for m in [Live, Absent, Dead] {
                for new_boot in [false, true] {
                    cells += 1;
                    let cell =
                        format!("{label} / helper {h:?} / mount {m:?} / new boot {new_boot}");
                    let o = reality("t", is_s3, h, m);
                    let clock = clock_of(new_boot);
                    let mut journal = journal_of(vec![state.clone()]);
                    let p = plan(&journal, &o, clock);
                    apply(&mut journal, &p);
                    let after = journal.target(&target("t")).unwrap();

                    // Only a proven helper of this boot is ever signalled.
                    // The nonce proves a helper ours only while its intent is open; the
                    // journaled identity (the same PID and start time) proves it anyway.
                    let named = state.helper.is_some();
                    let proven = h == Alive || (h == Intended && (intent || named));
                    let may_signal = proven && !new_boot && is_s3;
                    assert!(
                        signalled(&p).iter().all(|_| may_signal),
                        "{cell}: signalled {:?}",
                        signalled(&p)
                    );
                    // Mounting survives a reconcile only to wait for the mount of the helper its
                    // intent spawned; an unmount either resumes or ends.
                    let waiting = match after.phase {
                        Phase::Mounting(step) => Some(step == MountStep::Spawned),
                        Phase::Healing(h) => Some(h.step == HealStep::Spawned),
                        _ => None,
                    };
                    if let Some(spawned) = waiting {
                        assert!(intent && h == Intended, "{cell}: still {}", after.phase);
                        assert!(spawned, "{cell}: {}", after.phase);
                        assert_eq!(after.helper.map(|x| x.pid), Some(PID), "{cell}");
                        let waits = effects(&p).iter().any(|e| {
                            matches!(e, Effect::VerifyMount { helper, .. } if helper.pid == PID)
                        });
                        assert!(waits, "{cell}: resumed without waiting for the mount");
                    }
                    if let Phase::Unmounting(_) = after.phase {
                        assert!(
                            effects(&p).iter().any(|e| matches!(
                                e,
                                Effect::Detach { .. } | Effect::Unmount { .. }
                            )),
                            "{cell}: unmount left without a resume effect"
                        );
                    }
                    // Mounted means a live mount of this boot and, for S3, a live helper.
                    if after.phase == Phase::Mounted {
                        assert!(!new_boot, "{cell}: a reboot must void mounted");
                        assert_eq!(m, Live, "{cell}: mounted without a live mount");
                        if is_s3 {
                            assert!(proven, "{cell}: mounted without its helper");
                            assert_eq!(after.helper.map(|x| x.pid), Some(PID), "{cell}");
                        }
                    }
                    // Dirty targets get their cleanup now.
                    if let Phase::Dirty(_) = after.phase {
                        assert!(
                            effects(&p).iter().any(|e| matches!(e, Effect::Cleanup { .. })),
                            "{cell}: dirty without cleanup"
                        );
                    }
                    // A stale PID file is never left behind by a target that ends unmounted.
                    if after.phase == Phase::Unmounted && is_s3 {
                        let removes = effects(&p).iter().any(|e| match e {
                            Effect::Cleanup { cleanup, .. } => cleanup.pid_file,
                            Effect::Unmount { .. } | Effect::RemoveStalePidFile { .. } => true,
                            _ => false,
                        });
                        let already_clean = state.phase == Phase::Unmounted;
                        assert!(
                            removes || already_clean,
                            "{cell}: PID file kept for an unmounted target"
                        );
                    }
                    // A live mount is only detached when it is ours: never after a reboot.
                    let detaches_live = effects(&p).iter().any(|e| match e {
                        Effect::Cleanup { cleanup, .. } => cleanup.mount && m == Live,
                        Effect::Unmount { .. } | Effect::Detach { .. } => m == Live,
                        _ => false,
                    });
                    assert!(
                        !(new_boot && detaches_live),
                        "{cell}: detached a live mount of the new boot"
                    );
                    // The plan is stable: planning again on the result changes nothing more
                    // unless effects were pending (reality did not change in between).
                    if effects(&p).is_empty() {
                        let again = plan(&journal, &o, clock);
                        assert!(
                            again.steps.is_empty(),
                            "{cell}: not a fixed point: {:?}",
                            again.steps
                        );
                    }
                }
            }
        }
    }
    assert_eq!(cells, 16 * 4 * 3 * 2);
}

fn only_step(p: &Planned) -> (Vec<dms_journal::Record>, Vec<Effect>) {
    assert_eq!(p.steps.len(), 1, "{:?}", p.steps);
    (p.steps[0].records.clone(), p.steps[0].effects.clone())
}

#[test]
fn given_mounted_s3_with_live_helper_and_mount_when_planned_then_nothing_happens() {
    let j = journal_of(vec![Rig::mounted_s3("t", PID).state]);
    let p = plan(&j, &reality("t", true, HelperIs::Alive, MountIs::Live), clock_of(false));
    assert_eq!(p, Planned::default());
}

#[test]
fn given_mounted_s3_whose_pid_file_is_gone_when_planned_then_it_is_rewritten() {
    let j = journal_of(vec![Rig::mounted_s3("t", PID).state]);
    let mut o = reality("t", true, HelperIs::Alive, MountIs::Live);
    o.pid_files.clear();
    let (records, effects) = only_step(&plan(&j, &o, clock_of(false)));
    assert!(records.is_empty());
    assert_eq!(effects, [Effect::WritePidFile { helper: helper(PID) }]);
}

#[test]
fn given_mounted_s3_whose_helper_died_when_planned_then_lost_and_dead_mount_detached() {
    let j = journal_of(vec![Rig::mounted_s3("t", PID).state]);
    let (records, effects) =
        only_step(&plan(&j, &reality("t", true, HelperIs::Exited, MountIs::Dead), clock_of(false)));
    match &records[0].event {
        Event::Lost { reason, cleanup } => {
            assert_eq!(reason, &format!("helper pid {PID} exited"));
            assert!(cleanup.helper.is_none() && cleanup.mount && cleanup.pid_file);
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    assert!(
        matches!(&effects[..], [Effect::Cleanup { mount_path: Some(p), .. }] if *p == path_of("t"))
    );
}

#[test]
fn given_mounted_s3_whose_pid_was_reused_when_planned_then_lost_and_the_process_is_not_signalled() {
    let j = journal_of(vec![Rig::mounted_s3("t", PID).state]);
    let p = plan(&j, &reality("t", true, HelperIs::PidReused, MountIs::Dead), clock_of(false));
    let (records, _) = only_step(&p);
    assert!(
        matches!(&records[0].event, Event::Lost { reason, .. } if reason.contains("belongs to another process"))
    );
    assert!(signalled(&p).is_empty());
}

#[test]
fn given_mounted_targets_when_the_boot_id_changed_then_every_one_is_lost() {
    let j = journal_of(vec![Rig::mounted_s3("a", PID).state, Rig::mounted_nfs("b").state]);
    let p = plan(&j, &obs(), clock_of(true));
    assert_eq!(p.steps.len(), 2);
    for s in &p.steps {
        assert!(
            matches!(&s.records[..], [r] if matches!(&r.event, Event::Lost { reason, cleanup } if reason.contains("rebooted") && cleanup.is_empty()))
        );
        assert_eq!(s.records[0].boot, boot(2));
    }
}

#[test]
fn given_spawned_with_live_helper_and_live_mount_when_planned_then_adopted_and_request_succeeds() {
    let mut r = Rig::new("t");
    r.ok(mount(op(1), key("k"), s3("t")));
    r.ok(Command::CredsFetched { op: op(1), result: Ok(()), nonce: NONCE });
    r.ok(Command::HelperSpawned { op: op(1), result: Ok(helper(PID)) });
    let mut j = journal_of(vec![r.state]);
    let p = plan(&j, &reality("t", true, HelperIs::Alive, MountIs::Live), clock_of(false));
    apply(&mut j, &p);
    let t = j.target(&target("t")).unwrap();
    assert_eq!(t.phase, Phase::Mounted);
    assert!(t.requests[&key("k").unwrap()].outcome.is_success());
}

#[test]
fn given_creds_fetched_and_an_unjournaled_helper_when_planned_then_it_is_found_by_path_and_stopped()
{
    // The daemon died between spawning the helper and journaling Spawned.
    let mut r = Rig::new("t");
    r.ok(mount(op(1), key("k"), s3("t")));
    r.ok(Command::CredsFetched { op: op(1), result: Ok(()), nonce: NONCE });
    let mut j = journal_of(vec![r.state]);
    let mut o = reality("t", true, HelperIs::Alive, MountIs::Absent);
    o.pid_files.clear(); // it died before writing the PID file, too
    let p = plan(&j, &o, clock_of(false));
    assert_eq!(signalled(&p), [PID]);
    apply(&mut j, &p);
    let t = j.target(&target("t")).unwrap();
    assert!(matches!(t.phase, Phase::Dirty(c) if c.helper == Some(helper(PID))));
    // The request was never answered: a redelivery runs it again.
    assert!(t.requests.is_empty());
}

/// A target whose spawn intent is journaled, nothing after it: the daemon died between
/// the durable intent and `Spawned` (issue 29: a wrapper helper, slow to mount, was
/// disowned and a second one started).
fn spawn_intended() -> Rig {
    let mut r = Rig::new("t");
    r.ok(mount(op(1), key("k"), s3("t")));
    r.ok(Command::CredsFetched { op: op(1), result: Ok(()), nonce: NONCE });
    r
}

#[test]
fn given_a_spawn_intent_whose_helper_has_not_mounted_yet_when_planned_then_it_is_resumed_not_disowned(
) {
    let mut o = reality("t", true, HelperIs::Intended, MountIs::Absent);
    o.pid_files.clear(); // the crash came before the PID file was written, too
    let mut j = journal_of(vec![spawn_intended().state]);
    let p = plan(&j, &o, clock_of(false));
    let (records, effects) = only_step(&p);
    let events: Vec<&Event> = records.iter().map(|r| &r.event).collect();
    assert_eq!(events, [&Event::Spawned { helper: helper(PID) }]);
    assert_eq!(records[0].request, key("k"), "journaled for the interrupted request");
    let verify = Effect::VerifyMount { op: op(1), helper: helper(PID), mount_path: path_of("t") };
    assert_eq!(effects, [Effect::WritePidFile { helper: helper(PID) }, verify]);
    assert!(signalled(&p).is_empty(), "its own helper is not stopped while it may mount");

    // It mounts within the deadline: the request's outcome is journaled, so its
    // redelivery is answered "mounted" instead of starting a second helper.
    apply(&mut j, &p);
    let mut r = Rig { state: j.target(&target("t")).unwrap().clone() };
    let d = r.ok(Command::MountChecked { op: op(1), result: Ok(()) });
    assert_eq!(Rig::events(&d), ["Verified"]);
    assert_eq!(r.state.phase, Phase::Mounted);
    assert_eq!(r.state.helper, Some(helper(PID)));
    assert!(r.state.requests[&key("k").unwrap()].outcome.is_success());
    let again = r.ok(mount(op(2), key("k"), s3("t")));
    assert!(again.records.is_empty(), "a redelivery is answered from the journal");
}

#[test]
fn given_a_resumed_spawn_whose_helper_never_mounts_when_checked_then_it_and_its_group_are_stopped()
{
    let o = reality("t", true, HelperIs::Intended, MountIs::Absent);
    let mut j = journal_of(vec![spawn_intended().state]);
    let p = plan(&j, &o, clock_of(false));
    apply(&mut j, &p);
    let mut r = Rig { state: j.target(&target("t")).unwrap().clone() };
    let failure = MountFailure { reason: "no mount within 30 s".into(), maybe_mounted: true };
    let d = r.ok(Command::MountChecked { op: op(1), result: Err(failure) });
    assert_eq!(Rig::events(&d), ["Failed"]);
    let stops: Vec<_> = d
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Cleanup { cleanup, .. } => cleanup.helper,
            _ => None,
        })
        .collect();
    assert_eq!(stops, [helper(PID)], "exactly the intent's helper is stopped");
    assert!(!r.state.requests[&key("k").unwrap()].outcome.is_success());
}

#[test]
fn given_a_spawn_intent_and_a_live_mount_served_by_its_helper_when_planned_then_adopted() {
    let mut o = reality("t", true, HelperIs::Intended, MountIs::Live);
    o.processes[0].serves_mount = true;
    let mut j = journal_of(vec![spawn_intended().state]);
    let p = plan(&j, &o, clock_of(false));
    apply(&mut j, &p);
    let t = j.target(&target("t")).unwrap();
    assert_eq!((t.phase, t.helper), (Phase::Mounted, Some(helper(PID))));
    assert!(t.requests[&key("k").unwrap()].outcome.is_success());
    assert!(signalled(&p).is_empty());
}

#[test]
fn given_a_spawn_intent_and_a_process_carrying_another_nonce_when_planned_then_it_is_a_stranger() {
    let mut o = reality("t", true, HelperIs::Intended, MountIs::Absent);
    o.processes[0].nonce = Some(SpawnNonce::from_u128(8));
    let mut j = journal_of(vec![spawn_intended().state]);
    let p = plan(&j, &o, clock_of(false));
    assert!(signalled(&p).is_empty(), "a stranger is never signalled");
    apply(&mut j, &p);
    let t = j.target(&target("t")).unwrap();
    assert!(matches!(t.phase, Phase::Dirty(c) if c.helper.is_none() && c.pid_file));
    assert!(t.requests.is_empty(), "unanswered: a redelivery runs it again");
}

#[test]
fn given_requested_with_a_helper_serving_the_path_when_planned_then_it_is_not_ours_and_not_signalled(
) {
    let mut r = Rig::new("t");
    r.ok(mount(op(1), key("k"), s3("t")));
    let p = plan(
        &journal_of(vec![r.state]),
        &reality("t", true, HelperIs::Alive, MountIs::Absent),
        clock_of(false),
    );
    assert!(signalled(&p).is_empty());
}

#[test]
fn given_an_interrupted_unmount_when_planned_then_it_resumes_with_the_same_operation() {
    let mut r = Rig::mounted_s3("t", PID);
    r.ok(Command::Unmount { op: op(2), request: key("u"), mount_path: path_of("t") });
    let j = journal_of(vec![r.state.clone()]);
    let (records, effects) =
        only_step(&plan(&j, &reality("t", true, HelperIs::Alive, MountIs::Live), clock_of(false)));
    assert!(records.is_empty());
    assert_eq!(effects, [Effect::Detach { op: op(2), mount_path: path_of("t") }]);

    // An older daemon's unmount (helper stopped first) resumes the same way.
    let mut old = Rig { state: r.state.clone() };
    old.written(Event::HelperStopped);
    assert_eq!(old.state.phase, Phase::Unmounting(UnmountStep::HelperStopped));
    let j = journal_of(vec![old.state.clone()]);
    let (_, effects) =
        only_step(&plan(&j, &reality("t", true, HelperIs::Exited, MountIs::Dead), clock_of(false)));
    assert_eq!(effects, [Effect::Detach { op: op(2), mount_path: path_of("t") }]);

    // The mount is gone but the helper runs: the unmount has its answer (the requester may
    // have heard it), and the helper is stopped as a cleanup.
    let mut j = journal_of(vec![r.state.clone()]);
    let p = plan(&j, &reality("t", true, HelperIs::Alive, MountIs::Absent), clock_of(false));
    let (records, effects) = only_step(&p);
    let cleanup = dms_journal::Cleanup { helper: Some(helper(PID)), mount: false, pid_file: true };
    assert!(matches!(&records[..], [r] if r.event == Event::Detached { cleanup }), "{records:?}");
    assert_eq!(effects, [Effect::Cleanup { cleanup, mount_path: Some(path_of("t")) }]);
    apply(&mut j, &p);
    let t = j.target(&target("t")).unwrap();
    assert_eq!(t.phase, Phase::Dirty(cleanup));
    assert!(t.requests[&key("u").unwrap()].outcome.is_success());

    // Nothing left at all: the unmount is complete and its request is answered.
    let mut j = journal_of(vec![old.state]);
    let mut o = reality("t", true, HelperIs::Exited, MountIs::Absent);
    o.pid_files.clear();
    let p = plan(&j, &o, clock_of(false));
    apply(&mut j, &p);
    let t = j.target(&target("t")).unwrap();
    assert_eq!(t.phase, Phase::Unmounted);
    assert!(t.requests[&key("u").unwrap()].outcome.is_success());
}

#[test]
fn given_a_hand_written_pid_file_for_a_live_helper_when_planned_then_adopted() {
    let mut o = reality("manual", true, HelperIs::Alive, MountIs::Live);
    o.processes[0].start_ticks = 777;
    let mut j = JournalState::default();
    let p = plan(&j, &o, clock_of(false));
    apply(&mut j, &p);
    let t = j.target(&target("manual")).unwrap();
    assert_eq!(t.phase, Phase::Mounted);
    assert_eq!(t.helper.map(|h| (h.pid, h.start_ticks)), Some((PID, 777)));
    assert_eq!(t.mount_path(), Some(path_of("manual").as_str()));
    assert!(p.findings.is_empty(), "{:?}", p.findings);
}

#[test]
fn given_a_pid_file_for_an_unrelated_or_dead_process_when_planned_then_only_the_file_goes() {
    for h in [HelperIs::PidReused, HelperIs::Exited] {
        let o = reality("stale", true, h, MountIs::Absent);
        let p = plan(&JournalState::default(), &o, clock_of(false));
        let (records, effects) = only_step(&p);
        assert!(matches!(&records[0].event, Event::Cleaned { .. }));
        assert_eq!(effects, [Effect::RemoveStalePidFile { pid: Some(PID) }]);
        assert!(signalled(&p).is_empty());
    }
}

#[test]
fn given_a_live_helper_without_its_mount_and_no_journal_when_planned_then_left_alone_and_reported()
{
    let o = reality("slow", true, HelperIs::Alive, MountIs::Absent);
    let p = plan(&JournalState::default(), &o, clock_of(false));
    assert!(p.steps.is_empty());
    assert!(p.findings.iter().any(|f| f.what.contains("no live mount")));
}

#[test]
fn given_pid_files_with_bad_names_or_content_when_planned_then_handled_without_panic() {
    let mut o = obs();
    o.pid_files.push(PidFile { name: "../etc".into(), pid: Some(1) });
    o.pid_files.push(PidFile { name: "junk".into(), pid: None });
    let p = plan(&JournalState::default(), &o, clock_of(false));
    assert!(p.findings.iter().any(|f| f.what.contains("not named after a valid target id")));
    let (_, effects) = only_step(&p);
    assert_eq!(effects, [Effect::RemoveStalePidFile { pid: None }]);
}

#[test]
fn given_a_mount_under_the_base_that_nothing_claims_when_planned_then_reported_not_touched() {
    let mut o = obs();
    o.mounts.push(mount_entry(path_of("foreign"), "fuse.sshfs", true));
    let p = plan(&JournalState::default(), &o, clock_of(false));
    assert!(p.steps.is_empty());
    assert_eq!(p.findings.len(), 1);
    assert!(p.findings[0].what.contains("not claimed"));
}

#[test]
fn given_mounted_s3_where_the_path_holds_a_foreign_filesystem_when_planned_then_lost_and_foreign_mount_kept(
) {
    let j = journal_of(vec![Rig::mounted_s3("t", PID).state]);
    let mut o = reality("t", true, HelperIs::Exited, MountIs::Absent);
    o.mounts.push(mount_entry(path_of("t"), "ext4", false));
    let p = plan(&j, &o, clock_of(false));
    let (records, _) = only_step(&p);
    assert!(matches!(&records[0].event, Event::Lost { cleanup, .. } if !cleanup.mount));
    assert!(p.findings.iter().any(|f| f.what.contains("not a s3 mount")));
}

#[test]
fn given_dirty_target_whose_leftovers_are_gone_when_planned_then_cleaned() {
    let mut j = journal_of(vec![Rig::dirty_s3("t", PID).state]);
    let mut o = reality("t", true, HelperIs::Exited, MountIs::Absent);
    o.pid_files.clear();
    let p = plan(&j, &o, clock_of(false));
    apply(&mut j, &p);
    assert_eq!(j.target(&target("t")).unwrap().phase, Phase::Unmounted);
}

/// A process that passed the gatherer's helper proof but does not hold the FUSE connection
/// of the mount at its path (it only claims the path).
fn claimant(pid: u32, name: &str) -> Process {
    Process {
        pid,
        start_ticks: 5,
        helper_for: Some(path_of(name)),
        serves_mount: false,
        nonce: None,
    }
}

#[test]
fn given_a_dead_mount_and_a_claimant_that_does_not_serve_it_when_planned_then_it_is_never_signalled(
) {
    let j = journal_of(vec![Rig::mounted_s3("t", PID).state]);
    let mut o = reality("t", true, HelperIs::Exited, MountIs::Dead);
    o.processes.push(claimant(PID + 7, "t"));
    let p = plan(&j, &o, clock_of(false));
    let (records, effects) = only_step(&p);
    let Event::Lost { cleanup, .. } = &records[0].event else { panic!("{records:?}") };
    assert_eq!(cleanup.helper, None, "the claimant would be signalled");
    assert!(cleanup.mount && cleanup.pid_file);
    assert!(
        effects
            .iter()
            .all(|e| !matches!(e, Effect::Cleanup { cleanup, .. } if cleanup.helper.is_some())),
        "{effects:?}"
    );
    // The same claimant with no mount at all is the spawned-but-unjournaled helper of an
    // interrupted mount: proven by the gatherer, it is stopped.
    let j = journal_of(vec![Rig::mounted_s3("t", PID).state]);
    let mut o = reality("t", true, HelperIs::Exited, MountIs::Absent);
    o.processes.push(claimant(PID + 7, "t"));
    let (records, _) = only_step(&plan(&j, &o, clock_of(false)));
    let Event::Lost { cleanup, .. } = &records[0].event else { panic!("{records:?}") };
    assert_eq!(cleanup.helper.map(|h| h.pid), Some(PID + 7));
}

#[test]
fn given_a_hand_written_pid_file_naming_a_helper_that_does_not_serve_the_mount_when_planned_then_not_adopted(
) {
    let mut o = obs();
    o.pid_files.push(PidFile { name: "hand".into(), pid: Some(PID) });
    o.processes.push(claimant(PID, "hand"));
    o.mounts.push(mount_entry(path_of("hand"), "fuse.x", false));
    let p = plan(&JournalState::default(), &o, clock_of(false));
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert!(p.findings.iter().any(|f| f.what.contains("does not hold the FUSE connection")));
    o.processes[0].serves_mount = true;
    let (records, _) = only_step(&plan(&JournalState::default(), &o, clock_of(false)));
    assert!(matches!(records[0].event, Event::Adopted { .. }), "{records:?}");
}

#[test]
fn given_distrusted_observations_when_planned_then_they_are_reported_and_nothing_is_done() {
    let mut o = obs();
    let what = "PID file /run/x.pid is a symbolic link; not read, left alone".to_owned();
    o.distrusted.push(dms_journal::reconcile::Finding { target: Some(target("x")), what });
    let p = plan(&JournalState::default(), &o, clock_of(false));
    assert!(p.steps.is_empty());
    assert_eq!(p.findings, o.distrusted);
}
