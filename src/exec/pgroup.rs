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
//! - Output is read on this thread with `poll(2)` over both pipes and the leader's pidfd,
//!   never past the deadline. Only the first 64 KiB of each stream is kept; the rest is read
//!   and dropped, so a chatty program never blocks on a full pipe.
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
//!   server) is reaped by a thread of its own; the caller is not kept waiting for it.

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fd::OwnedFd;
use rustix::process::{kill_process_group, pidfd_open, Pid, PidfdFlags, Signal};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long the rest of a group may keep its pipes open after its leader exited: enough
/// for a child that is exiting too to flush its last line, short enough not to matter.
pub const STRAGGLER_GRACE: Duration = Duration::from_millis(500);

/// After the kill, how long to pick up what is still buffered in the pipes, and how long
/// to wait for the leader to die before leaving it to a reaper thread.
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
/// and run it as the module documentation says.
pub fn run(mut command: Command, deadline: Instant, running: &Running) -> std::io::Result<Outcome> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // Spawned and registered under one lock: a `close` cannot fall between the two and
    // miss a group whose program already runs.
    let (mut child, group) = {
        let mut groups = running.lock();
        if groups.closed {
            return Err(std::io::Error::other("the daemon is stopping: no new program starts"));
        }
        let child = command.spawn()?;
        let group = child.id() as i32;
        groups.running.insert(group);
        (child, group)
    };
    // The daemon needs pidfds anyway (Linux 5.3+, the helpers are watched through them).
    let pidfd = match pidfd_open(Pid::from_child(&child), PidfdFlags::empty()) {
        Ok(pidfd) => pidfd,
        Err(e) => {
            let mut groups = running.lock();
            kill_group(group);
            groups.running.remove(&group);
            drop(groups);
            let _ = child.wait();
            return Err(std::io::Error::other(format!("pidfd_open: {e}")));
        }
    };
    let mut out = Stream::new(child.stdout.take().map(OwnedFd::from));
    let mut err = Stream::new(child.stderr.take().map(OwnedFd::from));
    let exited = pump(&mut out, &mut err, Some(&pidfd), deadline);
    // Leader exited or not: the group goes now, while the leader is unreaped.
    {
        let mut groups = running.lock();
        kill_group(group);
        groups.running.remove(&group);
    }
    pump(&mut out, &mut err, None, Instant::now() + AFTER_KILL);
    let status = if exited {
        child.wait().ok()
    } else {
        reap(child, &pidfd);
        None
    };
    Ok(Outcome { status, stdout: out.text(), stderr: err.text() })
}

/// Read both streams until the leader (watched through `pidfd`) has exited and both
/// streams ended, or the leader exited [`STRAGGLER_GRACE`] ago, or `deadline`. Returns
/// whether the leader exited.
fn pump(out: &mut Stream, err: &mut Stream, pidfd: Option<&OwnedFd>, deadline: Instant) -> bool {
    let mut exited_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let limit = exited_at.map_or(deadline, |t| deadline.min(t + STRAGGLER_GRACE));
        let watching = pidfd.filter(|_| exited_at.is_none());
        if (exited_at.is_some() || pidfd.is_none()) && out.ended() && err.ended() {
            break;
        }
        if now >= limit {
            break;
        }
        let mut fds = Vec::with_capacity(3);
        if let Some(fd) = watching {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        for stream in [&*out, &*err] {
            if let Some(fd) = &stream.fd {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
        }
        let wait = Timespec::try_from(limit - now).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        if poll(&mut fds, Some(&wait)).is_err() {
            // EINTR: go round again, the deadline still holds.
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|fd| !fd.revents().is_empty()).collect();
        drop(fds);
        let mut ready = ready.into_iter();
        if watching.is_some() && ready.next() == Some(true) {
            exited_at = Some(Instant::now());
        }
        for stream in [&mut *out, &mut *err] {
            if stream.fd.is_some() && ready.next() == Some(true) {
                stream.read_some();
            }
        }
    }
    pidfd.is_none() || exited_at.is_some()
}

/// Reap a killed leader: at once if it dies within [`AFTER_KILL`], else on a thread of its
/// own, so no zombie is left and the caller is not kept waiting.
fn reap(mut child: Child, pidfd: &OwnedFd) {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let wait = Timespec::try_from(AFTER_KILL).unwrap_or(Timespec { tv_sec: 0, tv_nsec: 0 });
    if matches!(poll(&mut fds, Some(&wait)), Ok(n) if n > 0) {
        let _ = child.wait();
        return;
    }
    let spawned = std::thread::Builder::new().name("dms-reap".into()).spawn(move || {
        let _ = child.wait();
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to reap a killed mount program");
    }
}

fn kill_group(group: i32) {
    if let Some(pgid) = Pid::from_raw(group) {
        // ESRCH (nobody left) is the usual answer after a clean exit.
        let _ = kill_process_group(pgid, Signal::KILL);
    }
}

/// One output pipe: open until end-of-file, the first [`KEEP`] bytes kept.
struct Stream {
    fd: Option<OwnedFd>,
    kept: Vec<u8>,
}

impl Stream {
    fn new(fd: Option<OwnedFd>) -> Self {
        Self { fd, kept: Vec::new() }
    }

    fn ended(&self) -> bool {
        self.fd.is_none()
    }

    /// One read (poll said it will not block); end-of-file or an error closes the stream.
    fn read_some(&mut self) {
        let Some(fd) = &self.fd else { return };
        let mut buf = [0u8; 8192];
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => self.fd = None,
            Ok(n) => {
                let room = KEEP.saturating_sub(self.kept.len());
                self.kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => self.fd = None,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}
