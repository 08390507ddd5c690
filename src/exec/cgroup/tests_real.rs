//! The real kernel: cgroups under a private root `dms-test-<uuid>` in each hierarchy this
//! host has (the test machine: v1 `memory` and `pids`, and a controller-less cgroup2 at
//! `/sys/fs/cgroup/unified`), removed by a guard even when a test fails. These need root and
//! a writable cgroup file system; they fail, saying so, where either is missing.
#![allow(clippy::unwrap_used)]

use super::*;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private root, everything under it killed and removed on drop.
struct Root {
    cgroups: HelperCgroups,
    roots: Vec<PathBuf>,
}

impl Drop for Root {
    fn drop(&mut self) {
        for root in &self.roots {
            let Ok(entries) = std::fs::read_dir(root) else { continue };
            for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
                let _ = ops::kill_all(std::slice::from_ref(&dir), Duration::from_secs(5));
                let _ = std::fs::remove_dir(&dir);
            }
            let _ = std::fs::remove_dir(root);
        }
    }
}

fn v1_root(limits: Limits) -> Root {
    let name = format!("dms-test-{}", uuid::Uuid::new_v4().simple());
    let memory = Path::new("/sys/fs/cgroup/memory").join(&name);
    let pids = Path::new("/sys/fs/cgroup/pids").join(&name);
    let roots = vec![memory.clone(), pids.clone()];
    let layout = Layout::V1 { memory, pids: Some(pids) };
    match HelperCgroups::new(layout, limits) {
        Ok(cgroups) => Root { cgroups, roots },
        Err(e) => {
            drop(Root { cgroups: HelperCgroups::dummy(), roots });
            panic!("the v1 memory and pids controllers are required here and refused: {e}")
        }
    }
}

impl HelperCgroups {
    fn dummy() -> Self {
        HelperCgroups {
            layout: Layout::V2 { root: "/nonexistent".into() },
            limits: Limits::default(),
            baselines: Arc::default(),
        }
    }
}

fn t(s: &str) -> TargetId {
    TargetId::new(s).unwrap()
}

/// `sh` waiting for a line on stdin before it `exec`s `program`: moved into the cgroup
/// while it waits, so everything `program` does is charged there.
fn gated(program: &str) -> Child {
    let script = format!("read go; exec {program}");
    Command::new("sh").args(["-c", &script]).stdin(Stdio::piped()).spawn().unwrap()
}

fn release(child: &mut Child) {
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
}

fn membership(cgroups: &HelperCgroups, target: &TargetId, child: &mut Child) {
    let pid = child.id();
    cgroups.create(target).unwrap();
    cgroups.create(target).unwrap(); // idempotent: reused
    cgroups.enter(target, pid).unwrap();
    assert_eq!(cgroups.pids(target).unwrap(), [pid]);
    release(child);
    // Its own children are members too: the kernel says so, not a PID file.
    std::thread::sleep(Duration::from_millis(200));
    assert!(cgroups.pids(target).unwrap().contains(&pid));
    assert!(!cgroups.remove(target).unwrap(), "a cgroup with members was removed");
    cgroups.kill_all(target, Duration::from_secs(5)).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    assert!(cgroups.pids(target).unwrap().is_empty());
    assert!(cgroups.remove(target).unwrap());
    for dir in cgroups.dirs(target) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn v1_a_process_enters_is_listed_is_killed_and_the_cgroup_goes() {
    let root = v1_root(Limits { memory_max: None, tasks_max: Some(64) });
    let target = t("bt-membership");
    let mut child = gated("sh -c 'sleep 1000 & wait'");
    let pids_max = root.cgroups.dirs(&target)[1].join("pids.max");
    root.cgroups.create(&target).unwrap();
    assert_eq!(std::fs::read_to_string(&pids_max).unwrap().trim(), "64");
    membership(&root.cgroups, &target, &mut child);
}

#[test]
fn v1_the_oom_killer_is_seen_in_the_cgroup() {
    let limit = 32 << 20;
    let root = v1_root(Limits { memory_max: Some(limit), tasks_max: None });
    let target = t("bt-oom");
    root.cgroups.create(&target).unwrap();
    let dir = &root.cgroups.dirs(&target)[0];
    let written = std::fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap();
    assert_eq!(written.trim(), limit.to_string());
    // tail keeps a line with no end in memory: /dev/zero is one such line, without end.
    let mut child = gated("tail /dev/zero");
    let pid = child.id();
    root.cgroups.enter(&target, pid).unwrap();
    assert!(!root.cgroups.oom_killed(&target));
    release(&mut child);
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status}");
    assert!(root.cgroups.oom_killed(&target), "the OOM kill was not counted");
    // The fallback where a helper has no memory cgroup: the kernel log names the PID.
    assert!(crate::exec::death::kmsg_says_oom_killed(pid, 0), "no kernel log record");
    assert!(!crate::exec::death::kmsg_says_oom_killed(pid, u64::MAX), "a record before it");
    assert!(root.cgroups.remove(&target).unwrap());
    // A new helper in a cgroup made again starts from its own baseline.
    root.cgroups.create(&target).unwrap();
    assert!(!root.cgroups.oom_killed(&target));
}

#[test]
fn v2_membership_and_cgroup_kill_where_cgroup2_is_mounted() {
    let mounted =
        detect::parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    let Some((point, _)) = mounted.v2 else {
        panic!("no cgroup2 mounted on this host; this test needs one (hybrid or pure v2)");
    };
    let root_dir = point.join(format!("dms-test-{}", uuid::Uuid::new_v4().simple()));
    let layout = Layout::V2 { root: root_dir.clone() };
    let root = Root {
        cgroups: HelperCgroups::new(layout, Limits::default()).unwrap(),
        roots: vec![root_dir],
    };
    let mut child = gated("sh -c 'sleep 1000 & wait'");
    membership(&root.cgroups, &t("bt-v2"), &mut child);
}

#[test]
fn off_is_none_and_auto_detects_here() {
    assert!(HelperCgroups::detect(&CgroupRoot::Off, Limits::default()).unwrap().is_none());
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mounted =
        detect::parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    // Which layout `auto` picks, without creating it under this process's own cgroup.
    let found = detect::layout(&mounted, &self_cgroup, &CgroupRoot::Auto).unwrap();
    let is_v1 = mounted.memory.is_some();
    assert_eq!(matches!(found, Layout::V1 { .. }), is_v1, "{found}");
    assert!(found.to_string().contains(HELPERS_DIR), "{found}");
}
