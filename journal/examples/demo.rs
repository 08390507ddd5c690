//! Writes a journal of simulated requests, the way the engine will drive the journal:
//! `decide` → durable `append` → (simulated) effect → outcome fed back to `decide`. Then a
//! "restart" reopens it and runs the reconcile plan against an invented reality.
//!
//! Usage: `cargo run -p dms-journal --example demo -- DIR` then
//! `dms-journal --path DIR inspect`. No mount, process or network is touched: effect
//! outcomes are made up here; the real executors come with the daemon.

use dms_journal::machine::MountFailure;
use dms_journal::reconcile::{self, MountEntry, Observations, PidFile, Process};
use dms_journal::store::Journal;
use dms_journal::SpawnNonce;
use dms_journal::{
    decide, BootId, Clock, Command, DebugWording, FsKind, HelperIdentity, MountBase, OperationId,
    RequestKey, TargetId, TargetKind, TargetSpec, Timestamp,
};
use std::error::Error;
use std::time::{SystemTime, UNIX_EPOCH};

type Res<T> = Result<T, Box<dyn Error>>;

const BASE: &str = "/var/lib/trilio/triliovault-mounts";

fn main() -> Res<()> {
    let dir = std::env::args().nth(1).ok_or("usage: demo DIR")?;
    let (journal, _) = Journal::open(std::path::Path::new(&dir))?;
    let boot = BootId(uuid::Uuid::new_v4());
    let clock = || -> Res<Clock> {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        Ok(Clock { now: Timestamp(ms), boot })
    };
    let helper = HelperIdentity { pid: 31337, start_ticks: 123_456, boot };

    // An S3 target mounted through the whole chain, then asked again (already mounted).
    let s3 = S3Target::new("target-s3-001")?;
    let op1 = OperationId::random();
    let key1 = RequestKey::new(&uuid::Uuid::new_v4().to_string())?;
    let run = |target: &TargetId, cmd: Command| -> Res<()> {
        let state = replayed(&journal, target)?;
        let decision = decide(&state, &cmd, clock()?, &DebugWording)?;
        journal.append(&decision.records)?;
        for effect in decision.effects {
            println!("{target}: effect {effect:?}");
        }
        Ok(())
    };
    run(
        &s3.id,
        Command::Mount {
            op: op1,
            request: Some(key1.clone()),
            spec: s3.spec.clone(),
            nested: None,
            outage: None,
        },
    )?;
    run(&s3.id, Command::CredsFetched { op: op1, result: Ok(()), nonce: SpawnNonce::random() })?;
    run(&s3.id, Command::HelperSpawned { op: op1, result: Ok(helper) })?;
    run(&s3.id, Command::MountChecked { op: op1, result: Ok(()) })?;
    let key2 = RequestKey::new(&uuid::Uuid::new_v4().to_string())?;
    run(
        &s3.id,
        Command::Mount {
            op: OperationId::random(),
            request: Some(key2),
            spec: s3.spec,
            nested: None,
            outage: None,
        },
    )?;

    // An NFS target that mounts, and one whose credentials are refused.
    let nfs = TargetId::new("target-nfs-002")?;
    let spec = TargetSpec {
        kind: TargetKind::Nfs {
            export: "192.0.2.10:/exports/backup".into(),
            options: "nosuid,nodev,vers=4.1".into(),
        },
        mount_path: format!("{BASE}/target-nfs-002"),
    };
    let op2 = OperationId::random();
    run(
        &nfs,
        Command::Mount {
            op: op2,
            request: Some(RequestKey::new("nfs-req-1")?),
            spec,
            nested: None,
            outage: None,
        },
    )?;
    run(&nfs, Command::MountChecked { op: op2, result: Ok(()) })?;
    let denied = S3Target::new("target-s3-denied")?;
    let op3 = OperationId::random();
    run(
        &denied.id,
        Command::Mount {
            op: op3,
            request: Some(RequestKey::new("denied-req")?),
            spec: denied.spec,
            nested: None,
            outage: None,
        },
    )?;
    run(
        &denied.id,
        Command::CredsFetched {
            op: op3,
            result: Err("Barbican returned 403 Forbidden for the secret".into()),
            nonce: SpawnNonce::random(),
        },
    )?;

    // A helper that never mounted: verification fails, the target is left dirty.
    let slow = S3Target::new("target-s3-slow")?;
    let op4 = OperationId::random();
    let slow_helper = HelperIdentity { pid: 31400, start_ticks: 123_999, boot };
    run(
        &slow.id,
        Command::Mount {
            op: op4,
            request: Some(RequestKey::new("slow-req")?),
            spec: slow.spec,
            nested: None,
            outage: None,
        },
    )?;
    run(&slow.id, Command::CredsFetched { op: op4, result: Ok(()), nonce: SpawnNonce::random() })?;
    run(&slow.id, Command::HelperSpawned { op: op4, result: Ok(slow_helper) })?;
    let failure =
        MountFailure { reason: "no FUSE mount at the path after 30s".into(), maybe_mounted: true };
    run(&slow.id, Command::MountChecked { op: op4, result: Err(failure) })?;
    drop(journal);

    // "Restart": reopen, and reconcile against a reality where the S3 helper has died.
    let (journal, replay) = Journal::open(std::path::Path::new(&dir))?;
    let observations = Observations {
        mount_base: MountBase::new(BASE)?,
        mounts: vec![
            MountEntry {
                path: format!("{BASE}/target-s3-001"),
                fstype: "fuse.s3vaultfuse".into(),
                kind: FsKind::Fuse,
                dead: true,
            },
            MountEntry {
                path: format!("{BASE}/target-nfs-002"),
                fstype: "nfs4".into(),
                kind: FsKind::Nfs,
                dead: false,
            },
        ],
        pid_files: vec![PidFile { name: "target-s3-001".into(), pid: Some(helper.pid) }],
        processes: vec![Process {
            pid: helper.pid,
            start_ticks: 1,
            helper_for: None,
            serves_mount: false,
            nonce: None,
        }],
        distrusted: vec![],
    };
    let clock = clock()?;
    let plan = reconcile::plan(&replay.state, &observations, clock, &DebugWording);
    for step in &plan.steps {
        // Each step is a command: decided like a request's, against the replayed state.
        let decision = step.decision(&replay.state, clock, &DebugWording)?;
        journal.append(&decision.records)?;
        println!("{}: reconcile effects {:?}", step.target, decision.effects);
    }
    for finding in &plan.findings {
        println!("finding: {}", finding.what);
    }
    println!("journal written to {dir}");
    Ok(())
}

struct S3Target {
    id: TargetId,
    spec: TargetSpec,
}

impl S3Target {
    fn new(name: &str) -> Res<Self> {
        Ok(Self {
            id: TargetId::new(name)?,
            spec: TargetSpec {
                kind: TargetKind::S3 {
                    secret_ref: format!("https://barbican.example:9311/v1/secrets/{name}"),
                },
                mount_path: format!("{BASE}/{name}"),
            },
        })
    }
}

/// The target's current state, folded from its stored history (what the engine keeps in
/// memory; re-read here to keep the example short).
fn replayed(journal: &Journal, target: &TargetId) -> Res<dms_journal::TargetState> {
    let history = journal.history(target)?;
    let mut state = match history.snapshot {
        Some((_, state)) => state,
        None => dms_journal::TargetState::new(target.clone()),
    };
    for stored in history.records {
        state.apply(&stored?.record);
    }
    Ok(state)
}
