//! Builders shared by the transition and reconcile tests: a target driven through the
//! machine exactly as the engine would (decide, then apply every record).
#![allow(dead_code, clippy::unwrap_used)]

use dms_journal::machine::MountFailure;
use dms_journal::SpawnNonce;
use dms_journal::{
    decide, BootId, Cause, Clock, Command, DebugWording, Decision, Event, HelperIdentity,
    OperationId, Record, Rejection, RequestKey, TargetId, TargetKind, TargetSpec, TargetState,
    Timestamp, Wording,
};
use uuid::Uuid;

pub const BASE: &str = "/var/lib/trilio/triliovault-mounts";

pub fn boot(n: u8) -> BootId {
    BootId(Uuid::from_bytes([n; 16]))
}

pub fn clock() -> Clock {
    Clock { now: Timestamp(1_790_000_000_000), boot: boot(1) }
}

pub fn op(n: u8) -> OperationId {
    OperationId(Uuid::from_bytes([0xa0 | (n & 0x0f); 16]))
}

pub fn key(s: &str) -> Option<RequestKey> {
    Some(RequestKey::new(s).unwrap())
}

pub fn target(s: &str) -> TargetId {
    TargetId::new(s).unwrap()
}

pub fn path_of(name: &str) -> String {
    format!("{BASE}/{name}")
}

pub fn s3(name: &str) -> TargetSpec {
    TargetSpec {
        kind: TargetKind::S3 { secret_ref: format!("https://barbican:9311/v1/secrets/{name}") },
        mount_path: path_of(name),
    }
}

pub fn nfs(name: &str) -> TargetSpec {
    TargetSpec {
        kind: TargetKind::Nfs {
            export: "10.0.0.5:/exports/b".into(),
            options: "nosuid,nodev".into(),
        },
        mount_path: path_of(name),
    }
}

/// A mount command without the engine's facts (no nesting target, no NFS outage): what
/// most tests send.
pub fn mount(op: OperationId, request: Option<RequestKey>, spec: TargetSpec) -> Command {
    Command::Mount { op, request, spec, nested: None, outage: None }
}

/// A failure's text as these tests word it: the cause's `Debug` form, so an assertion on
/// the text is one on which cause was decided (the daemon's wording is tested beside it).
pub fn worded(cause: Cause) -> String {
    DebugWording.failure(&cause)
}

pub fn helper(pid: u32) -> HelperIdentity {
    HelperIdentity { pid, start_ticks: 1000 + u64::from(pid), boot: boot(1) }
}

/// A target under test: decisions are applied as the engine applies them.
pub struct Rig {
    pub state: TargetState,
}

impl Rig {
    pub fn new(name: &str) -> Self {
        Self { state: TargetState::new(target(name)) }
    }

    /// Decide, check every record is legal, apply it, return the decision.
    pub fn run(&mut self, cmd: Command) -> Result<Decision, Rejection> {
        let d = decide(&self.state, &cmd, clock(), &DebugWording)?;
        for r in &d.records {
            self.state.check(&r.event).unwrap_or_else(|e| panic!("decide produced {e}"));
            self.state.apply(r);
        }
        Ok(d)
    }

    pub fn ok(&mut self, cmd: Command) -> Decision {
        self.run(cmd).unwrap()
    }

    pub fn events(d: &Decision) -> Vec<&'static str> {
        d.records.iter().map(|r| r.event.name()).collect()
    }

    /// An S3 target mounted through the whole chain with `op(1)`, helper pid `pid`.
    pub fn mounted_s3(name: &str, pid: u32) -> Self {
        let mut rig = Self::new(name);
        rig.ok(mount(op(1), key("m1"), s3(name)));
        rig.ok(Command::CredsFetched {
            op: op(1),
            result: Ok(()),
            nonce: SpawnNonce::from_u128(7),
        });
        rig.ok(Command::HelperSpawned { op: op(1), result: Ok(helper(pid)) });
        rig.ok(Command::MountChecked { op: op(1), result: Ok(()) });
        rig
    }

    pub fn mounted_nfs(name: &str) -> Self {
        let mut rig = Self::new(name);
        rig.ok(mount(op(1), key("m1"), nfs(name)));
        rig.ok(Command::MountChecked { op: op(1), result: Ok(()) });
        rig
    }

    /// An S3 target whose verification failed: dirty with helper, mount and PID file.
    pub fn dirty_s3(name: &str, pid: u32) -> Self {
        let mut rig = Self::new(name);
        rig.ok(mount(op(1), key("m1"), s3(name)));
        rig.ok(Command::CredsFetched {
            op: op(1),
            result: Ok(()),
            nonce: SpawnNonce::from_u128(7),
        });
        rig.ok(Command::HelperSpawned { op: op(1), result: Ok(helper(pid)) });
        rig.ok(Command::MountChecked {
            op: op(1),
            result: Err(MountFailure { reason: "timed out".into(), maybe_mounted: true }),
        });
        rig
    }

    /// Fold in `event` as an older daemon wrote it (no decision makes it now), in the
    /// context of the operation in flight; it must still be legal.
    pub fn written(&mut self, event: Event) {
        let op = self.state.op.clone();
        let record = Record {
            target: self.state.target.clone(),
            at: clock().now,
            boot: clock().boot,
            request: op.as_ref().and_then(|o| o.request.clone()),
            op: op.and_then(|o| o.id),
            event,
        };
        self.state.check(&record.event).unwrap_or_else(|e| panic!("{e}"));
        self.state.apply(&record);
    }

    pub fn last_event(d: &Decision) -> &Event {
        &d.records.last().unwrap().event
    }
}

/// What the engine would know at a helper's death: `attempts` healed per 10 minutes (0:
/// healing off), the environment known, and earlier deaths at these times.
pub fn heal_facts(attempts: u32, earlier: Vec<Timestamp>) -> dms_journal::machine::HealFacts {
    dms_journal::machine::HealFacts {
        op: op(50),
        earlier,
        attempts,
        window_ms: 600_000,
        environment: true,
        clean_exit: false,
    }
}
