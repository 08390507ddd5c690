//! More dms-server end to end, each test in a private mount namespace:
//! - the real S3 path: Barbican credentials pointing at moto, the s3fs-based
//!   s3vaultfuse stand-in, a file written through the mount landing in the bucket;
//! - twenty targets mounted and unmounted at once;
//! - the broker killed and restarted (and all connections closed) under a running daemon;
//! - the daemon restarted under its mounts, re-adopting them from the journal.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::host::{
    alive, assert_no_secret, mounted, not_mounted, pid_of, processes_with_arg, wait_dead,
    HelperReaper, SETTLE,
};
use e2e::{
    call, call_all, mounted_msg, ok, runtime, s3_mount, unmount, unmounted_msg, uuid, Client,
    Daemon,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use support::mountns::run_isolated_with_timeout;
use support::{Barbican, Broker, S3};

const TOKEN: &str = "gAAAAAB-e2e-more-keystone-token";
const KEY_ID: &str = "AKIAE2EMORE";
const SECRET_KEY: &str = "e2e-more-secret-key-value";
/// Every test's whole-body limit (the child in its mount namespace is killed after it).
const LIMIT: Duration = Duration::from_secs(240);

/// Credentials for the in-memory helper, with this binary's secret.
fn testfs_credentials(bucket: &str) -> String {
    e2e::testfs_credentials(KEY_ID, SECRET_KEY, bucket)
}

/// How many times the daemon has started consuming (once per broker session).
fn sessions(daemon: &Daemon) -> usize {
    daemon.log_text().matches("consuming").count()
}

/// Waits until the daemon opened more than `before` broker sessions; returns how long it
/// took.
fn wait_reconnected(daemon: &mut Daemon, before: usize, within: Duration) -> Duration {
    let t0 = Instant::now();
    let r = support::wait_for("the daemon to consume again", within, || {
        assert!(daemon.child.try_wait().is_none(), "dms-server exited\n{}", daemon.log_text());
        (sessions(daemon) > before).then_some(())
    });
    if let Err(e) = r {
        panic!("{e}\n--- daemon log ---\n{}", daemon.log_text());
    }
    t0.elapsed()
}

/// A broker outage in the log: one WARN for the loss, one WARN per failed attempt (with
/// its backoff), one INFO for the recovery, and nothing from the AMQP library itself.
fn assert_one_line_per_broker_event(section: &str) {
    let count = |needle: &str| section.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("WARN") - count("cannot reach the broker (attempt"), 1, "{section}");
    assert_eq!(count("broker connection lost"), 1, "{section}");
    assert_eq!(count("broker connection recovered after"), 1, "{section}");
    for line in section.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")) {
        let ours = line.contains("WARN") && line.contains("broker connection lost")
            || line.contains("WARN")
                && line.contains("cannot reach the broker (attempt")
                && line.contains("retrying in");
        assert!(ours, "a line that is not one per broker event: {line}\n{section}");
    }
    assert!(section.lines().any(|l| l.contains(" INFO ") && l.contains("recovered")), "{section}");
}

#[test]
fn s3_target_on_moto_through_s3fs_mounts_stores_a_written_file_in_the_bucket_and_unmounts() {
    let name =
        "s3_target_on_moto_through_s3fs_mounts_stores_a_written_file_in_the_bucket_and_unmounts";
    run_isolated_with_timeout(name, LIMIT, || {
        let broker = Broker::shared();
        let barbican = Barbican::start();
        let s3 = S3::start();
        let secret_ref = barbican.store_secret(TOKEN, &s3.credentials_json().to_string());
        let dir = support::temp_dir("dms-e2e-more-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let daemon = Daemon::start(
            broker,
            dir.path(),
            "e2e-more-s3fs",
            &[("DMS_S3VAULTFUSE_BIN", support::s3vaultfuse_s3fs().display().to_string())],
        );
        let helper_log = dir.path().join("helper-logs").join("moto-1.log");
        let diagnostics = |daemon: &Daemon| {
            format!(
                "\n--- daemon log ---\n{}\n--- helper log {} ---\n{}",
                daemon.log_text(),
                helper_log.display(),
                support::log_tail(&helper_log, 40)
            )
        };
        let path = daemon.path("moto-1");
        let file = Path::new(&path).join("backup-0001.img");
        let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        runtime().block_on(async {
            let mut client = Client::connect(broker).await;
            let reply = client
                .call(&daemon.node, &s3_mount("moto-1", &path, &secret_ref, TOKEN), &uuid())
                .await;
            assert_eq!(reply, mounted_msg(&path), "{}", diagnostics(&daemon));
            mounted(&path, "fuse.s3fs");
            let pid = pid_of(&daemon, "moto-1");
            assert!(alive(pid));
            assert_eq!(
                processes_with_arg(&path),
                [pid],
                "s3fs is the helper (the wrapper execs it)"
            );

            std::fs::write(&file, &data).unwrap_or_else(|e| {
                panic!("write {}: {e}{}", file.display(), diagnostics(&daemon))
            });
            std::fs::File::open(&file).unwrap().sync_all().unwrap();
            let landed = support::wait_for("the file to land in the bucket", SETTLE, || {
                s3.list_keys().contains(&"backup-0001.img".to_owned()).then_some(())
            });
            if let Err(e) = landed {
                panic!("{e}: keys {:?}{}", s3.list_keys(), diagnostics(&daemon));
            }
            assert_eq!(s3.get_object("backup-0001.img").as_deref(), Some(&data[..]));
            assert_eq!(std::fs::read(&file).unwrap(), data, "read back through the mount");

            let reply = client.call(&daemon.node, &unmount("moto-1", &path, "s3"), &uuid()).await;
            assert_eq!(reply, unmounted_msg(&path), "{}", diagnostics(&daemon));
            not_mounted(&path);
            assert_eq!(daemon.pid_files_after_cleanup(), Vec::<String>::new());
            wait_dead(pid, "s3fs");
            assert!(processes_with_arg(&path).is_empty(), "an s3fs process is left");
            // The object outlives the mount.
            assert_eq!(s3.get_object("backup-0001.img").as_deref(), Some(&data[..]));
            client.close().await;
        });
        let helper_text = std::fs::read_to_string(&helper_log).unwrap_or_default();
        let log = daemon.stop();
        let secrets = [TOKEN, s3.secret_access_key()];
        assert_no_secret("daemon log", &log, &secrets);
        assert_no_secret("helper log", &helper_text, &secrets);
        assert!(!barbican.requests().iter().any(|r| r.contains(TOKEN)));
    });
}

#[test]
fn twenty_targets_mounted_and_unmounted_concurrently_each_get_their_own_helper_and_reply() {
    let name =
        "twenty_targets_mounted_and_unmounted_concurrently_each_get_their_own_helper_and_reply";
    run_isolated_with_timeout(name, LIMIT, || {
        const N: usize = 20;
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &testfs_credentials("bucket-many"));
        let dir = support::temp_dir("dms-e2e-more-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let daemon = Daemon::start(broker, dir.path(), "e2e-more-many", &[]);
        let targets: Vec<String> = (0..N).map(|i| format!("many-{i:02}")).collect();
        let paths: BTreeMap<&str, String> =
            targets.iter().map(|t| (t.as_str(), daemon.path(t))).collect();
        runtime().block_on(async {
            let mut client = Client::connect(broker).await;

            // All mount requests first, then the replies in whatever order they come.
            let t0 = Instant::now();
            let requests = targets.iter().map(|t| {
                let path = &paths[t.as_str()];
                (s3_mount(t, path, &secret_ref, TOKEN), mounted_msg(path))
            });
            call_all(&mut client, &daemon, requests.collect()).await;
            println!("{N} concurrent mounts answered in {:?}", t0.elapsed());

            for t in &targets {
                mounted(&paths[t.as_str()], "fuse.dms-testfs");
            }
            let want: Vec<String> = targets.iter().map(|t| format!("{t}.pid")).collect();
            assert_eq!(daemon.pid_files(), want);
            let pids: BTreeSet<u32> = targets.iter().map(|t| pid_of(&daemon, t)).collect();
            assert_eq!(pids.len(), N, "distinct helpers: {pids:?}");
            assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");
            // Each mount answers with its own (in-memory) filesystem.
            for t in &targets {
                std::fs::write(Path::new(&paths[t.as_str()]).join("who"), t.as_bytes()).unwrap();
            }
            for t in &targets {
                assert_eq!(
                    std::fs::read(Path::new(&paths[t.as_str()]).join("who")).unwrap(),
                    t.as_bytes()
                );
            }

            let t0 = Instant::now();
            let requests = targets.iter().map(|t| {
                let path = &paths[t.as_str()];
                (unmount(t, path, "s3"), unmounted_msg(path))
            });
            call_all(&mut client, &daemon, requests.collect()).await;
            println!("{N} concurrent unmounts answered in {:?}", t0.elapsed());

            for t in &targets {
                not_mounted(&paths[t.as_str()]);
            }
            assert_eq!(daemon.pid_files_after_cleanup(), Vec::<String>::new());
            for pid in &pids {
                wait_dead(*pid, "helper");
            }
            client.close().await;
        });
        let log = daemon.stop();
        assert_no_secret("daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}

#[test]
fn broker_killed_and_restarted_or_dropping_connections_leaves_mounts_alone_and_the_daemon_serves_again(
) {
    let name = "broker_killed_and_restarted_or_dropping_connections_leaves_mounts_alone_and_the_daemon_serves_again";
    run_isolated_with_timeout(name, LIMIT, || {
        let broker = Broker::start();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &testfs_credentials("bucket-broker"));
        let dir = support::temp_dir("dms-e2e-more-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let mut daemon = Daemon::start(&broker, dir.path(), "e2e-more-broker", &[]);
        let (p1, p2, p3) = (daemon.path("b-1"), daemon.path("b-2"), daemon.path("b-3"));
        let rt = runtime();
        rt.block_on(async {
            let mut client = Client::connect(&broker).await;
            let reply =
                client.call(&daemon.node, &s3_mount("b-1", &p1, &secret_ref, TOKEN), &uuid()).await;
            assert_eq!(reply, mounted_msg(&p1));
            // The broker dies under the client too; drop this connection without a close.
            drop(client);
        });
        std::fs::write(Path::new(&p1).join("before.img"), b"written before the broker died")
            .unwrap();
        let pid_file = std::fs::read_to_string(daemon.pid_dir.join("b-1.pid")).unwrap();
        let pid = pid_of(&daemon, "b-1");

        let before = sessions(&daemon);
        let mark = daemon.log_text().len();
        broker.kill_and_restart();
        let took = wait_reconnected(&mut daemon, before, Duration::from_secs(45));
        println!("daemon consuming again {took:?} after the broker came back");
        assert_one_line_per_broker_event(&daemon.log_text()[mark..]);
        // The backoff is capped at 15 s: once the broker is up, the next attempt comes
        // within one capped wait (plus connection setup).
        assert!(took <= Duration::from_secs(20), "reconnected only after {took:?}");
        assert!(daemon.child.try_wait().is_none(), "the daemon exited");
        assert_eq!(std::fs::read_to_string(daemon.pid_dir.join("b-1.pid")).unwrap(), pid_file);
        assert!(alive(pid), "the helper died with the broker");
        mounted(&p1, "fuse.dms-testfs");
        assert_eq!(
            std::fs::read(Path::new(&p1).join("before.img")).unwrap(),
            b"written before the broker died"
        );

        rt.block_on(async {
            let mut client = Client::connect(&broker).await;
            let reply =
                client.call(&daemon.node, &s3_mount("b-2", &p2, &secret_ref, TOKEN), &uuid()).await;
            assert_eq!(reply, mounted_msg(&p2));
            client.close().await;
        });
        mounted(&p2, "fuse.dms-testfs");

        // The broker closes every connection (the node stays up).
        let before = sessions(&daemon);
        let mark = daemon.log_text().len();
        broker.close_all_connections();
        let took = wait_reconnected(&mut daemon, before, Duration::from_secs(30));
        println!("daemon consuming again {took:?} after close_all_connections");
        assert_one_line_per_broker_event(&daemon.log_text()[mark..]);
        assert!(daemon.child.try_wait().is_none(), "the daemon exited");
        rt.block_on(async {
            let mut client = Client::connect(&broker).await;
            let reply =
                client.call(&daemon.node, &s3_mount("b-3", &p3, &secret_ref, TOKEN), &uuid()).await;
            assert_eq!(reply, mounted_msg(&p3));
            assert_eq!(std::fs::read_to_string(daemon.pid_dir.join("b-1.pid")).unwrap(), pid_file);
            assert_eq!(
                std::fs::read(Path::new(&p1).join("before.img")).unwrap(),
                b"written before the broker died"
            );
            let pids: Vec<u32> = ["b-1", "b-2", "b-3"].iter().map(|t| pid_of(&daemon, t)).collect();
            for (t, p) in [("b-1", &p1), ("b-2", &p2), ("b-3", &p3)] {
                let reply = client.call(&daemon.node, &unmount(t, p, "s3"), &uuid()).await;
                assert_eq!(reply, unmounted_msg(p));
                not_mounted(p);
            }
            assert_eq!(daemon.pid_files_after_cleanup(), Vec::<String>::new());
            for p in pids {
                wait_dead(p, "helper");
            }
            client.close().await;
        });
        let log = daemon.stop();
        assert_no_secret("daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}

#[test]
fn daemon_restart_keeps_mounts_and_the_new_daemon_answers_from_the_journal_and_unmounts_the_adopted_helper(
) {
    let name = "daemon_restart_keeps_mounts_and_the_new_daemon_answers_from_the_journal_and_unmounts_the_adopted_helper";
    run_isolated_with_timeout(name, LIMIT, || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &testfs_credentials("bucket-restart"));
        let dir = support::temp_dir("dms-e2e-more-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let daemon = Daemon::start(broker, dir.path(), "e2e-more-restart", &[]);
        let path = daemon.path("r-1");
        let mount = s3_mount("r-1", &path, &secret_ref, TOKEN);
        let first = uuid();
        let rt = runtime();
        let first_reply = call(&rt, &daemon, &mount, &first);
        assert_eq!(first_reply, mounted_msg(&path));
        std::fs::write(Path::new(&path).join("kept.img"), b"kept across the restart").unwrap();
        let pid_file = std::fs::read_to_string(daemon.pid_dir.join("r-1.pid")).unwrap();
        let pid = pid_of(&daemon, "r-1");

        let env = daemon.env.clone();
        let old_log = daemon.stop();
        mounted(&path, "fuse.dms-testfs");
        assert!(alive(pid), "the helper died with the daemon");
        assert_eq!(std::fs::read_to_string(dir.path().join("pids/r-1.pid")).unwrap(), pid_file);
        assert_eq!(
            std::fs::read(Path::new(&path).join("kept.img")).unwrap(),
            b"kept across the restart"
        );

        let daemon = Daemon::spawn(dir.path(), "e2e-more-restart", env);
        rt.block_on(async {
            let mut client = Client::connect(broker).await;
            // The same request again: the journaled answer, no second helper.
            let again = client.call(&daemon.node, &mount, &first).await;
            assert_eq!(again, first_reply, "{}", daemon.log_text());
            let reply = client.call(&daemon.node, &mount, &uuid()).await;
            assert_eq!(reply, ok(&format!("Already mounted at {path}")), "{}", daemon.log_text());
            assert_eq!(std::fs::read_to_string(daemon.pid_dir.join("r-1.pid")).unwrap(), pid_file);
            assert!(alive(pid));

            let reply = client.call(&daemon.node, &unmount("r-1", &path, "s3"), &uuid()).await;
            assert_eq!(reply, unmounted_msg(&path), "{}", daemon.log_text());
            not_mounted(&path);
            assert_eq!(daemon.pid_files_after_cleanup(), Vec::<String>::new());
            wait_dead(pid, "the adopted helper");
            let reply = client.call(&daemon.node, &unmount("r-1", &path, "s3"), &uuid()).await;
            assert_eq!(reply, ok(&format!("Target not mounted at {path}")));
            client.close().await;
        });
        let log = daemon.stop();
        assert_no_secret("first daemon log", &old_log, &[TOKEN, SECRET_KEY]);
        assert_no_secret("second daemon log", &log, &[TOKEN, SECRET_KEY]);
    });
}
