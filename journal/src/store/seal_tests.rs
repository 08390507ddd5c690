#![allow(clippy::unwrap_used)]
use super::*;

fn seal(high_water: Seq, records: u64, snapshots: u64) -> Seal {
    Seal { id: [7; 16], high_water, records, snapshots }
}

fn mark(high_water: Seq) -> Mark {
    Mark { id: [7; 16], high_water }
}

const SIDECAR_PATH: &str = "/j/dms-seal";

fn run(
    stored: Option<Option<Seal>>,
    m: Option<Option<Mark>>,
    found: Found,
) -> Result<(), Vec<Loss>> {
    check(stored, m, found, Path::new(SIDECAR_PATH)).map(drop)
}

#[test]
fn given_a_seal_when_encoded_then_it_decodes_and_any_flipped_byte_is_refused() {
    let s = seal(212, 180, 12);
    let bytes = s.encode();
    assert_eq!(Seal::decode(&bytes), Some(s));
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        assert_eq!(Seal::decode(&bad), None, "byte {i}");
    }
    assert_eq!(Seal::decode(&bytes[..bytes.len() - 1]), None);
}

#[test]
fn given_marks_that_agree_with_the_tree_when_checked_then_sealed() {
    let found = Found { last_seq: 212, records: 180, snapshots: 12 };
    let s = seal(212, 180, 12);
    assert_eq!(check(Some(Some(s)), Some(Some(mark(200))), found, Path::new("x")), Ok(Some(s)));
    assert_eq!(check(None, None, found, Path::new("x")), Ok(None), "an unsealed journal");
}

#[test]
fn given_each_kind_of_loss_when_checked_then_it_is_named() {
    let found = Found { last_seq: 212, records: 180, snapshots: 12 };
    let s = Some(Some(seal(212, 180, 12)));
    let sidecar = PathBuf::from(SIDECAR_PATH);
    let cases: Vec<(Result<(), Vec<Loss>>, Loss)> = vec![
        (
            run(None, Some(Some(mark(212))), found),
            Loss::SealMissing { sidecar: sidecar.clone(), high_water: 212 },
        ),
        (run(Some(None), Some(Some(mark(1))), found), Loss::SealDamaged),
        (run(s, None, found), Loss::SidecarMissing { sidecar: sidecar.clone() }),
        (run(s, Some(None), found), Loss::SidecarDamaged { sidecar: sidecar.clone() }),
        (
            run(s, Some(Some(Mark { id: [8; 16], high_water: 1 })), found),
            Loss::Foreign { sidecar: sidecar.clone() },
        ),
        (run(s, Some(Some(mark(300))), found), Loss::RolledBack { sealed: 300, found: 212 }),
        (
            run(s, Some(Some(mark(1))), Found { last_seq: 150, ..found }),
            Loss::RolledBack { sealed: 212, found: 150 },
        ),
        (
            run(s, Some(Some(mark(1))), Found { records: 67, ..found }),
            Loss::Records { sealed: 180, found: 67 },
        ),
        (
            run(s, Some(Some(mark(1))), Found { snapshots: 0, ..found }),
            Loss::Snapshots { sealed: 12, found: 0 },
        ),
    ];
    for (got, want) in cases {
        let losses = got.unwrap_err();
        assert!(losses.contains(&want), "{want:?} not in {losses:?}");
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn given_a_sidecar_when_written_in_turn_then_the_newest_intact_slot_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sidecar, first) = Sidecar::open(dir.path()).unwrap();
    assert_eq!(first, None, "a new sidecar claims nothing");
    sidecar.write(mark(5), true).unwrap();
    sidecar.write(mark(9), false).unwrap();
    drop(sidecar);
    let (mut sidecar, got) = Sidecar::open(dir.path()).unwrap();
    assert_eq!(got, Some(Some(mark(9))));
    sidecar.write(mark(11), false).unwrap();
    drop(sidecar);
    // Tear the newest slot: the other one still answers.
    let path = dir.path().join(SIDECAR);
    let mut raw = std::fs::read(&path).unwrap();
    let newest = SLOT_LEN; // the third write (generation 3) went to slot 3 % 2
    raw[newest + 20] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    assert_eq!(Sidecar::open(dir.path()).unwrap().1, Some(Some(mark(9))));
    // Both torn: damaged, not absent.
    let other = 0; // generation 2, slot 2 % 2
    raw[other + 20] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    assert_eq!(Sidecar::open(dir.path()).unwrap().1, Some(None));
}
