//! What an operator reads: the daemon's log as a file (no colour, the seed's lines, plain
//! fields, `Mount failed` for a failed request, nothing secret), as JSON lines, and as
//! native journal entries under systemd (decoded from a journal socket this test binds
//! itself, inside its private mount namespace).
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::{err, mounted_msg, runtime, s3_mount, unmount, unmounted_msg, uuid, Client, Daemon};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::mountns::run_isolated;
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-logs-keystone-token";
const SECRET_KEY: &str = "logs-secret-key-value";
/// A password a requester put into a `secret_ref`: it must never come back.
const URL_PASSWORD: &str = "url-hunter2-password";

fn credentials(bucket: &str) -> String {
    e2e::testfs_credentials("AKIALOGS", SECRET_KEY, bucket)
}

/// Every file under `dir` (the journal), as bytes, concatenated.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_log_file_has_no_colour_the_seeds_lines_plain_fields_mount_failed_and_no_secret() {
    run_isolated(
        "a_log_file_has_no_colour_the_seeds_lines_plain_fields_mount_failed_and_no_secret",
        || {
            let broker = Broker::shared();
            let barbican = Barbican::shared();
            let secret_ref = barbican.store_secret(TOKEN, &credentials("bucket-logs"));
            let dir = support::temp_dir("dms-logs-");
            let _reaper = e2e::host::HelperReaper(dir.path().join("pids"));
            let daemon = Daemon::start(broker, dir.path(), "logs-text", &[]);
            let (path, other) = (daemon.path("lg-1"), daemon.path("lg-2"));
            let with_password = secret_ref.replacen("://", &format!("://admin:{URL_PASSWORD}@"), 1);
            let (mount_key, unmount_key) = (uuid(), uuid());
            let mut pid = 0;
            runtime().block_on(async {
            let mut client = Client::connect(broker).await;
            let reply = client.call(&daemon.node, &s3_mount("lg-1", &path, &secret_ref, TOKEN), &mount_key).await;
            assert_eq!(reply, mounted_msg(&path));
            pid = std::fs::read_to_string(daemon.pid_dir.join("lg-1.pid")).unwrap().trim().parse().unwrap();
            let reply = client.call(&daemon.node, &unmount("lg-1", &path, "s3"), &unmount_key).await;
            assert_eq!(reply, unmounted_msg(&path));
            let reply = client.call(&daemon.node, &s3_mount("lg-2", &other, &secret_ref, "invalid-token"), &uuid()).await;
            assert_eq!(reply, err("Failed to fetch credentials: Failed to fetch secret from Barbican: Invalid or expired Keystone token. Token authentication failed."));
            let reply = client.call(&daemon.node, &s3_mount("lg-3", &daemon.path("lg-3"), &with_password, TOKEN), &uuid()).await;
            let text = reply["error_msg"].as_str().unwrap();
            assert!(text.starts_with("Invalid secret_ref 'http://admin:***@"), "{reply}");
            assert!(!reply.to_string().contains(URL_PASSWORD), "{reply}");
            client.close().await;
        });
            let journal = daemon.journal.clone();
            let pid_file = daemon.pid_dir.join("lg-1.pid").display().to_string();
            let log = daemon.stop();
            assert!(!log.contains('\u{1b}'), "an escape sequence in a log file:\n{log}");
            // The seed's lines, in its words and in its order.
            let seed = [
                "INFO request{target_id=lg-1".to_owned(),
                "Spawning s3vaultfuse for target lg-1".to_owned(),
                "✓ s3vaultfuse spawned successfully for target lg-1".to_owned(),
                format!("  PID: {pid}"),
                format!("  Mount path: {path}"),
                format!("  PID file: {pid_file}"),
                "  Total tracked processes: 1".to_owned(),
                format!("Mount done for target lg-1: S3 target mounted successfully at {path}"),
                // Answered once the mount is detached; the helper is stopped after that.
                format!("Unmount done for target lg-1: Target unmounted successfully from {path}"),
                "Killing s3vaultfuse process for target lg-1".to_owned(),
                format!("  PID: {pid}"),
                // A detached helper often exits by itself (its FUSE connection ends) before
                // it is signalled: its uptime is then unknown.
                "  Uptime: ".to_owned(),
                "✓ s3vaultfuse process killed for target lg-1".to_owned(),
                format!("✓ PID file deleted: {pid_file}"),
            ];
            let mut rest = log.as_str();
            for line in &seed {
                let at = rest
                    .find(line.as_str())
                    .unwrap_or_else(|| panic!("{line:?} missing (in order) from:\n{log}"));
                rest = &rest[at + line.len()..];
            }
            // Span fields are plain values: the request's own key, no Rust debug structs.
            assert!(log.contains(&format!("request_key={mount_key}")), "{log}");
            assert!(log.contains(&format!("helper_pid={pid}")), "{log}");
            for debug in ["Some(", "RequestKey(", "TargetId(", "\"lg-1\""] {
                assert!(!log.contains(debug), "{debug} in the log:\n{log}");
            }
            // The seed's runbook: `grep "Mount failed"`, with the target, the reason and the time.
            let failed: Vec<&str> = log.lines().filter(|l| l.contains("Mount failed")).collect();
            assert!(
            failed.iter().any(|l| l.contains("ERROR")
                && l.contains("Mount failed for target lg-2: Failed to fetch credentials: Failed to fetch secret from Barbican: Invalid or expired Keystone token. Token authentication failed. (after ")
                && l.contains("elapsed_ms=")),
            "{failed:?}"
        );
            assert!(
                failed
                    .iter()
                    .any(|l| l.contains("Mount failed for target lg-3: Invalid secret_ref")),
                "{failed:?}"
            );
            for secret in [TOKEN, SECRET_KEY, URL_PASSWORD] {
                assert!(!log.contains(secret), "{secret} reached the log");
                assert!(!contains(&all_bytes(&journal), secret), "{secret} reached the journal");
            }
        },
    );
}

#[test]
fn json_log_format_writes_one_object_per_line_with_the_request_fields() {
    run_isolated("json_log_format_writes_one_object_per_line_with_the_request_fields", || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials("bucket-json"));
        let dir = support::temp_dir("dms-logs-");
        let _reaper = e2e::host::HelperReaper(dir.path().join("pids"));
        let daemon =
            Daemon::start(broker, dir.path(), "logs-json", &[("DMS_LOG_FORMAT", "json".into())]);
        let path = daemon.path("js-1");
        let key = uuid();
        runtime().block_on(async {
            let mut client = Client::connect(broker).await;
            let reply =
                client.call(&daemon.node, &s3_mount("js-1", &path, &secret_ref, TOKEN), &key).await;
            assert_eq!(reply, mounted_msg(&path));
            let reply = client.call(&daemon.node, &unmount("js-1", &path, "s3"), &uuid()).await;
            assert_eq!(reply, unmounted_msg(&path));
            client.close().await;
        });
        let log = daemon.stop();
        let lines: Vec<Value> = log
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect();
        assert!(lines.iter().all(|v| v["timestamp"].is_string()
            && v["level"].is_string()
            && v["message"].is_string()));
        let done = lines
            .iter()
            .find(|v| v["message"].as_str().unwrap().starts_with("Mount done for target js-1"))
            .unwrap_or_else(|| panic!("no Mount done line:\n{log}"));
        assert_eq!(done["level"], "INFO");
        assert_eq!(done["target_id"], "js-1");
        assert_eq!(done["request_key"], key.as_str());
        assert_eq!(done["action"], "mount");
        assert_eq!(done["outcome"], "mounted");
        assert!(done["helper_pid"].as_u64().is_some_and(|p| p > 1), "{done}");
        assert!(done["elapsed_ms"].is_u64(), "{done}");
        assert!(lines
            .iter()
            .any(|v| v["message"] == "Spawning s3vaultfuse for target js-1"
                && v["target_id"] == "js-1"));
    });
}

/// One native-protocol datagram: `NAME=value\n`, or `NAME\n` + 64-bit LE length + bytes +
/// `\n` for values that may hold newlines.
fn decode_entry(mut data: &[u8]) -> BTreeMap<String, Vec<String>> {
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while !data.is_empty() {
        let nl = data.iter().position(|b| *b == b'\n').expect("a field ends with a newline");
        let line = &data[..nl];
        let (name, value, rest) = match line.iter().position(|b| *b == b'=') {
            Some(eq) => (&line[..eq], line[eq + 1..].to_vec(), &data[nl + 1..]),
            None => {
                let after = &data[nl + 1..];
                let len = u64::from_le_bytes(after[..8].try_into().unwrap()) as usize;
                let value = after[8..8 + len].to_vec();
                assert_eq!(after[8 + len], b'\n', "a binary field ends with a newline");
                (line, value, &after[8 + len + 1..])
            }
        };
        let name = String::from_utf8(name.to_vec()).unwrap();
        fields.entry(name).or_default().push(String::from_utf8(value).unwrap());
        data = rest;
    }
    fields
}

type Entry = BTreeMap<String, Vec<String>>;

fn one<'a>(entry: &'a Entry, name: &str) -> &'a str {
    entry.get(name).and_then(|v| v.first()).map_or("", String::as_str)
}

#[test]
fn under_systemd_the_daemon_writes_native_journal_entries_with_the_request_fields() {
    run_isolated(
        "under_systemd_the_daemon_writes_native_journal_entries_with_the_request_fields",
        || {
            let broker = Broker::shared();
            let barbican = Barbican::shared();
            let secret_ref = barbican.store_secret(TOKEN, &credentials("bucket-journal"));
            // The journal's socket, in this test's namespace only: a tmpfs over /run.
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "dms-test-run", "/run"])
                .status()
                .unwrap();
            assert!(status.success(), "mount a tmpfs over /run in the private namespace");
            std::fs::create_dir_all("/run/systemd/journal").unwrap();
            let socket = UnixDatagram::bind("/run/systemd/journal/socket").unwrap();
            let entries: Arc<Mutex<Vec<Entry>>> = Arc::default();
            let sink = Arc::clone(&entries);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = socket.recv(&mut buf) {
                    if n > 0 {
                        sink.lock().unwrap().push(decode_entry(&buf[..n]));
                    }
                }
            });
            let wait_for = |what: &str, pred: &dyn Fn(&Entry) -> bool| {
                support::wait_for(what, e2e::T, || {
                    entries.lock().unwrap().iter().find(|e| pred(e)).cloned()
                })
                .unwrap_or_else(|e| panic!("{e}: {:#?}", entries.lock().unwrap()))
            };

            let dir = support::temp_dir("dms-logs-");
            let _reaper = e2e::host::HelperReaper(dir.path().join("pids"));
            // stderr is a file here; JOURNAL_STREAM names it, as systemd names its stream socket.
            let log = dir.path().join("stderr.log");
            std::fs::write(&log, b"").unwrap();
            let meta = std::fs::metadata(&log).unwrap();
            let env = e2e::standard_env(
                broker,
                dir.path(),
                "logs-journal",
                &e2e::testfs_bin(),
                "info",
                &[("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))],
            );
            let daemon = Daemon::launch_logging_to("logs-journal", env, log);
            wait_for("the daemon to consume", &|e| one(e, "MESSAGE").contains("consuming"));
            let path = daemon.path("jr-1");
            let key = uuid();
            runtime().block_on(async {
                let mut client = Client::connect(broker).await;
                let reply = client
                    .call(&daemon.node, &s3_mount("jr-1", &path, &secret_ref, TOKEN), &key)
                    .await;
                assert_eq!(reply, mounted_msg(&path));
                let reply = client.call(&daemon.node, &unmount("jr-1", &path, "s3"), &uuid()).await;
                assert_eq!(reply, unmounted_msg(&path));
                let reply = client
                    .call(
                        &daemon.node,
                        &s3_mount("jr-2", &daemon.path("jr-2"), &secret_ref, "invalid-token"),
                        &uuid(),
                    )
                    .await;
                assert_eq!(reply["status"], "error");
                client.close().await;
            });
            let done = wait_for("the Mount done entry", &|e| {
                one(e, "MESSAGE").starts_with("Mount done for target jr-1")
            });
            assert_eq!(one(&done, "TARGET_ID"), "jr-1");
            assert_eq!(one(&done, "REQUEST_KEY"), key);
            assert_eq!(one(&done, "ACTION"), "mount");
            assert_eq!(one(&done, "OUTCOME"), "mounted");
            assert!(one(&done, "HELPER_PID").parse::<u32>().is_ok_and(|p| p > 1), "{done:?}");
            assert_eq!(one(&done, "PRIORITY"), "6");
            assert_eq!(one(&done, "SYSLOG_IDENTIFIER"), "dms-server");
            let failed = wait_for("the Mount failed entry", &|e| {
                one(e, "MESSAGE").starts_with("Mount failed for target jr-2")
            });
            assert_eq!((one(&failed, "PRIORITY"), one(&failed, "OUTCOME")), ("3", "failed"));
            assert_eq!(one(&failed, "TARGET_ID"), "jr-2");
            wait_for("the Unmount done entry", &|e| {
                one(e, "MESSAGE").starts_with("Unmount done for target jr-1")
            });
            // The helper is stopped after the unmount's answer: its lines come last.
            wait_for("the helper killed entry", &|e| {
                one(e, "MESSAGE") == "✓ s3vaultfuse process killed for target jr-1"
            });
            // `journalctl TARGET_ID=jr-1` tells the target's story, the seed's lines included.
            let story: Vec<String> = entries
                .lock()
                .unwrap()
                .iter()
                .filter(|e| one(e, "TARGET_ID") == "jr-1")
                .map(|e| one(e, "MESSAGE").to_owned())
                .collect();
            for line in [
                "Spawning s3vaultfuse for target jr-1",
                "✓ s3vaultfuse spawned successfully for target jr-1",
                "Killing s3vaultfuse process for target jr-1",
                "✓ s3vaultfuse process killed for target jr-1",
            ] {
                assert!(story.iter().any(|m| m == line), "{line:?} not in the story: {story:#?}");
            }
            let text = daemon.stop();
            assert!(!text.contains("Mount done"), "the lines went to stderr as well:\n{text}");
            let all = format!("{:?}", entries.lock().unwrap());
            assert!(
                !all.contains(TOKEN) && !all.contains(SECRET_KEY),
                "a secret reached the journal"
            );
            // Give the daemon's last datagrams a moment; the reader thread ends with the test.
            std::thread::sleep(Duration::from_millis(10));
        },
    );
}
