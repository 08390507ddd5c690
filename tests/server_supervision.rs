//! Runtime supervision end to end (issue 4 items 2–3), each test in a private mount
//! namespace with the real broker, a real Barbican and real FUSE mounts (dms-testfs):
//! - the periodic resync converges what no event announces: a mount removed by hand, a PID
//!   file edited by hand, a hung mount (a stopped FUSE server);
//! - a resync running every few milliseconds never disturbs requests in flight (a pass
//!   acts only on targets still as it saw them);
//! - the boot reconcile itself killed at each of its steps still converges.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::host::{helpers_serving, lazy_unmount, mounted, not_mounted, pid_of, sigkill, wait_until};
use e2e::journal::{self as jrnl, event_names, lost_reasons};
use e2e::{
    call, call_all, mounted_msg, runtime, s3_mount, testfs_credentials, unmount, unmounted_msg,
    uuid, Client, Daemon, T,
};
use rustix::process::{kill_process, Pid, Signal};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;
use support::mountns::run_isolated_with_timeout;
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-supervision-keystone-token";
const LIMIT: Duration = Duration::from_secs(240);

fn credentials() -> String {
    testfs_credentials("AKIASUPERVISE", "supervision-secret", "supervision")
}

fn signal(pid: u32, sig: Signal) {
    kill_process(Pid::from_raw(pid as i32).unwrap(), sig).unwrap();
}

#[test]
fn resync_converges_a_mount_removed_by_hand_a_pid_file_edited_by_hand_and_a_hung_mount() {
    let name =
        "resync_converges_a_mount_removed_by_hand_a_pid_file_edited_by_hand_and_a_hung_mount";
    run_isolated_with_timeout(name, LIMIT, || {
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials());
        let dir = support::temp_dir("dms-supervision-");
        let fast = [
            ("DMS_RESYNC_INTERVAL", "0.5".to_owned()),
            ("DMS_MOUNT_PROBE_TIMEOUT", "1".to_owned()),
            ("DMS_HELPER_STOP_GRACE", "1".to_owned()),
        ];
        let daemon = Daemon::start(Broker::shared(), dir.path(), "supervision-resync", &fast);
        let rt = runtime();
        let (removed, edited, hung) = ("removed", "edited", "hung");
        for target in [removed, edited, hung] {
            let path = daemon.path(target);
            let reply = call(&rt, &daemon, &s3_mount(target, &path, &secret_ref, TOKEN), &uuid());
            assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
        }
        let (removed_pid, edited_pid, hung_pid) =
            (pid_of(&daemon, removed), pid_of(&daemon, edited), pid_of(&daemon, hung));

        // By hand: one mount detached, one PID file overwritten, one helper frozen.
        lazy_unmount(&daemon.path(removed));
        std::fs::write(daemon.pid_dir.join(format!("{edited}.pid")), "999999\n").unwrap();
        signal(hung_pid, Signal::STOP);

        let pid_file = |t: &str| std::fs::read_to_string(daemon.pid_dir.join(format!("{t}.pid")));
        wait_until("the removed mount's helper to be gone", &daemon, || {
            helpers_serving(&daemon.path(removed)).is_empty() && pid_file(removed).is_err()
        });
        wait_until("the edited PID file to be rewritten", &daemon, || {
            pid_file(edited).is_ok_and(|t| t.trim() == edited_pid.to_string())
        });
        wait_until("the hung mount to be detached and its helper stopped", &daemon, || {
            helpers_serving(&daemon.path(hung)).is_empty()
                && pid_file(hung).is_err()
                && support::mountns::mount_at(Path::new(&daemon.path(hung))).is_none()
        });
        mounted(&daemon.path(edited), "fuse.dms-testfs");
        assert_eq!(pid_of(&daemon, edited), edited_pid, "the live helper was left alone");
        assert!(e2e::host::alive(edited_pid));
        assert!(!e2e::host::alive(removed_pid) && !e2e::host::alive(hung_pid));

        // The next requests see the truth: both lost targets mount again.
        for target in [removed, hung] {
            let path = daemon.path(target);
            let reply = call(&rt, &daemon, &s3_mount(target, &path, &secret_ref, TOKEN), &uuid());
            assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
        }
        for target in [removed, edited, hung] {
            let path = daemon.path(target);
            let reply = call(&rt, &daemon, &unmount(target, &path, "s3"), &uuid());
            assert_eq!(reply, unmounted_msg(&path));
            not_mounted(&path);
        }
        daemon.stop();

        let history = |t: &str| jrnl::history(&dir.path().join("journal"), t);
        let reasons = lost_reasons(&history(hung));
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("not answering"), "{reasons:?}");
        let removed_history = history(removed);
        assert_eq!(lost_reasons(&removed_history).len(), 1, "{:?}", event_names(&removed_history));
        let edited_history = history(edited);
        assert!(lost_reasons(&edited_history).is_empty(), "{:?}", event_names(&edited_history));
    });
}

#[test]
fn a_resync_every_few_milliseconds_never_disturbs_requests_in_flight() {
    let name = "a_resync_every_few_milliseconds_never_disturbs_requests_in_flight";
    run_isolated_with_timeout(name, LIMIT, || {
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials());
        let dir = support::temp_dir("dms-supervision-");
        let eager = [("DMS_RESYNC_INTERVAL", "0.01".to_owned())];
        let daemon = Daemon::start(Broker::shared(), dir.path(), "supervision-eager", &eager);
        let targets: Vec<String> = (0..8).map(|i| format!("busy-{i}")).collect();
        let rt = runtime();
        rt.block_on(async {
            let mut client = Client::connect(Broker::shared()).await;
            for _round in 0..2 {
                let mounts = targets
                    .iter()
                    .map(|t| {
                        let path = daemon.path(t);
                        (s3_mount(t, &path, &secret_ref, TOKEN), mounted_msg(&path))
                    })
                    .collect();
                call_all(&mut client, &daemon, mounts).await;
                let unmounts = targets
                    .iter()
                    .map(|t| {
                        let path = daemon.path(t);
                        let msg = unmounted_msg(&path);
                        (unmount(t, &path, "s3"), msg)
                    })
                    .collect();
                call_all(&mut client, &daemon, unmounts).await;
            }
            client.close().await;
        });
        let log = daemon.stop();
        assert!(!log.contains("resync converged"), "a resync acted on requests in flight:\n{log}");
        for t in &targets {
            let history = jrnl::history(&dir.path().join("journal"), t);
            let names = event_names(&history);
            for unexpected in ["Lost", "Abandoned", "Adopted", "Failed"] {
                assert!(!names.contains(&unexpected), "{t}: {names:?}");
            }
            // A cleanup only ever follows an unmount's detach (its helper stopped after the
            // answer), never a resync's finding.
            for (i, name) in names.iter().enumerate() {
                if *name == "Cleaned" {
                    assert_eq!(names.get(i.wrapping_sub(1)), Some(&"Detached"), "{t}: {names:?}");
                }
            }
        }
    });
}

#[test]
fn a_boot_reconcile_killed_at_each_of_its_steps_still_converges() {
    let name = "a_boot_reconcile_killed_at_each_of_its_steps_still_converges";
    run_isolated_with_timeout(name, LIMIT, || {
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials());
        let dir = support::temp_dir("dms-supervision-");
        let node = "supervision-boot";
        let daemon = Daemon::start(Broker::shared(), dir.path(), node, &[]);
        let path = daemon.path("b-1");
        let rt = runtime();
        let reply = call(&rt, &daemon, &s3_mount("b-1", &path, &secret_ref, TOKEN), &uuid());
        assert_eq!(reply, mounted_msg(&path));
        let helper = pid_of(&daemon, "b-1");
        let env = daemon.env.clone();
        daemon.stop();
        // While no daemon runs, the helper dies: a dead mount and a stale PID file remain.
        sigkill(helper, "the helper");

        // Each start dies at the next step of the boot reconcile; the last one completes.
        for point in ["append:Lost", "effect:Cleanup", "append:Cleaned"] {
            let mut armed = env.clone();
            armed.push(("DMS_FAILPOINT".into(), point.into()));
            let mut daemon = Daemon::launch(dir.path(), node, armed);
            let status = daemon.child.wait_timeout(T).expect("the armed daemon to die");
            let log = daemon.log_text();
            assert_eq!(status.signal(), Some(9), "{point}: {status}\n{log}");
            assert!(log.contains(&format!("failpoint {point} reached")), "{point}\n{log}");
            assert!(!log.contains("consuming"), "{point}: intake started before the reconcile");
        }
        let daemon = Daemon::spawn(dir.path(), node, env);
        not_mounted(&path);
        assert!(daemon.pid_files().is_empty(), "{:?}", daemon.pid_files());
        assert!(helpers_serving(&path).is_empty());
        let reply = call(&rt, &daemon, &s3_mount("b-1", &path, &secret_ref, TOKEN), &uuid());
        assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
        let reply = call(&rt, &daemon, &unmount("b-1", &path, "s3"), &uuid());
        assert_eq!(reply, unmounted_msg(&path));
        daemon.stop();

        let history = jrnl::history(&dir.path().join("journal"), "b-1");
        let names = event_names(&history);
        assert_eq!(lost_reasons(&history).len(), 1, "one loss, journaled once: {names:?}");
        assert!(names.contains(&"Cleaned"), "{names:?}");
    });
}
