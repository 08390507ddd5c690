//! SIGTERM while mount(8) hangs: the daemon is gone within its documented stop deadline,
//! takes the hung mount program (its whole process group) with it, and the request is
//! neither lost nor answered twice. In a private mount namespace, with a private broker.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::stand_in::StandIn;
use e2e::{ok, runtime, unmounted_msg, uuid, Client, Daemon};
use rustix::process::{kill_process, Pid, Signal};
use std::path::Path;
use std::time::{Duration, Instant};
use support::mountns::{self, run_isolated_with_timeout};
use support::Broker;

/// SIGTERM to the daemon's process only (as systemd does with `KillMode=process`), and the
/// time it took to exit; fails unless it exits successfully within the stop deadline plus a
/// generous 10 s.
fn sigterm_and_time(daemon: &mut Daemon) -> Duration {
    let started = Instant::now();
    kill_process(Pid::from_raw(daemon.child.pid() as i32).unwrap(), Signal::TERM).unwrap();
    let bound = dms::stop::STOP_DEADLINE + Duration::from_secs(10);
    let status = daemon.child.wait_timeout(bound);
    let took = started.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "dms-server did not exit (successfully) within {bound:?} of SIGTERM: {status:?}\n{}",
        daemon.log_text()
    );
    took
}

/// Every stand-in process is gone within a generous 5 s of the daemon's exit.
fn assert_no_mount_program_survives(stand_in: &StandIn, daemon: &Daemon) {
    if let Err(alive) = stand_in.wait_gone(Duration::from_secs(5)) {
        panic!("mount programs outlived the daemon: {alive:?}\n{}", daemon.log_text());
    }
}

#[test]
fn sigterm_during_a_hung_mount_exits_within_the_stop_deadline_and_the_request_is_answered_once_later(
) {
    let name =
        "sigterm_during_a_hung_mount_exits_within_the_stop_deadline_and_the_request_is_answered_once_later";
    run_isolated_with_timeout(name, Duration::from_secs(600), || {
        let broker = Broker::shared();
        let dir = support::temp_dir("dms-stop-");
        let stand_in = StandIn::new(dir.path());
        let extra = [
            ("DMS_MOUNT_PROGRAM", stand_in.script.display().to_string()),
            ("DMS_NFS_FSTYPES", "nfs,nfs4,tmpfs".into()),
            // Far beyond the drain: only the stop deadline can end the hung call.
            ("DMS_NFS_MOUNT_TIMEOUT", "300".into()),
        ];
        let rt = runtime();
        let mut client = rt.block_on(Client::connect(broker));
        let node = "e2e-stop";
        let mut daemon = Daemon::start(broker, dir.path(), node, &extra);
        let path = daemon.path("nfs-hung");
        let corr = uuid();
        let request = e2e::nfs_mount("nfs-hung", &path, "192.0.2.10:/exports/backup", "hard");
        rt.block_on(client.send(node, request.to_string().as_bytes(), &corr, true));

        // 1. SIGTERM while the request's mount(8) hangs in intake.
        stand_in.wait_runs(1, &daemon);
        let took = sigterm_and_time(&mut daemon);
        eprintln!("stop with a hung mount in intake took {took:?}");
        assert_no_mount_program_survives(&stand_in, &daemon);

        // 2. The next daemon picks the request up again (at boot or by redelivery) and
        //    hangs on it too; SIGTERM again, the same bound.
        let mut daemon = Daemon::launch(dir.path(), node, daemon.env.clone());
        stand_in.wait_runs(2, &daemon);
        let took = sigterm_and_time(&mut daemon);
        eprintln!("stop with a hung mount after a restart took {took:?}");
        assert_no_mount_program_survives(&stand_in, &daemon);

        // 3. With a working mount(8), the request gets exactly one answer.
        stand_in.set("ok");
        let daemon = Daemon::spawn(dir.path(), node, daemon.env.clone());
        rt.block_on(async {
            let (got, reply) = client.reply().await;
            assert_eq!(got, corr, "{reply}");
            assert_eq!(reply, ok(&format!("NFS target mounted successfully at {path}")));
            let again = tokio::time::timeout(Duration::from_secs(5), client.reply()).await;
            assert!(again.is_err(), "a second reply: {again:?}");
            assert!(mountns::mount_at(Path::new(&path)).is_some());
            let reply = client.call(node, &e2e::unmount("nfs-hung", &path, "nfs"), &uuid()).await;
            assert_eq!(reply, unmounted_msg(&path));
        });
        rt.block_on(client.close());
        daemon.stop();
        assert_eq!(
            stand_in.wait_gone(Duration::from_secs(5)),
            Ok(()),
            "mount programs outlived the daemon"
        );
    });
}

/// A stopped process that gets SIGCONT when this is dropped (so a failing test cannot leave
/// a frozen helper behind; the [`e2e::host::HelperReaper`] then kills it).
struct Frozen(Pid);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill_process(self.0, Signal::CONT);
    }
}

#[test]
fn sigterm_during_a_boot_reconcile_stuck_on_a_hung_mount_exits_at_the_stop_deadline() {
    let name = "sigterm_during_a_boot_reconcile_stuck_on_a_hung_mount_exits_at_the_stop_deadline";
    run_isolated_with_timeout(name, Duration::from_secs(600), || {
        const TOKEN: &str = "gAAAAAB-stop-keystone-token";
        let broker = Broker::shared();
        let barbican = support::Barbican::shared();
        let creds = e2e::testfs_credentials("AKIASTOP", "stop-secret-key-value", "bucket-stop");
        let secret_ref = barbican.store_secret(TOKEN, &creds);
        let dir = support::temp_dir("dms-stop-");
        let node = "e2e-stop-boot";
        let daemon = Daemon::start(broker, dir.path(), node, &[]);
        let _reaper = e2e::host::HelperReaper(daemon.pid_dir.clone());
        let path = daemon.path("s3-hung");
        let reply = e2e::call(
            &runtime(),
            &daemon,
            &e2e::s3_mount("s3-hung", &path, &secret_ref, TOKEN),
            &uuid(),
        );
        assert_eq!(reply, e2e::mounted_msg(&path));
        let env = daemon.env.clone();
        daemon.stop();

        // The helper stops answering: every stat of its mount blocks, so does the next boot
        // reconcile's probe (for up to 300 s), and the daemon is not consuming yet.
        let pid = std::fs::read_to_string(dir.path().join("pids/s3-hung.pid")).unwrap();
        let helper = Pid::from_raw(pid.trim().parse().unwrap()).unwrap();
        kill_process(helper, Signal::STOP).unwrap();
        let frozen = Frozen(helper);
        let mut env_probe = env.clone();
        env_probe.retain(|(k, _)| k != "DMS_MOUNT_PROBE_TIMEOUT");
        env_probe.push(("DMS_MOUNT_PROBE_TIMEOUT".into(), "300".into()));
        let mut daemon = Daemon::launch(dir.path(), node, env_probe);
        daemon.wait_log("journal replayed");
        // Past the kernel's attribute cache of the helper's files: the probe really waits.
        std::thread::sleep(Duration::from_secs(3));
        let took = sigterm_and_time(&mut daemon);
        eprintln!("stop during a stuck boot reconcile took {took:?}");
        let log = daemon.log_text();
        assert!(log.contains("stop deadline"), "the exit was not the stop deadline's:\n{log}");
        assert!(log.contains("journal_flushed=Some(Ok(()))"), "no journal flush:\n{log}");
        assert!(!log.contains("consuming"), "the boot reconcile was not stuck:\n{log}");
        assert!(took >= dms::stop::STOP_DEADLINE, "took {took:?}");

        // The helper answers again: the next daemon adopts it, and the unmount stops it.
        drop(frozen);
        let daemon = Daemon::spawn(dir.path(), node, env);
        let reply = e2e::call(&runtime(), &daemon, &e2e::unmount("s3-hung", &path, "s3"), &uuid());
        assert_eq!(reply, unmounted_msg(&path));
        assert!(mountns::mount_at(Path::new(&path)).is_none());
        daemon.stop();
    });
}
