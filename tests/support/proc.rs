//! Process plumbing shared by the service guards: a child in its own process group with
//! its output in a log file, and the janitor that cleans up after a test process that
//! never dropped its guards.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};

/// A child process that leads its own process group; stdout and stderr go to `log`.
/// Dropping it SIGKILLs the whole group and reaps the child.
#[derive(Debug)]
pub struct GroupChild {
    child: Child,
    log: PathBuf,
    what: String,
}

impl GroupChild {
    /// Spawns `cmd` as the leader of a new process group, output appended to `log`.
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> GroupChild {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", log.display()));
        let err = out.try_clone().expect("dup log fd");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
        GroupChild { child, log: log.to_path_buf(), what: what.to_string() }
    }

    /// The leader's PID, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the leader has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Sends `sig` to the whole process group (errors, e.g. an empty group, are ignored).
    pub fn signal_group(&self, sig: Signal) {
        if let Some(pgid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process_group(pgid, sig);
        }
    }

    /// Waits up to `timeout` for the leader to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the group and reaps the leader.
    pub fn kill(&mut self) {
        self.signal_group(Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fails with the log tail if the leader already exited (used while waiting for
    /// readiness).
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.try_wait() {
            None => Ok(()),
            Some(st) => Err(format!(
                "{} exited early ({st}); log {}:\n{}",
                self.what,
                self.log.display(),
                super::log_tail(&self.log, 40)
            )),
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Cleans `dir` (see `scripts/infra/janitor.sh`) if the test process exits without
/// dropping the guard that owns this janitor.
#[derive(Debug)]
pub struct Janitor {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Janitor {
    pub fn start(dir: &Path) -> Janitor {
        let script = super::infra_script("janitor.sh");
        super::require_file(&script);
        let mut child = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start janitor.sh");
        let stdin = child.stdin.take();
        Janitor { child, stdin }
    }

    /// The owner cleaned up itself: tell the janitor to exit without doing anything.
    pub fn dismiss(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.dismiss();
    }
}

/// Records the process group ids the janitor must kill (`<dir>/pgids`).
pub fn record_pgids(dir: &Path, pgids: &[u32]) {
    let text: String = pgids.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(dir.join("pgids"), text).expect("write pgids");
}

/// Prints the tails of `logs` to stderr when the current thread is panicking (libtest
/// shows it with the failure).
pub fn dump_logs_if_panicking(what: &str, logs: &[PathBuf]) {
    if !std::thread::panicking() {
        return;
    }
    for log in logs {
        eprintln!(
            "----- {what}: {} (last 60 lines) -----\n{}",
            log.display(),
            super::log_tail(log, 60)
        );
    }
}

/// Runs a short command to completion with a deadline; returns its combined output or an
/// error that includes it. The output goes to a temporary file in `scratch` (a service's
/// own temp dir, so nothing is left behind if the test process is killed meanwhile).
pub fn run_with_timeout(cmd: Command, timeout: Duration, scratch: &Path) -> Result<String, String> {
    static N: AtomicU64 = AtomicU64::new(0);
    let log = scratch.join(format!("cmd-{}.log", N.fetch_add(1, Ordering::SeqCst)));
    let desc = format!("{cmd:?}");
    let mut child = GroupChild::spawn(&desc, cmd, &log);
    let status = child.wait_timeout(timeout);
    if status.is_none() {
        child.kill();
    }
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    match status {
        Some(st) if st.success() => Ok(out),
        Some(st) => Err(format!("{desc} failed ({st}):\n{out}")),
        None => Err(format!("{desc} timed out after {timeout:?}:\n{out}")),
    }
}
