//! Durability, group commit, history, request index, replay, locking.

use super::*;
use dms_journal::store::StoreError;
use dms_journal::{Phase, Record};
use std::sync::{Arc, Barrier};

#[test]
fn given_appended_records_when_the_journal_is_reopened_then_they_are_replayed() {
    let (_dir, path) = scratch();
    let records = mounted("t1", 1_000, Some("req-1"), 1);
    let seqs = {
        let (journal, replay) = open(&path);
        assert_eq!(replay.records, 0);
        let before = journal.flushes();
        let seqs = journal.append(&records).expect("append");
        assert!(journal.flushes() > before, "append must flush before it returns");
        seqs
    };
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1]);

    let (journal, replay) = open(&path);
    assert_eq!(replay.records, 2);
    assert!(replay.problems.is_empty(), "{:?}", replay.problems);
    assert_eq!(replay.state, fold(&records));
    assert_eq!(replay.state.target(&t("t1")).map(|s| s.phase), Some(Phase::Mounted));
    let history = journal.history(&t("t1")).expect("history");
    let listed: Vec<_> = history.records.into_iter().map(|r| r.expect("intact")).collect();
    assert_eq!(listed.iter().map(|s| s.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(
        listed.iter().map(|s| &s.record).collect::<Vec<_>>(),
        records.iter().collect::<Vec<_>>()
    );
}

#[test]
fn given_a_process_that_dies_right_after_append_when_reopened_then_the_records_are_there() {
    let (_dir, path) = scratch();
    let status = spawn_child("append-then-abort", &path).wait().expect("child runs");
    assert!(!status.success(), "the child aborts after appending");
    let (_journal, replay) = open(&path);
    let state = replay.state.target(&t("crash")).expect("the appended records survived");
    assert_eq!(state.phase, Phase::Mounted);
    assert!(state.requests.contains_key(&k("req-crash")));
}

#[test]
fn given_a_deferred_append_when_made_durable_then_one_flush_carries_it_and_it_is_replayed() {
    let (_dir, path) = scratch();
    let records = mounted("t1", 1_000, Some("req-1"), 1);
    {
        let (journal, _) = open(&path);
        let before = journal.flushes();
        let (seqs, ticket) = journal.append_deferred(&records).expect("apply");
        assert_eq!(seqs.len(), 2);
        assert_eq!(journal.flushes(), before, "a deferred append does not wait for the disk");
        assert_eq!(
            journal.history(&t("t1")).expect("history").records.len(),
            2,
            "readable at once"
        );
        journal.make_durable(ticket).expect("flush");
        assert_eq!(journal.flushes(), before + 1);
        journal.make_durable(ticket).expect("already durable");
        assert_eq!(journal.flushes(), before + 1, "a durable ticket needs no second flush");
    }
    let (_journal, replay) = open(&path);
    assert_eq!(replay.state, fold(&records));
}

#[test]
fn given_a_deferred_append_then_a_durable_one_when_the_process_dies_then_both_survive() {
    let (_dir, path) = scratch();
    let status = spawn_child("deferred-then-append-then-abort", &path).wait().expect("child runs");
    assert!(!status.success(), "the child aborts after appending");
    let (_journal, replay) = open(&path);
    for target in ["early", "late"] {
        let state = replay.state.target(&t(target)).expect("both appends survived");
        assert_eq!(state.phase, Phase::Mounted, "{target}");
    }
}

#[test]
fn given_64_concurrent_appenders_when_all_return_then_all_records_landed_with_shared_flushes() {
    const THREADS: u8 = 64;
    const EACH: u8 = 8;
    let (_dir, path) = scratch();
    let (journal, _) = open(&path);
    let journal = Arc::new(journal);
    let start = Arc::new(Barrier::new(THREADS.into()));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let (journal, start) = (Arc::clone(&journal), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                (0..EACH)
                    .flat_map(|n| {
                        let key = format!("r{i}-{n}");
                        let record = mounted(&format!("t{i}"), 1_000, Some(&key), n).remove(0);
                        journal.append(&[record]).expect("append")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> =
        threads.into_iter().flat_map(|t| t.join().expect("no panic")).collect();
    let appends = u64::from(THREADS) * u64::from(EACH);
    let flushes = journal.flushes();
    // Without group commit every append flushes on its own. How much is shared depends on
    // the scheduler and the disk, so only "some" is asserted.
    assert!(flushes < appends, "{appends} appends took {flushes} flushes: none shared");
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len() as u64, appends, "every append got its own seq");
    drop(journal);

    let (journal, replay) = open(&path);
    assert_eq!(replay.records, appends);
    assert_eq!(journal.records().count() as u64, appends);
    for i in 0..THREADS {
        assert_eq!(
            journal.request_target(&k(&format!("r{i}-7"))).expect("index"),
            Some(t(&format!("t{i}")))
        );
    }
}

#[test]
fn given_interleaved_targets_when_history_is_read_then_each_sees_only_its_records_in_order() {
    let (_dir, path) = scratch();
    let (journal, _) = open(&path);
    // "a", "a-b" and "ab" share prefixes: the key separator must keep them apart.
    let mut expected: Vec<(&str, Record)> = Vec::new();
    for (round, name) in ["a", "a-b", "ab", "a", "ab", "a-b"].iter().enumerate() {
        let at = 1_000 * (round as u64 + 1);
        let batch =
            if round < 3 { mounted(name, at, None, 1) } else { unmounted(name, at, None, 2) };
        journal.append(&batch).expect("append");
        expected.extend(batch.into_iter().map(|r| (*name, r)));
    }
    for name in ["a", "a-b", "ab"] {
        let history = journal.history(&t(name)).expect("history");
        assert!(history.snapshot.is_none());
        let stored: Vec<_> = history.records.into_iter().map(|r| r.expect("intact")).collect();
        let want: Vec<&Record> =
            expected.iter().filter(|(n, _)| *n == name).map(|(_, r)| r).collect();
        assert_eq!(stored.iter().map(|s| &s.record).collect::<Vec<_>>(), want, "{name}");
        assert!(stored.windows(2).all(|w| w[0].seq < w[1].seq), "{name}: seq order");
    }
    assert!(journal.history(&t("abc")).expect("history").records.is_empty());

    let all: Vec<_> = journal.records().map(|r| r.expect("intact")).collect();
    let targets: Vec<&str> = all.iter().map(|s| s.record.target.as_str()).collect();
    assert_eq!(
        targets,
        ["a"; 4].into_iter().chain(["a-b"; 4]).chain(["ab"; 4]).collect::<Vec<_>>()
    );
}

#[test]
fn given_records_with_request_keys_when_looked_up_then_the_index_names_their_target() {
    let (_dir, path) = scratch();
    {
        let (journal, _) = open(&path);
        journal.append(&mounted("t1", 1_000, Some("req-1"), 1)).expect("append");
        journal.append(&[answered("t2", 2_000, "req-2", 2)]).expect("append");
        assert_eq!(journal.request_target(&k("req-1")).expect("index"), Some(t("t1")));
        assert_eq!(journal.request_target(&k("req-2")).expect("index"), Some(t("t2")));
        assert_eq!(journal.request_target(&k("unknown")).expect("index"), None);
        // A client reusing a key for another target: the latest record wins.
        journal.append(&[answered("t3", 3_000, "req-1", 3)]).expect("append");
    }
    let (journal, _) = open(&path);
    assert_eq!(journal.request_target(&k("req-1")).expect("index"), Some(t("t3")));
    assert_eq!(journal.request_target(&k("req-2")).expect("index"), Some(t("t2")));
}

#[test]
fn given_a_mixed_workload_when_replayed_then_the_state_equals_the_in_memory_fold() {
    let (_dir, path) = scratch();
    let mut all = Vec::new();
    {
        let (journal, _) = open(&path);
        for round in 0..5u64 {
            for (i, name) in ["n1", "n2", "n3"].iter().enumerate() {
                let at = 10_000 * round + i as u64;
                let op = (round * 3 + i as u64) as u8;
                let key = format!("{name}-{round}");
                let mut batch = mounted(name, at, Some(&key), op);
                if (round + i as u64).is_multiple_of(2) {
                    batch.extend(unmounted(name, at + 5, Some(&format!("{key}-u")), op + 100));
                } else {
                    batch.push(answered(name, at + 5, &format!("{key}-again"), op));
                    batch.extend(unmounted(name, at + 7, Some(&format!("{key}-u")), op + 100));
                }
                journal.append(&batch).expect("append");
                all.extend(batch);
            }
        }
    }
    let (_journal, replay) = open(&path);
    assert_eq!(replay.state, fold(&all));
    assert_eq!(replay.records, all.len() as u64);
    assert!(replay.problems.is_empty(), "{:?}", replay.problems);
}

#[test]
fn given_an_illegal_record_when_replayed_then_it_is_reported_and_still_applied() {
    let (_dir, path) = scratch();
    let records = vec![rec("t1", 1_000, None, 1, Event::Verified)];
    let seqs = open(&path).0.append(&records).expect("append");
    let (_journal, replay) = open(&path);
    assert_eq!(replay.problems.len(), 1, "{:?}", replay.problems);
    let problem = &replay.problems[0];
    assert_eq!((problem.target.as_str(), problem.seq), ("t1", seqs[0]));
    assert_eq!(problem.kind, dms_journal::store::ProblemKind::Illegal);
    assert!(problem
        .to_string()
        .starts_with(&format!("target t1, seq {}: illegal record: ", seqs[0])));
    assert_eq!(replay.state, fold(&records), "apply is total: the record is folded anyway");
}

#[test]
fn given_an_open_journal_when_opened_again_in_process_then_it_is_locked() {
    let (_dir, path) = scratch();
    let (journal, _) = open(&path);
    match Journal::open(&path) {
        Err(StoreError::Locked { path: locked }) => assert_eq!(locked, path),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(journal);
    open(&path); // the lock goes with the handle
}

#[test]
fn given_a_journal_held_by_another_process_when_opened_then_it_is_locked() {
    let (_dir, path) = scratch();
    open(&path); // create it, then let the child hold it
    let mut child = spawn_child("hold", &path);
    let held = wait_for_line(&mut child, "holding");
    let result = Journal::open(&path);
    child.kill().expect("stop the child");
    child.wait().expect("reap the child");
    assert!(held, "the child did not get to hold the journal");
    match result {
        Err(err @ StoreError::Locked { .. }) => {
            assert!(err.to_string().contains("locked by another process"), "{err}")
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn given_everything_compacted_when_reopened_then_new_seqs_still_follow_the_old_ones() {
    let (_dir, path) = scratch();
    let first = {
        let (journal, _) = open(&path);
        let seqs = journal.append(&mounted("t1", 1_000, None, 1)).expect("append");
        let report = journal.compact(Timestamp(1_000_000), 0).expect("compact");
        assert_eq!(report.records_removed, 2);
        seqs
    };
    let (journal, _) = open(&path);
    assert_eq!(journal.records().count(), 0);
    let next = journal.append(&unmounted("t1", 2_000_000, None, 2)).expect("append");
    assert!(next[0] > first[1], "seq {} reused after {}", next[0], first[1]);
}

#[test]
fn given_an_empty_append_then_nothing_is_written_or_flushed() {
    let (_dir, path) = scratch();
    let (journal, _) = open(&path);
    assert_eq!(journal.append(&[]).expect("append"), Vec::<u64>::new());
    assert_eq!(journal.flushes(), 0);
    assert_eq!(journal.path(), path);
    fn shareable<T: Send + Sync + std::fmt::Debug>(_: &T) {}
    shareable(&journal);
    assert!(format!("{journal:?}").contains("Journal"));
}
