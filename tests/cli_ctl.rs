//! `dms-ctl` against a running daemon: the real binary over the real admin socket, the real
//! broker for `mount`/`unmount`, real FUSE mounts (dms-testfs) and a real Barbican, in a
//! private mount namespace.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::ctl::Ctl;
use e2e::host::{alive, not_mounted, pid_of, wait_dead};
use e2e::{call, mounted_msg, runtime, s3_mount, testfs_credentials, unmounted_msg, uuid, Daemon};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::mountns::run_isolated_with_timeout;
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-dms-ctl-keystone-token";
const LIMIT: Duration = Duration::from_secs(240);

#[test]
fn dms_ctl_lists_reports_health_cleans_up_stops_and_sends_requests_to_a_running_daemon() {
    let name =
        "dms_ctl_lists_reports_health_cleans_up_stops_and_sends_requests_to_a_running_daemon";
    run_isolated_with_timeout(name, LIMIT, || {
        let barbican = Barbican::shared();
        let secret_ref =
            barbican.store_secret(TOKEN, &testfs_credentials("AKIACTL", "dms-ctl-secret", "ctl"));
        let dir = support::temp_dir("dms-ctl-");
        // No periodic resync during the test: `cleanup` is what converges here.
        let slow = [("DMS_RESYNC_INTERVAL", "3600".to_owned())];
        let daemon = Daemon::start(Broker::shared(), dir.path(), "ctl-node", &slow);
        let ctl = Ctl::new(&daemon, dir.path());
        let rt = runtime();
        for t in ["t-1", "t-2"] {
            let path = daemon.path(t);
            let reply = call(&rt, &daemon, &s3_mount(t, &path, &secret_ref, TOKEN), &uuid());
            assert_eq!(reply, mounted_msg(&path));
        }
        let (p1, p2) = (pid_of(&daemon, "t-1"), pid_of(&daemon, "t-2"));

        // list: table, JSON, detailed.
        let (code, table, _) = ctl.run(&["list"]);
        assert_eq!(code, 0);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("TARGET") && lines[0].ends_with("MOUNT PATH"), "{table}");
        assert!(
            lines.iter().any(|l| l.starts_with("t-1 ")
                && l.contains(&p1.to_string())
                && l.contains(" yes ")),
            "{table}"
        );
        assert_eq!(lines.len(), 3, "{table}");
        let rows = ctl.json(&["list", "--json"]);
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows
            .iter()
            .all(|r| r["helper_alive"] == true && r["state"] == "mounted" && r["kind"] == "s3"));
        let detailed = ctl.json(&["list", "--json", "--detailed"]);
        assert!(
            detailed.as_array().unwrap().iter().all(|r| r["rss_bytes"].as_u64().unwrap() > 0),
            "{detailed}"
        );
        let (_, table, _) = ctl.run(&["list", "--detailed"]);
        assert!(table.lines().next().unwrap().contains("CPU%  RSS"), "{table}");
        let watched = ctl.watch(&["list", "--watch", "0.2"], Duration::from_millis(1500));
        let refreshes = watched.matches("every 0.2s (Ctrl-C to stop)").count();
        assert!(refreshes >= 2, "--watch refreshed {refreshes} time(s):\n{watched}");
        assert!(watched.matches("\nt-1 ").count() >= 2, "{watched}");

        // status, stats, health: all well.
        let status = ctl.json(&["status", "--json"]);
        assert_eq!(
            (status["node"].as_str(), status["mounted"].as_u64()),
            (Some("ctl-node"), Some(2))
        );
        assert_eq!(status["broker_connected"], true);
        let stats = ctl.json(&["stats", "--json"]);
        assert_eq!(stats["agreement"], true, "{stats}");
        assert_eq!(
            (stats["helpers_alive"].as_u64(), stats["pid_files_on_disk"].as_u64()),
            (Some(2), Some(2))
        );
        let (code, line, _) = ctl.run(&["health"]);
        assert_eq!(
            (code, line.as_str()),
            (0, "OK: 2 mounted, 2 of 2 helpers alive, broker connected\n")
        );

        // A PID file lost by hand: stats sees it as settling (new since the last pass, which
        // would converge it), health is not alarmed, cleanup restores it.
        std::fs::remove_file(daemon.pid_dir.join("t-2.pid")).unwrap();
        let stats = ctl.json(&["stats", "--json"]);
        assert_eq!(stats["agreement"], true, "{stats}");
        assert!(
            stats["settling"][0]
                .as_str()
                .unwrap()
                .starts_with("t-2: cleanup would do WritePidFile"),
            "{stats}"
        );
        assert_eq!(ctl.run(&["health"]).0, 0);
        let (code, out, err) = ctl.run(&["cleanup"]);
        assert_eq!(
            (code, out.as_str()),
            (0, "cleanup done: 1 of 1 planned step(s) performed\n"),
            "{err}"
        );
        assert_eq!(pid_of(&daemon, "t-2"), p2);
        assert_eq!(ctl.run(&["health"]).0, 0);

        // What no pass converges (a FIFO planted as a PID file, never read or removed)
        // outlives the pass: a disagreement, and a warning.
        let fifo = daemon.pid_dir.join("t-9.pid");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert_eq!(ctl.run(&["cleanup"]).0, 0);
        let stats = ctl.json(&["stats", "--json"]);
        assert_eq!(stats["agreement"], false, "{stats}");
        assert!(
            stats["disagreements"][0].as_str().unwrap().contains("is not a regular file"),
            "{stats}"
        );
        let (code, line, _) = ctl.run(&["health"]);
        assert_eq!(code, 1, "{line}");
        assert!(line.starts_with("WARNING: ") && line.contains("1 disagreement(s)"), "{line}");
        std::fs::remove_file(&fifo).unwrap();
        assert_eq!(ctl.run(&["cleanup"]).0, 0);
        assert_eq!(ctl.run(&["health"]).0, 0);

        // stop: only a tracked helper.
        let (code, out, err) = ctl.run(&["stop", "t-1"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, format!("Target unmounted successfully from {}\n", daemon.path("t-1")));
        wait_dead(p1, "the stopped helper");
        not_mounted(&daemon.path("t-1"));
        let (code, _, err) = ctl.run(&["stop", "t-1"]);
        assert_eq!(code, 1);
        assert!(err.contains("t-1 is not mounted by a helper this daemon tracks"), "{err}");
        let (code, _, err) = ctl.run(&["stop", "../etc"]);
        assert_eq!(code, 1);
        assert!(err.contains("invalid target id"), "{err}");
        assert!(alive(p2), "stop touched another target");
        let (code, _, err) = ctl.run(&["stop", "--pid", &std::process::id().to_string()]);
        assert_eq!(code, 1);
        assert!(err.contains("is not a helper this daemon tracks"), "{err}");
        assert!(alive(p2));

        // mount/unmount over RabbitMQ, in the wire format; the token comes from a file.
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let path = daemon.path("t-3");
        let token_arg = token_file.display().to_string();
        let (code, out, err) = ctl.run(&[
            "mount",
            "--target",
            "t-3",
            "--path",
            &path,
            "--secret-ref",
            &secret_ref,
            "--token-file",
            &token_arg,
        ]);
        assert_eq!(code, 0, "{err}");
        let reply: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(reply, mounted_msg(&path));
        let (code, out, _) = ctl.run(&["unmount", "--target", "t-3", "--path", &path]);
        assert_eq!(code, 0);
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), unmounted_msg(&path));
        let (code, out, _) = ctl.run(&["unmount", "--target", "t-3", "--path", "/etc/passwd"]);
        assert_eq!(code, 1, "{out}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["status"], "error");

        // Non-root peers: the socket's mode keeps them out, and so does the daemon's own
        // credential check when the mode is opened up.
        let (code, _, err) = ctl.run_as(Some(65534), &["status"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("permission denied"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(Path::new(&ctl.socket), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        let (code, _, err) = ctl.run_as(Some(65534), &["stop", "t-2"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("serves root only"), "{err}");
        assert!(daemon.log_text().contains("refused a non-root peer"));
        assert!(alive(p2), "a non-root peer stopped a helper");
        let (code, out, err) = ctl.run(&["stop", "--pid", &p2.to_string()]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, format!("Target unmounted successfully from {}\n", daemon.path("t-2")));
        wait_dead(p2, "the helper stopped by PID");

        let log = daemon.stop();
        assert!(!log.contains(TOKEN), "the token reached the log");
        // No daemon: health is CRITICAL, other commands say how to find out why.
        let (code, line, _) = ctl.run(&["health"]);
        assert_eq!(code, 2, "{line}");
        assert!(line.starts_with("CRITICAL: dms-server cannot be asked"), "{line}");
        let (code, _, err) = ctl.run(&["list"]);
        assert_eq!(code, 2);
        assert!(err.contains("is it running?"), "{err}");
    });
}
