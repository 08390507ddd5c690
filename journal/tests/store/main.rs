//! Store tests against real sled databases in temporary directories.
//!
//! Some tests re-execute this test binary as a child process (see [`child_role`]): a crash
//! right after `append` returns, or a second process holding the journal's lock, cannot be
//! shown in-process.
#![allow(clippy::unwrap_used)]

mod basics;
mod compaction;
mod damage;
mod integrity;

use dms_journal::store::{Journal, Replay};
use dms_journal::{
    BootId, Event, JournalState, OperationId, Outcome, Record, RequestKey, TargetId, TargetKind,
    TargetSpec, Timestamp,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use uuid::Uuid;

const CHILD_ENV: &str = "DMS_STORE_TEST_CHILD";

pub fn t(s: &str) -> TargetId {
    TargetId::new(s).unwrap()
}

pub fn k(s: &str) -> RequestKey {
    RequestKey::new(s).unwrap()
}

pub fn spec(target: &str) -> TargetSpec {
    TargetSpec {
        kind: TargetKind::Nfs { export: "10.0.0.5:/b".into(), options: "nosuid,nodev".into() },
        mount_path: format!("/mnt/dms/{target}"),
    }
}

pub fn rec(target: &str, at: u64, request: Option<&str>, op: u8, event: Event) -> Record {
    Record {
        target: t(target),
        at: Timestamp(at),
        boot: BootId(Uuid::from_bytes([1; 16])),
        request: request.map(k),
        op: Some(OperationId(Uuid::from_bytes([op; 16]))),
        event,
    }
}

/// An NFS mount, requested and verified.
pub fn mounted(target: &str, at: u64, request: Option<&str>, op: u8) -> Vec<Record> {
    vec![
        rec(target, at, request, op, Event::Requested { spec: spec(target) }),
        rec(target, at + 1, request, op, Event::Verified),
    ]
}

pub fn unmounted(target: &str, at: u64, request: Option<&str>, op: u8) -> Vec<Record> {
    let mount_path = spec(target).mount_path;
    vec![
        rec(target, at, request, op, Event::UnmountRequested { mount_path }),
        rec(target, at + 1, request, op, Event::Unmounted),
    ]
}

pub fn answered(target: &str, at: u64, request: &str, op: u8) -> Record {
    let outcome = Outcome::NotMounted { path: spec(target).mount_path };
    rec(target, at, Some(request), op, Event::Answered { outcome })
}

pub fn fold<'a>(records: impl IntoIterator<Item = &'a Record>) -> JournalState {
    let mut state = JournalState::default();
    for record in records {
        state.apply(record);
    }
    state
}

pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal");
    (dir, path)
}

pub fn open(path: &Path) -> (Journal, Replay) {
    Journal::open(path).unwrap_or_else(|e| panic!("journal opens: {e:?}"))
}

/// Start this test binary again, running only [`child_role`] with `role` for `path`.
pub fn spawn_child(role: &str, path: &Path) -> Child {
    let exe = std::env::current_exe().expect("test binary path");
    Command::new(exe)
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{role}:{}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("child test process starts")
}

/// Wait for the child to print `word` at the end of a line (the harness prints
/// "test child_role ... " before the test's own output); false if it exited first.
pub fn wait_for_line(child: &mut Child, word: &str) -> bool {
    let Some(stdout) = child.stdout.take() else { return false };
    BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.trim_end().ends_with(word))
}

/// The child side of the multi-process tests; a no-op in a normal test run.
#[test]
fn child_role() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (role, path) = spec.split_once(':').expect("role:path");
    let path = Path::new(path);
    match role {
        // Append, then die at once: no destructor, no chance for sled's own background
        // flush (every 500 ms) to save a record that `append` failed to flush.
        "append-then-abort" => {
            let (journal, _) = open(path);
            journal.append(&mounted("crash", 1_000, Some("req-crash"), 1)).expect("append");
            std::process::abort();
        }
        // A deferred append, then a durable one for another target, then death: the
        // durable append's flush must have carried the deferred records too.
        "deferred-then-append-then-abort" => {
            let (journal, _) = open(path);
            journal.append_deferred(&mounted("early", 1_000, Some("req-early"), 1)).expect("apply");
            journal.append(&mounted("late", 2_000, Some("req-late"), 2)).expect("append");
            std::process::abort();
        }
        // Hold the journal open until killed, like a running daemon.
        "hold" => {
            let (_journal, _) = open(path);
            println!("holding");
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        other => panic!("unknown child role {other}"),
    }
}
