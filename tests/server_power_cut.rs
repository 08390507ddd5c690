//! Power cuts (issue 30): the journal on `dms-powercutfs`, a FUSE filesystem that keeps
//! what was not fsynced only in memory and drops it on a "cut" (testfs/README.md), while
//! real clients mount and unmount S3 targets through the suite's broker (real Barbican,
//! dms-testfs helpers, a private mount namespace).
//!
//! A cut is a power loss of the whole machine: the daemon and every helper are SIGKILLed,
//! the filesystem keeps only its durable image, the helpers' mounts are gone, and the next
//! daemon starts with another boot id (bound over `/proc/sys/kernel/random/boot_id` in the
//! namespace). Cuts fall after the k-th reply of steady traffic, in the middle of a burst of
//! 20 concurrent mounts, and (`park_after` lowered to 50 ms, so waiting requests are parked
//! all the time) among parked requests. After every cut, on what survived:
//!
//! - every request whose reply a client had received has its one outcome in the journal;
//! - the journal has no loss to accept and `dms-journal verify` is clean;
//! - a new daemon starts on it unattended.
//!
//! At the end every request was answered, and a resend of each request answered before a
//! cut gets the answer it got then. `DMS_POWER_CUTS` sets the number of cuts (default 6,
//! two of each kind, to keep the suite within its time; the goal is 50, run by
//! hand: `DMS_POWER_CUTS=50 cargo nextest run -E 'test(/power_cuts/)'`).
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::host::{alive, all_pids, comm, environ_var};
use e2e::traffic::{client_loop, Ledger, Load, SturdyClient};
use e2e::{mounted_msg, runtime, s3_mount, unmount, Client, Daemon};
use rustix::process::Signal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::mountns::{self, run_isolated_with_timeout};
use support::proc::GroupChild;
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-power-cut-keystone-token";
const CLIENTS: usize = 4;
const BURST: usize = 20;

/// The machine's power: the journal's filesystem and the boot id.
struct Power {
    backing: PathBuf,
    mount: PathBuf,
    boot_file: PathBuf,
    fs: Option<GroupChild>,
    boots: usize,
}

impl Power {
    fn new(dir: &Path) -> Power {
        let (backing, mount, boot_file) =
            (dir.join("backing"), dir.join("state"), dir.join("boot_id"));
        for d in [&backing, &mount] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&boot_file, format!("{}\n", uuid::Uuid::new_v4())).unwrap();
        let bind = Command::new("mount")
            .arg("--bind")
            .arg(&boot_file)
            .arg("/proc/sys/kernel/random/boot_id")
            .status()
            .unwrap();
        assert!(bind.success(), "bind a boot id over /proc/sys/kernel/random/boot_id");
        Power { backing, mount, boot_file, fs: None, boots: 0 }
    }

    /// Power on: a new boot id, the journal's filesystem mounted over what survived.
    fn on(&mut self) {
        self.boots += 1;
        std::fs::write(&self.boot_file, format!("{}\n", uuid::Uuid::new_v4())).unwrap();
        let log = self.backing.with_file_name(format!("powercutfs-{}.log", self.boots));
        let mut cmd = Command::new(e2e::workspace_bin("dms-powercutfs"));
        cmd.arg(&self.backing).arg(&self.mount);
        let mut fs = GroupChild::spawn("dms-powercutfs", cmd, &log);
        support::wait_for("dms-powercutfs to mount", e2e::T, || {
            if let Some(status) = fs.try_wait() {
                panic!("dms-powercutfs exited ({status}): {}", support::log_tail(&log, 20));
            }
            std::fs::read_to_string(&log).ok()?.contains("mounted at").then_some(())
        })
        .unwrap();
        self.fs = Some(fs);
    }

    /// The cut itself: only the durable image stays. Returns the filesystem's account.
    fn cut(&mut self) -> String {
        let mut fs = self.fs.take().expect("powered on");
        fs.signal_group(Signal::USR1);
        let status = fs.wait_timeout(e2e::T).expect("dms-powercutfs to exit after the cut");
        let log = std::fs::read_to_string(fs.log()).unwrap_or_default();
        assert!(status.success(), "dms-powercutfs after the cut: {status}\n{log}");
        log.lines().filter(|l| l.contains("power cut")).collect::<Vec<_>>().join("\n")
    }

    fn journal(&self) -> PathBuf {
        self.mount.join("journal")
    }
}

/// The rest of the machine going dark: every helper serving under `base` is SIGKILLed and
/// its mount (dead now) detached. Also the test's teardown, pass or fail.
struct Helpers {
    base: String,
}

impl Helpers {
    fn kill_all(&self) {
        let ours = |p: u32| {
            comm(p) == "dms-testfs"
                && environ_var(p, "vault_data_directory").is_some_and(|d| d.starts_with(&self.base))
        };
        for pid in all_pids().into_iter().filter(|&p| ours(p)) {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
        }
        let _ = support::wait_for("the helpers to die", e2e::T, || {
            all_pids().into_iter().all(|p| !ours(p) || !alive(p)).then_some(())
        });
        for m in mountns::mounts().into_iter().filter(|m| m.mount_point.starts_with(&self.base)) {
            let _ = Command::new("umount").arg("-l").arg(&m.mount_point).status();
        }
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Keys of the requests answered so far, with their target and first reply.
fn answered(ledger: &Ledger) -> BTreeMap<String, (String, Value)> {
    let ledger = ledger.lock().unwrap();
    let answered = ledger.iter().filter_map(|(key, seen)| {
        Some((key.clone(), (seen.target.clone(), seen.replies.first()?.clone())))
    });
    answered.collect()
}

/// On a copy of what survived the cut: no loss to accept, `verify` clean, and every request
/// in `acked` has exactly one outcome. Returns the requests without one (lost).
fn check_durable(
    backing: &Path,
    scratch: &Path,
    acked: &BTreeMap<String, (String, Value)>,
) -> Vec<String> {
    let copy = scratch.join("journal");
    let _ = std::fs::remove_dir_all(&copy);
    if !backing.join("journal").is_dir() {
        // Its very name did not survive: everything is lost.
        return acked.keys().map(|key| format!("{key} (no journal directory)")).collect();
    }
    let copied = Command::new("cp").arg("-a").arg(backing.join("journal")).arg(&copy).status();
    assert!(copied.unwrap().success(), "copy the surviving journal");
    let (journal, replay) = e2e::journal::open(&copy);
    assert!(replay.losses.is_empty(), "needs accept-loss after a power cut: {:?}", replay.losses);
    assert!(replay.problems.is_empty(), "damaged records after a power cut: {:?}", replay.problems);
    let mut targets: Vec<&str> = acked.values().map(|(t, _)| t.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut lost = Vec::new();
    for target in targets {
        let history = journal.history(&e2e::journal::target(target)).unwrap();
        let records: Vec<_> = history.records.into_iter().filter_map(Result::ok).collect();
        let outcomes = e2e::journal::outcomes_per_key(&records);
        for (key, _) in acked.iter().filter(|(_, (t, _))| t == target) {
            match outcomes.get(key) {
                Some(1) => {}
                Some(n) => panic!("{key} of {target}: {n} outcomes in the journal"),
                None => lost.push(format!("{key} ({target})")),
            }
        }
    }
    drop(journal);
    let (code, out, err) = e2e::journal::tool(&copy, &["verify"]);
    assert_eq!(code, 0, "dms-journal verify after a power cut: {out}{err}");
    lost
}

#[test]
fn power_cuts_under_traffic_lose_no_acknowledged_request_and_the_daemon_restarts_unattended() {
    let name =
        "power_cuts_under_traffic_lose_no_acknowledged_request_and_the_daemon_restarts_unattended";
    run_isolated_with_timeout(name, Duration::from_secs(900), || {
        let cuts: usize =
            std::env::var("DMS_POWER_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(
            TOKEN,
            &e2e::testfs_credentials("AKIAPOWER", "power-cut-secret", "bucket-p"),
        );
        let dir = support::temp_dir("dms-power-");
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let node = "power-cut";
        let mut power = Power::new(dir.path());
        power.on();
        let extra = [
            ("DMS_JOURNAL_PATH", power.journal().display().to_string()),
            ("DMS_PARK_AFTER", "0.05".to_owned()),
        ];
        let mut daemon = Daemon::start(broker, dir.path(), node, &extra);
        let helpers = Helpers { base: daemon.base.display().to_string() };
        let env = daemon.env.clone();
        let rt = runtime();
        let load = Load {
            urls: vec![broker.amqp_url()],
            node: node.into(),
            base: daemon.base.display().to_string(),
            secret_ref: secret_ref.clone(),
            token: TOKEN.into(),
            ledger: Ledger::default(),
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            pause: Duration::from_millis(50),
        };
        let ledger = load.ledger.clone();
        let clients: Vec<_> =
            (0..CLIENTS).map(|n| rt.spawn(client_loop(load.clone(), "pc".into(), n))).collect();
        let mut bursts = Vec::new();
        let mut acked_at_cuts = BTreeMap::new();
        let mut seed = uuid::Uuid::new_v4().as_u128() as u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for cut in 0..cuts {
            let before = answered(&ledger).len();
            let moment = match cut % 3 {
                0 => {
                    let k = 1 + next(30) as usize;
                    support::wait_for("replies", e2e::T, || {
                        (answered(&ledger).len() >= before + k).then_some(())
                    })
                    .unwrap();
                    format!("after {k} more replies")
                }
                1 => {
                    let queue = format!("dms.{node}");
                    let first = answered(&ledger).len();
                    for i in 0..BURST {
                        let target = format!("burst-{cut}-{i}");
                        let path = format!("{}/{target}", daemon.base.display());
                        let body = s3_mount(&target, &path, &secret_ref, TOKEN);
                        let (ledger, queue, urls) =
                            (ledger.clone(), queue.clone(), load.urls.clone());
                        bursts.push(rt.spawn(async move {
                            let mut client = SturdyClient::new(urls, i);
                            client.call(&queue, &target, &body, mounted_msg(&path), &ledger).await;
                            client.finish(Duration::from_secs(1), &ledger).await;
                        }));
                    }
                    let half = 1 + next(BURST as u64 / 2) as usize;
                    support::wait_for("part of the burst answered", e2e::T, || {
                        (answered(&ledger).len() >= first + half).then_some(())
                    })
                    .unwrap();
                    format!("in a burst of {BURST} mounts, ~{half} answered")
                }
                _ => {
                    std::thread::sleep(Duration::from_millis(100 + next(900)));
                    "at a random moment among parked requests".to_owned()
                }
            };
            // The power goes: nothing of the machine runs past this point.
            daemon.child.signal_group(Signal::KILL);
            assert!(daemon.child.wait_timeout(e2e::T).is_some(), "the daemon survived SIGKILL");
            let log = daemon.log_text();
            helpers.kill_all();
            let acked = answered(&ledger);
            let account = power.cut();
            let lost = check_durable(&power.backing, &scratch, &acked);
            eprintln!(
                "cut {}/{cuts} {moment}: {} replies received so far; {account}; lost {}",
                cut + 1,
                acked.len(),
                lost.len()
            );
            assert_eq!(
                lost,
                Vec::<String>::new(),
                "requests answered before the power cut are not in the journal that survived \
                 it\n--- the daemon's log ---\n{log}"
            );
            acked_at_cuts.extend(acked);
            // Power on: a new boot, the daemon on what survived, no operator.
            power.on();
            daemon = Daemon::spawn(dir.path(), node, env.clone());
        }
        load.stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            let bound = Duration::from_secs(180);
            for task in clients {
                tokio::time::timeout(bound, task).await.unwrap().unwrap();
            }
            for task in bursts {
                tokio::time::timeout(bound, task).await.unwrap().unwrap();
            }
        });
        let ledger_now = ledger.lock().unwrap().clone();
        // A client gives up on a request after 120 s (`ANSWER_BOUND`); across cuts under
        // load a few did (2 in one CI run, reason not yet established). Once the
        // power stays on, each of them, sent again, must be answered (a request stuck for
        // good fails here: `Client::call` waits 60 s).
        let unanswered: Vec<(String, String, Value)> = ledger_now
            .iter()
            .filter(|(_, seen)| seen.replies.is_empty())
            .map(|(key, seen)| (key.clone(), seen.target.clone(), seen.expected.clone()))
            .collect();
        let mut client = rt.block_on(Client::connect(broker));
        for (key, target, expected) in &unanswered {
            let path = format!("{}/{target}", daemon.base.display());
            let body = match *expected == mounted_msg(&path) {
                true => s3_mount(target, &path, &secret_ref, TOKEN),
                false => unmount(target, &path, "s3"),
            };
            let reply = rt.block_on(client.call(node, &body, key));
            eprintln!(
                "{key} ({target}), given up by its client across the cuts, sent again: {reply}"
            );
        }
        rt.block_on(client.close());
        // A resend of every request answered before a cut gets the answer it got then.
        let started = Instant::now();
        let mut client = rt.block_on(Client::connect(broker));
        for (key, (target, reply)) in &acked_at_cuts {
            let path = format!("{}/{target}", daemon.base.display());
            let mount = ledger_now[key].expected == mounted_msg(&path);
            let body = match mount {
                true => s3_mount(target, &path, &secret_ref, TOKEN),
                false => unmount(target, &path, "s3"),
            };
            let again = rt.block_on(client.call(node, &body, key));
            assert_eq!(&again, reply, "{key} ({target}) resent after the cuts");
        }
        rt.block_on(client.close());
        eprintln!(
            "{cuts} power cuts, {} requests ({} given up by their clients, answered when sent \
             again), {} answered before a cut and resent: the same answers ({:.1} s); 0 \
             acknowledged requests lost",
            ledger_now.len(),
            unanswered.len(),
            acked_at_cuts.len(),
            started.elapsed().as_secs_f64()
        );
        daemon.stop();
        drop(helpers);
        power.cut();
    });
}
