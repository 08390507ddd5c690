//! Containment with the real broker, Barbican and FUSE: a hung NFS server stalls only its own
//! targets. A backlog for one hung target larger than the AMQP prefetch is parked in the
//! journal (deliveries acked) and answered exactly once, across a restart too; twenty hung
//! targets on one server hold only that server's pool; its circuit breaker fails its mounts
//! fast, shows in `dms-ctl status`/`health`, and a probe closes it. mount(8) is a stand-in
//! that hangs as the test says (a tmpfs stands for a working NFS mount). Each test runs in
//! a private mount namespace.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::ctl::Ctl;
use e2e::host::wait_until;
use e2e::stand_in::StandIn;
use e2e::{mounted_msg, ok, runtime, s3_mount, unmount, unmounted_msg, uuid, Client, Daemon};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::mountns::{self, run_isolated_with_timeout};
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-containment-keystone-token";
const HUNG: &str = "192.0.2.10";

fn credentials() -> String {
    e2e::testfs_credentials("AKIACONTAIN", "containment-secret-value", "bucket-c")
}

fn nfs(target: &str, path: &str, server: &str) -> Value {
    e2e::nfs_mount(target, path, &format!("{server}:/exports/backup"), "hard")
}

/// A daemon under `dir` whose mount(8) is the stand-in in `mode`, with `extra` variables.
fn start(
    broker: &Broker,
    dir: &Path,
    node: &str,
    mode: &str,
    extra: &[(&'static str, &str)],
) -> (StandIn, Daemon) {
    let stand_in = StandIn::new(dir);
    stand_in.set(mode);
    let mut env = stand_in.env();
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let daemon = Daemon::start(broker, dir, node, &env);
    (stand_in, daemon)
}

fn status(ctl: &Ctl) -> Value {
    ctl.json(&["status", "--json"])
}

/// One S3 mount and unmount of `target`, answered while NFS work hangs; how long each took.
async fn s3_cycle(
    client: &mut Client,
    daemon: &Daemon,
    secret_ref: &str,
    target: &str,
) -> (Duration, Duration) {
    let path = daemon.path(target);
    let t = Instant::now();
    let reply =
        client.call(&daemon.node, &s3_mount(target, &path, secret_ref, TOKEN), &uuid()).await;
    let mounted = t.elapsed();
    assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
    let t = Instant::now();
    let reply = client.call(&daemon.node, &unmount(target, &path, "s3"), &uuid()).await;
    assert_eq!(reply, unmounted_msg(&path));
    (mounted, t.elapsed())
}

#[test]
fn a_backlog_beyond_the_prefetch_for_one_hung_target_is_parked_and_answered_once_across_a_restart()
{
    let name = "a_backlog_beyond_the_prefetch_for_one_hung_target_is_parked_and_answered_once_across_a_restart";
    run_isolated_with_timeout(name, Duration::from_secs(600), || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials());
        let dir = support::temp_dir("dms-contain-");
        let node = "contain-backlog";
        // The hung mount(8) outlives the test: only parking frees the deliveries.
        let timeout = [("DMS_NFS_MOUNT_TIMEOUT", "300")];
        let (stand_in, daemon) = start(broker, dir.path(), node, "hang", &timeout);
        let ctl = Ctl::new(&daemon, dir.path());
        let path = daemon.path("nfs-hung");
        let rt = runtime();
        let mut client = rt.block_on(Client::connect(broker));
        // 40 requests for one target (a client retrying), more than the prefetch of 32.
        let backlog: Vec<String> = (0..40).map(|_| uuid()).collect();
        let body = nfs("nfs-hung", &path, HUNG).to_string();
        for corr in &backlog {
            rt.block_on(client.send(node, body.as_bytes(), corr, true));
        }
        stand_in.wait_runs(1, &daemon);
        wait_until("every request of the backlog parked", &daemon, || {
            status(&ctl)["requests_parked"] == 40
        });
        let (mounted, unmounted) =
            rt.block_on(s3_cycle(&mut client, &daemon, &secret_ref, "s3-ok"));
        eprintln!("S3 mount {mounted:?}, unmount {unmounted:?} beside a parked backlog of 40");
        assert_eq!(stand_in.runs().len(), 1, "the backlog ran mount(8) once");
        let (code, text, _) = ctl.run(&["status"]);
        assert_eq!(code, 0);
        assert!(text.contains("parked:   40 request(s) waiting for their target"), "{text}");

        // Stop with the backlog parked: it is in the journal, not in the broker.
        let env = daemon.env.clone();
        daemon.stop();
        let (journal, _) = e2e::journal::open(&dir.path().join("journal"));
        assert_eq!(journal.inbox().unwrap().len(), 40, "every parked request is durable");
        drop(journal);

        // The next daemon resumes them; mount(8) works now. One answer per request.
        stand_in.set("ok");
        let daemon = Daemon::spawn(dir.path(), node, env);
        rt.block_on(async {
            let mut got = BTreeMap::new();
            while got.len() < backlog.len() {
                let (corr, reply) = client.reply().await;
                assert!(backlog.contains(&corr), "a reply to an unknown request {corr}: {reply}");
                assert!(got.insert(corr, reply).is_none(), "two replies to one request");
            }
            let again = tokio::time::timeout(Duration::from_secs(5), client.reply()).await;
            assert!(again.is_err(), "a reply beyond one per request: {again:?}");
            let texts: std::collections::BTreeSet<String> =
                got.values().map(|r| r.to_string()).collect();
            let mounted = ok(&format!("NFS target mounted successfully at {path}"));
            let already = ok(&format!("Already mounted at {path}"));
            let first = got.values().filter(|r| **r == mounted).count();
            let rest = got.values().filter(|r| **r == already).count();
            assert_eq!((first, rest), (1, 39), "{texts:?}\n{}", daemon.log_text());
        });
        assert!(mountns::mount_at(Path::new(&path)).is_some());
        wait_until("the inbox empty", &daemon, || status(&ctl)["requests_parked"] == 0);
        let reply = rt.block_on(client.call(node, &unmount("nfs-hung", &path, "nfs"), &uuid()));
        assert_eq!(reply, unmounted_msg(&path));
        rt.block_on(client.close());
        daemon.stop();
        let (journal, _) = e2e::journal::open(&dir.path().join("journal"));
        assert!(journal.inbox().unwrap().is_empty(), "answered requests leave the inbox");
        assert_eq!(
            stand_in.wait_gone(Duration::from_secs(5)),
            Ok(()),
            "the stop took the hung mount programs"
        );
    });
}

#[test]
fn twenty_hung_nfs_targets_hold_only_their_servers_pool_while_s3_and_other_servers_keep_working() {
    let name = "twenty_hung_nfs_targets_hold_only_their_servers_pool_while_s3_and_other_servers_keep_working";
    run_isolated_with_timeout(name, Duration::from_secs(600), || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials());
        let dir = support::temp_dir("dms-contain-");
        let node = "contain-hung";
        let timeout = [("DMS_NFS_MOUNT_TIMEOUT", "300")];
        let (stand_in, daemon) = start(broker, dir.path(), node, &format!("hang {HUNG}"), &timeout);
        let ctl = Ctl::new(&daemon, dir.path());
        let rt = runtime();
        let mut client = rt.block_on(Client::connect(broker));
        for i in 0..20 {
            let target = format!("nfs-{i}");
            let body = nfs(&target, &daemon.path(&target), HUNG).to_string();
            rt.block_on(client.send(node, body.as_bytes(), &uuid(), true));
        }
        stand_in.wait_runs(4, &daemon);
        wait_until("the twenty hung requests parked", &daemon, || {
            status(&ctl)["requests_parked"] == 20
        });
        rt.block_on(async {
            for i in 0..5 {
                let (m, u) = s3_cycle(&mut client, &daemon, &secret_ref, &format!("s3-{i}")).await;
                eprintln!("S3 cycle {i} beside 20 hung NFS targets: mount {m:?}, unmount {u:?}");
            }
            // Another NFS server is not held up by the hung one.
            let path = daemon.path("nfs-other");
            let reply = client.call(node, &nfs("nfs-other", &path, "192.0.2.20"), &uuid()).await;
            assert_eq!(reply, ok(&format!("NFS target mounted successfully at {path}")));
            let reply = client.call(node, &unmount("nfs-other", &path, "nfs"), &uuid()).await;
            assert_eq!(reply, unmounted_msg(&path));
        });
        // Only the server's pool (nfs_ops_per_server = 4) runs mount(8) against it.
        assert_eq!(stand_in.runs().len(), 4, "{}", daemon.log_text());
        rt.block_on(client.close());
        let log = daemon.stop();
        assert_eq!(
            stand_in.wait_gone(Duration::from_secs(5)),
            Ok(()),
            "the stop took the hung mount programs\n{log}"
        );
    });
}

#[test]
fn a_servers_breaker_opens_on_a_timeout_fails_its_mounts_fast_shows_in_health_and_a_probe_closes_it(
) {
    let name = "a_servers_breaker_opens_on_a_timeout_fails_its_mounts_fast_shows_in_health_and_a_probe_closes_it";
    run_isolated_with_timeout(name, Duration::from_secs(600), || {
        let broker = Broker::shared();
        let dir = support::temp_dir("dms-contain-");
        let node = "contain-breaker";
        let extra = [("DMS_NFS_MOUNT_TIMEOUT", "2"), ("DMS_NFS_BREAKER_BACKOFF", "4")];
        let (stand_in, daemon) = start(broker, dir.path(), node, &format!("hang {HUNG}"), &extra);
        let ctl = Ctl::new(&daemon, dir.path());
        let rt = runtime();
        rt.block_on(async {
            let mut client = Client::connect(broker).await;
            let path = daemon.path("nfs-a");
            let t = Instant::now();
            let reply = client.call(node, &nfs("nfs-a", &path, HUNG), &uuid()).await;
            let opened = t.elapsed();
            let msg = reply["error_msg"].as_str().unwrap_or_default().to_owned();
            assert!(msg.starts_with("NFS mount failed: "), "{reply}");
            assert!(msg.contains("did not finish"), "the deadline: {reply}");

            let st = status(&ctl);
            let breakers = st["nfs_breakers"].as_array().cloned().unwrap_or_default();
            assert_eq!(breakers.len(), 1, "{st}");
            assert_eq!(
                (&breakers[0]["server"], &breakers[0]["state"]),
                (&HUNG.into(), &"open".into())
            );
            let (code, text, _) = ctl.run(&["health"]);
            assert_eq!(code, 1, "WARNING while the breaker is open: {text}");
            assert!(text.contains(&format!("NFS server {HUNG} not answering")), "{text}");

            // Another target on the same server: answered at once, no mount(8) run.
            let path_b = daemon.path("nfs-b");
            let t = Instant::now();
            let reply = client.call(node, &nfs("nfs-b", &path_b, HUNG), &uuid()).await;
            let refused = t.elapsed();
            let msg = reply["error_msg"].as_str().unwrap_or_default();
            let expected = format!("NFS mount failed: NFS server {HUNG} is not answering (since ");
            assert!(msg.starts_with(&expected), "{reply}");
            assert!(msg.contains("did not finish"), "says why: {reply}");
            assert_eq!(stand_in.runs().len(), 1, "the refusal ran no mount(8)");
            let other = daemon.path("nfs-c");
            let reply = client.call(node, &nfs("nfs-c", &other, "192.0.2.20"), &uuid()).await;
            assert_eq!(reply, ok(&format!("NFS target mounted successfully at {other}")));

            // The server answers again; once the window is over, the next mount probes it.
            stand_in.set("ok");
            let t = Instant::now();
            let mounted = ok(&format!("NFS target mounted successfully at {path_b}"));
            let mut attempts = 0;
            loop {
                attempts += 1;
                let reply = client.call(node, &nfs("nfs-b", &path_b, HUNG), &uuid()).await;
                if reply == mounted {
                    break;
                }
                assert_eq!(reply["status"], "error", "{reply}");
                assert!(t.elapsed() < Duration::from_secs(60), "never closed: {reply}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let closed = t.elapsed();
            assert!(attempts > 1, "the window was still open when the server came back");
            assert_eq!(status(&ctl)["nfs_breakers"], serde_json::json!([]));
            let (code, text, _) = ctl.run(&["health"]);
            assert_eq!(code, 0, "{text}");
            eprintln!(
                "breaker: opened {opened:?} after the request (nfs_mount_timeout 2 s), refusal \
                 answered in {refused:?}, closed {closed:?} after the server came back \
                 ({attempts} attempts; back-off 4 s)"
            );
            for (target, path) in [("nfs-b", &path_b), ("nfs-c", &other)] {
                let reply = client.call(node, &unmount(target, path, "nfs"), &uuid()).await;
                assert_eq!(reply, unmounted_msg(path));
            }
            client.close().await;
        });
        let log = daemon.stop();
        assert_eq!(
            stand_in.wait_gone(Duration::from_secs(5)),
            Ok(()),
            "the stop took the hung mount programs\n{log}"
        );
    });
}

/// Where a parked request can die: parked and acked but not served, served and journaled
/// but still in the inbox, out of the inbox but not yet replied (the reply is lost: the
/// price of at most one), replied.
const PARKED_POINTS: &[&str] = &["park:acked", "append:Verified", "reply:unparked", "reply:sent"];
/// How long a second (duplicate) reply is waited for before "at most one" is believed.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(5);

#[test]
fn a_parked_request_killed_at_every_point_of_its_way_is_answered_at_most_once_with_one_outcome() {
    let name =
        "a_parked_request_killed_at_every_point_of_its_way_is_answered_at_most_once_with_one_outcome";
    run_isolated_with_timeout(name, Duration::from_secs(600), || {
        let broker = Broker::shared();
        let rt = runtime();
        for point in PARKED_POINTS {
            eprintln!("--- crash at {point}");
            let dir = support::temp_dir("dms-contain-");
            let node = format!("contain-crash-{}", point.replace(':', "-").to_lowercase());
            // mount(8) takes 2 s: long enough to be parked.
            let armed = [("DMS_FAILPOINT", *point)];
            let (stand_in, mut daemon) = start(broker, dir.path(), &node, "slow", &armed);
            let path = daemon.path("nfs-slow");
            let key = uuid();
            let mut client = rt.block_on(Client::connect(broker));
            let body = nfs("nfs-slow", &path, "192.0.2.30").to_string();
            rt.block_on(client.send(&node, body.as_bytes(), &key, true));
            let status = daemon.child.wait_timeout(e2e::T);
            let killed = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
            assert_eq!(killed, Some(9), "{point}: {status:?}\n{}", daemon.log_text());
            assert!(daemon.log_text().contains(&format!("failpoint {point} reached")));

            stand_in.set("ok");
            let env: Vec<_> =
                daemon.env.iter().filter(|(k, _)| k != "DMS_FAILPOINT").cloned().collect();
            let daemon = Daemon::spawn(dir.path(), &node, env);
            // Every reply, before the crash or after the restart, until the expected one came
            // (none when the crash fell between unpark and publish) and 5 s more.
            let mounted = ok(&format!("NFS target mounted successfully at {path}"));
            let want = if *point == "reply:unparked" { vec![] } else { vec![mounted] };
            let replies = rt.block_on(async {
                let mut replies = Vec::new();
                let mut deadline = tokio::time::Instant::now() + e2e::T;
                loop {
                    if replies.len() >= want.len() {
                        deadline = deadline.min(tokio::time::Instant::now() + DUPLICATE_WINDOW);
                    }
                    match tokio::time::timeout_at(deadline, client.reply()).await {
                        Ok((corr, reply)) => {
                            assert_eq!(corr, key, "{reply}");
                            replies.push(reply);
                        }
                        Err(_) => break replies,
                    }
                }
            });
            assert_eq!(replies, want, "{point}\n{}", daemon.log_text());
            let reply =
                rt.block_on(client.call(&node, &unmount("nfs-slow", &path, "nfs"), &uuid()));
            assert_eq!(reply, unmounted_msg(&path), "{point}");
            rt.block_on(client.close());
            daemon.stop();
            let records = e2e::journal::history(&dir.path().join("journal"), "nfs-slow");
            let outcomes = e2e::journal::outcomes_per_key(&records);
            assert_eq!(outcomes.get(&key), Some(&1), "{point}: one outcome for the request");
            let (journal, replay) = e2e::journal::open(&dir.path().join("journal"));
            assert!(replay.problems.is_empty(), "{point}: {:?}", replay.problems);
            assert!(journal.inbox().unwrap().is_empty(), "{point}: the inbox is empty");
        }
    });
}

/// What a backup writer sees when it writes a file into `path`.
fn write_into(path: &str) -> std::io::Result<()> {
    std::fs::write(Path::new(path).join("backup-0001.qcow2"), b"backup data")
}

#[test]
fn on_ext4_a_bare_mount_point_refuses_writes_and_its_helper_mounts_over_it_and_a_death_or_detach_leaves_it_guarded(
) {
    let name = "on_ext4_a_bare_mount_point_refuses_writes_and_its_helper_mounts_over_it_and_a_death_or_detach_leaves_it_guarded";
    run_isolated_with_timeout(name, Duration::from_secs(300), || {
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials());
        let dir = support::temp_dir("dms-guard-");
        // The mount base on a real ext4 (a loop-mounted image in this namespace).
        let _disk =
            mountns::loop_ext4(&dir.path().join("disk.img"), 64 << 20, &dir.path().join("mounts"));
        // Healing off: what a target whose helper died and was not replaced leaves.
        let fast =
            [("DMS_RESYNC_INTERVAL", "0.5".to_owned()), ("DMS_HEAL_ATTEMPTS", "0".to_owned())];
        let daemon = Daemon::start(Broker::shared(), dir.path(), "contain-guard", &fast);
        let rt = runtime();
        let mut client = rt.block_on(Client::connect(Broker::shared()));
        let (dies, detached) = ("dies", "detached");
        let refused = |path: &str| {
            let e = write_into(path).expect_err("a write into the bare mount point");
            assert_eq!(e.raw_os_error(), Some(libc_eperm()), "{path}: {e}");
            assert!(Path::new(path).is_dir(), "{path} stays where the writer looks");
        };
        rt.block_on(async {
            for target in [dies, detached] {
                let path = daemon.path(target);
                let reply = client
                    .call(&daemon.node, &s3_mount(target, &path, &secret_ref, TOKEN), &uuid())
                    .await;
                assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
                e2e::host::mounted(&path, "fuse.dms-testfs");
                write_into(&path)
                    .expect("the helper's mount over the guarded directory takes writes");
            }
        });

        // A helper dies: its mount is cleaned up and the directory refuses writes.
        let path = daemon.path(dies);
        e2e::host::sigkill(e2e::host::pid_of(&daemon, dies), "the helper");
        wait_until("the dead helper's mount to be cleaned up", &daemon, || {
            mountns::mount_at(Path::new(&path)).is_none()
        });
        refused(&path);
        // A lazy detach behind the daemon's back: refused at once, whatever the daemon does.
        let other = daemon.path(detached);
        e2e::host::lazy_unmount(&other);
        refused(&other);
        wait_until("the detached target's helper to be stopped", &daemon, || {
            e2e::host::helpers_serving(&other).is_empty()
        });
        refused(&other);

        // Mounting again mounts over the guarded directory; an unmount on request removes it.
        rt.block_on(async {
            let reply = client
                .call(&daemon.node, &s3_mount(dies, &path, &secret_ref, TOKEN), &uuid())
                .await;
            assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
            write_into(&path).expect("mounted again: writes reach the bucket");
            let reply = client.call(&daemon.node, &unmount(dies, &path, "s3"), &uuid()).await;
            assert_eq!(reply, unmounted_msg(&path));
        });
        // After the answer: an unmount on request removes the mount point.
        wait_until("the unmounted target's mount point to be removed", &daemon, || {
            !Path::new(&path).exists()
        });
        assert!(Path::new(&other).is_dir(), "a lost target's directory stays, guarded");
        daemon.stop();
    });
}

/// EPERM, what the kernel answers for an immutable directory.
fn libc_eperm() -> i32 {
    rustix::io::Errno::PERM.raw_os_error()
}

/// Issue 30, item 4: a parked S3 mount that still has to fetch its credentials is served
/// after a SIGKILL of the daemon, with the keystone token the kernel keyring kept for it
/// (never a file, the journal or a log line). Target `t` is busy with a mount whose helper
/// takes 6 s to mount; an unmount and a second mount of `t` wait behind it, parked.
#[test]
fn a_parked_s3_mount_keeps_its_token_across_a_sigkill_and_is_served_after_the_restart() {
    let name = "a_parked_s3_mount_keeps_its_token_across_a_sigkill_and_is_served_after_the_restart";
    run_isolated_with_timeout(name, Duration::from_secs(300), || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials());
        let dir = support::temp_dir("dms-contain-");
        let node = "contain-token";
        let slow = e2e::faulty_helper(dir.path(), "mount-delay=6000");
        let extra = [("DMS_S3VAULTFUSE_BIN", slow.display().to_string())];
        let mut daemon = Daemon::start(broker, dir.path(), node, &extra);
        let ctl = Ctl::new(&daemon, dir.path());
        let path = daemon.path("t");
        let rt = runtime();
        let mut client = rt.block_on(Client::connect(broker));
        let asks = [
            ("first mount", s3_mount("t", &path, &secret_ref, TOKEN), mounted_msg(&path)),
            ("unmount", unmount("t", &path, "s3"), unmounted_msg(&path)),
            ("second mount", s3_mount("t", &path, &secret_ref, TOKEN), mounted_msg(&path)),
        ];
        let mut expected = BTreeMap::new();
        // One at a time, each parked before the next is sent: a restart resumes parked
        // requests in the order they were parked.
        for (n, (what, body, reply)) in asks.iter().enumerate() {
            let corr = uuid();
            rt.block_on(client.send(node, body.to_string().as_bytes(), &corr, true));
            expected.insert(corr, (*what, reply.clone()));
            wait_until(&format!("the {what} parked"), &daemon, || {
                status(&ctl)["requests_parked"] == n + 1
            });
        }
        daemon.child.signal_group(rustix::process::Signal::KILL);
        assert!(daemon.child.wait_timeout(e2e::T).is_some(), "the daemon did not die");
        let killed_log = daemon.log_text();

        let daemon = Daemon::spawn(dir.path(), node, daemon.env.clone());
        rt.block_on(async {
            let mut got = BTreeMap::new();
            while got.len() < expected.len() {
                let wait = tokio::time::timeout(Duration::from_secs(60), client.reply()).await;
                let (corr, reply) = wait.unwrap_or_else(|_| {
                    panic!("replies so far {got:?}\n{}", daemon.log_text());
                });
                let (what, want) = &expected[&corr];
                assert_eq!(&reply, want, "the {what}\n{}", daemon.log_text());
                assert!(got.insert(corr, reply).is_none(), "two replies to one request");
            }
        });
        let log = daemon.log_text();
        assert!(!log.contains("without its keystone token"), "{log}");
        let reply = rt.block_on(client.call(node, &unmount("t", &path, "s3"), &uuid()));
        assert_eq!(reply, unmounted_msg(&path));
        rt.block_on(client.close());
        let log = daemon.stop();
        for (what, text) in [("killed daemon's log", &killed_log), ("restarted daemon's log", &log)]
        {
            assert!(!text.contains(TOKEN), "the token is in the {what}");
        }
        let (journal, _) = e2e::journal::open(&dir.path().join("journal"));
        assert!(journal.inbox().unwrap().is_empty(), "answered requests leave the inbox");
        let ours = format!("dms-parked-token:{}:", journal.id());
        drop(journal);
        for file in std::fs::read_dir(dir.path().join("journal")).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap_or_default();
            let found = bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes());
            assert!(!found, "the token is in the journal's files");
        }
        let keys = std::fs::read_to_string("/proc/keys").unwrap();
        assert!(!keys.contains(&ours), "a kept token outlived its request: {keys}");
    });
}
