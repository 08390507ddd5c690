//! Real processes: shell scripts stand in for mount(8).
#![allow(clippy::unwrap_used)]
use super::*;
use crate::exec::mounts::tests::block_on;

/// The call as a blocking one, on a runtime of its own.
trait RunNow {
    fn run_now(&self, args: &[&str], timeout: Duration) -> Result<String, RunError>;
    fn run_in_now(
        &self,
        args: &[&str],
        timeout: Duration,
        running: &pgroup::Running,
    ) -> Result<String, RunError>;
}

impl RunNow for Program {
    fn run_now(&self, args: &[&str], timeout: Duration) -> Result<String, RunError> {
        block_on(self.run(args, timeout))
    }

    fn run_in_now(
        &self,
        args: &[&str],
        timeout: Duration,
        running: &pgroup::Running,
    ) -> Result<String, RunError> {
        block_on(self.run_in(args, timeout, running))
    }
}

#[test]
fn given_a_rootwrap_prefix_when_building_argv_then_it_comes_first_and_nothing_is_joined() {
    let mut p = Program::new("mount");
    p.rootwrap = Some(("/usr/bin/dms-rootwrap".into(), "/etc/dms/rootwrap.conf".into()));
    let argv = p.argv(&["-t", "nfs", "-o", "nosuid,nodev", "h:/x; rm -rf /", "/mnt/a b"]);
    let argv: Vec<String> = argv.into_iter().map(|a| a.into_string().unwrap()).collect();
    assert_eq!(
        argv,
        [
            "/usr/bin/dms-rootwrap",
            "/etc/dms/rootwrap.conf",
            "mount",
            "-t",
            "nfs",
            "-o",
            "nosuid,nodev",
            "h:/x; rm -rf /",
            "/mnt/a b"
        ]
    );
}

#[test]
fn given_programs_that_succeed_fail_or_hang_then_each_outcome_is_reported() {
    assert_eq!(Program::new("echo").run_now(&["hi"], Duration::from_secs(5)).unwrap(), "hi\n");
    let err = Program::new("sh").run_now(&["-c", "echo boom >&2; exit 32"], Duration::from_secs(5));
    assert_eq!(
        err,
        Err(RunError::Failed {
            program: "sh".into(),
            status: "exit status: 32".into(),
            stderr: "boom".into()
        })
    );
    let started = Instant::now();
    let err = Program::new("sleep").run_now(&["30"], Duration::from_millis(200));
    assert!(matches!(err, Err(RunError::Timeout { .. })), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = Program::new("/nonexistent/mount").run_now(&[], Duration::from_secs(1));
    assert!(matches!(err, Err(RunError::Spawn { .. })), "{err:?}");
}

#[test]
fn given_the_daemons_environment_when_running_then_it_is_not_passed_on() {
    let out = Program::new("env").run_now(&[], Duration::from_secs(5)).unwrap();
    assert!(!out.contains("CARGO_MANIFEST_DIR"), "{out}");
    assert!(out.contains("LC_ALL=C"));
}

use std::path::{Path, PathBuf};
use std::time::Instant;

/// A stand-in for mount(8) in a temp dir; each child it starts writes its PID to
/// `<dir>/child.pid`. Dropping it SIGKILLs that child if it is still a `sleep` (so a failing
/// test leaves nothing behind either) and removes the dir.
struct StandIn {
    dir: tempfile::TempDir,
    program: Program,
}

impl StandIn {
    fn new(script: &str) -> StandIn {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("mount-stand-in");
        let script =
            script.replace("$PIDFILE", &dir.path().join("child.pid").display().to_string());
        std::fs::write(&bin, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        StandIn { program: Program::new(&bin), dir }
    }

    /// The PID the script recorded (waiting a little: it writes it right after the fork).
    fn child(&self) -> i32 {
        let file = self.dir.path().join("child.pid");
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no child.pid written");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let file = self.dir.path().join("child.pid");
        if let Some(pid) = std::fs::read_to_string(file).ok().and_then(|t| t.trim().parse().ok()) {
            if is_alive_sleep(pid) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

/// `pid` exists, is not a zombie, and is a `sleep` (not some later process with its PID).
fn is_alive_sleep(pid: i32) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let comm = std::fs::read_to_string(proc.join("comm")).unwrap_or_default();
    comm.trim() == "sleep" && !is_zombie(&proc)
}

fn is_zombie(proc: &Path) -> bool {
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    // The state follows the parenthesised command name.
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// The recorded child is dead (or a zombie) within a generous 5 s: SIGKILL is not instant.
fn assert_dies(pid: i32) {
    let started = Instant::now();
    while is_alive_sleep(pid) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "child {pid} of the mount program survived the run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn given_a_program_that_exits_but_leaves_a_child_holding_its_output_then_the_call_does_not_wait_for_it_and_the_child_dies(
) {
    let stand_in = StandIn::new("sleep 60 & echo $! > $PIDFILE\necho mounted\necho warned >&2");
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let out = stand_in.program.run_now(&[], timeout);
    let took = started.elapsed();
    eprintln!("exit with a child holding the pipes: the call took {took:?}");
    assert_eq!(out, Ok("mounted\n".to_owned()));
    // The old code read the pipes until the background sleep closed them: 60 s.
    assert!(took < timeout, "took {took:?}");
    assert_dies(stand_in.child());
}

#[test]
fn given_a_program_that_hangs_with_a_child_holding_its_output_then_the_timeout_comes_at_the_deadline_and_the_whole_group_dies(
) {
    let stand_in = StandIn::new("sleep 60 & echo $! > $PIDFILE\necho trying\nsleep 60\ntrue");
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let out = stand_in.program.run_now(&["-t", "nfs"], timeout);
    let took = started.elapsed();
    assert!(matches!(out, Err(RunError::Timeout { .. })), "{out:?}");
    assert!(took >= timeout && took < timeout + Duration::from_secs(5), "took {took:?}");
    assert_dies(stand_in.child());
}

#[test]
fn given_a_wrapper_that_does_not_exec_when_it_times_out_then_its_child_is_killed_too() {
    // The child does not hold the pipes: the call always came back at the deadline, but
    // only the wrapper was killed and the sleep (the "real mount") ran on.
    let stand_in =
        StandIn::new("sleep 60 </dev/null >/dev/null 2>&1 &\necho $! > $PIDFILE\nwait\ntrue");
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let out = stand_in.program.run_now(&[], timeout);
    let took = started.elapsed();
    assert!(matches!(out, Err(RunError::Timeout { .. })), "{out:?}");
    assert!(took < timeout + Duration::from_secs(5), "took {took:?}");
    assert_dies(stand_in.child());
}

#[test]
fn given_a_chatty_program_then_it_never_blocks_on_a_full_pipe_and_64_kib_are_kept() {
    let stand_in = StandIn::new(
        "head -c 1000000 /dev/zero | tr '\\0' x\nhead -c 300000 /dev/zero >&2\nexit 3",
    );
    match stand_in.program.run_now(&[], Duration::from_secs(20)) {
        Err(RunError::Failed { stderr, status, .. }) => {
            assert_eq!(status, "exit status: 3");
            assert_eq!(stderr.len(), 64 * 1024);
        }
        other => panic!("{other:?}"),
    }
    let stand_in = StandIn::new("head -c 1000000 /dev/zero | tr '\\0' x");
    let out = stand_in.program.run_now(&[], Duration::from_secs(20)).unwrap();
    assert_eq!(out.len(), 64 * 1024);
    assert!(out.bytes().all(|b| b == b'x'));
}

#[test]
fn given_running_programs_when_closing_then_each_group_dies_its_call_returns_and_none_starts() {
    // A registry of its own: the global one serves every other test in this process.
    let running = std::sync::Arc::new(pgroup::Running::default());
    let stand_in = StandIn::new("sleep 60 & echo $! > $PIDFILE\nwait\ntrue");
    let program = stand_in.program.clone();
    let (reg, started) = (std::sync::Arc::clone(&running), Instant::now());
    let call = std::thread::spawn(move || program.run_in_now(&[], Duration::from_secs(60), &reg));
    let child = stand_in.child();
    assert_eq!(running.close(), 1);
    let out = call.join().unwrap();
    assert!(matches!(out, Err(RunError::Failed { .. })), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_dies(child);
    assert_eq!(running.close(), 0, "a finished run leaves the registry");
    // A run after the close (a request that was waiting for its server's pool slot) is
    // refused before anything is spawned.
    let pid_file = stand_in.dir.path().join("child.pid");
    std::fs::remove_file(&pid_file).unwrap();
    let late = stand_in.program.run_in_now(&[], Duration::from_secs(60), &running);
    assert!(
        matches!(&late, Err(RunError::Spawn { reason, .. }) if reason.contains("stopping")),
        "{late:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!pid_file.exists(), "a program started after the close");
}
