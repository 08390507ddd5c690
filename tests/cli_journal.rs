//! `dms-journal` end to end: the built binary on a journal built here with the store and
//! `decide`, with fixed clocks, boot ids and operation ids so the output is deterministic.
//! (The real daemon answering it online: `cli_journal_online`.)

use dms_journal::machine::MountFailure;
use dms_journal::store::Journal;
use dms_journal::SpawnNonce;
use dms_journal::{decide, BootId, Clock, Command, HelperIdentity, OperationId, RequestKey};
use dms_journal::{Event, Record, TargetId, TargetKind, TargetSpec, TargetState, Timestamp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_dms-journal");
/// 2026-01-01T00:00:00.000Z
const T0: u64 = 1_767_225_600_000;
const BASE: &str = "/var/lib/trilio/triliovault-mounts";

fn boot() -> BootId {
    BootId::parse("3f1b2c4d-1111-4222-8333-944455556666").unwrap()
}

fn op(n: u128) -> OperationId {
    // Distinct first 8 hex digits, so the short form in tables tells them apart.
    OperationId(Uuid::from_u128((0xa000_0000 + n) << 96 | 0x4000_8000_0000_0000 | n))
}

fn key(raw: &str) -> Option<RequestKey> {
    Some(RequestKey::new(raw).unwrap())
}

fn tid(raw: &str) -> TargetId {
    TargetId::new(raw).unwrap()
}

fn helper(pid: u32) -> HelperIdentity {
    HelperIdentity { pid, start_ticks: 1000 + u64::from(pid), boot: boot() }
}

fn s3(target: &str) -> TargetSpec {
    TargetSpec {
        kind: TargetKind::S3 {
            secret_ref: format!("https://barbican:9311/v1/secrets/{target}-secret"),
        },
        mount_path: format!("{BASE}/{target}"),
    }
}

/// A journal driven through `decide` the way the engine drives it: decide, append, fold.
struct Fixture {
    dir: tempfile::TempDir,
    journal: Journal,
    states: BTreeMap<TargetId, TargetState>,
}

impl Fixture {
    fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (journal, replay) = Journal::open(&dir.path().join("journal")).unwrap();
        assert!(replay.state.targets.is_empty());
        Fixture { dir, journal, states: BTreeMap::new() }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// Decide `command` for `target` at T0 + `secs`, append what was decided, fold it.
    fn step(&mut self, target: &str, secs: u64, command: Command) {
        let id = tid(target);
        let state = self.states.entry(id.clone()).or_insert_with(|| TargetState::new(id));
        let clock = Clock { now: Timestamp(T0 + secs * 1000), boot: boot() };
        let decision = decide(state, &command, clock, &dms::wire::Wire).unwrap();
        self.journal.append(&decision.records).unwrap();
        for record in &decision.records {
            state.apply(record);
        }
    }

    /// Append `event` as written (not decided now) for `target` at T0 + `secs`, fold it.
    fn written(&mut self, target: &str, secs: u64, o: OperationId, request: &str, event: Event) {
        let id = tid(target);
        let state = self.states.entry(id.clone()).or_insert_with(|| TargetState::new(id.clone()));
        let record = Record {
            target: id,
            at: Timestamp(T0 + secs * 1000),
            boot: boot(),
            request: key(request),
            op: Some(o),
            event,
        };
        state.check(&record.event).unwrap();
        self.journal.append(std::slice::from_ref(&record)).unwrap();
        state.apply(&record);
    }

    fn mount_s3(&mut self, target: &str, secs: u64, n: u128, request: &str, pid: u32) {
        let (o, r) = (op(n), key(request));
        self.step(
            target,
            secs,
            Command::Mount { op: o, request: r, spec: s3(target), nested: None, outage: None },
        );
        // As daemons wrote it before spawn intents (`CredsFetched`, then `Spawned`): journals
        // keep it, tools read it (today's chain, with `SpawnIntended`, is s3-busy's in
        // checks.rs).
        self.written(target, secs + 1, o, request, Event::CredsFetched);
        self.written(target, secs + 2, o, request, Event::Spawned { helper: helper(pid) });
        self.step(target, secs + 3, Command::MountChecked { op: o, result: Ok(()) });
    }

    /// Five targets, 20 records, every phase a table can show except in flight.
    fn standard() -> Self {
        let mut f = Fixture::empty();
        // s3-alpha: mounted through the full chain, then asked again (already mounted).
        f.mount_s3("s3-alpha", 0, 1, "req-alpha-1", 4242);
        let again = Command::Mount {
            op: op(2),
            request: key("req-alpha-2"),
            spec: s3("s3-alpha"),
            nested: None,
            outage: None,
        };
        f.step("s3-alpha", 60, again);
        // nfs-beta: mount(8) has no credential or helper step.
        let nfs = TargetSpec {
            kind: TargetKind::Nfs {
                export: "10.0.0.5:/exports/backup".into(),
                options: "nosuid,nodev,vers=4.1".into(),
            },
            mount_path: format!("{BASE}/nfs-beta"),
        };
        f.step(
            "nfs-beta",
            100,
            Command::Mount {
                op: op(3),
                request: key("req-beta-1"),
                spec: nfs,
                nested: None,
                outage: None,
            },
        );
        f.step("nfs-beta", 101, Command::MountChecked { op: op(3), result: Ok(()) });
        // s3-gamma: Barbican refused, nothing left behind.
        let (o, spec) = (op(4), s3("s3-gamma"));
        f.step(
            "s3-gamma",
            200,
            Command::Mount { op: o, request: key("req-gamma-1"), spec, nested: None, outage: None },
        );
        let refused = Err("Barbican returned 403 Forbidden".to_owned());
        f.step(
            "s3-gamma",
            201,
            Command::CredsFetched { op: o, result: refused, nonce: SpawnNonce::from_u128(7) },
        );
        // s3-delta: mounted, then unmounted.
        f.mount_s3("s3-delta", 300, 5, "req-delta-1", 4343);
        let path = format!("{BASE}/s3-delta");
        let o = op(6);
        f.step(
            "s3-delta",
            400,
            Command::Unmount { op: o, request: key("req-delta-2"), mount_path: path },
        );
        // The rest as daemons wrote it before the S3 detach: journals keep it, tools read it.
        f.written("s3-delta", 401, o, "req-delta-2", Event::HelperStopped);
        f.written("s3-delta", 402, o, "req-delta-2", Event::Unmounted);
        // s3-dirty: the helper started but its mount never appeared.
        let (o, spec) = (op(7), s3("s3-dirty"));
        f.step(
            "s3-dirty",
            500,
            Command::Mount { op: o, request: key("req-dirty-1"), spec, nested: None, outage: None },
        );
        f.written("s3-dirty", 501, o, "req-dirty-1", Event::CredsFetched);
        f.written("s3-dirty", 502, o, "req-dirty-1", Event::Spawned { helper: helper(4444) });
        let failure = MountFailure { reason: "no mount after 30s".into(), maybe_mounted: true };
        f.step("s3-dirty", 532, Command::MountChecked { op: o, result: Err(failure) });
        f
    }

    /// Close the journal and keep the directory. The lock is released when the last copy of
    /// sled's file descriptor is closed; a child that another test forks at that moment holds
    /// a copy until it execs, so wait until the kernel no longer lists the lock.
    fn close(self) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::MetadataExt;
        let path = self.path();
        let ino = std::fs::metadata(path.join("db")).map(|m| m.ino()).ok();
        drop(self.journal);
        let held = |ino: u64| {
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            locks.lines().any(|l| l.contains(&format!(":{ino} ")))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ino.is_some_and(held) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        (self.dir, path)
    }
}

fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

fn run_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = std::process::Command::new(BIN);
    // Hermetic: no journal, config or admin socket of the machine running the tests.
    cmd.args(args)
        .env_remove("DMS_JOURNAL_PATH")
        .env_remove("DMS_CONFIG")
        .env("DMS_ADMIN_SOCKET", "/nonexistent/dms-test/admin.sock");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn on(path: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--path", path.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

fn ok(path: &Path, args: &[&str]) -> String {
    let o = on(path, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: stderr {}", stderr(&o));
    stdout(&o)
}

fn json(path: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(path, args)).unwrap()
}

mod checks;
mod expected;
mod online;
mod paths;
