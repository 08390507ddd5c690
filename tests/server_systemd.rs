//! dms-server under systemd, without systemd: the test plays the service manager.
//! - end to end, in a private mount namespace: a notify socket of our own as
//!   `$NOTIFY_SOCKET`, `READY=1` only once the boot reconcile is done, with a status line,
//!   `WATCHDOG=1` at half of `WATCHDOG_USEC`, `STOPPING=1` on SIGTERM, and the same again
//!   after a restart under a mounted target (whose helper survives it);
//! - the unit file in dist/systemd: `systemd-analyze verify` on it, and the settings the
//!   daemon's guarantees rest on (no mount namespace, helpers survive restarts, PID files
//!   survive stops).
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::host::{alive, assert_no_secret, mounted, not_mounted, pid_of, wait_dead, HelperReaper};
use e2e::{call, mounted_msg, runtime, s3_mount, unmount, unmounted_msg, uuid, Daemon, T};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use support::mountns::run_isolated_with_timeout;
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-e2e-systemd-keystone-token";
const KEY_ID: &str = "AKIAE2ESYSTEMD";
const SECRET_KEY: &str = "e2e-systemd-secret-key-value";
const LIMIT: Duration = Duration::from_secs(240);
/// What the daemon logs when the boot reconcile has converged (src/server.rs).
const RECONCILED: &str = "boot reconcile done";
/// WATCHDOG_USEC given to the daemon: it should ping every second.
const WATCHDOG_USEC: &str = "2000000";

/// One datagram the daemon sent, with the daemon logs as they were when it arrived.
#[derive(Debug, Clone)]
struct Notice {
    text: String,
    at: Instant,
    /// Every `dms-server-*.log` in the test directory, concatenated.
    logs: String,
}

/// The service manager's end of `$NOTIFY_SOCKET`: a thread receives every datagram and
/// snapshots the daemon logs at that moment, so "READY=1 only after the reconcile" is
/// checked when READY arrives, not whenever the test gets to look.
struct Manager {
    socket: PathBuf,
    rx: mpsc::Receiver<Notice>,
    seen: Vec<Notice>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Manager {
    fn listen(dir: &Path) -> Manager {
        let socket = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&socket).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, halt) = (dir.to_path_buf(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !halt.load(Ordering::SeqCst) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                let at = Instant::now();
                let notice = Notice {
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                    at,
                    logs: daemon_logs(&dir),
                };
                if tx.send(notice).is_err() {
                    return;
                }
            }
        });
        Manager { socket, rx, seen: Vec::new(), stop, thread: Some(thread) }
    }

    fn env(&self) -> [(&'static str, String); 2] {
        [
            ("NOTIFY_SOCKET", self.socket.display().to_string()),
            ("WATCHDOG_USEC", WATCHDOG_USEC.to_owned()),
        ]
    }

    /// Waits for the next notice (after the ones already seen) that `pick` accepts.
    fn wait(&mut self, what: &str, within: Duration, pick: impl Fn(&Notice) -> bool) -> Notice {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(notice) => {
                    self.seen.push(notice.clone());
                    if pick(&notice) {
                        return notice;
                    }
                }
                Err(_) => panic!(
                    "no {what} from dms-server within {within:?}; it sent {:#?}",
                    self.texts()
                ),
            }
        }
    }

    fn texts(&self) -> Vec<&str> {
        self.seen.iter().map(|n| n.text.as_str()).collect()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn daemon_logs(dir: &Path) -> String {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.retain(|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with("dms-server-") && name.ends_with(".log")
    });
    logs.sort();
    logs.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
}

fn is(prefix: &'static str) -> impl Fn(&Notice) -> bool {
    move |n| n.text.lines().any(|l| l == prefix)
}

/// The `STATUS=` line of a notice, checked to be there and to carry counts.
fn status_of(notice: &Notice) -> String {
    let status = notice
        .text
        .lines()
        .find(|l| l.starts_with("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= line in {:?}", notice.text));
    assert!(status.contains("mounted"), "a status without the counts: {status:?}");
    assert!(status.chars().any(|c| c.is_ascii_digit()), "a status without counts: {status:?}");
    status.to_owned()
}

/// READY=1, checked against the logs as they were when it arrived: the `nth` boot
/// reconcile (1 = this test's first daemon) must already be logged, and it is the only
/// READY of this daemon so far.
fn expect_ready(manager: &mut Manager, nth: usize) -> Notice {
    let ready = manager.wait("READY=1", T, is("READY=1"));
    let done = ready.logs.matches(RECONCILED).count();
    assert_eq!(
        done, nth,
        "READY=1 arrived when the logs showed {done} finished boot reconciles, not {nth}\n--- logs then ---\n{}",
        ready.logs
    );
    let readies = manager.seen.iter().filter(|n| is("READY=1")(n)).count();
    assert_eq!(readies, nth, "more than one READY=1 per daemon: {:#?}", manager.texts());
    ready
}

/// At least two keep-alives within 5 s of READY (the daemon was told 2 s, so it pings at
/// 1 s).
fn expect_watchdogs(manager: &mut Manager, ready: &Notice) {
    let window = Duration::from_secs(5);
    let mut pings = 0;
    while pings < 2 {
        let left = window.saturating_sub(ready.at.elapsed());
        let ping = manager.wait("two WATCHDOG=1 within 5 s of READY=1", left, is("WATCHDOG=1"));
        assert!(ping.at.duration_since(ready.at) <= window);
        pings += 1;
    }
}

/// SIGTERM: the daemon says STOPPING=1 (after its READY: that was seen already) and exits
/// cleanly.
fn stop_and_expect_stopping(manager: &mut Manager, daemon: Daemon) -> String {
    let log = daemon.stop();
    // The datagram was sent before the exit; give the receiving thread a moment.
    let stopping = manager.wait("STOPPING=1 on SIGTERM", Duration::from_secs(5), |n| {
        is("STOPPING=1")(n) || is("READY=1")(n)
    });
    assert!(
        is("STOPPING=1")(&stopping),
        "READY=1 again instead of STOPPING=1: {:#?}",
        manager.texts()
    );
    log
}

#[test]
fn under_notify_ready_follows_the_boot_reconcile_with_counts_watchdogs_tick_and_sigterm_says_stopping(
) {
    let name = "under_notify_ready_follows_the_boot_reconcile_with_counts_watchdogs_tick_and_sigterm_says_stopping";
    run_isolated_with_timeout(name, LIMIT, || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican
            .store_secret(TOKEN, &e2e::testfs_credentials(KEY_ID, SECRET_KEY, "bucket-systemd"));
        let dir = support::temp_dir("dms-e2e-systemd-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let mut manager = Manager::listen(dir.path());
        let node = "e2e-systemd";

        // First start: an empty journal.
        let daemon = Daemon::start(broker, dir.path(), node, &manager.env());
        let ready = expect_ready(&mut manager, 1);
        let first_status = status_of(&ready);
        println!("first READY: {:?}", ready.text);
        expect_watchdogs(&mut manager, &ready);

        // One mounted target, so the next start has something to reconcile and count.
        let path = daemon.path("sd-1");
        let rt = runtime();
        let reply = call(&rt, &daemon, &s3_mount("sd-1", &path, &secret_ref, TOKEN), &uuid());
        assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
        mounted(&path, "fuse.dms-testfs");
        let helper = pid_of(&daemon, "sd-1");
        let env = daemon.env.clone();
        let first_log = stop_and_expect_stopping(&mut manager, daemon);
        assert!(alive(helper), "the helper died with the daemon");
        mounted(&path, "fuse.dms-testfs");

        // Restart (as systemd does with KillMode=process): READY again only after the
        // second boot reconcile, with counts that now include the adopted target.
        let daemon = Daemon::spawn(dir.path(), node, env);
        let ready = expect_ready(&mut manager, 2);
        let second_status = status_of(&ready);
        println!("second READY: {:?}", ready.text);
        assert_ne!(
            second_status, first_status,
            "the READY status does not count the mounted target"
        );
        expect_watchdogs(&mut manager, &ready);
        assert!(alive(helper), "the restart disturbed the helper");

        let reply = call(&rt, &daemon, &unmount("sd-1", &path, "s3"), &uuid());
        assert_eq!(reply, unmounted_msg(&path), "{}", daemon.log_text());
        not_mounted(&path);
        wait_dead(helper, "the adopted helper");
        let second_log = stop_and_expect_stopping(&mut manager, daemon);
        for (what, log) in [("first daemon log", &first_log), ("second daemon log", &second_log)] {
            assert_no_secret(what, log, &[TOKEN, SECRET_KEY]);
        }
        assert!(
            manager.seen.iter().all(|n| !n.text.contains(TOKEN) && !n.text.contains(SECRET_KEY)),
            "a secret reached the service manager"
        );
    });
}

// ---- the unit file -------------------------------------------------------------------

fn unit_path() -> PathBuf {
    support::repo_root().join("dist/systemd/dms-server.service")
}

/// The active `Key=value` settings of a unit file, in order, comments and sections dropped.
fn settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn seconds(value: &str) -> u64 {
    let (digits, unit) =
        value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len()));
    let n: u64 = digits.parse().unwrap_or_else(|e| panic!("{value:?}: {e}"));
    match unit.trim() {
        "" | "s" | "sec" => n,
        "min" | "m" => n * 60,
        other => panic!("unit {other:?} in {value:?} not understood by this test"),
    }
}

#[test]
fn unit_file_keeps_mounts_in_the_host_namespace_and_helpers_and_pid_files_across_restarts() {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let settings = settings(&unit);
    let get = |key: &str| -> Vec<&str> {
        settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    };
    let one = |key: &str| -> &str {
        match get(key).as_slice() {
            [v] => v,
            other => panic!("{key}= set {} times in the unit: {other:?}", other.len()),
        }
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("KillMode"), "process", "a stop or restart would kill every helper");
    assert_eq!(one("Delegate"), "yes", "cgroup v2 would refuse the helpers' own cgroups");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("RuntimeDirectory"), "dms");
    assert_eq!(
        one("RuntimeDirectoryPreserve"),
        "yes",
        "a stop would delete live helpers' PID files"
    );
    assert_eq!(one("StateDirectory"), "dms");
    assert_eq!(seconds(one("WatchdogSec")), 30);
    let stop_deadline = dms::stop::STOP_DEADLINE.as_secs();
    assert!(
        seconds(one("TimeoutStopSec")) >= stop_deadline + 10,
        "must leave headroom over the daemon's own {stop_deadline} s stop deadline"
    );
    assert!(seconds(one("TimeoutStartSec")) >= 300, "a big boot reconcile needs time");
    let exec = one("ExecStart");
    let bin = env!("CARGO_BIN_EXE_dms-server");
    let bin_name = Path::new(bin).file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        exec.starts_with(&format!("/usr/bin/{bin_name} ")),
        "ExecStart {exec:?} does not start the {bin_name} binary"
    );
    assert!(exec.ends_with("--config /etc/trilio-dms/server.conf"), "{exec}");
    assert!(get("After")
        .iter()
        .any(|v| v.split_whitespace().any(|u| u == "network-online.target")));
    assert!(get("Wants")
        .iter()
        .any(|v| v.split_whitespace().any(|u| u == "network-online.target")));
    assert!(get("After")
        .iter()
        .any(|v| v.split_whitespace().any(|u| u == "rabbitmq-server.service")));
    for key in ["Requires", "BindsTo", "Requisite"] {
        assert!(
            get(key).iter().all(|v| !v.contains("rabbitmq")),
            "the broker may be remote: {key}= on it would stop the daemon with it"
        );
    }

    // Each of these makes the unit's processes run in a mount namespace of their own (or
    // otherwise breaks mounting); a mount made there is invisible to the host.
    let forbidden = [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateMounts",
        "MountFlags",
        "ReadWritePaths",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "ExecPaths",
        "NoExecPaths",
        "TemporaryFileSystem",
        "BindPaths",
        "BindReadOnlyPaths",
        "RootDirectory",
        "RootImage",
        "MountAPIVFS",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectProc",
        "ProcSubset",
        "DynamicUser",
        "PrivateNetwork",
        "PrivateUsers",
        "PrivateIPC",
        "ProtectHostname",
        "NetworkNamespacePath",
        "IPCNamespacePath",
        "User",
        "Group",
        "JoinsNamespaceOf",
        "LogNamespace",
        "MemoryDenyWriteExecute",
        "SystemCallFilter",
    ];
    for key in forbidden {
        assert!(get(key).is_empty(), "{key}= must not be used (see the comment in the unit)");
    }
    // FUSE needs its device if a device policy is set at all.
    if !get("DevicePolicy").is_empty() || !get("DeviceAllow").is_empty() {
        assert!(
            get("DeviceAllow").iter().any(|v| v.starts_with("/dev/fuse") && v.contains("rw")),
            "a device policy without /dev/fuse rw breaks every S3 mount"
        );
    }
}

#[test]
fn unit_file_passes_systemd_analyze_verify_with_the_built_binary() {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let bin = env!("CARGO_BIN_EXE_dms-server");
    let copy = unit
        .lines()
        .map(|l| match l.strip_prefix("ExecStart=/usr/bin/dms-server") {
            Some(rest) => format!("ExecStart={bin}{rest}"),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(copy.contains(&format!("ExecStart={bin} ")), "ExecStart was not rewritten");
    let dir = support::temp_dir("dms-unit-");
    let path = dir.path().join("dms-server.service");
    std::fs::write(&path, copy + "\n").unwrap();

    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run systemd-analyze ({e}): install the Debian package `systemd` \
                 (apt-get install -y systemd; scripts/lib/deps.sh ensure_test_infra)"
            )
        });
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify failed ({}):\n{text}", out.status);
    // verify exits 0 on unknown keys and unparsable values (it only warns), so any output
    // about the unit is a failure too.
    assert!(text.trim().is_empty(), "systemd-analyze verify warns:\n{text}");
}
