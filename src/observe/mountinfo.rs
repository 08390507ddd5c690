//! The mount table as the kernel reports it in `/proc/self/mountinfo`.
//!
//! "Mounted" means an entry at the path in this table (DESIGN §3.4), so parsing it must be
//! exact: mount points are octal-escaped (`\040` for a space), the optional fields before
//! the ` - ` separator vary in number, and the last entry at a path is the one that is
//! visible (mounts stack).

use dms_journal::MountBase;
use std::collections::BTreeMap;

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountInfoError {
    #[error("mountinfo line {line}: {what}")]
    Malformed { line: usize, what: &'static str },
}

/// Parse the whole table. A malformed line is an error rather than skipped: a table we
/// cannot read is no ground for deciding that something is not mounted.
pub fn parse(text: &str) -> Result<Vec<MountInfo>, MountInfoError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l)
                .ok_or(MountInfoError::Malformed { line: i + 1, what: "unexpected layout" })
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
        assert_eq!(err, MountInfoError::Malformed { line: 2, what: "unexpected layout" });
        assert!(parse("1 2 3 4 /a\\9 rw - x y z").is_err(), "a bad escape is refused");
    }

    #[test]
    fn given_this_process_when_reading_the_real_table_then_root_is_there() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let entries = parse(&text).unwrap();
        assert!(entries.iter().any(|m| m.mount_point == "/"));
    }
}
