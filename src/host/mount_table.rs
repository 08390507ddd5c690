//! The mount table as the kernel reports it in `/proc/self/mountinfo`: the one place that
//! reads, parses and watches it, for the executors and the observer alike.
//!
//! "Mounted" means an entry at the path in this table (DESIGN §3.4), so parsing it must be
//! exact: mount points are octal-escaped (`\040` for a space), the optional fields before
//! the ` - ` separator vary in number, and the last entry at a path is the one that is
//! visible (mounts stack). Reading the table never blocks on a hung mount (the kernel
//! answers it from its own records, without asking any filesystem), so a look that needs
//! only the table needs no thread and no deadline.

use dms_journal::MountBase;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::Duration;

/// Where the kernel shows this process's mount namespace.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo, the fields the daemon needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_id: u64,
    /// `major:minor` of the mounted filesystem; for FUSE the minor is the connection number.
    pub device: (u32, u32),
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MountTableError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot watch {path}: {source}")]
    Watch { path: PathBuf, source: std::io::Error },
    #[error("mountinfo line {line}: {what}")]
    Malformed { line: usize, what: &'static str },
}

/// The whole table, read and parsed now.
pub fn read() -> Result<Vec<MountInfo>, MountTableError> {
    let text = std::fs::read_to_string(MOUNTINFO)
        .map_err(|source| MountTableError::Read { path: MOUNTINFO.into(), source })?;
    parse(&text)
}

/// The mount at `path` as the table shows it now (the top of a stack), if any.
pub fn mount_at(path: &str) -> Result<Option<MountInfo>, MountTableError> {
    Ok(find(read()?, path))
}

/// The visible mount at `path` among `entries` (the last one there: mounts stack).
pub fn find(entries: Vec<MountInfo>, path: &str) -> Option<MountInfo> {
    entries.into_iter().rev().find(|m| m.mount_point == path)
}

/// Parse the whole table. A malformed line is an error rather than skipped: a table we
/// cannot read is no ground for deciding that something is not mounted.
pub fn parse(text: &str) -> Result<Vec<MountInfo>, MountTableError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l)
                .ok_or(MountTableError::Malformed { line: i + 1, what: "unexpected layout" })
        })
        .collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let mount_id = left.next()?.parse().ok()?;
    let _parent = left.next()?;
    let (major, minor) = left.next()?.split_once(':')?;
    let device = (major.parse().ok()?, minor.parse().ok()?);
    let _root = left.next()?;
    let mount_point = unescape(left.next()?)?;
    let mut right = right.split(' ');
    let fstype = unescape(right.next()?)?;
    let source = unescape(right.next()?)?;
    Some(MountInfo { mount_id, device, mount_point, fstype, source })
}

/// Undo the kernel's octal escaping of space, tab, newline and backslash.
fn unescape(field: &str) -> Option<String> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            // The kernel escapes a backslash too, so a lone one means a malformed field.
            let digits = field.get(i + 1..i + 4)?;
            out.push(u8::from_str_radix(digits, 8).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The visible mount at each mount point at or under `base` (the last entry wins: a mount
/// stacked on another hides it).
pub fn under(entries: &[MountInfo], base: &MountBase) -> BTreeMap<String, MountInfo> {
    entries
        .iter()
        .filter(|m| m.mount_point == base.as_str() || base.contains(&m.mount_point))
        .map(|m| (m.mount_point.clone(), m.clone()))
        .collect()
}

/// A watch on the table: [`Watch::wait`] wakes when it changes (the kernel flags
/// `/proc/self/mountinfo` with `POLLPRI` on every mount or unmount in the namespace).
#[derive(Debug)]
pub struct Watch(File);

/// Why [`Watch::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// The table changed, or the wait timed out: look again.
    Look,
    /// The other descriptor polled readable (a helper's pidfd: it exited).
    Other,
}

impl Watch {
    /// Open before the first look, so that a change after that look wakes the next wait.
    pub fn open() -> Result<Self, MountTableError> {
        File::open(MOUNTINFO)
            .map(Watch)
            .map_err(|source| MountTableError::Watch { path: MOUNTINFO.into(), source })
    }

    /// Wait up to `timeout` for a change of the table or for `other` to poll readable.
    pub fn wait(&self, other: Option<BorrowedFd<'_>>, timeout: Duration) -> Woke {
        let ts = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        let mut fds = vec![PollFd::new(&self.0, PollFlags::PRI | PollFlags::ERR)];
        if let Some(fd) = &other {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        // EINTR or a failed poll: the caller looks again, its deadline still holds.
        let _ = poll(&mut fds, Some(&ts));
        match fds.get(1).is_some_and(|fd| fd.revents().contains(PollFlags::IN)) {
            true => Woke::Other,
            false => Woke::Look,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SAMPLE: &str = "\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
35 22 0:30 / /var/lib/trilio/triliovault-mounts/t-1 rw,nosuid,nodev,relatime shared:20 - fuse.s3fs s3fs rw,user_id=0,group_id=0
36 22 0:31 / /var/lib/trilio/triliovault-mounts/with\\040space rw,nosuid,nodev - nfs4 10.0.0.5:/exports/b rw,vers=4.1
37 22 0:32 / /var/lib/trilio/triliovault-mounts-other rw - tmpfs tmpfs rw
38 35 0:33 / /var/lib/trilio/triliovault-mounts/t-1 rw master:3 shared:21 - fuse.dms-testfs dms-testfs rw
";

    #[test]
    fn given_kernel_lines_when_parsed_then_fields_and_escapes_are_exact() {
        let entries = parse(SAMPLE).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[1].fstype, "fuse.s3fs");
        assert_eq!(entries[2].mount_point, "/var/lib/trilio/triliovault-mounts/with space");
        assert_eq!(entries[2].source, "10.0.0.5:/exports/b");
        assert_eq!(entries[4].mount_id, 38);
        assert_eq!((entries[0].device, entries[4].device), ((252, 1), (0, 33)));
    }

    #[test]
    fn given_a_base_when_filtered_then_only_paths_inside_it_and_the_top_of_a_stack() {
        let entries = parse(SAMPLE).unwrap();
        let under =
            under(&entries, &MountBase::new("/var/lib/trilio/triliovault-mounts/").unwrap());
        let paths: Vec<&str> = under.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "/var/lib/trilio/triliovault-mounts/t-1",
                "/var/lib/trilio/triliovault-mounts/with space"
            ]
        );
        assert_eq!(under["/var/lib/trilio/triliovault-mounts/t-1"].fstype, "fuse.dms-testfs");
    }

    #[test]
    fn given_garbage_when_parsed_then_an_error_names_the_line() {
        let err = parse("22 1 252:1 / / rw shared:1 - ext4 /dev/vda1 rw\nnonsense\n").unwrap_err();
        assert!(
            matches!(err, MountTableError::Malformed { line: 2, what: "unexpected layout" }),
            "{err:?}"
        );
        assert!(parse("1 2 3 4 /a\\9 rw - x y z").is_err(), "a bad escape is refused");
    }

    #[test]
    fn given_this_process_when_reading_the_real_table_then_root_is_there() {
        assert!(read().unwrap().iter().any(|m| m.mount_point == "/"));
        assert_eq!(mount_at("/").unwrap().unwrap().mount_point, "/");
        assert!(mount_at("/nonexistent/dms").unwrap().is_none());
    }

    #[test]
    fn given_a_stack_when_found_then_the_top_entry_is_the_visible_one() {
        let top = find(parse(SAMPLE).unwrap(), "/var/lib/trilio/triliovault-mounts/t-1");
        assert_eq!(top.unwrap().mount_id, 38);
    }

    #[test]
    fn given_a_watch_when_waiting_then_a_look_is_asked_for_and_an_exit_is_told_apart() {
        let watch = Watch::open().unwrap();
        assert_eq!(watch.wait(None, Duration::from_millis(50)), Woke::Look);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty());
        let pidfd = pidfd.unwrap();
        child.wait().unwrap();
        use std::os::fd::AsFd;
        assert_eq!(watch.wait(Some(pidfd.as_fd()), Duration::from_secs(5)), Woke::Other);
    }
}
