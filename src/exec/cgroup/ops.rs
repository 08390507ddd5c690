//! The file operations on cgroup directories, v1 and v2 alike: a cgroup is a directory, its
//! members are `cgroup.procs`, its settings and counters are files.

use super::{detect, CgroupError, Limits};
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.into(), source })
}

/// One `write(2)` of `value`: the kernel acts on each write of a cgroup file.
fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.into(),
        value: value.to_owned(),
        source,
    })
}

/// Create one cgroup; one that exists already is reused.
pub(super) fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(source) => Err(CgroupError::Create { path: dir.into(), source }),
    }
}

/// Create a root and its missing parents. Refused (read-only, no permission) means this
/// hierarchy is not ours to use.
pub(super) fn mkdir_all(dir: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(dir).map_err(|source| CgroupError::Unavailable {
        reason: format!("cannot create {}: {source}", dir.display()),
    })?;
    // A read-only or foreign hierarchy can still let us look: the real test is a write.
    let probe = dir.join("cgroup.procs");
    std::fs::OpenOptions::new().write(true).open(&probe).map(drop).map_err(|source| {
        CgroupError::Unavailable { reason: format!("cannot write {}: {source}", probe.display()) }
    })
}

/// Write the limits, or lift them where a leftover cgroup carries old ones. A setting whose
/// file is absent (v2 without that controller, v1 without pids) is skipped when unset.
pub(super) fn apply_limits(dirs: &[PathBuf], limits: Limits) -> Result<(), CgroupError> {
    for dir in dirs {
        let settings = [
            ("memory.max", limits.memory_max.map_or("max".into(), |b| b.to_string())),
            ("memory.limit_in_bytes", limits.memory_max.map_or("-1".into(), |b| b.to_string())),
            ("pids.max", limits.tasks_max.map_or("max".into(), |n| n.to_string())),
        ];
        for (file, value) in settings {
            let path = dir.join(file);
            if path.exists() {
                write(&path, &value)?;
            }
        }
    }
    Ok(())
}

/// The OOM killer's kills in the cgroup: v2 `memory.events`, v1 `memory.oom_control`
/// (kernel 4.13+); `None` when it has neither (no memory controller, an older kernel).
pub(super) fn oom_kills(dir: &Path) -> Result<Option<u64>, CgroupError> {
    for file in ["memory.events", "memory.oom_control"] {
        let path = dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(detect::counter(&text, "oom_kill")),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(source) => return Err(CgroupError::Read { path, source }),
        }
    }
    Ok(None)
}

pub(super) fn enter(dirs: &[PathBuf], pid: u32) -> Result<(), CgroupError> {
    dirs.iter().try_for_each(|dir| write(&dir.join("cgroup.procs"), &pid.to_string()))
}

/// The members of the cgroup; none if it does not exist.
pub(super) fn pids(dir: &Path) -> Result<Vec<u32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// SIGKILL every member and wait for the cgroup to be empty. v2's `cgroup.kill` kills the
/// whole subtree at once, forks included; otherwise each member is signalled through a pidfd
/// opened while the kernel still lists it there, so a PID reused meanwhile is never hit.
pub(super) fn kill_all(dirs: &[PathBuf], wait: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + wait;
    loop {
        let mut members = Vec::new();
        for dir in dirs {
            members.extend(pids(dir)?);
        }
        if members.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::NotEmpty { path: dirs[0].clone(), pids: members });
        }
        let kill_file = dirs[0].join("cgroup.kill");
        if kill_file.exists() {
            write(&kill_file, "1")?;
        } else {
            for dir in dirs {
                for pid in pids(dir)? {
                    kill_member(dir, pid)?;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill_member(dir: &Path, pid: u32) -> Result<(), CgroupError> {
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return Ok(()) };
    let Ok(pidfd) = pidfd_open(raw, PidfdFlags::empty()) else { return Ok(()) }; // gone
                                                                                 // The pidfd pins the process; it is the member only if the kernel still lists it.
    if pids(dir)?.contains(&pid) {
        let _ = pidfd_send_signal(&pidfd, Signal::KILL);
    }
    Ok(())
}

/// Remove an empty cgroup: `Ok(false)` while processes are in it, `Ok(true)` once it is gone.
pub(super) fn rmdir(dir: &Path) -> Result<bool, CgroupError> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => Ok(false),
        Err(source) => Err(CgroupError::Remove { path: dir.into(), source }),
    }
}

/// cgroup v2 with limits: enable `memory`/`pids` from the root's parent (the daemon's own
/// cgroup under `auto`) down to the root. The parent must hold no process for that (the
/// no-internal-process rule): if the kernel says so (EBUSY), its processes — the daemon —
/// move into the leaf `<parent>/daemon` first.
pub(super) fn v2_enable_controllers(root: &Path, limits: Limits) -> Result<(), CgroupError> {
    let wanted: Vec<&str> = [("memory", limits.memory_max), ("pids", limits.tasks_max)]
        .into_iter()
        .filter_map(|(c, limit)| limit.map(|_| c))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let parent = root.parent().unwrap_or(root);
    let available = read(&parent.join("cgroup.controllers"))?;
    if let Some(missing) = wanted.iter().find(|c| !available.split(' ').any(|a| a.trim() == **c)) {
        return Err(CgroupError::Unavailable {
            reason: format!(
                "cgroup v2 controller {missing} is not available in {} (not delegated: \
                 Delegate=yes in the unit?), so helper limits cannot be applied",
                parent.display()
            ),
        });
    }
    let value = wanted.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
    let control = parent.join("cgroup.subtree_control");
    match write(&control, &value) {
        Err(CgroupError::Write { source, .. })
            if source.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) =>
        {
            let leaf = parent.join("daemon");
            mkdir(&leaf)?;
            for pid in pids(parent)? {
                // A member that exited meanwhile is fine.
                match write(&leaf.join("cgroup.procs"), &pid.to_string()) {
                    Err(CgroupError::Write { source, .. })
                        if source.raw_os_error()
                            == Some(rustix::io::Errno::SRCH.raw_os_error()) => {}
                    other => other?,
                }
            }
            write(&control, &value)?;
        }
        other => other?,
    }
    write(&root.join("cgroup.subtree_control"), &value)
}
