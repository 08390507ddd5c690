//! The seed corpus: named inputs for every target, generated here so they stay meaningful
//! when the formats change. `tests/replay_corpus.rs` checks that the committed
//! `corpus/<target>/seed-*` files are exactly these, and rewrites them with `DMS_BLESS=1`.
//!
//! * `state_machine`: hand-written scripts walking every path of the machine (S3 and NFS
//!   mounts and unmounts, each failure, cleanup, busy and stale outcomes, repeats of decided
//!   requests, checkpoints and reboots mid-operation), plus a few raw byte strings.
//! * `decode_record`: valid encodings of records and snapshots those scripts produce, the
//!   reconciler's events (which `decide` never returns), and damaged envelopes.
//! * `wire`: the seed guide's requests and one input per refusal of the codec.

mod scripts;
mod wire;

use crate::model::{self, spec_kind, BOOT, START};
use dms_journal::codec::{encode_record, encode_snapshot, HEADER_LEN};
use dms_journal::{
    Cleanup, Event, HelperIdentity, MountStep, Phase, Record, TargetId, TargetSpec, UnmountStep,
};
use scripts::scripts;
use std::collections::BTreeMap;

/// One seed file: `corpus/<target>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Every seed, for every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for (name, script) in scripts() {
        seeds.push(Seed {
            target: "state_machine",
            name: format!("seed-{name}"),
            bytes: script.to_bytes(),
        });
    }
    for (name, bytes) in raw_inputs() {
        seeds.push(Seed { target: "state_machine", name: format!("seed-raw-{name}"), bytes });
    }
    for (name, bytes) in encodings() {
        seeds.push(Seed { target: "decode_record", name: format!("seed-{name}"), bytes });
    }
    for (name, bytes) in wire::inputs() {
        seeds.push(Seed { target: "wire", name: format!("seed-{name}"), bytes });
    }
    seeds
}

/// Byte strings that are not written as scripts: edge cases of the parser, and noise.
fn raw_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let noise = |len: usize, seed: u32| -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    };
    vec![
        ("empty", vec![]),
        ("one-target-no-ops", vec![0]),
        ("three-targets-no-ops", vec![2]),
        ("truncated-mount", vec![1, 0, 1]),
        ("all-ones", vec![0xff; 64]),
        ("noise-64", noise(64, 1)),
        ("noise-256", noise(256, 2)),
        ("noise-1024", noise(1024, 3)),
    ]
}

/// Valid and damaged envelopes for `decode_record`.
fn encodings() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // Records and snapshots from the scripts: the first few of each event and phase.
    let mut records: BTreeMap<&'static str, Vec<Record>> = BTreeMap::new();
    let mut snapshots = BTreeMap::new();
    for (_, script) in scripts() {
        let trace = model::run(&script.to_bytes());
        for r in trace.records {
            let seen = records.entry(r.event.name()).or_default();
            if seen.len() < 2 && !seen.contains(&r) {
                seen.push(r);
            }
        }
        for s in trace.snapshots {
            snapshots.entry(format!("{:?}", s.phase)).or_insert(s);
        }
    }
    for r in reconciler_records() {
        records.entry(r.event.name()).or_default().push(r);
    }
    for (name, rs) in &records {
        for (i, r) in rs.iter().enumerate() {
            out.push((format!("record-{name}-{i}"), encode_record(r).expect("encodes")));
        }
    }
    for (i, s) in snapshots.values().enumerate() {
        let phase = phase_name(&s.phase);
        out.push((format!("snapshot-{i:02}-{phase}"), encode_snapshot(s).expect("encodes")));
    }
    // Damage, starting from a valid record and a valid snapshot.
    let record = encode_record(&records["Requested"][0]).expect("encodes");
    let snapshot =
        encode_snapshot(snapshots.values().next().expect("a snapshot")).expect("encodes");
    let mut flipped = record.clone();
    flipped[HEADER_LEN + 3] ^= 0x10;
    let mut over = record[..HEADER_LEN].to_vec();
    over[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    out.extend([
        ("bad-empty".to_owned(), vec![]),
        ("bad-header-only".to_owned(), record[..HEADER_LEN].to_vec()),
        ("bad-truncated".to_owned(), record[..record.len() - 1].to_vec()),
        ("bad-bit-flip".to_owned(), flipped),
        ("bad-over-limit".to_owned(), over),
        ("bad-record-sealed-as-snapshot".to_owned(), reseal(&record, 2, 0, &record[HEADER_LEN..])),
        (
            "bad-snapshot-sealed-as-record".to_owned(),
            reseal(&snapshot, 1, 0, &snapshot[HEADER_LEN..]),
        ),
        (
            "bad-trailing-byte".to_owned(),
            reseal(&record, 1, 0, &[&record[HEADER_LEN..], &[0]].concat()),
        ),
        ("odd-reserved-byte".to_owned(), reseal(&record, 1, 0xa5, &record[HEADER_LEN..])),
    ]);
    out
}

fn phase_name(phase: &Phase) -> &'static str {
    match phase {
        Phase::Unmounted => "unmounted",
        Phase::Mounting(MountStep::Requested) => "mounting-requested",
        Phase::Mounting(MountStep::CredsFetched) => "mounting-creds-fetched",
        Phase::Mounting(MountStep::Spawned) => "mounting-spawned",
        Phase::Mounting(MountStep::SpawnIntended(_)) => "mounting-spawn-intended",
        Phase::Mounted => "mounted",
        Phase::Unmounting(UnmountStep::Requested) => "unmounting-requested",
        Phase::Unmounting(UnmountStep::HelperStopped) => "unmounting-helper-stopped",
        Phase::Dirty(_) => "dirty",
        Phase::Healing(_) => "healing",
    }
}

/// A well-formed envelope (length and CRC right) with the given kind, reserved byte and
/// payload, and the magic and version of `valid`.
fn reseal(valid: &[u8], kind: u8, reserved: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = valid[..6].to_vec();
    out.extend([kind, reserved]);
    out.extend((payload.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out);
    h.update(payload);
    out.extend(h.finalize().to_le_bytes());
    out.extend(payload);
    out
}

/// Events only the reconciler writes, and `HelperStopped`, which only older daemons wrote
/// (journals keep it).
fn reconciler_records() -> Vec<Record> {
    let target = TargetId::new("t0").expect("valid id");
    let helper = HelperIdentity { pid: 4242, start_ticks: 99, boot: BOOT };
    let spec =
        |kind| TargetSpec { kind: spec_kind(kind), mount_path: "/var/lib/dms/mnt/a".to_owned() };
    let observation = |event| Record {
        target: target.clone(),
        at: START,
        boot: BOOT,
        request: None,
        op: None,
        event,
    };
    vec![
        observation(Event::Adopted {
            spec: spec(0),
            helper: Some(helper),
            reason: "live helper with PID file".to_owned(),
        }),
        observation(Event::Adopted {
            spec: spec(2),
            helper: None,
            reason: "mount found".to_owned(),
        }),
        observation(Event::Lost {
            reason: "new boot".to_owned(),
            cleanup: Cleanup { helper: None, mount: true, pid_file: true },
        }),
        observation(Event::Abandoned {
            reason: "interrupted".to_owned(),
            cleanup: Cleanup { helper: Some(helper), mount: false, pid_file: true },
        }),
        observation(Event::HelperStopped),
    ]
}
