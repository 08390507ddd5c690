//! Which cgroup hierarchy this host offers, where the helpers' cgroups go, and the pure
//! parsing of the kernel's texts (`/proc/self/cgroup`, `/proc/self/mountinfo`, the
//! `name value` counter files).
//!
//! The memory controller decides: it lives on exactly one hierarchy. Where it is a v1
//! controller (RHEL 8's default, and hybrid hosts such as the test machine, whose cgroup2 at
//! `/sys/fs/cgroup/unified` has no controllers) the helpers go into v1 `memory` and, if
//! mounted, `pids`; otherwise into cgroup v2 (Ubuntu 22.04, RHEL 9), which works for
//! membership and `cgroup.kill` even where no controller is delegated to us.

use super::CgroupError;
use std::path::{Path, PathBuf};

/// Where the helpers' cgroups go, as configured (`helper_cgroup_root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupRoot {
    /// `dms-helpers` under the daemon's own cgroup of each hierarchy: under systemd with
    /// `Delegate=yes` that is inside the unit's delegated subtree.
    Auto,
    /// No cgroups at all.
    Off,
    /// This cgroup path (as `/proc/self/cgroup` writes them) in every hierarchy used.
    Path(String),
}

/// The name of the helpers' subtree under the daemon's own cgroup (`auto`).
pub const HELPERS_DIR: &str = "dms-helpers";

impl CgroupRoot {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "auto" => return Ok(CgroupRoot::Auto),
            "off" => return Ok(CgroupRoot::Off),
            _ => {}
        }
        let valid = raw.starts_with('/')
            && raw.len() > 1
            && raw[1..].split('/').all(|c| {
                !c.is_empty()
                    && !c.starts_with('.')
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        if !valid {
            return Err("must be auto, off or an absolute cgroup path such as /dms-helpers \
                        (components of A-Z a-z 0-9 . _ -, none starting with a dot)"
                .into());
        }
        Ok(CgroupRoot::Path(raw.to_owned()))
    }
}

/// The hierarchy found: the directories under which each target's cgroup is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2: `<root>/<target>`.
    V2 { root: PathBuf },
    /// cgroup v1: `<memory>/<target>`, and `<pids>/<target>` where that controller is mounted.
    V1 { memory: PathBuf, pids: Option<PathBuf> },
}

/// The cgroup file systems mounted here: `(mount point, root of the mount)`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Mounted {
    pub v2: Option<(PathBuf, String)>,
    pub memory: Option<(PathBuf, String)>,
    pub pids: Option<(PathBuf, String)>,
}

/// The cgroup mounts in a `/proc/self/mountinfo` text (the first of each kind).
pub(super) fn parse_mountinfo(text: &str) -> Mounted {
    let mut found = Mounted::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let fields: Vec<&str> = left.split(' ').collect();
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else { continue };
        let mut right = right.split(' ');
        let (fstype, super_opts) = (right.next(), right.nth(1).unwrap_or(""));
        let entry = Some((PathBuf::from(unescape(point)), unescape(root)));
        match fstype {
            Some("cgroup2") if found.v2.is_none() => found.v2 = entry,
            Some("cgroup") => {
                let has = |c: &str| super_opts.split(',').any(|o| o == c);
                if has("memory") && found.memory.is_none() {
                    found.memory = entry.clone();
                }
                if has("pids") && found.pids.is_none() {
                    found.pids = entry;
                }
            }
            _ => {}
        }
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let (mut out, bytes, mut i) = (Vec::new(), field.as_bytes(), 0);
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok());
        match octal.and_then(|d| u8::from_str_radix(d, 8).ok()) {
            Some(b) if bytes[i] == b'\\' => {
                out.push(b);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroups from `/proc/self/cgroup`: the v2 path (`0::/path`) and the v1
/// path of `controller` (`4:memory:/path`, or a co-mounted `4:cpu,memory:/path`).
pub(super) fn own_cgroup(text: &str, controller: Option<&str>) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        wanted.then(|| path.to_owned())
    })
}

/// The value of the `name value` line called `name` (`memory.events`' and
/// `memory.oom_control`'s `oom_kill`).
pub(super) fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` writes it) in a hierarchy
/// mounted at `point` with root `mount_root` (a container may mount a sub-tree only).
pub(super) fn dir_of(point: &Path, mount_root: &str, path: &str) -> Option<PathBuf> {
    let relative = match mount_root {
        "/" => path,
        root => path.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/'))?,
    };
    Some(point.join(relative.trim_start_matches('/')))
}

/// The layout for `root` on the hierarchies `mounted`, this process being in the cgroups
/// `self_cgroup` names. Reads nothing; [`super::HelperCgroups::detect`] checks it is
/// writable.
pub(super) fn layout(
    mounted: &Mounted,
    self_cgroup: &str,
    root: &CgroupRoot,
) -> Result<Layout, CgroupError> {
    let place = |(point, mount_root): &(PathBuf, String), controller: Option<&str>| {
        let own = own_cgroup(self_cgroup, controller);
        let path = match (root, own) {
            (CgroupRoot::Path(p), _) => p.clone(),
            (_, Some(own)) => format!("{}/{HELPERS_DIR}", own.trim_end_matches('/')),
            (_, None) => return None,
        };
        dir_of(point, mount_root, &path)
    };
    let unavailable = |reason: &str| CgroupError::Unavailable { reason: reason.to_owned() };
    if let Some(memory) = &mounted.memory {
        let memory = place(memory, Some("memory"))
            .ok_or_else(|| unavailable("this process's v1 memory cgroup is outside its mount"))?;
        let pids = mounted.pids.as_ref().and_then(|p| place(p, Some("pids")));
        return Ok(Layout::V1 { memory, pids });
    }
    let v2 = mounted.v2.as_ref().ok_or_else(|| unavailable("no cgroup file system is mounted"))?;
    let root = place(v2, None)
        .ok_or_else(|| unavailable("this process's cgroup v2 path is outside its mount"))?;
    Ok(Layout::V2 { root })
}
