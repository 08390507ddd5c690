//! A full journal filesystem loses nothing: with the journal on a small tmpfs (in the
//! test's private mount namespace) filled to the last byte, a mount request is neither
//! acked nor answered, intake pauses with a CRITICAL `dms-ctl health` and a log line that
//! says why, and once space returns the daemon restarts in place (same PID), reopens the
//! journal and answers the request exactly once; the target mounted before keeps its
//! helper, and `dms-journal verify` finds no half-written record. Real broker, Barbican
//! and FUSE.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::ctl::Ctl;
use e2e::host::{helpers_serving, wait_until, HelperReaper};
use e2e::{mounted_msg, runtime, s3_mount, unmount, unmounted_msg, uuid, Client, Daemon};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::mountns::run_isolated_with_timeout;
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-full-disk-keystone-token";

/// Fill the filesystem of `path`'s directory: write zeros until it refuses.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let block = vec![0u8; chunk];
        while file.write_all(&block).and_then(|()| file.sync_data()).is_ok() {}
    }
}

#[test]
fn a_full_journal_filesystem_pauses_intake_loses_nothing_and_resumes_when_space_returns() {
    let name =
        "a_full_journal_filesystem_pauses_intake_loses_nothing_and_resumes_when_space_returns";
    run_isolated_with_timeout(name, Duration::from_secs(600), || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let credentials = e2e::testfs_credentials("AKIAFULL", "full-disk-secret-value", "full");
        let secret_ref = barbican.store_secret(TOKEN, &credentials);
        let dir = support::temp_dir("dms-full-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let fs = dir.path().join("journalfs");
        std::fs::create_dir(&fs).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=24m", "journalfs"])
            .arg(&fs)
            .status()
            .unwrap();
        assert!(mounted.success(), "a tmpfs for the journal");
        let journal = fs.join("journal");
        let extra = [("DMS_JOURNAL_PATH", journal.display().to_string())];
        let node = "full-disk";
        let mut daemon = Daemon::start(broker, dir.path(), node, &extra);
        let ctl = Ctl::new(&daemon, dir.path());
        let pid = daemon.child.pid();
        let rt = runtime();
        let mut client = rt.block_on(Client::connect(broker));
        let (path1, path2) = (daemon.path("before"), daemon.path("cycle"));
        let reply = rt.block_on(client.call(
            node,
            &s3_mount("before", &path1, &secret_ref, TOKEN),
            &uuid(),
        ));
        assert_eq!(reply, mounted_msg(&path1));
        let helper = helpers_serving(&path1);

        // The journal's filesystem is full. Space the journal had already taken still holds
        // some records, so mount/unmount cycles go on until one request cannot be journaled.
        let filler = fs.join("filler");
        fill(&filler);
        let (mount, unmount_body) =
            (s3_mount("cycle", &path2, &secret_ref, TOKEN), unmount("cycle", &path2, "s3"));
        let (key, expected) = rt.block_on(async {
            for cycle in 0..20_000 {
                for (body, reply) in
                    [(&mount, mounted_msg(&path2)), (&unmount_body, unmounted_msg(&path2))]
                {
                    let key = uuid();
                    client.send(node, body.to_string().as_bytes(), &key, true).await;
                    match tokio::time::timeout(Duration::from_secs(5), client.reply()).await {
                        Ok((corr, got)) => assert_eq!((corr, got), (key, reply), "cycle {cycle}"),
                        Err(_) => return (key, reply),
                    }
                }
            }
            panic!("the journal never ran out of space\n{}", daemon.log_text());
        });
        daemon.wait_log("intake paused: the journal cannot be written");
        let log = daemon.log_text();
        assert!(log.contains("No space left on device"), "the log line says why\n{log}");
        let (code, text, _) = ctl.run(&["health"]);
        assert_eq!(code, 2, "CRITICAL while paused: {text}");
        assert!(text.contains("intake paused: the journal cannot be written"), "{text}");
        assert!(text.contains("No space left on device"), "{text}");
        let early = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(3), client.reply()).await });
        assert!(early.is_err(), "nothing is answered while paused: {early:?}");

        // Space returns: the daemon restarts in place and answers the request once.
        std::fs::remove_file(&filler).unwrap();
        let freed = std::time::Instant::now();
        wait_until("the daemon restarted in place and consumes again", &daemon, || {
            daemon.log_text().matches("consuming dms.full-disk").count() >= 2
        });
        assert_eq!(daemon.child.pid(), pid, "the same process");
        let log = daemon.log_text();
        assert!(log.contains("the journal's filesystem takes writes again"), "{log}");
        assert!(log.contains("re-executing to reopen the journal"), "{log}");
        assert!(daemon.child.try_wait().is_none(), "still running");
        rt.block_on(async {
            let (corr, reply) = client.reply().await;
            assert_eq!((corr.as_str(), reply), (key.as_str(), expected));
            eprintln!("answered {:?} after space returned", freed.elapsed());
            let again = tokio::time::timeout(Duration::from_secs(3), client.reply()).await;
            assert!(again.is_err(), "a second reply: {again:?}");
        });
        assert_eq!(helpers_serving(&path1), helper, "the earlier mount kept its helper");
        let (code, text, _) = ctl.run(&["health"]);
        assert_eq!(code, 0, "{text}");
        for (target, path) in [("before", &path1), ("cycle", &path2)] {
            let reply = rt.block_on(client.call(node, &unmount(target, path, "s3"), &uuid()));
            let gone = [unmounted_msg(path), e2e::ok(&format!("Target not mounted at {path}"))];
            assert!(gone.contains(&reply), "{reply}");
        }
        rt.block_on(client.close());
        daemon.stop();
        let (code, out, err) = e2e::journal::tool(&journal, &["verify"]);
        assert_eq!(code, 0, "no half-written record: {out}{err}");
        let records = e2e::journal::history(&journal, "cycle");
        assert_eq!(e2e::journal::outcomes_per_key(&records).get(&key), Some(&1));
    });
}

/// Damage to the journal's files: the daemon refuses to start, naming the damage, and
/// `dms-journal verify` reports it. Two kinds: sled's `conf` overwritten, and a run of bytes
/// in the middle of its `db` file (the newest history) overwritten.
#[test]
fn a_corrupted_journal_stops_the_daemon_with_the_damage_named_and_verify_reports_it() {
    let name = "a_corrupted_journal_stops_the_daemon_with_the_damage_named_and_verify_reports_it";
    run_isolated_with_timeout(name, Duration::from_secs(600), || {
        let broker = Broker::shared();
        for damage in ["conf", "db"] {
            let dir = support::temp_dir("dms-corrupt-");
            let node = format!("corrupt-{damage}");
            let daemon = Daemon::start(broker, dir.path(), &node, &[]);
            let rt = runtime();
            // Some history: NFS-free, S3-free requests that still journal (unmounts of
            // nothing are answered and recorded).
            for i in 0..20 {
                let target = format!("t-{i}");
                let reply = e2e::call(
                    &rt,
                    &daemon,
                    &unmount(&target, &daemon.path(&target), "s3"),
                    &uuid(),
                );
                assert_eq!(reply["status"], "success", "{reply}");
            }
            let env = daemon.env.clone();
            daemon.stop();
            let journal = dir.path().join("journal");
            let file = journal.join(damage);
            let mut bytes = std::fs::read(&file).unwrap();
            let len = bytes.len();
            let (from, to) = match damage {
                "conf" => (0, len),
                _ => (len / 2, (len / 2 + 4096).min(len)),
            };
            bytes[from..to].iter_mut().for_each(|b| *b = 0x5a);
            std::fs::write(&file, &bytes).unwrap();

            let mut refused = Daemon::launch(dir.path(), &node, env);
            let status = refused.child.wait_timeout(e2e::T).expect("the daemon refuses to start");
            assert!(!status.success(), "{damage}: it started");
            let log = refused.log_text();
            assert!(!log.contains("consuming"), "{damage}: it served requests: {log}");
            assert!(
                log.contains(&journal.display().to_string()),
                "{damage}: names the journal: {log}"
            );
            let named = match damage {
                "conf" => "is damaged: sled cannot read its own files",
                _ => "lost history: records up to seq",
            };
            assert!(log.contains(named), "{damage}: names the damage: {log}");
            let (code, out, err) = e2e::journal::tool(&journal, &["verify"]);
            assert_ne!(code, 0, "{damage}: verify passed: {out}{err}");
            let said = match damage {
                "conf" => "is damaged",
                _ => "the newest history is lost",
            };
            assert!(format!("{out}{err}").contains(said), "{damage}: {out}{err}");
            eprintln!("{damage}: daemon: {}", log.lines().last().unwrap_or_default());
            eprintln!("{damage}: verify: {}{}", out.trim(), err.trim());
        }
    });
}
