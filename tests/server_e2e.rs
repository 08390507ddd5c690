//! dms-server end to end: a private RabbitMQ node, a real Barbican, real FUSE mounts by the
//! workspace's in-memory helper (dms-testfs), each test in a private mount namespace.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::{err, mounted_msg, ok, runtime, s3_mount, unmount, unmounted_msg, uuid, Client, Daemon};
use std::path::Path;
use std::time::Duration;
use support::mountns::{self, run_isolated};
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-e2e-keystone-token";

fn credentials(bucket: &str) -> String {
    e2e::testfs_credentials("AKIAE2E", "e2e-secret-key-value", bucket)
}

#[test]
fn s3_mount_unmount_round_trip_with_idempotent_repeats_and_a_redelivery_answered_from_the_journal()
{
    run_isolated("s3_mount_unmount_round_trip_with_idempotent_repeats_and_a_redelivery_answered_from_the_journal", || {
        let broker = Broker::shared();
        let barbican = Barbican::start();
        let secret_ref = barbican.store_secret(TOKEN, &credentials("bucket-1"));
        let dir = support::temp_dir("dms-e2e-");
        let daemon = Daemon::start(broker, dir.path(), "e2e-s3", &[]);
        let path = daemon.path("target-1");
        runtime().block_on(async {
            let mut client = Client::connect(broker).await;
            let mount = s3_mount("target-1", &path, &secret_ref, TOKEN);
            let first = uuid();
            let reply = client.call(&daemon.node, &mount, &first).await;
            assert_eq!(reply, mounted_msg(&path));
            let entry = mountns::mount_at(Path::new(&path)).expect("the mount is in the table");
            assert_eq!(entry.fs_type, "fuse.dms-testfs");
            std::fs::write(Path::new(&path).join("backup.img"), b"data").unwrap();
            assert_eq!(std::fs::read(Path::new(&path).join("backup.img")).unwrap(), b"data");
            assert_eq!(daemon.pid_files(), ["target-1.pid"]);
            let pid = std::fs::read_to_string(daemon.pid_dir.join("target-1.pid")).unwrap();

            // The same request again (a redelivery): the journaled answer, no second helper.
            let again = client.call(&daemon.node, &mount, &first).await;
            assert_eq!(again, reply);
            // A new request for the mounted target.
            let other = client.call(&daemon.node, &mount, &uuid()).await;
            assert_eq!(other, ok(&format!("Already mounted at {path}")));
            assert_eq!(std::fs::read_to_string(daemon.pid_dir.join("target-1.pid")).unwrap(), pid);

            let reply = client.call(&daemon.node, &unmount("target-1", &path, "s3"), &uuid()).await;
            assert_eq!(reply, unmounted_msg(&path));
            assert!(mountns::mount_at(Path::new(&path)).is_none());
            // The helper is stopped after the answer, on the target's turn: the next request
            // for the target is answered only once it is gone with its PID file.
            let reply = client.call(&daemon.node, &unmount("target-1", &path, "s3"), &uuid()).await;
            assert_eq!(reply, ok(&format!("Target not mounted at {path}")));
            assert!(daemon.pid_files().is_empty());
            client.close().await;
        });
        assert!(!barbican.requests().iter().any(|r| r.contains(TOKEN)));
        let journal = daemon.journal.clone();
        let log = daemon.stop();
        assert!(!log.contains(TOKEN) && !log.contains("e2e-secret-key-value"), "a secret reached the log");
        let out = std::process::Command::new(e2e::journal::tool_bin())
            .args(["--path", journal.to_str().unwrap(), "inspect", "--target", "target-1"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        for event in ["Requested", "CredsFetched", "Spawned", "Verified", "Answered", "UnmountRequested", "Detached", "Cleaned"] {
            assert!(text.contains(event), "{event} missing from:\n{text}");
        }
        assert!(!text.contains(TOKEN) && !text.contains("e2e-secret-key-value"));
    });
}

#[test]
fn bad_requests_get_the_python_error_texts_and_touch_nothing() {
    run_isolated("bad_requests_get_the_python_error_texts_and_touch_nothing", || {
        let broker = Broker::shared();
        let dir = support::temp_dir("dms-e2e-");
        let daemon = Daemon::start(broker, dir.path(), "e2e-bad", &[]);
        let base = daemon.base.display().to_string();
        let outside = dir.path().join("elsewhere").display().to_string();
        runtime().block_on(async {
            let mut client = Client::connect(broker).await;
            let raw = |body: &'static [u8]| body;
            client.send(&daemon.node, raw(b"{not json"), "c-json", true).await;
            let (corr, reply) = client.reply().await;
            assert_eq!((corr.as_str(), reply), ("c-json", err("Invalid JSON format in request")));
            let cases = [
                (serde_json::json!({"action": "format", "backup_target": {"id": "t", "type": "s3", "filesystem_export_mount_path": format!("{base}/t")}}), "Unknown action: format"),
                (serde_json::json!({"action": "mount", "backup_target": {"id": "t", "type": "ceph", "filesystem_export_mount_path": format!("{base}/t")}}), "Unsupported target type: ceph"),
                (serde_json::json!({"action": "mount", "backup_target": {"id": "t", "type": "nfs", "filesystem_export_mount_path": format!("{base}/t")}}), "Missing filesystem_export for NFS mount"),
                (serde_json::json!({"action": "mount", "backup_target": {"id": "t", "type": "s3"}}), "Missing filesystem_export_mount_path in backup_target"),
                (serde_json::json!({"backup_target": {}}), "Missing required field: 'action'"),
            ];
            for (body, text) in cases {
                assert_eq!(client.call(&daemon.node, &body, &uuid()).await, err(text));
            }
            // A path traversal in the id, a mount path outside the base: refused, nothing touched.
            for (id, path) in [("../../etc/passwd", format!("{base}/x")), ("ok-id", outside.clone()), ("ok-id", format!("{base}/../escape"))] {
                let body = s3_mount(id, &path, "http://127.0.0.1:1/v1/secrets/x", TOKEN);
                let reply = client.call(&daemon.node, &body, &uuid()).await;
                assert_eq!(reply["status"], "error", "{id} {path}: {reply}");
            }
            client.close().await;
        });
        assert!(daemon.pid_files().is_empty());
        assert!(!Path::new(&outside).exists());
        assert_eq!(
            std::fs::read_dir(&daemon.base).unwrap().count(),
            0,
            "nothing created under the base"
        );
        daemon.stop();
    });
}

#[test]
fn barbican_refusals_and_outages_are_reported_and_no_helper_starts() {
    run_isolated("barbican_refusals_and_outages_are_reported_and_no_helper_starts", || {
        let broker = Broker::shared();
        let barbican = Barbican::start();
        let secret_ref = barbican.store_secret(TOKEN, &credentials("bucket-2"));
        let dir = support::temp_dir("dms-e2e-");
        let daemon = Daemon::start(
            broker,
            dir.path(),
            "e2e-barbican",
            &[("DMS_CREDENTIALS_TIMEOUT", "2".into())],
        );
        let path = daemon.path("t-b");
        runtime().block_on(async {
            let mut client = Client::connect(broker).await;
            let reply = client.call(&daemon.node, &s3_mount("t-b", &path, &barbican.unknown_secret_ref(), TOKEN), &uuid()).await;
            let msg = reply["error_msg"].as_str().unwrap();
            assert!(msg.starts_with("Failed to fetch credentials: Failed to fetch secret from Barbican: Secret not found at http"), "{reply}");
            assert!(msg.ends_with(". Verify the secret_ref URL."), "{reply}");
            let reply = client.call(&daemon.node, &s3_mount("t-b", &path, &secret_ref, "invalid-token"), &uuid()).await;
            assert_eq!(reply, err("Failed to fetch credentials: Failed to fetch secret from Barbican: Invalid or expired Keystone token. Token authentication failed."));
            barbican.set_fault(&support::Fault::status(500));
            let reply = client.call(&daemon.node, &s3_mount("t-b", &path, &secret_ref, TOKEN), &uuid()).await;
            assert_eq!(reply, err("Failed to fetch credentials: Barbican answered 500 after 3 attempt(s)"));
            barbican.set_fault(&support::Fault::delay(Duration::from_secs(10)));
            let reply = client.call(&daemon.node, &s3_mount("t-b", &path, &secret_ref, TOKEN), &uuid()).await;
            assert!(reply["error_msg"].as_str().unwrap().contains("did not answer within"), "{reply}");
            barbican.clear_fault();
            client.close().await;
        });
        assert!(daemon.pid_files().is_empty(), "no helper was started");
        assert!(mountns::mount_at(Path::new(&path)).is_none());
        daemon.stop();
    });
}

#[test]
fn helpers_that_exit_at_once_or_never_mount_fail_the_mount_and_leave_nothing_behind() {
    run_isolated(
        "helpers_that_exit_at_once_or_never_mount_fail_the_mount_and_leave_nothing_behind",
        || {
            let broker = Broker::shared();
            let barbican = Barbican::shared();
            let secret_ref = barbican.store_secret(TOKEN, &credentials("bucket-3"));
            for (fault, expected) in
                [("exit-at-once", "helper exited"), ("never-mount", "no mount at")]
            {
                let dir = support::temp_dir("dms-e2e-");
                let helper = e2e::faulty_helper(dir.path(), fault);
                let daemon = Daemon::start(
                    broker,
                    dir.path(),
                    &format!("e2e-{fault}"),
                    &[
                        ("DMS_S3VAULTFUSE_BIN", helper.display().to_string()),
                        ("DMS_HELPER_MOUNT_TIMEOUT", "2".into()),
                    ],
                );
                let path = daemon.path("t-f");
                runtime().block_on(async {
                    let mut client = Client::connect(broker).await;
                    let reply = client
                        .call(&daemon.node, &s3_mount("t-f", &path, &secret_ref, TOKEN), &uuid())
                        .await;
                    assert_eq!(reply["status"], "error", "{fault}: {reply}");
                    let msg = reply["error_msg"].as_str().unwrap();
                    assert!(msg.contains(expected), "{fault}: {msg}");
                    client.close().await;
                });
                assert!(daemon.pid_files().is_empty(), "{fault}: PID file left behind");
                assert!(
                    mountns::mount_at(Path::new(&path)).is_none(),
                    "{fault}: mount left behind"
                );
                let log = daemon.stop();
                assert!(!log.contains("e2e-secret-key-value"));
            }
        },
    );
}

/// An NFS stand-in for mount(8) (this kernel has no NFS client): it records its argv and
/// mounts a tmpfs at the target, so the daemon's whole NFS path runs for real around it.
fn nfs_stand_in(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let argv_log = dir.join("mount-argv.log");
    let script = dir.join("mount-nfs-stand-in");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\n[ \"$1\" = -t ] && [ \"$2\" = nfs ] && [ \"$3\" = -o ] || exit 32\nfor last; do :; done\nexec mount -t tmpfs -o size=1m nfs-stand-in \"$last\"\n",
            log = argv_log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script, argv_log)
}

#[test]
fn nfs_round_trip_through_the_mount_program_and_the_real_mount_8_failure_path() {
    run_isolated(
        "nfs_round_trip_through_the_mount_program_and_the_real_mount_8_failure_path",
        || {
            let broker = Broker::shared();
            let dir = support::temp_dir("dms-e2e-");
            let (stand_in, argv_log) = nfs_stand_in(dir.path());
            let daemon = Daemon::start(
                broker,
                dir.path(),
                "e2e-nfs",
                &[
                    ("DMS_MOUNT_PROGRAM", stand_in.display().to_string()),
                    ("DMS_NFS_FSTYPES", "nfs,nfs4,tmpfs".into()),
                ],
            );
            let path = daemon.path("nfs-1");
            runtime().block_on(async {
                let mut client = Client::connect(broker).await;
                let mount =
                    e2e::nfs_mount("nfs-1", &path, "192.0.2.10:/exports/backup", "vers=4.1,hard");
                let reply = client.call(&daemon.node, &mount, &uuid()).await;
                assert_eq!(reply, ok(&format!("NFS target mounted successfully at {path}")));
                let argv = std::fs::read_to_string(&argv_log).unwrap();
                assert_eq!(argv.lines().count(), 1);
                let line = argv.lines().next().unwrap();
                assert!(
                    line.starts_with("-t nfs -o ")
                        && line.ends_with(&format!(" 192.0.2.10:/exports/backup {path}")),
                    "{line}"
                );
                assert!(
                    line.contains("nosuid") && line.contains("nodev") && line.contains("vers=4.1"),
                    "{line}"
                );
                assert!(mountns::mount_at(Path::new(&path)).is_some());
                let again = client.call(&daemon.node, &mount, &uuid()).await;
                assert_eq!(again, ok(&format!("Already mounted at {path}")));
                let reply =
                    client.call(&daemon.node, &unmount("nfs-1", &path, "nfs"), &uuid()).await;
                assert_eq!(reply, unmounted_msg(&path));
                assert!(mountns::mount_at(Path::new(&path)).is_none());
                // Options outside the allow-list, or dangerous ones, never reach mount(8).
                let bad = e2e::nfs_mount(
                    "nfs-2",
                    &daemon.path("nfs-2"),
                    "192.0.2.10:/exports/backup",
                    "suid,dev",
                );
                let reply = client.call(&daemon.node, &bad, &uuid()).await;
                assert_eq!(reply["status"], "error", "{reply}");
                assert_eq!(std::fs::read_to_string(&argv_log).unwrap().lines().count(), 1);
                client.close().await;
            });
            daemon.stop();

            // The real mount(8): it cannot mount NFS here, and its error is the reply.
            let dir = support::temp_dir("dms-e2e-");
            let daemon = Daemon::start(
                broker,
                dir.path(),
                "e2e-nfs-real",
                &[("DMS_NFS_MOUNT_TIMEOUT", "20".into())],
            );
            let path = daemon.path("nfs-3");
            runtime().block_on(async {
                let mut client = Client::connect(broker).await;
                let mount = e2e::nfs_mount(
                    "nfs-3",
                    &path,
                    "127.0.0.1:/exports/none",
                    "soft,timeo=10,retrans=0",
                );
                let reply = client.call(&daemon.node, &mount, &uuid()).await;
                let msg = reply["error_msg"].as_str().unwrap_or_default();
                assert!(
                    reply["status"] == "error" && msg.starts_with("NFS mount failed: "),
                    "{reply}"
                );
                client.close().await;
            });
            assert!(mountns::mount_at(Path::new(&path)).is_none());
            daemon.stop();
        },
    );
}

#[test]
fn a_helper_that_dies_is_noticed_its_dead_mount_detached_and_the_target_lost() {
    run_isolated(
        "a_helper_that_dies_is_noticed_its_dead_mount_detached_and_the_target_lost",
        || {
            let broker = Broker::shared();
            let barbican = Barbican::shared();
            let secret_ref = barbican.store_secret(TOKEN, &credentials("bucket-4"));
            let dir = support::temp_dir("dms-e2e-");
            let helper = e2e::faulty_helper(dir.path(), "die-after=1");
            let daemon = Daemon::start(
                broker,
                dir.path(),
                "e2e-death",
                // Healing off: the loss as an operator who turned it off gets it (healing is
                // server_heal.rs's).
                &[
                    ("DMS_S3VAULTFUSE_BIN", helper.display().to_string()),
                    ("DMS_HEAL_ATTEMPTS", "0".to_owned()),
                ],
            );
            let path = daemon.path("t-d");
            runtime().block_on(async {
                let mut client = Client::connect(broker).await;
                let mount = s3_mount("t-d", &path, &secret_ref, TOKEN);
                let reply = client.call(&daemon.node, &mount, &uuid()).await;
                assert_eq!(reply, mounted_msg(&path));
                // The helper dies after a second: its dead mount must go, and its PID file.
                let gone = support::wait_for(
                    "the dead mount to be detached",
                    Duration::from_secs(30),
                    || {
                        (mountns::mount_at(Path::new(&path)).is_none()
                            && daemon.pid_files().is_empty())
                        .then_some(())
                    },
                );
                assert!(gone.is_ok(), "{gone:?}\n{}", daemon.log_text());
                // The next request sees the truth: not "Already mounted".
                let reply = client.call(&daemon.node, &mount, &uuid()).await;
                assert_eq!(reply, mounted_msg(&path));
                client.close().await;
            });
            let journal = daemon.journal.clone();
            daemon.stop();
            let out = std::process::Command::new(e2e::journal::tool_bin())
                .args(["--path", journal.to_str().unwrap(), "inspect", "--target", "t-d"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("Lost") && text.contains("exited") && text.contains("Cleaned"),
                "{text}"
            );
        },
    );
}
