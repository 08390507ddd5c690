//! The kernel's texts, parsed from fixtures as they appear on the three kinds of host.
#![allow(clippy::unwrap_used)]

use super::detect::{counter, dir_of, layout, own_cgroup, parse_mountinfo, Mounted};
use super::*;
use std::path::Path;

/// This test machine: hybrid, v1 controllers, cgroup2 without controllers at `unified`.
const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const HYBRID_SELF: &str = "\
9:name=systemd:/system.slice/dms-server.service
8:pids:/system.slice/dms-server.service
4:memory:/system.slice/dms-server.service
1:cpu,cpuacct:/
0::/system.slice/dms-server.service
";
/// Ubuntu 22.04, RHEL 9.
const PURE_V2_MOUNTINFO: &str = "\
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
const PURE_V2_SELF: &str = "0::/system.slice/dms-server.service\n";

#[test]
fn own_cgroup_reads_v2_and_v1_lines() {
    assert_eq!(own_cgroup(HYBRID_SELF, None).unwrap(), "/system.slice/dms-server.service");
    assert_eq!(
        own_cgroup(HYBRID_SELF, Some("memory")).unwrap(),
        "/system.slice/dms-server.service"
    );
    assert_eq!(own_cgroup(HYBRID_SELF, Some("cpuacct")).unwrap(), "/");
    assert_eq!(own_cgroup(HYBRID_SELF, Some("blkio")), None);
    assert_eq!(own_cgroup(PURE_V2_SELF, Some("memory")), None);
    assert_eq!(own_cgroup("garbage\n", None), None);
}

#[test]
fn mountinfo_finds_each_hierarchy() {
    let hybrid = parse_mountinfo(HYBRID_MOUNTINFO);
    assert_eq!(hybrid.memory.unwrap().0, Path::new("/sys/fs/cgroup/memory"));
    assert_eq!(hybrid.pids.unwrap().0, Path::new("/sys/fs/cgroup/pids"));
    assert_eq!(hybrid.v2.unwrap().0, Path::new("/sys/fs/cgroup/unified"));
    let v2 = parse_mountinfo(PURE_V2_MOUNTINFO);
    assert_eq!(
        v2,
        Mounted { v2: Some(("/sys/fs/cgroup".into(), "/".into())), ..Mounted::default() }
    );
    // Co-mounted controllers, and an escaped space in a mount point.
    let odd = "50 1 0:40 / /cg/cpu\\040mem rw - cgroup cgroup rw,cpu,memory\n";
    assert_eq!(parse_mountinfo(odd).memory.unwrap().0, Path::new("/cg/cpu mem"));
}

#[test]
fn layout_prefers_where_the_memory_controller_is() {
    let hybrid = parse_mountinfo(HYBRID_MOUNTINFO);
    let unit = "system.slice/dms-server.service/dms-helpers";
    assert_eq!(
        layout(&hybrid, HYBRID_SELF, &CgroupRoot::Auto).unwrap(),
        Layout::V1 {
            memory: Path::new("/sys/fs/cgroup/memory").join(unit),
            pids: Some(Path::new("/sys/fs/cgroup/pids").join(unit)),
        }
    );
    let v2 = parse_mountinfo(PURE_V2_MOUNTINFO);
    assert_eq!(
        layout(&v2, PURE_V2_SELF, &CgroupRoot::Auto).unwrap(),
        Layout::V2 { root: Path::new("/sys/fs/cgroup").join(unit) }
    );
    let fixed = CgroupRoot::parse("/dms-test/x").unwrap();
    assert_eq!(
        layout(&v2, PURE_V2_SELF, &fixed).unwrap(),
        Layout::V2 { root: "/sys/fs/cgroup/dms-test/x".into() }
    );
    let none = layout(&Mounted::default(), "", &CgroupRoot::Auto).unwrap_err();
    assert!(none.to_string().contains("no cgroup file system"), "{none}");
}

#[test]
fn a_container_mount_of_a_subtree_maps_paths_inside_it() {
    let point = Path::new("/sys/fs/cgroup");
    assert_eq!(dir_of(point, "/lxc/c1", "/lxc/c1/svc").unwrap(), point.join("svc"));
    assert_eq!(dir_of(point, "/lxc/c1", "/lxc/c10/svc"), None);
    assert_eq!(dir_of(point, "/", "/").unwrap(), point.join(""));
}

#[test]
fn oom_counters_of_both_versions() {
    let v2_events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
    assert_eq!(counter(v2_events, "oom_kill"), Some(2));
    let v1_oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
    assert_eq!(counter(v1_oom_control, "oom_kill"), Some(7));
    // Before kernel 4.13 v1 has no oom_kill line.
    assert_eq!(counter("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"), None);
}

#[test]
fn root_values() {
    assert_eq!(CgroupRoot::parse("auto").unwrap(), CgroupRoot::Auto);
    assert_eq!(CgroupRoot::parse("off").unwrap(), CgroupRoot::Off);
    assert_eq!(CgroupRoot::parse("/a/b-c_d.e").unwrap(), CgroupRoot::Path("/a/b-c_d.e".into()));
    for bad in ["", "/", "rel", "/a/../b", "/a//b", "/.hidden", "/a b", "/a/"] {
        assert!(CgroupRoot::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn target_names_never_collide_with_kernel_files() {
    let cgroups = HelperCgroups {
        layout: Layout::V1 { memory: "/m".into(), pids: Some("/p".into()) },
        limits: Limits::default(),
        baselines: Arc::default(),
    };
    let t = |s| TargetId::new(s).unwrap();
    assert_eq!(cgroups.dirs(&t("bt-1")), [Path::new("/m/bt-1"), Path::new("/p/bt-1")]);
    assert_eq!(cgroups.dirs(&t("memory.max"))[0], Path::new("/m/_memory.max"));
    assert_eq!(cgroups.dirs(&t("tasks"))[0], Path::new("/m/_tasks"));
}
