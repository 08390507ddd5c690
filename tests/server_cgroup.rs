//! Each helper in a cgroup of its own, through the real daemon on this host's hierarchy
//! (the test machine: v1 `memory` and `pids`): the helper is in its target's cgroup while it
//! serves, with the configured limits; past its memory limit the OOM killer ends it alone,
//! its death is journaled as "killed by the OOM killer" and counted as such, and the target
//! is healed (a replacement in a fresh cgroup); an unmount leaves no cgroup.
//! Each test uses a private root `/dms-test-<uuid>` that a guard removes.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use crate::server_metrics::{metrics_addr, scrape, value};
use dms_journal::Event;
use e2e::heal::{changing_helper, heal_times};
use e2e::host::{alive, pid_of, HelperReaper};
use e2e::{mounted_msg, ok, runtime, s3_mount, unmount, unmounted_msg, uuid, Client, Daemon};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::mountns::run_isolated;
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-e2e-cgroup-keystone-token";
const OOM_TEXT: &str = "killed by the OOM killer (signal 9)";

/// `/dms-test-<uuid>` in the v1 `memory` and `pids` hierarchies; on drop, whatever is in
/// its cgroups is killed and every one of them removed.
struct Root {
    name: String,
}

impl Root {
    fn new() -> Root {
        Root { name: format!("/dms-test-{}", uuid::Uuid::new_v4().simple()) }
    }

    fn dir(&self, controller: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup").join(controller).join(&self.name[1..])
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for controller in ["memory", "pids"] {
            let root = self.dir(controller);
            let Ok(entries) = std::fs::read_dir(&root) else { continue };
            for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
                for _ in 0..100 {
                    let procs =
                        std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                    let pids: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
                    if pids.is_empty() {
                        break;
                    }
                    for pid in pids.into_iter().filter_map(rustix::process::Pid::from_raw) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = std::fs::remove_dir(&dir);
            }
            let _ = std::fs::remove_dir(&root);
        }
    }
}

fn members(dir: &Path) -> Vec<u32> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    procs.lines().map(|l| l.parse().unwrap()).collect()
}

fn start(broker: &Broker, dir: &Path, node: &str, root: &Root, helper: &Path) -> Daemon {
    let extra = [
        ("DMS_S3VAULTFUSE_BIN", helper.display().to_string()),
        ("DMS_HELPER_CGROUP_ROOT", root.name.clone()),
        ("DMS_HELPER_MEMORY_MAX", "64M".to_owned()),
        ("DMS_HELPER_TASKS_MAX", "256".to_owned()),
    ];
    let mut daemon = Daemon::start(broker, dir, node, &extra);
    daemon.wait_log("each helper runs in a cgroup of its own");
    daemon
}

#[test]
fn a_helper_past_its_memory_limit_is_killed_alone_its_death_says_oom_and_it_is_healed() {
    let name = "a_helper_past_its_memory_limit_is_killed_alone_its_death_says_oom_and_it_is_healed";
    run_isolated(name, || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let creds = e2e::testfs_credentials("AKIACGROUP", "cgroup-secret-key", "bucket-oom");
        let secret_ref = barbican.store_secret(TOKEN, &creds);
        let dir = support::temp_dir("dms-e2e-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let root = Root::new();
        // Past its limit at its first start only: the replacement serves.
        let helper = changing_helper(dir.path(), "helper-oom-once", Some("oom-after=1.5"), None);
        let mut daemon = start(broker, dir.path(), "e2e-cgroup-oom", &root, &helper);
        let addr = metrics_addr(&mut daemon);
        let path = daemon.path("t-oom");
        let cgroup = root.dir("memory").join("t-oom");
        runtime().block_on(async {
            let mut client = Client::connect(broker).await;
            let reply = client
                .call(&daemon.node, &s3_mount("t-oom", &path, &secret_ref, TOKEN), &uuid())
                .await;
            assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
            // The kernel says which process is the target's helper.
            let first = pid_of(&daemon, "t-oom");
            assert_eq!(members(&cgroup), [first]);
            let limit = std::fs::read_to_string(cgroup.join("memory.limit_in_bytes")).unwrap();
            assert_eq!(limit.trim(), (64u64 << 20).to_string());
            let tasks = std::fs::read_to_string(root.dir("pids").join("t-oom/pids.max")).unwrap();
            assert_eq!(tasks.trim(), "256");
            let healed = support::wait_for(
                "the OOM-killed helper to be replaced",
                Duration::from_secs(30),
                || (!heal_times(&daemon, "t-oom").is_empty()).then_some(()),
            );
            assert!(healed.is_ok(), "{healed:?}\n{}", daemon.log_text());
            let second = pid_of(&daemon, "t-oom");
            assert!(second != first && alive(second) && !alive(first), "{first} → {second}");
            // The replacement runs alone in the target's cgroup, under the same limit.
            assert_eq!(members(&cgroup), [second]);
            std::fs::write(Path::new(&path).join("after-oom"), b"served again").unwrap();
            let again = client
                .call(&daemon.node, &s3_mount("t-oom", &path, &secret_ref, TOKEN), &uuid())
                .await;
            assert_eq!(again, ok(&format!("Already mounted at {path}")));
            let body = scrape(addr);
            let counted = |cause: &str| {
                value(&body, &format!("dms_helper_deaths_total{{cause=\"{cause}\"}}"))
            };
            assert_eq!(counted("oom"), 1.0, "{body}");
            assert_eq!(counted("signal"), 0.0, "an OOM kill is not counted as a signal: {body}");
            let heals = value(&body, "dms_helper_heals_total{outcome=\"healed\"}");
            assert_eq!(heals, 1.0, "{body}");
            let reply = client.call(&daemon.node, &unmount("t-oom", &path, "s3"), &uuid()).await;
            assert_eq!(reply, unmounted_msg(&path));
            client.close().await;
        });
        let log = daemon.log_text();
        let died = format!("s3vaultfuse for target t-oom died ({OOM_TEXT}, uptime ");
        assert!(log.contains(&died), "the daemon's log does not name the OOM killer:\n{log}");
        let journal = daemon.journal.clone();
        assert!(daemon.pid_files_after_cleanup().is_empty());
        daemon.stop();
        let causes: Vec<String> = e2e::journal::history(&journal, "t-oom")
            .into_iter()
            .filter_map(|s| match s.record.event {
                Event::HelperDied { cause, .. } => Some(cause),
                _ => None,
            })
            .collect();
        assert_eq!(causes, [OOM_TEXT], "the journaled death");
        // The unmounted target's cgroup went with its last helper.
        assert!(!cgroup.exists(), "{} left behind", cgroup.display());
    });
}

#[test]
fn an_unmounted_target_leaves_no_cgroup_behind() {
    run_isolated("an_unmounted_target_leaves_no_cgroup_behind", || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let creds = e2e::testfs_credentials("AKIACGROUP", "cgroup-secret-key", "bucket-cg");
        let secret_ref = barbican.store_secret(TOKEN, &creds);
        let dir = support::temp_dir("dms-e2e-");
        let root = Root::new();
        let daemon = start(broker, dir.path(), "e2e-cgroup-unmount", &root, &e2e::testfs_bin());
        let path = daemon.path("t-cg");
        let cgroups = [root.dir("memory").join("t-cg"), root.dir("pids").join("t-cg")];
        runtime().block_on(async {
            let mut client = Client::connect(broker).await;
            let reply = client
                .call(&daemon.node, &s3_mount("t-cg", &path, &secret_ref, TOKEN), &uuid())
                .await;
            assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
            let pid = pid_of(&daemon, "t-cg");
            for cgroup in &cgroups {
                assert_eq!(members(cgroup), [pid], "{}", cgroup.display());
            }
            let reply = client.call(&daemon.node, &unmount("t-cg", &path, "s3"), &uuid()).await;
            assert_eq!(reply, unmounted_msg(&path));
            let gone = support::wait_for(
                "the helper's cgroups to be removed",
                Duration::from_secs(30),
                || cgroups.iter().all(|c| !c.exists()).then_some(()),
            );
            assert!(gone.is_ok(), "{gone:?}\n{}", daemon.log_text());
            client.close().await;
        });
        daemon.stop();
    });
}
