//! `dms-journal` online, end to end: while the real daemon holds the journal, the tool
//! answers through the daemon's admin socket, and its output (stdout, stderr, exit code) is
//! exactly what it prints offline once the daemon has stopped. A non-root user is refused
//! with a clear message. In a private mount namespace (a real FUSE mount is made).
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use dms_journal::store::{Journal, StoreError};
use e2e::host::{kill_helpers, HelperReaper};
use e2e::journal::tool_bin;
use e2e::{ok, s3_mount, unmount, uuid, Client, Daemon};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::mountns::run_isolated_with_timeout;
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-journal-online-keystone-token";
const LIMIT: Duration = Duration::from_secs(240);

/// What one run of the tool printed and exited with.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `dms-journal --path <journal> <args>` with the daemon's admin socket in the environment,
/// optionally through `setpriv` as nobody.
fn tool(journal: &Path, socket: &Path, args: &[String], as_nobody: bool) -> Run {
    let mut cmd = if as_nobody {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(tool_bin());
        cmd
    } else {
        Command::new(tool_bin())
    };
    cmd.arg("--path").arg(journal).args(args);
    cmd.env_remove("DMS_JOURNAL_PATH").env_remove("DMS_CONFIG").env("DMS_ADMIN_SOCKET", socket);
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn credentials(bucket: &str) -> String {
    serde_json::json!({
        "aws_access_key_id": "AKIAJOURNALONLINE", "aws_secret_access_key": "journal-online-key",
        "bucket": bucket, "region": "us-east-1", "endpoint_url": "http://127.0.0.1:1"
    })
    .to_string()
}

#[test]
fn dms_journal_answers_through_the_admin_socket_while_the_daemon_runs_as_it_does_offline() {
    let name =
        "dms_journal_answers_through_the_admin_socket_while_the_daemon_runs_as_it_does_offline";
    run_isolated_with_timeout(name, LIMIT, || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials("bucket-journal-online"));
        let dir = support::temp_dir("dms-journal-online-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let daemon = Daemon::start(broker, dir.path(), "e2e-journal-online", &[]);
        let socket = dir.path().join("admin.sock");
        let journal = daemon.journal.clone();
        let (kept, gone) = (daemon.path("on-1"), daemon.path("on-2"));
        let first = uuid();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut client = Client::connect(broker).await;
            let reply = client
                .call(&daemon.node, &s3_mount("on-1", &kept, &secret_ref, TOKEN), &first)
                .await;
            assert_eq!(
                reply,
                ok(&format!("S3 target mounted successfully at {kept}")),
                "{}",
                daemon.log_text()
            );
            let reply = client
                .call(&daemon.node, &s3_mount("on-2", &gone, &secret_ref, TOKEN), &uuid())
                .await;
            assert_eq!(
                reply,
                ok(&format!("S3 target mounted successfully at {gone}")),
                "{}",
                daemon.log_text()
            );
            let reply = client.call(&daemon.node, &unmount("on-2", &gone, "s3"), &uuid()).await;
            assert_eq!(
                reply,
                ok(&format!("Target unmounted successfully from {gone}")),
                "{}",
                daemon.log_text()
            );
            client.close().await;
        });

        // The daemon holds the journal: the tool cannot open it itself.
        match Journal::open(&journal) {
            Err(StoreError::Locked { .. }) => {}
            other => panic!("the running daemon does not hold the journal: {other:?}"),
        }
        let commands: Vec<Vec<String>> = [
            &["inspect"][..],
            &["inspect", "--summary"],
            &["inspect", "--target", "on-1"],
            &["inspect", "--target", "on-2"],
            &["inspect", "--json"],
            &["inspect", "--json", "--target", "on-1"],
            &["inspect", "--request", &first],
            &["inspect", "--json", "--request", &first],
            &["inspect", "--target", "nope"],
            &["verify"],
            &["export"],
        ]
        .iter()
        .map(|args| args.iter().map(|a| (*a).to_owned()).collect())
        .collect();
        let online: Vec<Run> =
            commands.iter().map(|args| tool(&journal, &socket, args, false)).collect();
        for (args, run) in commands.iter().zip(&online) {
            let expected = if args.contains(&"nope".to_owned()) { 1 } else { 0 };
            assert_eq!(run.code, Some(expected), "online {args:?}: {run:?}\n{}", daemon.log_text());
        }
        assert!(online[0].stdout.contains("on-1"), "{}", online[0].stdout);
        assert!(online[2].stdout.contains("Verified"), "{}", online[2].stdout);

        // Not root: refused by the socket's mode (the test directory is root's, 0700) ...
        let inspect = vec!["inspect".to_owned()];
        let denied = tool(&journal, &socket, &inspect, true);
        assert_eq!(denied.code, Some(2), "{denied:?}");
        assert_eq!(
            denied.stderr,
            format!(
                "dms-journal: the journal at {} cannot be read here (permission denied) and the \
                 admin socket at {} (from DMS_ADMIN_SOCKET) cannot answer for it: permission \
                 denied: the admin socket serves root only\n",
                journal.display(),
                socket.display()
            )
        );
        assert!(denied.stdout.is_empty());
        // ... and by the daemon's peer check when the socket's mode would let it connect.
        let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        mode(dir.path(), 0o755).unwrap();
        mode(&socket, 0o666).unwrap();
        let refused = tool(&journal, &socket, &inspect, true);
        mode(&socket, 0o600).unwrap();
        mode(dir.path(), 0o700).unwrap();
        assert_eq!(refused.code, Some(2), "{refused:?}");
        assert!(
            refused.stderr.contains("cannot answer for it: the daemon refused: permission denied"),
            "{refused:?}"
        );
        assert!(refused.stdout.is_empty());

        daemon.stop();
        let offline: Vec<Run> =
            commands.iter().map(|args| tool(&journal, &socket, args, false)).collect();
        for ((args, online), offline) in commands.iter().zip(&online).zip(&offline) {
            assert_eq!(online, offline, "{args:?}: online and offline differ");
        }
        // on-1's helper outlives the daemon by design; it must not outlive the test.
        let killed = kill_helpers(&dir.path().join("pids"));
        assert_eq!(killed.len(), 1, "exactly on-1's helper was left running: {killed:?}");
    });
}
