//! Processes as `/proc` describes them: enough to prove who a process is.
//!
//! A PID alone proves nothing (PIDs are reused), so a helper's identity is its PID plus its
//! start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`) plus the boot id.
//! Whether a process is *a helper for a path* is read from its environment: the helper
//! learns its mount path from `vault_data_directory` (DESIGN §2), and the daemon also marks
//! the helpers it starts with [`TARGET_MARKER`].

use dms_journal::{BootId, HelperIdentity};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Set in the environment of every helper the daemon starts: the target it serves.
pub const TARGET_MARKER: &str = "DMS_HELPER_TARGET";
/// How a helper learns its mount path (the s3vaultfuse contract).
pub const MOUNT_PATH_VAR: &str = "vault_data_directory";

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is malformed: {what}")]
    Malformed { path: PathBuf, what: &'static str },
}

/// Where `/proc` is; tests may point elsewhere.
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Self { root: PathBuf::from("/proc") }
    }
}

impl Procfs {
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn read(&self, rel: impl AsRef<Path>) -> Result<Vec<u8>, ProcError> {
        let path = self.root.join(rel);
        std::fs::read(&path).map_err(|source| ProcError::Read { path, source })
    }

    /// The kernel's boot id: a reboot changes it and voids every journaled claim.
    pub fn boot_id(&self) -> Result<BootId, ProcError> {
        let rel = "sys/kernel/random/boot_id";
        let raw = self.read(rel)?;
        BootId::parse(&String::from_utf8_lossy(&raw))
            .map_err(|_| ProcError::Malformed { path: self.root.join(rel), what: "not a uuid" })
    }

    /// The process's start time in clock ticks since boot, or `None` if it is gone (or a
    /// zombie).
    pub fn start_ticks(&self, pid: u32) -> Result<Option<u64>, ProcError> {
        let rel = format!("{pid}/stat");
        let raw = match self.read(&rel) {
            Ok(raw) => raw,
            // A process that exits while being read gives ENOENT or ESRCH: gone either way.
            Err(ProcError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(3) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        match parse_stat(&raw) {
            Stat::Alive(ticks) => Ok(Some(ticks)),
            Stat::Gone => Ok(None),
            Stat::Malformed => {
                Err(ProcError::Malformed { path: self.root.join(rel), what: "no start time field" })
            }
        }
    }

    /// Whether the process leads its process group (its pgrp, field 5 of its stat, is its
    /// PID), as a helper started in its own session does. `false` when it is gone.
    pub fn leads_group(&self, pid: u32) -> bool {
        let raw = self.read(format!("{pid}/stat")).unwrap_or_default();
        group_of(&raw) == Some(pid)
    }

    /// The identity of a live process, or `None` if it is gone.
    pub fn identity(&self, pid: u32, boot: BootId) -> Result<Option<HelperIdentity>, ProcError> {
        Ok(self.start_ticks(pid)?.map(|start_ticks| HelperIdentity { pid, start_ticks, boot }))
    }

    /// Whether `helper` is alive *and* still the same process.
    pub fn is_same(&self, helper: &HelperIdentity, boot: BootId) -> bool {
        helper.boot == boot
            && matches!(self.start_ticks(helper.pid), Ok(Some(t)) if t == helper.start_ticks)
    }

    /// One variable of the process's environment (as it was at exec). `None` when the
    /// process is gone, unreadable, or lacks the variable.
    pub fn env_var(&self, pid: u32, name: &str) -> Option<String> {
        let raw = self.read(format!("{pid}/environ")).ok()?;
        env_lookup(&raw, name)
    }

    /// The process's whole environment as it was at exec (`NAME=value\0...`), zeroed when
    /// dropped: a helper's holds its credentials. `None` when gone or unreadable.
    pub fn environ(&self, pid: u32) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        self.read(format!("{pid}/environ")).ok().map(zeroize::Zeroizing::new)
    }

    /// The process's real, effective, saved and filesystem uids (`Uid:` of its status).
    pub fn uids(&self, pid: u32) -> Option<[u32; 4]> {
        let raw = self.read(format!("{pid}/status")).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
        let ids: Vec<u32> = line.split_ascii_whitespace().filter_map(|f| f.parse().ok()).collect();
        ids.try_into().ok()
    }

    /// The executable the process runs (`/proc/<pid>/exe`, as the kernel resolved it).
    pub fn exe(&self, pid: u32) -> Option<PathBuf> {
        std::fs::read_link(self.root.join(format!("{pid}/exe"))).ok()
    }

    /// The process's arguments, `argv[0]` first.
    pub fn cmdline(&self, pid: u32) -> Vec<Vec<u8>> {
        let raw = self.read(format!("{pid}/cmdline")).unwrap_or_default();
        raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(<[u8]>::to_vec).collect()
    }

    /// The FUSE connections the process holds through open `/dev/fuse` descriptors.
    pub fn fuse_connections(&self, pid: u32) -> FuseFds {
        let Ok(fds) = std::fs::read_dir(self.root.join(format!("{pid}/fd"))) else {
            return FuseFds::default();
        };
        let mut held = FuseFds::default();
        for fd in fds.filter_map(Result::ok) {
            if std::fs::read_link(fd.path()).ok().as_deref() != Some(Path::new("/dev/fuse")) {
                continue;
            }
            let info = self.read(format!("{pid}/fdinfo/{}", fd.file_name().to_string_lossy()));
            match info.ok().as_deref().and_then(fuse_connection) {
                Some(conn) => held.labelled.push(conn),
                None => held.unlabelled += 1,
            }
        }
        held
    }

    /// Every numeric entry of `/proc`: the PIDs alive right now.
    pub fn pids(&self) -> Result<Vec<u32>, ProcError> {
        let dir = std::fs::read_dir(&self.root)
            .map_err(|source| ProcError::Read { path: self.root.clone(), source })?;
        Ok(dir
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect())
    }
}

/// How long a process that started `start_ticks` after boot has been (or had been) running:
/// the age of a helper that just died, for the operator's line about it.
pub fn age(start_ticks: u64) -> Option<std::time::Duration> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let since_boot: f64 = text.split_whitespace().next()?.parse().ok()?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let started = start_ticks as f64 / hz.max(1.0);
    Some(std::time::Duration::from_secs_f64((since_boot - started).max(0.0)))
}

/// Open `/dev/fuse` descriptors of a process. Linux 6.15 and later name each one's
/// connection in its fdinfo (`fuse_connection:`, the minor device number of the mount it
/// serves); an older kernel shows the descriptor but not which mount it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FuseFds {
    pub labelled: Vec<u32>,
    pub unlabelled: usize,
}

fn fuse_connection(fdinfo: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(fdinfo).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("fuse_connection:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Field 22 of `/proc/<pid>/stat`, or `None` for a zombie (it has exited; only its exit
/// status waits to be collected, so it is dead for every purpose of the daemon). The
/// command name (field 2) is in parentheses and may itself contain spaces and
/// parentheses, so counting starts after the *last* `)`.
/// What one read of `/proc/<pid>/stat` says about the process.
#[derive(Debug, PartialEq, Eq)]
enum Stat {
    /// Running (or stopped, sleeping...) since this many clock ticks after boot.
    Alive(u64),
    /// A zombie, or reaped between the open and the read (the read then returns nothing):
    /// a helper that exits at once is in this state while its reaper has not run yet.
    Gone,
    Malformed,
}

fn parse_stat(stat: &[u8]) -> Stat {
    if stat.is_empty() {
        return Stat::Gone;
    }
    let Some(close) = stat.iter().rposition(|&b| b == b')') else { return Stat::Malformed };
    let Some(rest) = stat.get(close + 1..).and_then(|r| std::str::from_utf8(r).ok()) else {
        return Stat::Malformed;
    };
    let mut fields = rest.split_ascii_whitespace();
    // After the name: field 3 (state) is the first; field 22 is the 20th.
    match fields.next() {
        Some("Z" | "X" | "x") => Stat::Gone,
        Some(_) => fields.nth(18).and_then(|f| f.parse().ok()).map_or(Stat::Malformed, Stat::Alive),
        None => Stat::Malformed,
    }
}

/// Field 5 of `/proc/<pid>/stat`, the process group (counted after the last `)`, as in
/// [`parse_stat`]).
fn group_of(stat: &[u8]) -> Option<u32> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    rest.split_ascii_whitespace().nth(2)?.parse().ok()
}

fn env_lookup(environ: &[u8], name: &str) -> Option<String> {
    environ.split(|&b| b == 0).find_map(|entry| {
        let (key, value) = entry.split_at(entry.iter().position(|&b| b == b'=')?);
        (OsStr::from_bytes(key) == OsStr::new(name))
            .then(|| String::from_utf8_lossy(&value[1..]).into_owned())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn given_a_command_name_with_spaces_and_parens_when_parsing_stat_then_field_22_is_found() {
        let stat = b"4242 (evil) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_stat(stat), Stat::Alive(987_654));
        assert_eq!(parse_stat(b"4242 (x) S 1"), Stat::Malformed);
        assert_eq!(parse_stat(b"garbage"), Stat::Malformed);
        assert_eq!(group_of(stat), Some(4242), "field 5, after the name");
        assert_eq!(group_of(b"7 (x) S 1"), None);
    }

    /// A helper that exits at once is a zombie until it is reaped, and one reaped while its
    /// stat is read leaves an empty read: both are a process that is gone, not a damaged
    /// `/proc` (a mount once failed with "cannot check the identity of helper pid N: ... no
    /// start time field" instead of "helper exited").
    #[test]
    fn given_a_zombie_or_an_empty_stat_when_reading_the_start_time_then_the_process_is_gone() {
        let zombie = b"4242 (x) Z 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_stat(zombie), Stat::Gone, "a zombie is not alive");
        let root = tempfile::tempdir().unwrap();
        for (pid, stat) in [(7, &zombie[..]), (8, b""), (9, b"9 (x) S 1")] {
            std::fs::create_dir(root.path().join(pid.to_string())).unwrap();
            std::fs::write(root.path().join(format!("{pid}/stat")), stat).unwrap();
        }
        let proc = Procfs::at(root.path());
        assert_eq!(proc.start_ticks(7).unwrap(), None);
        assert_eq!(proc.start_ticks(8).unwrap(), None);
        assert_eq!(proc.start_ticks(10).unwrap(), None, "no such process");
        assert!(matches!(proc.start_ticks(9), Err(ProcError::Malformed { .. })));
    }

    #[test]
    fn given_fdinfo_of_a_fuse_descriptor_when_parsed_then_the_connection_is_read() {
        let info = b"pos:\t0\nflags:\t02100002\nmnt_id:\t61\nino:\t89\nfuse_connection:\t40\n";
        assert_eq!(fuse_connection(info), Some(40));
        assert_eq!(fuse_connection(b"pos:\t0\nflags:\t02\n"), None, "an older kernel");
    }

    #[test]
    fn given_this_process_when_read_then_uids_exe_and_arguments_are_its_own() {
        let proc = Procfs::default();
        let me = std::process::id();
        let euid = rustix::process::geteuid().as_raw();
        assert_eq!(proc.uids(me).map(|u| u[1]), Some(euid));
        assert_eq!(proc.exe(me), std::env::current_exe().ok());
        let argv0 = std::env::args_os().next().unwrap();
        assert_eq!(proc.cmdline(me).first().map(Vec::as_slice), Some(argv0.as_bytes()));
        assert_eq!(proc.fuse_connections(me), FuseFds::default());
        assert_eq!(proc.uids(u32::MAX), None);
    }

    #[test]
    fn given_an_environ_block_when_looking_up_then_exact_names_match() {
        let env =
            b"PATH=/bin\0vault_data_directory=/mnt/a b\0vault_data_directory_old=/x\0EMPTY=\0";
        assert_eq!(env_lookup(env, "vault_data_directory").as_deref(), Some("/mnt/a b"));
        assert_eq!(env_lookup(env, "EMPTY").as_deref(), Some(""));
        assert_eq!(env_lookup(env, "vault"), None);
    }

    #[test]
    fn given_this_process_when_observed_then_identity_is_stable_and_a_reused_pid_is_not_the_same() {
        let proc = Procfs::default();
        let boot = proc.boot_id().unwrap();
        let me = proc.identity(std::process::id(), boot).unwrap().unwrap();
        assert_eq!(proc.identity(me.pid, boot).unwrap(), Some(me));
        assert!(proc.is_same(&me, boot));
        let reused = HelperIdentity { start_ticks: me.start_ticks + 1, ..me };
        assert!(!proc.is_same(&reused, boot), "another start time is another process");
        let other_boot = BootId(uuid::Uuid::nil());
        assert!(!proc.is_same(&me, other_boot), "another boot is another process");
        assert!(proc.pids().unwrap().contains(&me.pid));
    }

    #[test]
    fn given_a_child_with_an_environment_when_observed_then_its_variables_are_read_and_its_exit_seen(
    ) {
        let proc = Procfs::default();
        let boot = proc.boot_id().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env_clear()
            .env(MOUNT_PATH_VAR, "/mnt/x")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(proc.env_var(pid, MOUNT_PATH_VAR).as_deref(), Some("/mnt/x"));
        let id = proc.identity(pid, boot).unwrap().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!proc.is_same(&id, boot));
        assert_eq!(proc.start_ticks(pid).unwrap(), None);
    }
}
