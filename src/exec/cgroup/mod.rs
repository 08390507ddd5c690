//! Each helper in a cgroup of its own (issue 29 item 4): the kernel — not a PID file or an
//! environment — says which processes are a target's helper, optional memory and task limits
//! kill one runaway helper alone, and the cgroup's OOM counter says when the OOM killer was
//! what ended it.
//!
//! Where the cgroups go ([`detect`]): cgroup v2 under the daemon's own cgroup (with systemd's
//! `Delegate=yes`, the unit's delegated subtree), or the v1 `memory` and `pids` controllers.
//! A target's cgroup is `<root>/<target id>` (`_<target id>` when the name could be a kernel
//! file: it has a dot, or is `tasks`, `notify_on_release` or `release_agent`).
//!
//! v2's no-internal-process rule: a cgroup that hands controllers to its children must hold no
//! process itself. Limits on v2 need `memory`/`pids` enabled in the daemon's own cgroup, so
//! there the daemon first moves itself (and whatever else is in its cgroup) into the leaf
//! `<own>/daemon`. Only then, and only when a limit is set: without limits the v2 cgroups
//! carry no controller and the daemon stays where systemd put it. See the unit file for what
//! this means for restarts.
//!
//! A helper is started by `posix_spawn`, which cannot start a child inside a cgroup (v2's
//! `clone3(CLONE_INTO_CGROUP)` is not reachable through it), so it is moved in right after
//! `posix_spawn` returns, before its PID file is written. In that window (microseconds: the
//! new program has just been exec'd) a child it forks stays outside; a helper forks its
//! workers later than that.

mod detect;
mod ops;

pub use detect::{CgroupRoot, Layout, HELPERS_DIR};

use dms_journal::TargetId;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Limits applied to every helper's cgroup; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes: v2 `memory.max`, v1 `memory.limit_in_bytes`.
    pub memory_max: Option<u64>,
    /// Processes and threads: `pids.max`.
    pub tasks_max: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No hierarchy can be used; the daemon runs its helpers without cgroups.
    #[error("{reason}")]
    Unavailable { reason: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write { path: PathBuf, value: String, source: std::io::Error },
    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("cgroup {path} still holds pids {pids:?} after SIGKILL")]
    NotEmpty { path: PathBuf, pids: Vec<u32> },
}

/// The helpers' cgroups on this host. Cheap to clone (the OOM baselines are shared).
#[derive(Debug, Clone)]
pub struct HelperCgroups {
    layout: Layout,
    limits: Limits,
    /// Each target's OOM kill counter when its cgroup was (re)made for a helper: a cgroup
    /// left over from an earlier helper or daemon keeps its counter.
    baselines: Arc<Mutex<HashMap<TargetId, u64>>>,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::V2 { root } => write!(f, "cgroup v2 at {}", root.display()),
            Layout::V1 { memory, pids: Some(pids) } => {
                write!(f, "cgroup v1 memory at {}, pids at {}", memory.display(), pids.display())
            }
            Layout::V1 { memory, pids: None } => {
                write!(f, "cgroup v1 memory at {} (no pids controller)", memory.display())
            }
        }
    }
}

impl HelperCgroups {
    /// What this host offers for `root` (read at start): `Ok(None)` when configured `off`.
    /// The roots are created (and on v2 with limits, the controllers enabled) here, so an
    /// error means: no cgroups for the helpers, for the reason given.
    pub fn detect(root: &CgroupRoot, limits: Limits) -> Result<Option<Self>, CgroupError> {
        if *root == CgroupRoot::Off {
            return Ok(None);
        }
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map_err(|source| CgroupError::Read { path: path.into(), source })
        };
        let mounted = detect::parse_mountinfo(&read("/proc/self/mountinfo")?);
        let layout = detect::layout(&mounted, &read("/proc/self/cgroup")?, root)?;
        Self::new(layout, limits).map(Some)
    }

    /// Use `layout` (its roots are created if missing).
    pub fn new(layout: Layout, limits: Limits) -> Result<Self, CgroupError> {
        let cgroups = HelperCgroups { layout, limits, baselines: Arc::default() };
        cgroups.prepare_roots()?;
        Ok(cgroups)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `target`'s cgroup directories: the one that counts first (v2's, v1 memory's), then
    /// v1 pids'.
    pub fn dirs(&self, target: &TargetId) -> Vec<PathBuf> {
        let name = dir_name(target);
        match &self.layout {
            Layout::V2 { root } => vec![root.join(name)],
            Layout::V1 { memory, pids } => {
                std::iter::once(memory).chain(pids).map(|r| r.join(&name)).collect()
            }
        }
    }

    /// Make `target`'s cgroup ready for a new helper: created (a leftover is reused), the
    /// limits written (or lifted, where a leftover carries old ones), and its OOM counter
    /// noted, so that [`Self::oom_killed`] counts only this helper's kills.
    pub fn create(&self, target: &TargetId) -> Result<(), CgroupError> {
        let mut baselines = self.lock();
        for dir in self.dirs(target) {
            ops::mkdir(&dir)?;
        }
        ops::apply_limits(&self.dirs(target), self.limits)?;
        let count = ops::oom_kills(&self.dirs(target)[0])?.unwrap_or(0);
        baselines.insert(target.clone(), count);
        Ok(())
    }

    /// Move `pid` (with its threads) into `target`'s cgroup. A cgroup removed meanwhile (the
    /// previous helper's reaper) is made again.
    pub fn enter(&self, target: &TargetId, pid: u32) -> Result<(), CgroupError> {
        match ops::enter(&self.dirs(target), pid) {
            Err(CgroupError::Write { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                self.create(target)?;
                ops::enter(&self.dirs(target), pid)
            }
            other => other,
        }
    }

    /// The processes in `target`'s cgroup, as the kernel lists them (none if it has none).
    pub fn pids(&self, target: &TargetId) -> Result<Vec<u32>, CgroupError> {
        ops::pids(&self.dirs(target)[0])
    }

    /// The OOM killer's kills in `target`'s cgroup (`None`: no memory controller there).
    pub fn oom_kills(&self, target: &TargetId) -> Result<Option<u64>, CgroupError> {
        ops::oom_kills(&self.dirs(target)[0])
    }

    /// Whether the OOM killer killed a process in `target`'s cgroup since [`Self::create`].
    pub fn oom_killed(&self, target: &TargetId) -> bool {
        let since = self.lock().get(target).copied().unwrap_or(0);
        matches!(self.oom_kills(target), Ok(Some(now)) if now > since)
    }

    /// SIGKILL everything in `target`'s cgroup (v2 `cgroup.kill` where the kernel has it)
    /// and wait up to `wait` for it to be empty.
    pub fn kill_all(
        &self,
        target: &TargetId,
        wait: std::time::Duration,
    ) -> Result<(), CgroupError> {
        ops::kill_all(&self.dirs(target), wait)
    }

    /// Remove `target`'s cgroup if it is empty: `Ok(true)` if it is gone (or never was),
    /// `Ok(false)` if processes still hold it.
    pub fn remove(&self, target: &TargetId) -> Result<bool, CgroupError> {
        let mut baselines = self.lock();
        for dir in self.dirs(target) {
            if !ops::rmdir(&dir)? {
                return Ok(false);
            }
        }
        baselines.remove(target);
        Ok(true)
    }

    fn prepare_roots(&self) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V2 { root } => {
                ops::mkdir_all(root)?;
                ops::v2_enable_controllers(root, self.limits)
            }
            Layout::V1 { memory, pids } => {
                ops::mkdir_all(memory)?;
                pids.iter().try_for_each(|p| ops::mkdir_all(p))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TargetId, u64>> {
        self.baselines.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A target's cgroup name: its id, unless that could be (or become) a kernel attribute
/// file, every one of which has a dot except these three.
fn dir_name(target: &TargetId) -> String {
    let id = target.as_str();
    match id.contains('.') || ["tasks", "notify_on_release", "release_agent"].contains(&id) {
        true => format!("_{id}"),
        false => id.to_owned(),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_real;
