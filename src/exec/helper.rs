//! Starting and stopping FUSE helpers (one `s3vaultfuse` process per S3 target).
//!
//! What the Python service got wrong, and this module does not:
//! - A helper outlives the daemon: it gets its own session and process group, `/` as its
//!   working directory, and its stdout/stderr appended to a per-target log file, never a pipe
//!   the daemon would have to drain (DESIGN §3.3).
//! - Its environment is an explicit set (DESIGN §2): nothing of the daemon's own
//!   environment (the broker password, for one) leaks into it, and no secret is in argv.
//! - It is signalled only when its full identity (pid + start ticks + boot) still matches,
//!   through a pidfd, so a reused PID is never hit (DESIGN §3.6).
//! - Exits are reaped at once, so a dead helper never lingers as a zombie that would still
//!   look alive, and the exit is reported to the supervisor. The wait is a task on the
//!   helper's pidfd, registered with the daemon's runtime, never a thread: a thread per
//!   helper cost a stack each and made the daemon's own `fork` slower with every helper it
//!   runs (5 ms at 1,000 threads). So a helper is spawned only inside a runtime.
//! - It is started by `posix_spawn`, not `fork` ([`super::spawn`]): a fork of a daemon
//!   tracking 1,000 targets made every page it wrote next take a copy-on-write fault.
//! - Where the host lets us, it runs in a cgroup of its own ([`super::cgroup`]): limits, a
//!   stop that leaves nothing behind, and OOM kills named as such ([`super::death`]).

use super::cgroup::{CgroupError, HelperCgroups};
use super::death::{self, DeathCause};
use super::spawn::{self, Child, Spawn};
use crate::observe::pidfile::{PidDir, PidFileError};
use crate::observe::procfs::{Procfs, TARGET_MARKER};
use dms_journal::{BootId, HelperIdentity, TargetId};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{kill_process_group, pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use std::collections::HashSet;
use std::fmt;
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot open helper log {path}: {source}")]
    Log { path: PathBuf, source: std::io::Error },
    #[error("cannot start helper {bin}: {source}")]
    Exec { bin: PathBuf, source: std::io::Error },
    #[error("helper exited at once ({status})")]
    ExitedAtOnce { status: String },
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    /// The directory the helper mounts onto could not be made.
    #[error(transparent)]
    MountPoint(#[from] super::mount_point::MountPointError),
    #[error("helper pid {pid} is not the journaled process any more; not signalled")]
    NotOurs { pid: u32 },
    #[error("cannot signal helper pid {pid}: {source}")]
    Signal { pid: u32, source: std::io::Error },
    /// The identity could not be read (not "someone else"): nothing is concluded from it.
    #[error("cannot check the identity of helper pid {pid}: {source}")]
    Identity { pid: u32, source: crate::observe::procfs::ProcError },
    #[error("helper pid {pid} still runs {waited:?} after SIGKILL")]
    Unkillable { pid: u32, waited: Duration },
    /// Its exit could not be watched: such a helper is not started (or stopped at once).
    #[error("cannot watch the exit of helper {bin}: {reason}")]
    NoWatch { bin: PathBuf, reason: String },
    /// What was left in the target's cgroup could not be cleared.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

/// The helper's environment: names and values, values never printed and zeroed when
/// dropped (they hold keys).
#[derive(Clone, Default)]
pub struct HelperEnv(Vec<(String, Zeroizing<String>)>);

impl HelperEnv {
    /// Empty values are left out (DESIGN §2).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = Zeroizing::new(value.into());
        self.0.retain(|(n, _)| n != name);
        if !value.is_empty() {
            self.0.push((name.to_owned(), value));
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for HelperEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| format!("{name}=***"))).finish()
    }
}

/// A helper's exit, as its reaper saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperExit {
    pub target: TargetId,
    pub helper: HelperIdentity,
    /// In words, what the journal records as the cause: std's (`exit status: 1`,
    /// `signal: 9 (SIGKILL)`), or [`death::OOM_TEXT`].
    pub status: String,
    /// The same as data; [`DeathCause::label`] is the deaths metric's label.
    pub cause: DeathCause,
}

/// Starts and stops helpers for this node.
#[derive(Debug, Clone)]
pub struct Helpers {
    pub bin: PathBuf,
    pub log_dir: PathBuf,
    pub pid_dir: PidDir,
    pub procfs: Procfs,
    pub boot: BootId,
    /// Grace between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The helpers this process spawned and reaps.
    pub reaping: Reaping,
    /// Each helper's own cgroup; `None` where the host offers none (or it is off).
    pub cgroups: Option<HelperCgroups>,
}

/// The helpers this process spawned and still reaps (a task on each one's pidfd reports its
/// exit): the supervisor needs no pidfd watch of its own for those.
#[derive(Debug, Clone, Default)]
pub struct Reaping(Arc<Mutex<HashSet<HelperIdentity>>>);

impl Reaping {
    pub fn contains(&self, helper: &HelperIdentity) -> bool {
        self.set().contains(helper)
    }

    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<HelperIdentity>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Helpers {
    /// Start the helper for `target`, write its PID file, and report its identity. The
    /// exit, whenever it comes, is sent to `exits`. Only inside a tokio runtime (its
    /// reactor watches the helper's pidfd).
    pub fn spawn(
        &self,
        target: &TargetId,
        env: &HelperEnv,
        exits: UnboundedSender<HelperExit>,
    ) -> Result<HelperIdentity, HelperError> {
        let no_watch = |reason: String| HelperError::NoWatch { bin: self.bin.clone(), reason };
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| no_watch(e.to_string()))?;
        let log_path = self.log_dir.join(format!("{target}.log"));
        let log_error = |source| HelperError::Log { path: log_path.clone(), source };
        std::fs::create_dir_all(&self.log_dir).map_err(log_error)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&log_path)
            .map_err(log_error)?;
        // A cgroup that cannot be made costs the helper its cgroup, never its mount.
        let cgroups = self.cgroups.as_ref().filter(|c| in_cgroup(target, 0, c.create(target)));
        let marker = [(TARGET_MARKER, target.as_str())];
        let spawn = Spawn {
            program: &self.bin,
            env: env.0.iter().map(|(n, v)| (n.as_str(), v.as_str())).chain(marker).collect(),
            log: &log,
        };
        let child =
            spawn.spawn().map_err(|source| HelperError::Exec { bin: self.bin.clone(), source })?;
        let pid = child.id();
        // Into its cgroup before anything else (see the window in `super::cgroup`).
        let cgroups = cgroups.filter(|c| in_cgroup(target, pid, c.enter(target, pid)));
        // The child is not reaped yet, so its PID cannot have been reused: this is it.
        let helper = match self.procfs.identity(pid, self.boot).ok().flatten() {
            Some(helper) => helper,
            None => return Err(HelperError::ExitedAtOnce { status: child.wait() }),
        };
        if let Err(e) = self.pid_dir.write(target, pid) {
            child.kill();
            child.wait();
            return Err(e.into());
        }
        let reaper = Reaper {
            target: target.clone(),
            helper,
            exits,
            reaping: &self.reaping,
            cgroups: cgroups.cloned(),
        };
        if let Err(source) = reaper.start(&runtime, child) {
            // Without a waiter the exit would go unnoticed: do not run such a helper.
            let _ = self.stop(target, helper);
            return Err(no_watch(source.to_string()));
        }
        Ok(helper)
    }

    /// SIGTERM the helper and its process group, wait up to the grace period, then SIGKILL.
    /// Only if the identity still matches; a helper that is already gone is fine, and so
    /// is one whose PID now names another process (the helper exited and the PID was
    /// reused): that process is not signalled, and the stop has nothing left to do there.
    /// Treating the reuse as a failure kept a target's cleanup failing until the next
    /// resync, refusing its mounts in between. The PID file is removed if it still names
    /// this helper; its path is returned if it was.
    pub fn stop(
        &self,
        target: &TargetId,
        helper: HelperIdentity,
    ) -> Result<Option<PathBuf>, HelperError> {
        let pidfd = match self.pidfd(helper) {
            Err(HelperError::NotOurs { pid }) => {
                tracing::debug!(
                    target_id = %target, helper_pid = pid,
                    "the helper is gone and its PID names another process now; not signalled"
                );
                None
            }
            found => found?,
        };
        if let Some(pidfd) = pidfd {
            let pid = helper.pid;
            signal(&pidfd, pid, Signal::TERM)?;
            if !wait_exit(&pidfd, self.stop_grace) {
                signal(&pidfd, pid, Signal::KILL)?;
                let waited = Duration::from_secs(5);
                if !wait_exit(&pidfd, waited) {
                    return Err(HelperError::Unkillable { pid, waited });
                }
            }
        }
        if let Some(cgroups) = &self.cgroups {
            self.clear_cgroup(cgroups, target, helper)?;
        }
        Ok(self.pid_dir.remove_if(target, Some(helper.pid))?.removed())
    }

    /// After `helper` is stopped: kill what is left in the target's cgroup (its children,
    /// forks that left its group) and remove it; not while another helper of the target (a
    /// group leader with the target's marker) is in it: its own `stop` does that.
    fn clear_cgroup(
        &self,
        cgroups: &HelperCgroups,
        target: &TargetId,
        helper: HelperIdentity,
    ) -> Result<(), HelperError> {
        let members = cgroups.pids(target)?;
        let another = members.iter().find(|&&pid| {
            pid != helper.pid
                && self.procfs.leads_group(pid)
                && self.procfs.env_var(pid, TARGET_MARKER).as_deref() == Some(target.as_str())
        });
        if let Some(other) = another {
            tracing::debug!(
                target_id = %target, helper_pid = other,
                "another helper of the target is in its cgroup; the cgroup stays"
            );
            return Ok(());
        }
        if !members.is_empty() {
            cgroups.kill_all(target, Duration::from_secs(5))?;
        }
        cgroups.remove(target)?;
        Ok(())
    }

    /// `helper` still runs: its PID has the journaled start time, in this boot.
    pub fn is_running(&self, helper: HelperIdentity) -> bool {
        self.procfs.is_same(&helper, self.boot)
    }

    /// How long `helper` has been running, if it still is.
    pub fn uptime(&self, helper: HelperIdentity) -> Option<Duration> {
        if !self.is_running(helper) {
            return None;
        }
        crate::observe::procfs::age(helper.start_ticks)
    }

    /// A pidfd for `helper` if it is alive and provably the same process, `None` if it is
    /// gone, an error if the PID now belongs to someone else. Polling it readable tells
    /// that the helper exited.
    pub fn pidfd(&self, helper: HelperIdentity) -> Result<Option<OwnedFd>, HelperError> {
        if helper.boot != self.boot {
            return Ok(None); // a process of an earlier boot is gone by definition
        }
        let Some(pid) = i32::try_from(helper.pid).ok().and_then(Pid::from_raw) else {
            return Err(HelperError::NotOurs { pid: helper.pid });
        };
        let pidfd = match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Ok(None),
            Err(e) => return Err(HelperError::Signal { pid: helper.pid, source: e.into() }),
        };
        // The pidfd pins whatever process has this PID now; check it is ours *after*
        // opening, so the check and the signals are about the same process.
        match self.procfs.start_ticks(helper.pid) {
            Ok(Some(t)) if t == helper.start_ticks => Ok(Some(pidfd)),
            Ok(None) => Ok(None),
            Ok(Some(_)) => Err(HelperError::NotOurs { pid: helper.pid }),
            Err(source) => Err(HelperError::Identity { pid: helper.pid, source }),
        }
    }
}

/// Whether a cgroup step worked; if not, logged once here (`pid` 0: not started yet).
fn in_cgroup(target: &TargetId, pid: u32, done: Result<(), CgroupError>) -> bool {
    let Err(error) = done else { return true };
    tracing::warn!(target_id = %target, helper_pid = pid, %error, "helper runs without its cgroup");
    false
}

/// The leader is signalled through its pidfd; its group (its own session's children, e.g.
/// a wrapper script's s3fs) while the leader is alive, when its PID is its group's id.
fn signal(pidfd: &OwnedFd, pid: u32, sig: Signal) -> Result<(), HelperError> {
    match pidfd_send_signal(pidfd, sig) {
        Ok(()) => {}
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => return Err(HelperError::Signal { pid, source: e.into() }),
    }
    if let Some(group) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(group, sig);
    }
    Ok(())
}

/// Who is told of a helper's exit, and the set it is in until then.
struct Reaper<'a> {
    target: TargetId,
    helper: HelperIdentity,
    exits: UnboundedSender<HelperExit>,
    reaping: &'a Reaping,
    /// The helper's cgroup, if it is in one: its OOM counter says how it died.
    cgroups: Option<HelperCgroups>,
}

impl Reaper<'_> {
    /// Reap `child` once it exits and report the exit: a task of `runtime` waiting on the
    /// child's pidfd (one descriptor, no thread). It is in `reaping` until then.
    fn start(self, runtime: &tokio::runtime::Handle, child: Child) -> std::io::Result<()> {
        let Reaper { target, helper, exits, reaping, cgroups } = self;
        let _guard = runtime.enter();
        let watch = match register_or_return(child.into_pidfd()) {
            Ok(watch) => watch,
            Err((pidfd, e)) => {
                // Not left running unwatched, nor as a zombie.
                let _ = pidfd_send_signal(&pidfd, Signal::KILL);
                spawn::wait(&pidfd);
                return Err(e);
            }
        };
        let reaped = reaping.clone();
        reaping.set().insert(helper);
        runtime.spawn(async move {
            // Readable once the process has exited; the wait then returns at once.
            let _ = watch.readable().await;
            let ended = spawn::wait_ended(watch.get_ref());
            let (cause, status) =
                death::classify(&ended, || death::oom_killed(cgroups.as_ref(), &target, helper));
            if let Some(cgroups) = &cgroups {
                // Empty unless something of the helper outlived it (its stop clears that).
                if let Err(error) = cgroups.remove(&target) {
                    tracing::debug!(target_id = %target, %error, "helper cgroup stays");
                }
            }
            reaped.set().remove(&helper);
            let _ = exits.send(HelperExit { target, helper, status, cause });
        });
        Ok(())
    }
}

/// Register a pidfd with tokio's reactor: it polls readable once the process has exited.
pub(crate) fn register(pidfd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    register_or_return(pidfd).map_err(|(_, e)| e)
}

/// [`register`], handing the pidfd back when it fails.
#[allow(unsafe_code)]
fn register_or_return(
    pidfd: OwnedFd,
) -> Result<tokio::io::unix::AsyncFd<OwnedFd>, (OwnedFd, std::io::Error)> {
    // SAFETY: the AsyncFd takes the OwnedFd by value and is its only owner, so the
    // descriptor stays open, refers to the same pidfd and `as_raw_fd` returns the same
    // number for the AsyncFd's whole life; nothing else can close it.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts())
}

/// Whether the process behind `pidfd` exits within `timeout` (a pidfd polls readable then).
fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts =
            Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
#[path = "helper_tests.rs"]
mod tests;
