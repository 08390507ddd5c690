//! Damaged bytes in the database: reported with target and seq, never a panic, never
//! spreading to other targets.

use super::*;
use dms_journal::codec;
use dms_journal::store::{Problem, ProblemKind};
use dms_journal::{Phase, TargetState};

fn corrupt_problems(problems: &[Problem]) -> Vec<(&str, u64)> {
    problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Corrupt)
        .map(|p| (p.target.as_str(), p.seq))
        .collect()
}

fn flip(mut bytes: Vec<u8>, bit: usize) -> Vec<u8> {
    bytes[bit / 8] ^= 1 << (bit % 8);
    bytes
}

#[test]
fn given_a_corrupt_last_record_when_replayed_then_it_is_reported_and_the_state_before_it_kept() {
    let (_dir, path) = scratch();
    let (a, b) = (mounted("a", 1_000, Some("ra"), 1), mounted("b", 1_000, Some("rb"), 2));
    let bad_seq = {
        let (journal, _) = open(&path);
        journal.append(&a).expect("append");
        let seqs = journal.append(&b).expect("append");
        let torn = codec::encode_record(&unmounted("a", 2_000, None, 3)[0]).expect("encode");
        let bad_seq = seqs[1] + 1;
        journal.write_raw_for_tests(&t("a"), bad_seq, &flip(torn, 200)).expect("raw write");
        bad_seq
    };
    let (_journal, replay) = open(&path);
    assert_eq!(corrupt_problems(&replay.problems), [("a", bad_seq)]);
    let problem = &replay.problems[0];
    assert!(
        problem.to_string().starts_with(&format!("target a, seq {bad_seq}: corrupt record: ")),
        "{problem}"
    );
    assert!(problem.error.contains("CRC"), "{problem}");
    assert_eq!(replay.state.target(&t("a")), fold(&a).target(&t("a")));
    assert_eq!(replay.state.target(&t("b")), fold(&b).target(&t("b")));
    assert_eq!(replay.records, 4);
}

#[test]
fn given_damage_in_the_middle_when_replayed_then_later_records_of_that_target_are_not_folded() {
    let (_dir, path) = scratch();
    let good = mounted("a", 1_000, None, 1);
    let later = unmounted("a", 2_000, None, 2);
    {
        let (journal, _) = open(&path);
        let seqs = journal.append(&good).expect("append");
        journal.write_raw_for_tests(&t("a"), seqs[1] + 1, b"garbage").expect("raw write");
        journal.write_raw_for_tests(&t("a"), seqs[1] + 2, &[]).expect("raw write");
        journal.append(&later).expect("append");
        journal.append(&mounted("b", 1_000, None, 3)).expect("append");
    }
    let (_journal, replay) = open(&path);
    assert_eq!(corrupt_problems(&replay.problems).len(), 1, "{:?}", replay.problems);
    assert!(replay.problems[0].error.contains("3 later record(s)"), "{}", replay.problems[0]);
    assert_eq!(replay.state.target(&t("a")), fold(&good).target(&t("a")));
    assert_eq!(replay.state.target(&t("b")).map(|s| s.phase), Some(Phase::Mounted));
}

#[test]
fn given_a_damaged_target_when_appended_to_again_then_replay_continues_from_the_last_good_state() {
    let (_dir, path) = scratch();
    let good = mounted("a", 1_000, Some("r1"), 1);
    let bad_seq = {
        let (journal, _) = open(&path);
        let seqs = journal.append(&good).expect("append");
        journal.write_raw_for_tests(&t("a"), seqs[1] + 1, b"DMSJ torn").expect("raw write");
        seqs[1] + 1
    };
    // The daemon restarts, sees the target mounted (the last good state) and unmounts it.
    let (journal, replay) = open(&path);
    assert_eq!(replay.state.target(&t("a")).map(|s| s.phase), Some(Phase::Mounted));
    let next = unmounted("a", 5_000, Some("r2"), 2);
    let seqs = journal.append(&next).expect("append");
    assert!(seqs[0] > bad_seq);
    drop(journal);

    let (journal, replay) = open(&path);
    let expected = fold(good.iter().chain(&next));
    assert_eq!(replay.state, expected, "the records appended after the damage are replayed");
    assert_eq!(
        corrupt_problems(&replay.problems),
        [("a", bad_seq)],
        "the damage is still reported"
    );
    assert!(replay.problems[0].error.contains("set aside"), "{}", replay.problems[0]);
    let history = journal.history(&t("a")).expect("history");
    assert!(history.records.iter().all(Result::is_ok), "set aside: no longer in the history");
}

#[test]
fn given_a_damaged_snapshot_when_replayed_then_the_target_is_reported_and_covered_records_stay_dead(
) {
    let (_dir, path) = scratch();
    let (journal, _) = open(&path);
    journal.append(&mounted("a", 1_000, None, 1)).expect("append");
    journal.append(&mounted("b", 1_000, None, 2)).expect("append");
    journal.compact(Timestamp(100_000), 0).expect("compact");
    let (seq, _) = journal.history(&t("a")).expect("history").snapshot.expect("snapshot");
    let mut envelope = codec::encode_snapshot(&TargetState::new(t("a"))).expect("encode");
    envelope.truncate(envelope.len() - 1);
    journal.write_raw_snapshot_for_tests(&t("a"), seq, &envelope).expect("raw write");
    // A leftover of an interrupted compaction, covered by the (now damaged) snapshot.
    let leftover = codec::encode_record(&mounted("a", 1_000, None, 1)[0]).expect("encode");
    journal.write_raw_for_tests(&t("a"), seq, &leftover).expect("raw write");
    drop(journal);

    let (journal, replay) = open(&path);
    assert_eq!(corrupt_problems(&replay.problems), [("a", seq)], "{:?}", replay.problems);
    assert!(replay.problems[0].error.starts_with("snapshot: "), "{}", replay.problems[0]);
    assert_eq!(replay.state.target(&t("a")), None);
    assert_eq!(replay.state.target(&t("b")).map(|s| s.phase), Some(Phase::Mounted));
    let history = journal.history(&t("a")).expect("history");
    assert!(
        history.snapshot.is_none() && history.records.len() == 1 && history.records[0].is_err()
    );
    let listed = journal.snapshots().expect("snapshots");
    assert!(listed
        .iter()
        .any(|(target, s, state)| *target == t("a") && *s == seq && state.is_err()));

    // The engine starts the target afresh; the covered leftover must not come back.
    let fresh = mounted("a", 200_000, None, 3);
    journal.append(&fresh).expect("append");
    drop(journal);
    let (_journal, replay) = open(&path);
    assert_eq!(replay.state.target(&t("a")), fold(&fresh).target(&t("a")));
    assert_eq!(replay.records, 2, "only the fresh records are folded");
}

/// Every truncation and every single-bit flip of a valid record, and assorted garbage.
fn damaged_variants() -> Vec<Vec<u8>> {
    let record = answered("x", 1_000, "req", 1);
    let valid = codec::encode_record(&record).expect("encode");
    let mut variants: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    variants.extend((0..valid.len() * 8).map(|bit| flip(valid.clone(), bit)));
    let mut longer = valid.clone();
    longer.push(0);
    variants.push(longer);
    let mut huge = valid[..16].to_vec();
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    variants.push(huge);
    variants.push(codec::encode_snapshot(&TargetState::new(t("x"))).expect("encode"));
    // Intact, but a record of another target stored under this one.
    variants.push(codec::encode_record(&answered("elsewhere", 1_000, "req", 1)).expect("encode"));
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for len in [1, 15, 16, 17, 64, 1000] {
        let noise = (0..len).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        });
        let mut bytes = b"DMSJ\x01\x00\x01\x00".to_vec();
        bytes.extend(noise);
        variants.push(bytes);
    }
    variants
}

#[test]
fn given_truncated_bit_flipped_or_garbage_records_when_read_then_each_is_reported_without_panic() {
    let (_dir, path) = scratch();
    let variants = damaged_variants();
    {
        let (journal, _) = open(&path);
        journal.append(&mounted("intact", 1_000, None, 1)).expect("append");
        for (i, bytes) in variants.iter().enumerate() {
            journal
                .write_raw_for_tests(&t(&format!("g{i}")), 1_000 + i as u64, bytes)
                .expect("raw");
        }
        let listed: Vec<_> = journal.records().collect();
        assert_eq!(listed.iter().filter(|r| r.is_err()).count(), variants.len());
    }
    let (journal, replay) = open(&path);
    let corrupt = corrupt_problems(&replay.problems);
    assert_eq!(corrupt.len(), variants.len(), "every variant is one corrupt record");
    for (i, _) in variants.iter().enumerate() {
        let name = format!("g{i}");
        assert!(corrupt.contains(&(name.as_str(), 1_000 + i as u64)), "{name} not reported");
        assert_eq!(replay.state.target(&t(&name)), None, "{name} must not be folded");
        let history = journal.history(&t(&name)).expect("history");
        assert!(matches!(history.records.as_slice(), [Err(_)]), "{name}");
    }
    assert_eq!(replay.state.target(&t("intact")).map(|s| s.phase), Some(Phase::Mounted));
}
