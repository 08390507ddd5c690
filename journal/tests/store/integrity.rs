//! History sled loses without a trace: the damage an unlucky disk or a careless operator
//! does to sled's own files, done for real to a journal of 212 records, then opened. The
//! rule: either everything is still there, or the loss is reported. Never a quiet subset.

use super::*;
use dms_journal::store::{Loss, StoreError};

const TARGETS: usize = 53;

/// 53 targets, each mounted and unmounted (4 records), every record with a request key;
/// returns the history it should have, then the journal is closed.
fn journal_of_212(path: &Path) -> Vec<(TargetId, usize)> {
    let (journal, _) = open(path);
    let mut expected = Vec::new();
    for i in 0..TARGETS {
        let name = format!("target-{i:03}");
        let at = 1_000 + i as u64 * 10;
        let req = format!("req-{i}");
        journal.append(&mounted(&name, at, Some(&req), 1)).unwrap();
        journal.append(&unmounted(&name, at + 5, Some(&format!("{req}-u")), 2)).unwrap();
        expected.push((t(&name), 4));
    }
    drop(journal);
    expected
}

/// What a reopened journal says about the damage: `Err` text if it does not open, else
/// whether it reports anything, and whether every record is still there.
enum Outcome {
    Refused(StoreError),
    Reported(Replay),
    Intact,
    Silent(usize),
}

fn reopen(path: &Path, expected: &[(TargetId, usize)]) -> Outcome {
    let (journal, replay) = match Journal::open(path) {
        Ok(opened) => opened,
        Err(e) => return Outcome::Refused(e),
    };
    if !replay.losses.is_empty() || !replay.problems.is_empty() {
        return Outcome::Reported(replay);
    }
    let present: usize = expected
        .iter()
        .map(|(target, _)| journal.history(target).map(|h| h.records.len()).unwrap_or(0))
        .sum();
    let want: usize = expected.iter().map(|(_, n)| n).sum();
    if present == want {
        Outcome::Intact
    } else {
        Outcome::Silent(present)
    }
}

fn damage(path: &Path, file: &str, how: impl FnOnce(&mut Vec<u8>)) {
    let file = path.join(file);
    let mut bytes = std::fs::read(&file).unwrap();
    how(&mut bytes);
    std::fs::write(&file, bytes).unwrap();
}

/// xorshift: the same "random" bytes on every run, so a failure reproduces.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One way of damaging a file's bytes.
type Damage = dyn Fn(&mut Vec<u8>);

#[test]
fn given_a_damaged_or_truncated_sled_file_when_opened_then_the_loss_is_never_silent() {
    let variants: Vec<(&str, bool, Box<Damage>)> = vec![
        (
            "64 bytes flipped mid-file",
            false,
            Box::new(|b: &mut Vec<u8>| {
                let mid = b.len() / 2;
                b[mid..mid + 64].iter_mut().for_each(|x| *x ^= 0xff);
            }),
        ),
        (
            "8 bytes flipped at a third",
            false,
            Box::new(|b: &mut Vec<u8>| {
                let at = b.len() / 3;
                b[at..at + 8].iter_mut().for_each(|x| *x ^= 0x5a);
            }),
        ),
        ("truncated to half", true, Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2))),
        (
            "first 4 KiB randomized",
            true,
            Box::new(|b: &mut Vec<u8>| {
                let n = b.len().min(4096);
                b[..n].copy_from_slice(&noise(42, n));
            }),
        ),
    ];
    for (what, must_detect, how) in variants {
        let (_dir, path) = scratch();
        let expected = journal_of_212(&path);
        damage(&path, "db", how);
        match reopen(&path, &expected) {
            Outcome::Refused(e) => {
                assert!(!e.to_string().is_empty(), "{what}");
            }
            Outcome::Reported(replay) => {
                let text: Vec<String> = replay.losses.iter().map(ToString::to_string).collect();
                assert!(!text.is_empty() || !replay.problems.is_empty(), "{what}");
            }
            Outcome::Intact => {
                assert!(!must_detect, "{what}: damage that lost nothing?");
            }
            Outcome::Silent(left) => panic!("{what}: {left} of 212 records left, nothing said"),
        }
    }
}

#[test]
fn given_a_lost_journal_when_accepted_then_it_is_resealed_journaled_and_takes_writes_again() {
    let (_dir, path) = scratch();
    let expected = journal_of_212(&path);
    damage(&path, "db", |b| b.truncate(b.len() / 2));
    let (journal, replay) = match Journal::open(&path) {
        Ok(opened) => opened,
        Err(e) => panic!("sled refused the truncated file outright: {e}"),
    };
    assert!(!replay.losses.is_empty(), "{:?}", replay.losses);
    let err = journal.append(&mounted("after", 9_000, Some("req-after"), 3)).unwrap_err();
    assert!(matches!(err, StoreError::Unaccepted { .. }), "{err}");
    assert!(err.to_string().contains("dms-journal accept-loss"), "{err}");
    let accepted = journal.accept_losses(Timestamp(9_500)).unwrap();
    assert_eq!(accepted, replay.losses);
    let seqs = journal.append(&mounted("after", 9_000, Some("req-after"), 3)).unwrap();
    assert!(seqs[0] > 212, "the seqs of lost records are handed out again: {seqs:?}");
    drop(journal);

    let (journal, replay) = open(&path);
    assert!(replay.losses.is_empty(), "{:?}", replay.losses);
    let accepted = journal.accepted_losses().unwrap();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].0, 9_500);
    assert!(!accepted[0].1.is_empty());
    assert!(journal.history(&t("after")).unwrap().records.len() == 2);
    let _ = expected;
}

#[test]
fn given_a_missing_or_foreign_sidecar_when_opened_then_it_is_a_loss() {
    let (_dir, path) = scratch();
    journal_of_212(&path);
    let sidecar = path.join("dms-seal");
    let saved = std::fs::read(&sidecar).unwrap();
    std::fs::remove_file(&sidecar).unwrap();
    let (_, replay) = open(&path);
    assert!(matches!(replay.losses[..], [Loss::SidecarMissing { .. }]), "{:?}", replay.losses);

    // The sidecar of another journal beside this one.
    let (_other_dir, other) = scratch();
    journal_of_212(&other);
    std::fs::copy(other.join("dms-seal"), &sidecar).unwrap();
    let (_, replay) = open(&path);
    assert!(matches!(replay.losses[..], [Loss::Foreign { .. }]), "{:?}", replay.losses);

    // Its own sidecar back: clean again.
    std::fs::write(&sidecar, saved).unwrap();
    assert!(open(&path).1.losses.is_empty());
}

/// sled itself, under the journal: a journal just dropped may hold sled's lock a moment
/// longer (its background flusher ends after the handle), so a lock is retried briefly, as
/// `Journal::open` does.
fn raw_sled(path: &std::path::Path) -> sled::Db {
    let mut tries = 0;
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if tries < 50 && e.to_string().contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sled::open {}: {e}", path.display()),
        }
    }
}

#[test]
fn given_a_journal_of_an_earlier_version_when_opened_then_it_is_sealed_without_a_loss() {
    let (_dir, path) = scratch();
    journal_of_212(&path);
    // An earlier version wrote neither mark.
    {
        let db = raw_sled(&path);
        db.remove(b"mseal").unwrap();
        db.flush().unwrap();
    }
    std::fs::remove_file(path.join("dms-seal")).unwrap();
    assert!(open(&path).1.losses.is_empty());
    assert!(path.join("dms-seal").exists());
    // Sealed now: losing records from here on is noticed.
    {
        let db = raw_sled(&path);
        let key = db.scan_prefix(b"r").keys().next().unwrap().unwrap();
        db.remove(key).unwrap();
        db.flush().unwrap();
    }
    let losses = open(&path).1.losses;
    assert!(losses.contains(&Loss::Records { sealed: 212, found: 211 }), "{losses:?}");
}

#[test]
fn given_compaction_and_set_aside_damage_when_reopened_then_the_seal_still_agrees() {
    let (_dir, path) = scratch();
    journal_of_212(&path);
    {
        let (journal, _) = open(&path);
        let report = journal.compact(Timestamp(1_000_000), 0).unwrap();
        assert!(report.records_removed > 0);
        journal.write_raw_for_tests(&t("target-000"), 10_000, b"garbage").unwrap();
    }
    let (journal, replay) = open(&path);
    assert!(replay.losses.is_empty(), "{:?}", replay.losses);
    assert_eq!(replay.problems.len(), 1, "the torn record is a problem, not a loss");
    // The next append to the damaged target sets the damage aside.
    journal.append(&mounted("target-000", 20_000, Some("req-again"), 4)).unwrap();
    drop(journal);
    assert!(open(&path).1.losses.is_empty());
}

#[test]
fn given_a_random_conf_file_when_opened_then_the_error_says_the_journal_is_damaged() {
    let (_dir, path) = scratch();
    journal_of_212(&path);
    damage(&path, "conf", |b| *b = noise(7, b.len().max(64)));
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains("is damaged"), "{err}");
}
