//! Real processes: a shell script reports what it was started with.
#![allow(clippy::unwrap_used)]

use super::*;
use std::os::unix::fs::PermissionsExt;

/// Prints its working directory, environment, session, stdin and ignored signals.
const REPORT: &str = r#"#!/bin/sh
echo "cwd=$(pwd)"
echo "env=$(env | grep -v '^PWD=' | grep -v '^SHLVL=' | grep -v '^_=' | sort | tr '\n' ' ')"
echo "sid=$(cut -d' ' -f6 /proc/$$/stat) pid=$$"
echo "stdin=$(readlink /proc/$$/fd/0)"
echo "sigign=$(grep SigIgn /proc/$$/status | cut -f2)"
echo "to stderr" >&2
exit 3
"#;

fn script(dir: &Path, text: &str) -> std::path::PathBuf {
    let bin = dir.join("report");
    std::fs::write(&bin, text).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn log_in(dir: &Path) -> (std::path::PathBuf, File) {
    let path = dir.join("out.log");
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    (path, file)
}

/// Each field of the report, checked for one way of spawning.
fn check_report(text: &str) {
    assert!(text.contains("cwd=/\n"), "{text}");
    assert!(text.contains("env=A=1 B=two words \n"), "only the given environment: {text}");
    let ids = text.lines().find(|l| l.starts_with("sid=")).unwrap();
    let (sid, pid) = ids.trim_start_matches("sid=").split_once(" pid=").unwrap();
    assert_eq!(sid, pid, "a session of its own: {text}");
    assert!(text.contains("stdin=/dev/null\n"), "{text}");
    // SIGPIPE (bit 13) is ignored by Rust programs; the child must not inherit that.
    let ign = text.lines().find_map(|l| l.strip_prefix("sigign=")).unwrap();
    let mask = u64::from_str_radix(ign.trim(), 16).unwrap();
    assert_eq!(
        mask & (1 << (Signal::PIPE.as_raw() - 1)),
        0,
        "SIGPIPE is ignored in the child: {text}"
    );
    assert!(text.contains("to stderr\n"), "stderr goes to the log too: {text}");
}

/// Run the report script through `how`, reap it, and check what it printed.
fn spawn_and_check(how: impl FnOnce(&Spawn<'_>) -> io::Result<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), REPORT);
    let (path, log) = log_in(dir.path());
    let spawn = Spawn { program: &bin, env: vec![("A", "1"), ("B", "two words")], log: &log };
    let child = Child::from_pid(how(&spawn).unwrap()).unwrap();
    assert_eq!(child.wait(), "exit status: 3");
    check_report(&std::fs::read_to_string(path).unwrap());
}

#[test]
fn posix_spawn_gives_exactly_the_environment_session_and_log_asked_for() {
    let addchdir = addchdir().expect("this glibc has posix_spawn_file_actions_addchdir_np");
    spawn_and_check(|spawn| spawn.posix_spawn(addchdir));
}

#[test]
fn the_fork_fallback_gives_the_same() {
    spawn_and_check(|spawn| spawn.fork_exec());
}

#[test]
fn a_killed_child_is_reaped_with_its_signal() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "#!/bin/sh\nexec sleep 1000\n");
    let (_, log) = log_in(dir.path());
    let child = Spawn { program: &bin, env: vec![], log: &log }.spawn().unwrap();
    child.kill();
    assert_eq!(child.wait(), "signal: 9 (SIGKILL)");
    // Reaped: the PID is gone, not a zombie.
    assert!(!Path::new(&format!("/proc/{}", child.id())).exists());
}

#[test]
fn a_missing_program_is_an_error_not_a_child() {
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = log_in(dir.path());
    let missing = dir.path().join("no-such-helper");
    let err = Spawn { program: &missing, env: vec![], log: &log }.spawn().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
}

#[test]
fn a_nul_in_the_environment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), REPORT);
    let (_, log) = log_in(dir.path());
    let err = Spawn { program: &bin, env: vec![("A", "x\0y")], log: &log }.spawn().unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
}

#[test]
fn env_entries_are_name_equals_value_and_a_nul_byte_is_refused() {
    assert_eq!(
        env_entry("AWS_SECRET_ACCESS_KEY", "k3y").unwrap().as_bytes(),
        b"AWS_SECRET_ACCESS_KEY=k3y"
    );
    assert!(env_entry("A", "x\0y").is_none());
    assert!(env_entry("A\0B", "x").is_none());
}
