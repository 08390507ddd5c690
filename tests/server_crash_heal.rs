//! The crash matrix of healing (issue 29): the real daemon heals a SIGKILLed helper and is
//! itself SIGKILLed at every point of the heal (`DMS_FAILPOINT`; the mount before it passed
//! the spawn points once, hence `@2`), then restarted. Whatever the point, the host and the
//! journal agree once it settles: the target is mounted by exactly one helper (the
//! journaled one, its PID file naming it, its mount answering) or, the heal given up, by
//! none, with no mount and no PID file left; the mount request keeps its one outcome.
//!
//! Real broker, real Barbican, real FUSE (dms-testfs), each point in a private mount
//! namespace, its own directory and node id.
#![allow(clippy::unwrap_used)]

use crate::server_crash::{assert_converged, killed_at, read_journal};
use crate::{e2e, support};

use e2e::host::{helpers_serving, pid_of, sigkill, HelperReaper};
use e2e::{mounted_msg, runtime, s3_mount, testfs_credentials, uuid, Client, Daemon};
use std::path::Path;
use std::time::Duration;
use support::mountns::{self, run_isolated_with_timeout};
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-heal-crash-matrix-keystone-token";

/// Every point a heal passes, in order.
const HEAL_POINTS: &[&str] = &[
    "append:HelperDied",
    "effect:Cleanup",
    "append:Cleaned",
    "effect:Respawn",
    "append:SpawnIntended@2",
    "effect:SpawnHelper@2",
    "append:Spawned@2",
    "effect:VerifyMount@2",
    "append:Verified@2",
];

/// The host settled: one helper serving the path with the PID file naming it, or nothing.
fn settled(dir: &Path, target: &str) -> bool {
    let path = dir.join("mounts").join(target);
    let helpers = helpers_serving(&path.display().to_string());
    let pid_file = std::fs::read_to_string(dir.join("pids").join(format!("{target}.pid"))).ok();
    let mount = mountns::mount_at(&path);
    match (&helpers[..], pid_file, mount) {
        ([one], Some(named), Some(_)) => named.trim() == one.to_string(),
        ([], None, None) => true,
        _ => false,
    }
}

fn run(point: &str, broker: &Broker, secret_ref: &str, rt: &tokio::runtime::Runtime) -> String {
    let dir = support::temp_dir("dms-crash-heal-");
    let node = format!("crash-heal-{}", point.replace([':', '@'], "-").to_lowercase());
    let target = "h-1";
    let _reaper = HelperReaper(dir.path().join("pids"));
    let armed = [("DMS_FAILPOINT", point.to_owned())];
    let mut daemon = Daemon::start(broker, dir.path(), &node, &armed);
    let path = daemon.path(target);
    let key = uuid();
    let mut client = rt.block_on(Client::connect(broker));
    let reply = rt.block_on(client.call(&node, &s3_mount(target, &path, secret_ref, TOKEN), &key));
    assert_eq!(reply, mounted_msg(&path), "{point}\n{}", daemon.log_text());
    let first = pid_of(&daemon, target);
    sigkill(first, "the helper");

    // The daemon dies at the point of the heal.
    let env = killed_at(&mut daemon, point);
    let daemon = Daemon::spawn(dir.path(), &node, env);
    // The redelivery of nothing, a new request: answered from the truth the boot pass found.
    let settle = support::wait_for("the heal to settle", Duration::from_secs(60), || {
        settled(dir.path(), target).then_some(())
    });
    if let Err(e) = settle {
        panic!("{point}: {e}\n{}", daemon.log_text());
    }
    rt.block_on(client.close());
    let log = daemon.stop();
    let journal = read_journal(&dir.path().join("journal"), target);
    assert_eq!(journal.outcomes.get(&key), Some(&1), "{point}: one outcome for the mount\n{log}");
    assert_converged(dir.path(), target, &journal, &log);
    let helpers = helpers_serving(&path);
    assert!(!helpers.contains(&first), "{point}: the dead helper is back?");
    for pid in helpers {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    journal.state.phase.to_string()
}

#[test]
fn a_heal_killed_at_every_point_converges_to_one_helper_or_none_after_restart() {
    let name = "a_heal_killed_at_every_point_converges_to_one_helper_or_none_after_restart";
    run_isolated_with_timeout(name, Duration::from_secs(600), || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref =
            barbican.store_secret(TOKEN, &testfs_credentials("AKIAHEAL", "heal-crash-secret", "h"));
        let rt = runtime();
        for point in HEAL_POINTS {
            let phase = run(point, broker, &secret_ref, &rt);
            println!("--- crash at {point}: converged {phase}");
        }
    });
}
