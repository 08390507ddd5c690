//! One program run as the leader of its own process group, bounded by one deadline that
//! covers everything: its exit, its output, and whatever it left behind.
//!
//! Why a group and not a child: mount(8) is often not the process that blocks. A rootwrap or
//! shell wrapper that does not `exec`, mount.nfs forking a retry, a stand-in script with a
//! background job: killing only the direct child leaves the real worker running (and
//! possibly mounting later, behind the journal's back), and any of them holding the pipes
//! kept the old code reading output long past the deadline (20 s became 45 s).
//!
//! The rules, in order:
//! - Everything is awaited on the runtime (`tokio::process`): the output pipes and the
//!   leader's pidfd are watched by its reactor, never past the deadline, with no thread of
//!   their own. Only the first 64 KiB of each stream is kept; the rest is read and dropped,
//!   so a chatty program never blocks on a full pipe.
//! - At the deadline the whole group is SIGKILLed, and the caller gets its answer then.
//! - When the leader exits in time, its group gets [`STRAGGLER_GRACE`] (never past the
//!   deadline) for its pipes to reach end-of-file, then the group is SIGKILLed anyway. A
//!   finished mount(8) has nothing left to do, so anything still in its group is a straggler:
//!   killing it is what keeps a late background mount from happening unjournaled.
//! - Every group is killed *before* its leader is reaped. An unreaped leader (even a zombie)
//!   keeps its PID, hence its process group id, from being reused, so the kill can never hit
//!   a stranger's group. The same holds for [`Running::close`], which only ever sees
//!   groups whose leader is not reaped yet.
//! - A process that leaves the group (`setsid`) escapes the kill but not the deadline: its
//!   pipes are closed under it when the call returns.
//! - A leader that SIGKILL does not end at once (stuck in the kernel, e.g. on a hung NFS
//!   server) is left to the runtime, which reaps a dropped child once it exits
//!   (`kill_on_drop`); the caller is not kept waiting for it, and no thread waits either.
//! - A run dropped before its end (its request abandoned) kills its group all the same.

use rustix::process::{kill_process_group, Pid, Signal};
use std::collections::BTreeSet;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::{timeout, timeout_at, Instant};

/// How long the rest of a group may keep its pipes open after its leader exited: enough
/// for a child that is exiting too to flush its last line, short enough not to matter.
pub const STRAGGLER_GRACE: Duration = Duration::from_millis(500);

/// After the kill, how long to pick up what is still buffered in the pipes, and how long
/// to wait for the leader to die before leaving it to the runtime to reap.
const AFTER_KILL: Duration = Duration::from_millis(200);

/// At most this much of each stream is kept.
const KEEP: usize = 64 * 1024;

/// What a run produced. `status` is `None` when the leader did not exit by the deadline.
#[derive(Debug)]
pub struct Outcome {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// The process groups of the programs running right now, so that a daemon leaving can take
/// them with it ([`Running::close`]) instead of leaving a mount(8) that may still mount
/// after the daemon is gone.
#[derive(Debug, Default)]
pub struct Running {
    groups: Mutex<Groups>,
}

#[derive(Debug, Default)]
struct Groups {
    running: BTreeSet<i32>,
    /// Closed by the daemon's last kill: no program starts after it.
    closed: bool,
}

/// The registry [`crate::exec::command::Program::run`] uses.
pub static RUNNING: Running =
    Running { groups: Mutex::new(Groups { running: BTreeSet::new(), closed: false }) };

impl Running {
    /// SIGKILL every group still running and refuse every run from now on; returns how
    /// many groups were signalled. Refusing matters as much as killing: a killed run frees
    /// its server's pool slot, and a request still waiting for one would start the next
    /// mount(8) just before the process exits, to outlive it.
    pub fn close(&self) -> usize {
        let mut groups = self.lock();
        groups.closed = true;
        for &group in groups.running.iter() {
            kill_group(group);
        }
        groups.running.len()
    }

    fn lock(&self) -> MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Spawn `command` (stdin, stdout and stderr are set here) in a process group of its own
/// and run it as the module documentation says. Dropped before it returns (its request
/// abandoned), the group is killed all the same.
pub async fn run(
    mut command: Command,
    deadline: Instant,
    running: &Running,
) -> std::io::Result<Outcome> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Spawned and registered under one lock: a `close` cannot fall between the two and
    // miss a group whose program already runs.
    let (mut child, group) = {
        let mut groups = running.lock();
        if groups.closed {
            return Err(std::io::Error::other("the daemon is stopping: no new program starts"));
        }
        let child = command.spawn()?;
        let Some(group) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
            return Err(std::io::Error::other("the spawned program has no pid"));
        };
        groups.running.insert(group);
        // Declared after `child`, so dropped before it: the group is killed while its
        // leader is unreaped.
        (child, Group { group, running })
    };
    let pidfd = match exit_watch(group.group) {
        Ok(pidfd) => pidfd,
        Err(e) => {
            drop(group);
            let _ = child.wait().await;
            return Err(e);
        }
    };
    let mut out = Stream::new(child.stdout.take());
    let mut err = Stream::new(child.stderr.take());
    // Until the leader exits or the deadline, reading both streams meanwhile.
    let exited = {
        let exit = timeout_at(deadline, pidfd.readable());
        tokio::pin!(exit);
        let mut ended = false;
        loop {
            tokio::select! {
                exited = &mut exit => break exited.is_ok(),
                _ = async { tokio::join!(out.pump(), err.pump()) }, if !ended => ended = true,
            }
        }
    };
    if exited {
        // Stragglers get their grace to close the pipes, never past the deadline.
        let grace = deadline.min(Instant::now() + STRAGGLER_GRACE);
        let _ = timeout_at(grace, async { tokio::join!(out.pump(), err.pump()) }).await;
    }
    // Leader exited or not: the group goes now, while the leader is unreaped.
    drop(group);
    let _ = timeout(AFTER_KILL, async { tokio::join!(out.pump(), err.pump()) }).await;
    let status = match exited {
        true => child.wait().await.ok(),
        // Killed with its group: reaped at once if it died, else left to the runtime's
        // reaper when `child` is dropped (it may be stuck in the kernel on a hung server).
        false => {
            let _ = timeout(AFTER_KILL, child.wait()).await;
            None
        }
    };
    Ok(Outcome { status, stdout: out.text(), stderr: err.text() })
}

/// A running group in the registry: killed and forgotten when dropped.
struct Group<'a> {
    group: i32,
    running: &'a Running,
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        let mut groups = self.running.lock();
        kill_group(self.group);
        groups.running.remove(&self.group);
    }
}

/// The leader's pidfd, registered with the runtime: readable once it exited (and before it
/// is reaped, which a wait on the child would do).
fn exit_watch(pid: i32) -> std::io::Result<tokio::io::unix::AsyncFd<rustix::fd::OwnedFd>> {
    use rustix::process::{pidfd_open, PidfdFlags};
    let pid = Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("pid 0"))?;
    // The daemon needs pidfds anyway (Linux 5.3+, the helpers are watched through them).
    let pidfd = pidfd_open(pid, PidfdFlags::NONBLOCK)
        .map_err(|e| std::io::Error::other(format!("pidfd_open: {e}")))?;
    super::helper::register(pidfd)
}

fn kill_group(group: i32) {
    if let Some(pgid) = Pid::from_raw(group) {
        // ESRCH (nobody left) is the usual answer after a clean exit.
        let _ = kill_process_group(pgid, Signal::KILL);
    }
}

/// One output pipe: open until end-of-file, the first [`KEEP`] bytes kept, the rest read
/// and dropped so the program never blocks on a full pipe.
struct Stream<R> {
    pipe: Option<R>,
    kept: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Stream<R> {
    fn new(pipe: Option<R>) -> Self {
        Self { pipe, kept: Vec::new() }
    }

    /// Read until end-of-file (or an error). Cancel-safe: a read cut short loses nothing,
    /// and what was kept stays kept.
    async fn pump(&mut self) {
        let mut buf = [0u8; 8192];
        while let Some(pipe) = &mut self.pipe {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => self.pipe = None,
                Ok(n) => {
                    let room = KEEP.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}
