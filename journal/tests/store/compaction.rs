//! Compaction: old finished history goes, current state and unfinished operations stay.

use super::*;
use dms_journal::codec;
use dms_journal::store::CompactionReport;
use dms_journal::{Phase, Record};

const NOW: Timestamp = Timestamp(100_000);
const RETENTION: u64 = 60_000;
const CUTOFF: Timestamp = Timestamp(40_000);

/// "old": finished long ago, one recent request. "busy": an unmount in flight since long
/// ago. "fresh": everything recent.
fn workload() -> Vec<Vec<Record>> {
    vec![
        mounted("old", 1_000, Some("o1"), 1),
        unmounted("old", 2_000, Some("o2"), 2),
        vec![answered("old", 3_000, "o3", 3)],
        mounted("busy", 1_000, Some("b1"), 4),
        unmounted("busy", 2_000, Some("b2"), 5)[..1].to_vec(),
        mounted("fresh", 60_000, Some("f1"), 6),
        mounted("old", 50_000, Some("o4"), 7),
    ]
}

fn expected_after(records: &[Record], cutoff: Timestamp) -> JournalState {
    let mut state = fold(records);
    for target in state.targets.values_mut() {
        target.forget_requests_before(cutoff);
    }
    state
}

fn loaded(path: &Path) -> Vec<Record> {
    let (journal, _) = open(path);
    let batches = workload();
    for batch in &batches {
        journal.append(batch).expect("append");
    }
    batches.concat()
}

#[test]
fn given_old_finished_history_when_compacted_then_it_is_gone_and_states_survive_reopen() {
    let (_dir, path) = scratch();
    let all = loaded(&path);
    let (journal, before) = open(&path);
    let report = journal.compact(NOW, RETENTION).expect("compact");
    assert_eq!(
        report,
        CompactionReport { targets_compacted: 2, records_removed: 7, requests_forgotten: 4 }
    );
    let old = journal.history(&t("old")).expect("history");
    let (_, snapshot) = old.snapshot.as_ref().expect("old has a snapshot");
    assert_eq!(snapshot.phase, Phase::Unmounted);
    let left: Vec<_> = old.records.iter().map(|r| r.as_ref().expect("intact").record.at).collect();
    assert_eq!(left, [Timestamp(50_000), Timestamp(50_001)], "only recent records remain");
    drop(journal);

    let (_journal, after) = open(&path);
    assert!(after.problems.is_empty(), "{:?}", after.problems);
    assert_eq!(after.state, expected_after(&all, CUTOFF));
    assert_eq!(
        before.state.targets.keys().collect::<Vec<_>>(),
        after.state.targets.keys().collect::<Vec<_>>()
    );
    let fresh = after.state.target(&t("fresh"));
    assert_eq!(fresh, before.state.target(&t("fresh")), "recent targets are untouched");
    assert_eq!(after.state.target(&t("old")).map(|s| s.records), Some(7), "counts survive");
}

#[test]
fn given_an_operation_in_flight_since_long_ago_when_compacted_then_it_is_kept() {
    let (_dir, path) = scratch();
    let all = loaded(&path);
    let (journal, _) = open(&path);
    journal.compact(NOW, RETENTION).expect("compact");
    // Far in the future with no retention: everything is old, but the unmount is unfinished.
    journal.compact(Timestamp(10_000_000), 0).expect("compact");
    let busy = journal.history(&t("busy")).expect("history");
    let left: Vec<_> =
        busy.records.iter().map(|r| r.as_ref().expect("intact").record.clone()).collect();
    assert_eq!(left, unmounted("busy", 2_000, Some("b2"), 5)[..1], "the in-flight record stays");
    assert_eq!(journal.request_target(&k("b2")).expect("index"), Some(t("busy")));
    drop(journal);

    let (_journal, replay) = open(&path);
    let state = replay.state.target(&t("busy")).expect("busy");
    assert_eq!(state.phase, Phase::Unmounting(dms_journal::UnmountStep::Requested));
    let op = state.op.as_ref().expect("the operation survives");
    assert_eq!(op.request, Some(k("b2")));
    assert_eq!(
        state,
        expected_after(&all, Timestamp(10_000_000)).target(&t("busy")).expect("busy")
    );
}

#[test]
fn given_compaction_when_requests_are_looked_up_then_recent_ones_answer_and_old_ones_are_gone() {
    let (_dir, path) = scratch();
    loaded(&path);
    let (journal, _) = open(&path);
    journal.compact(NOW, RETENTION).expect("compact");
    for (key, target) in [("o4", Some("old")), ("f1", Some("fresh")), ("b2", Some("busy"))] {
        assert_eq!(journal.request_target(&k(key)).expect("index"), target.map(t), "{key}");
    }
    for key in ["o1", "o2", "o3", "b1"] {
        assert_eq!(journal.request_target(&k(key)).expect("index"), None, "{key}");
    }
    drop(journal);
    let (_journal, replay) = open(&path);
    let old = replay.state.target(&t("old")).expect("old");
    assert_eq!(old.requests.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["o4"]);
}

#[test]
fn given_a_compacted_journal_when_compacted_again_then_nothing_changes() {
    let (_dir, path) = scratch();
    loaded(&path);
    let (journal, _) = open(&path);
    let first = journal.compact(NOW, RETENTION).expect("compact");
    assert!(first.records_removed > 0);
    let (flushes, histories) = (journal.flushes(), journal.records().count());
    let second = journal.compact(NOW, RETENTION).expect("compact");
    assert_eq!(second, CompactionReport::default());
    assert_eq!(journal.flushes(), flushes, "an idle compaction writes nothing");
    assert_eq!(journal.records().count(), histories);
}

#[test]
fn given_records_left_by_an_interrupted_compaction_when_replayed_then_they_are_ignored_and_removed_next_time(
) {
    let (_dir, path) = scratch();
    let all = loaded(&path);
    let (journal, _) = open(&path);
    journal.compact(NOW, RETENTION).expect("compact");
    let (covered, _) = journal.history(&t("old")).expect("history").snapshot.expect("snapshot");
    // As if the crash came after the snapshot was flushed and before the deletes.
    let stale = codec::encode_record(&mounted("old", 1_000, Some("o1"), 1)[0]).expect("encode");
    journal.write_raw_for_tests(&t("old"), covered, &stale).expect("raw write");
    journal.write_raw_for_tests(&t("old"), covered - 1, b"half a record").expect("raw write");
    drop(journal);

    let (journal, replay) = open(&path);
    assert!(
        replay.problems.is_empty(),
        "covered leftovers are not replayed: {:?}",
        replay.problems
    );
    assert_eq!(replay.state, expected_after(&all, CUTOFF));
    assert_eq!(journal.compact(NOW, RETENTION).expect("compact").records_removed, 2);
}

#[test]
fn given_a_key_reused_on_another_target_when_the_first_is_compacted_then_the_index_keeps_the_second(
) {
    let (_dir, path) = scratch();
    let (journal, _) = open(&path);
    journal.append(&mounted("x", 1_000, Some("shared"), 1)).expect("append");
    journal.append(&mounted("y", 90_000, Some("shared"), 2)).expect("append");
    let report = journal.compact(NOW, RETENTION).expect("compact");
    assert_eq!(report.requests_forgotten, 1);
    assert_eq!(journal.request_target(&k("shared")).expect("index"), Some(t("y")));
}

#[test]
fn given_a_snapshot_holding_old_requests_when_compacted_then_they_are_forgotten_and_unindexed() {
    // Compaction itself never leaves a request older than its cutoff in a snapshot (the
    // record that decided it was older still); a snapshot written with another retention,
    // or before a clock correction, may hold some.
    let (_dir, path) = scratch();
    let (journal, _) = open(&path);
    let records = mounted("idle", 50_000, Some("i1"), 1);
    let seqs = journal.append(&records).expect("append");
    let state = fold(&records).target(&t("idle")).cloned().expect("idle");
    let envelope = codec::encode_snapshot(&state).expect("encode");
    journal.write_raw_snapshot_for_tests(&t("idle"), seqs[1], &envelope).expect("raw write");
    assert_eq!(journal.request_target(&k("i1")).expect("index"), Some(t("idle")));

    let report = journal.compact(NOW, 10_000).expect("compact");
    assert_eq!(
        report,
        CompactionReport { targets_compacted: 1, records_removed: 2, requests_forgotten: 1 }
    );
    assert_eq!(journal.request_target(&k("i1")).expect("index"), None);
    let (_, snapshot) = journal.history(&t("idle")).expect("history").snapshot.expect("snapshot");
    assert!(snapshot.requests.is_empty());
    assert_eq!(snapshot.phase, Phase::Mounted, "forgetting requests keeps the state");
}

#[test]
fn given_a_key_in_both_old_and_recent_records_when_compacted_then_its_index_entry_stays() {
    let (_dir, path) = scratch();
    let (journal, _) = open(&path);
    journal.append(&mounted("x", 1_000, Some("again"), 1)).expect("append");
    journal.append(&unmounted("x", 50_000, Some("again"), 2)).expect("append");
    let report = journal.compact(NOW, RETENTION).expect("compact");
    assert_eq!((report.records_removed, report.requests_forgotten), (2, 1));
    assert_eq!(journal.request_target(&k("again")).expect("index"), Some(t("x")));
}
