//! Why a helper died, in words for the journal and as a label for the deaths metric
//! (`dms_helper_deaths_total{cause}`): an exit code, a signal, or the OOM killer where the
//! kernel says so — the helper's cgroup's OOM counter ([`super::cgroup`]), or, where it has
//! no memory cgroup, the kernel log's record of killing that very PID.

use super::cgroup::HelperCgroups;
use super::spawn::Ended;
use dms_journal::{HelperIdentity, TargetId};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;

/// The cause of a helper's death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathCause {
    /// It exited with this code.
    Exit(i32),
    /// This signal ended it, and nothing says it was the OOM killer.
    Signal(i32),
    /// The OOM killer ended it (with SIGKILL).
    Oom,
    /// It ended but how is unknown: a helper adopted from an earlier daemon is not this
    /// process's child, so its status cannot be reaped (its pidfd only says it is gone).
    Unknown,
}

impl DeathCause {
    /// The metric label: `exit`, `signal`, `oom` or `unknown`.
    pub fn label(self) -> &'static str {
        match self {
            DeathCause::Exit(_) => "exit",
            DeathCause::Signal(_) => "signal",
            DeathCause::Oom => "oom",
            DeathCause::Unknown => "unknown",
        }
    }
}

/// The words journaled for an OOM kill.
pub const OOM_TEXT: &str = "killed by the OOM killer (signal 9)";

/// The cause and the words for a helper that ended as `ended`. `oom_killed` is asked only
/// for a SIGKILL: whether the kernel says the OOM killer sent it. Other endings keep std's
/// words (`exit status: 1`, `signal: 15 (SIGTERM)`).
pub fn classify(ended: &Ended, oom_killed: impl FnOnce() -> bool) -> (DeathCause, String) {
    match *ended {
        Ended::Exited(code) => (DeathCause::Exit(code), ended.to_string()),
        Ended::Signaled { signal: 9, .. } if oom_killed() => (DeathCause::Oom, OOM_TEXT.into()),
        Ended::Signaled { signal, .. } => (DeathCause::Signal(signal), ended.to_string()),
        Ended::Unknown(_) => (DeathCause::Unknown, ended.to_string()),
    }
}

/// Whether the OOM killer ended `helper`: its cgroup's counter where it has one (the kernel
/// counts every kill in it), else the kernel log's record of killing its PID.
pub fn oom_killed(
    cgroups: Option<&HelperCgroups>,
    target: &TargetId,
    helper: HelperIdentity,
) -> bool {
    if let Some(cgroups) = cgroups {
        if let Ok(Some(_)) = cgroups.oom_kills(target) {
            return cgroups.oom_killed(target);
        }
    }
    let hz = rustix::param::clock_ticks_per_second().max(1);
    // A second of slack: the log's clock and the start time's are not the same clock.
    let started_us = (helper.start_ticks * 1_000_000 / hz).saturating_sub(1_000_000);
    kmsg_says_oom_killed(helper.pid, started_us)
}

/// Whether the kernel log (`/dev/kmsg`) records the OOM killer killing `pid` at or after
/// `since_boot_us` (the process's start, in µs since boot: a PID is reused, but not while
/// its holder lives). Non-blocking: it reads the records the ring buffer holds now and
/// stops at its end. `false` when the log cannot be read (not root, `dmesg_restrict`).
pub fn kmsg_says_oom_killed(pid: u32, since_boot_us: u64) -> bool {
    use std::io::Read as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open("/dev/kmsg");
    let Ok(mut file) = file else { return false };
    // One record per read; a record longer than this is truncated by the kernel (EINVAL
    // for a smaller buffer), and the OOM lines are short.
    let mut buf = vec![0u8; 8192];
    let mut found = false;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return found,
            Ok(n) => found |= record_kills(&String::from_utf8_lossy(&buf[..n]), pid, since_boot_us),
            // The record read next was overwritten meanwhile: the read goes on after it.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return found, // EAGAIN: the end of the log
        }
    }
}

/// A `/dev/kmsg` record (`prio,seq,usec,flags;text`) of the OOM killer killing `pid`:
/// `Out of memory: Killed process <pid> (...)` (with a `Memory cgroup ` prefix for a
/// cgroup's limit) or `oom-kill:...,pid=<pid>,...`, logged at or after `since_us`.
pub(crate) fn record_kills(record: &str, pid: u32, since_us: u64) -> bool {
    let Some((head, text)) = record.split_once(';') else { return false };
    let at: Option<u64> = head.split(',').nth(2).and_then(|t| t.parse().ok());
    if !matches!(at, Some(at) if at >= since_us) {
        return false;
    }
    let text = text.lines().next().unwrap_or("");
    let killed = format!("Killed process {pid} ");
    let field = format!(",pid={pid},");
    (text.to_ascii_lowercase().contains("out of memory: ") && text.contains(&killed))
        || (text.starts_with("oom-kill:") && format!("{text},").contains(&field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_keeps_the_words_and_adds_the_oom_killer() {
        let exit = classify(&Ended::Exited(3), || panic!("asked for an exit"));
        assert_eq!(exit, (DeathCause::Exit(3), "exit status: 3".to_owned()));
        let term = classify(&Ended::Signaled { signal: 15, core_dumped: false }, || true);
        assert_eq!(term, (DeathCause::Signal(15), "signal: 15 (SIGTERM)".to_owned()));
        let kill = Ended::Signaled { signal: 9, core_dumped: false };
        assert_eq!(
            classify(&kill, || false),
            (DeathCause::Signal(9), "signal: 9 (SIGKILL)".into())
        );
        assert_eq!(classify(&kill, || true), (DeathCause::Oom, OOM_TEXT.to_owned()));
        assert_eq!(DeathCause::Oom.label(), "oom");
        assert_eq!(DeathCause::Signal(9).label(), "signal");
        assert_eq!(DeathCause::Exit(0).label(), "exit");
    }

    #[test]
    fn kernel_log_records_of_an_oom_kill() {
        let cgroup = "3,812,5000000,-;Memory cgroup out of memory: Killed process 4242 (tail) \
                      total-vm:40000kB, anon-rss:32000kB\n";
        let global = "3,813,6000000,-;Out of memory: Killed process 4242 (python3) total-vm:1kB\n";
        let summary = "6,811,4999000,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),\
                       task=tail,pid=4242,uid=0\n";
        for record in [cgroup, global, summary] {
            assert!(record_kills(record, 4242, 1_000_000), "{record}");
            assert!(!record_kills(record, 424, 1_000_000), "another pid: {record}");
            assert!(!record_kills(record, 4242, 7_000_000), "before the start: {record}");
        }
        assert!(!record_kills("6,1,9,-;Killed process 4242 by hand\n", 4242, 0));
        assert!(!record_kills("garbage", 4242, 0));
    }
}
