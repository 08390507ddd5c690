//! Healing end to end on the real S3 path (issue 29, "Prove it"): Barbican credentials for
//! moto, the s3fs-based s3vaultfuse stand-in, the real broker, real FUSE, each test in a
//! private mount namespace. A helper SIGKILLed under a writer is replaced: the path serves
//! again through one new helper that its PID file names, a file written after the heal
//! reaches the bucket, the journal tells the heal record by record, and the requester's
//! answers stay "mounted". The same holds after a daemon restart, where the replacement's
//! environment is read from the adopted helper (Barbican is not asked again).
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::heal::{ends_with_one_heal, heal_times};
use e2e::host::{alive, mounted, not_mounted, pid_of, processes_with_arg, sigkill, HelperReaper};
use e2e::journal::{event_names, history};
use e2e::{call, mounted_msg, ok, runtime, s3_mount, unmount, unmounted_msg, uuid, Daemon};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::mountns::run_isolated_with_timeout;
use support::{Barbican, Broker, S3};

const TOKEN: &str = "gAAAAAB-heal-keystone-token";
const LIMIT: Duration = Duration::from_secs(300);
/// Deaths to heals: the first death in a window is healed at once (no backoff).
const SETTLE: Duration = Duration::from_secs(60);

/// Writes `w-<n>` files into the mount, one every 50 ms, until dropped; counts the writes
/// that succeeded. A backup job's writer, as far as the mount can tell.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(path: &str) -> Writer {
        let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (s, w, dir) = (Arc::clone(&stop), Arc::clone(&written), path.to_owned());
        let thread = std::thread::spawn(move || {
            for n in 0.. {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let file = Path::new(&dir).join(format!("w-{n:05}"));
                if std::fs::write(&file, format!("write {n}")).is_ok() {
                    w.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Writer { stop, written, thread: Some(thread) }
    }

    fn written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    /// Wait (at most [`SETTLE`]) until more than `than` writes succeeded.
    fn wait_beyond(&self, than: usize, daemon: &Daemon) {
        let more = support::wait_for("the writer's writes to succeed", SETTLE, || {
            (self.written() > than).then_some(())
        });
        assert!(more.is_ok(), "{more:?}: {} writes\n{}", self.written(), daemon.log_text());
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SIGKILL `target`'s helper under a writer and prove the heal: a new s3fs serves the
/// path (the only process serving it, named by the PID file), the writer's writes succeed
/// again, a file written after the heal reaches the bucket, the original request keeps its
/// answer and a new one is told "Already mounted". Prints the heal's `heal_ms`.
fn kill_and_prove_healed(daemon: &Daemon, s3: &S3, target: &str, original: &(String, String)) {
    let path = daemon.path(target);
    let rt = runtime();
    let old = pid_of(daemon, target);
    let writer = Writer::start(&path);
    writer.wait_beyond(3, daemon);
    let heals_before = heal_times(daemon, target).len();
    sigkill(old, "the s3fs helper");
    let healed = support::wait_for("the heal", SETTLE, || {
        (heal_times(daemon, target).len() > heals_before).then_some(())
    });
    assert!(healed.is_ok(), "{healed:?}\n{}", daemon.log_text());
    let new = pid_of(daemon, target);
    assert_ne!(new, old, "the PID file still names the dead helper");
    assert!(alive(new), "the PID file names no live process");
    mounted(&path, "fuse.s3fs");
    assert_eq!(processes_with_arg(&path), [new], "exactly one helper serves {path}");

    let after_heal = writer.written();
    writer.wait_beyond(after_heal + 3, daemon);
    drop(writer);
    let key = format!("after-heal-{}.img", uuid());
    let data: Vec<u8> = (0..32 * 1024u32).map(|i| (i % 241) as u8).collect();
    let file = Path::new(&path).join(&key);
    std::fs::write(&file, &data).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    std::fs::File::open(&file).unwrap().sync_all().unwrap();
    let landed = support::wait_for("the file written after the heal to land", SETTLE, || {
        s3.list_keys().contains(&key).then_some(())
    });
    assert!(landed.is_ok(), "{landed:?}: {:?}\n{}", s3.list_keys(), daemon.log_text());
    assert_eq!(s3.get_object(&key).as_deref(), Some(&data[..]));

    let (corr, body) = original;
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(call(&rt, daemon, &body, corr), mounted_msg(&path), "the original answer");
    let again = call(&rt, daemon, &body, &uuid());
    assert_eq!(again, ok(&format!("Already mounted at {path}")), "{}", daemon.log_text());
    let took = heal_times(daemon, target);
    println!("{target}: healed {} ms after the death was noticed", took.last().unwrap());
}

/// Unmount `target`, stop the daemon, and check the journal: one heal after the mount.
fn unmount_and_check_journal(daemon: Daemon, target: &str) {
    let path = daemon.path(target);
    let reply = call(&runtime(), &daemon, &unmount(target, &path, "s3"), &uuid());
    assert_eq!(reply, unmounted_msg(&path), "{}", daemon.log_text());
    not_mounted(&path);
    assert_eq!(daemon.pid_files_after_cleanup(), Vec::<String>::new());
    assert!(processes_with_arg(&path).is_empty(), "an s3fs process is left");
    let journal = daemon.journal.clone();
    let log = daemon.stop();
    assert!(!log.contains(TOKEN), "the token reached the log");
    let records = history(&journal, target);
    let names = event_names(&records);
    let unmounting = ["Answered", "UnmountRequested", "Detached", "Cleaned"];
    assert!(ends_with_one_heal(&names, &unmounting), "journaled: {names:?}");
    assert_eq!(names.iter().filter(|n| **n == "HelperDied").count(), 1, "{names:?}");
}

fn start(broker: &Broker, dir: &Path, node: &str) -> Daemon {
    let helper = support::s3vaultfuse_s3fs().display().to_string();
    Daemon::start(broker, dir, node, &[("DMS_S3VAULTFUSE_BIN", helper)])
}

/// Mount `target` through `daemon`; the request's correlation id and body.
fn mount(daemon: &Daemon, target: &str, secret_ref: &str) -> (String, String) {
    let path = daemon.path(target);
    let (corr, body) = (uuid(), s3_mount(target, &path, secret_ref, TOKEN));
    let reply = call(&runtime(), daemon, &body, &corr);
    assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
    mounted(&path, "fuse.s3fs");
    (corr, body.to_string())
}

#[test]
fn a_helper_sigkilled_under_a_writer_is_healed_and_a_file_written_after_reaches_the_bucket() {
    let name =
        "a_helper_sigkilled_under_a_writer_is_healed_and_a_file_written_after_reaches_the_bucket";
    run_isolated_with_timeout(name, LIMIT, || {
        let (broker, barbican, s3) = (Broker::shared(), Barbican::shared(), S3::start());
        let secret_ref = barbican.store_secret(TOKEN, &s3.credentials_json().to_string());
        let dir = support::temp_dir("dms-heal-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let daemon = start(broker, dir.path(), "heal-s3fs");
        let original = mount(&daemon, "heal-1", &secret_ref);
        kill_and_prove_healed(&daemon, &s3, "heal-1", &original);
        let log = daemon.log_text();
        assert!(
            log.contains("s3vaultfuse for target heal-1 died (signal: 9 (SIGKILL), uptime "),
            "{log}"
        );
        assert!(!log.contains(s3.secret_access_key()), "the secret key reached the log");
        unmount_and_check_journal(daemon, "heal-1");
    });
}

#[test]
fn after_a_daemon_restart_a_killed_adopted_helper_is_healed_with_its_own_environment() {
    let name = "after_a_daemon_restart_a_killed_adopted_helper_is_healed_with_its_own_environment";
    run_isolated_with_timeout(name, LIMIT, || {
        // A Barbican of this test's own: its request log must show no second fetch.
        let (broker, barbican, s3) = (Broker::shared(), Barbican::start(), S3::start());
        let secret_ref = barbican.store_secret(TOKEN, &s3.credentials_json().to_string());
        let secret_id = secret_ref.rsplit('/').next().unwrap().to_owned();
        let fetches = || barbican.requests().iter().filter(|r| r.contains(&secret_id)).count();
        let dir = support::temp_dir("dms-heal-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let node = "heal-restart";
        let first = start(broker, dir.path(), node);
        let original = mount(&first, "heal-r", &secret_ref);
        let (adopted, env) = (pid_of(&first, "heal-r"), first.env.clone());
        first.stop();
        assert!(alive(adopted), "the helper outlives the daemon");
        let fetched = fetches();
        assert!(fetched > 0, "the mount fetched the secret: {:?}", barbican.requests());

        let daemon = Daemon::spawn(dir.path(), node, env);
        assert_eq!(pid_of(&daemon, "heal-r"), adopted, "adopted, not replaced");
        kill_and_prove_healed(&daemon, &s3, "heal-r", &original);
        assert_eq!(fetches(), fetched, "Barbican was asked again: {:?}", barbican.requests());
        let log = daemon.log_text();
        assert!(!log.contains("cannot read the environment"), "{log}");
        assert!(log.contains("s3vaultfuse for target heal-r died ("), "{log}");
        unmount_and_check_journal(daemon, "heal-r");
    });
}
