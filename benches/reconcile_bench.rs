//! Boot-reconcile benchmark (issue 4): how long `dms-server` takes from spawn to ready with a
//! journal of 10,000 targets, 1,000 of them mounted with live helpers; and how long a
//! helper's death takes to get its dead mount detached. Plain `std` timing, figures on
//! stdout, no assertions on them.
//!
//! ```text
//! cargo bench -p dms --bench reconcile_bench
//! DMS_BENCH_QUICK=1 cargo bench -p dms --bench reconcile_bench   # smoke run: 200 targets, 20 live
//! ```
//!
//! Needs what the end-to-end tests need (root, `/dev/fuse`, util-linux `unshare`, Debian's
//! rabbitmq-server). Credentials come from a stand-in secret store in this process (the
//! daemon's two Barbican GETs answered by plain threads): the test Barbican does ~46
//! fetches/s and would only slow down building the state, which is not what is measured.
//!
//! **The state.** In a private mount namespace (this binary re-executes itself under
//! `unshare -m --propagation private`), with a private RabbitMQ node, the release
//! `dms-server` (`CARGO_BIN_EXE_dms-server`) and the workspace's in-memory FUSE helper
//! `dms-testfs` (built with `cargo build --release -p dms-testfs` next to `dms-server`
//! unless `DMS_TESTFS_BIN` names one):
//!
//! 1. one target (`fin-00000`) is mounted and unmounted through the daemon for real, over
//!    AMQP; its journal chain (`Requested → CredsFetched → Spawned → Verified →
//!    UnmountRequested → Detached → Cleaned`, exactly as the daemon wrote it) is the
//!    template;
//! 2. with the daemon stopped, the template is replicated with `dms_journal`'s API into
//!    9,000 − 1 further finished targets (own target id, mount path, request keys,
//!    operation ids; timestamps spread over the last 10 days, inside the 30-day retention so
//!    compaction does not run), appended 63 records a time: 9,000 finished targets in all;
//! 3. the daemon is started again and 1,000 targets are mounted through it for real (one
//!    burst of 1,000 mount requests), each with its live `dms-testfs` helper.
//!
//! **Measured.**
//!
//! - *Boot to ready*: SIGTERM the daemon (helpers and mounts stay), spawn it again, time
//!   spawn → its `consuming` log line (intake starts after the boot reconcile), polled every
//!   millisecond. Phases from the daemon's own log timestamps: exec → `starting`,
//!   → `journal replayed`, → `boot reconcile done` (observe + plan + perform), → `consuming`
//!   (AMQP connect). Five restarts (one in the quick run) of: an empty journal (the
//!   baseline), 9,000 finished targets without live ones, and the full state. The daemon
//!   also gets a `$NOTIFY_SOCKET` (a datagram socket of this process): spawn → `READY=1`
//!   is reported too, or "not sent" by a daemon that does not speak sd_notify.
//! - *In-process breakdown* of the same boot work while the daemon is stopped, through the
//!   daemon's own library: `Journal::open` (replay), `Host::observe` (mount table, PID
//!   files, a `/proc` scan, a `stat` per mount) and `reconcile::plan`.
//! - *Helper death → dead mount detached*: SIGKILL one helper, wait (POLLPRI on
//!   `/proc/self/mountinfo`) until its mount is gone; 20 deaths (5 quick) of helpers adopted
//!   at boot (after the restarts), then of helpers spawned by the running daemon. Each wait
//!   is bounded by 30 s; after the first miss the remaining deaths of that kind are skipped
//!   and reported as such.
//! - *Resources*: RSS/PSS and threads of the helpers, the daemon's RSS, threads and open
//!   descriptors, with spawned and with adopted helpers. RLIMIT_NOFILE is raised to 65,536
//!   first (the daemon inherits it).
//!
//! Knobs: `DMS_BENCH_LOG_LEVEL` (the daemon's `DMS_LOG_LEVEL`, default `info`),
//! `DMS_BENCH_KEEP=1` keeps the temp directory (journal, daemon logs),
//! `DMS_E2E_SERVER_BIN` runs another build of the daemon (the journal is built with this
//! build's library, so both must read the same record format). Run as a test
//! (`cargo test --benches`, no `--bench` argument) it does the quick run.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/e2e/mod.rs"]
mod e2e;

#[path = "common/mod.rs"]
mod common;

use common::{failures, keep, poll_table, secs, Samples, TOKEN};
use dms::observe::pidfile::PidDir;
use dms::observe::procfs::Procfs;
use dms::observe::Host;
use dms_journal::store::Journal;
use dms_journal::{reconcile, Clock, Phase, Record, TargetId, Timestamp};
use e2e::{s3_mount, unmount, uuid, Client, Daemon};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::proc::GroupChild;
use support::{mountns, Broker};

const TEMPLATE: &str = "fin-00000";
/// Bound for one helper death to be noticed.
const DEATH_LIMIT: Duration = Duration::from_secs(30);
/// Bound for a boot to reach `consuming`.
const BOOT_LIMIT: Duration = Duration::from_secs(600);
const NOFILE: u64 = 65_536;

#[derive(Debug, Clone, Copy)]
struct Plan {
    targets: usize,
    live: usize,
    restarts: usize,
    deaths: usize,
}

const FULL: Plan = Plan { targets: 10_000, live: 1_000, restarts: 5, deaths: 20 };
const QUICK: Plan = Plan { targets: 200, live: 20, restarts: 1, deaths: 5 };

fn main() {
    let Some((quick, testfs)) = common::enter() else { return };
    run(if quick { QUICK } else { FULL }, quick, &testfs);
}

fn run(plan: Plan, quick: bool, testfs: &Path) {
    let finished = plan.targets - plan.live;
    println!(
        "dms-server boot-reconcile bench ({} run): {} targets ({finished} finished, {} live), \
         {} restart(s), {} helper deaths of each kind; helper {}",
        if quick { "quick" } else { "full" },
        plan.targets,
        plan.live,
        plan.restarts,
        plan.deaths,
        testfs.display()
    );
    println!("RLIMIT_NOFILE: {}", raise_nofile());
    let dir = support::temp_dir("dms-reconcile-bench-");
    // The suite's node under scripts/test.sh's smoke run (a virtual host of its own), a
    // private one otherwise.
    let broker = Broker::shared();
    println!("infrastructure: RabbitMQ up in {} (0 s: the suite's)", secs(broker.startup_time()));
    let secret_ref = common::start_stand_in_store(e2e::testfs_credentials(
        "AKIABENCH",
        "bench-secret",
        "bench-bucket",
    ));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mem_before = mem_available_kib();
    let mut report = Report::default();

    // --- Baseline: an empty journal.
    let empty = Node::new(broker, &dir.path().join("empty"), "reconcile-empty", testfs);
    println!("\n== baseline: empty journal, {} restart(s)", plan.restarts);
    let (daemon, _) = empty.start();
    let mut daemon = Some(daemon);
    let mut boots = Vec::new();
    for _ in 0..plan.restarts {
        let stopped = empty.stop(daemon.take().unwrap());
        report.stops.push(("empty journal", stopped));
        let (d, boot) = empty.start();
        println!("  {}", boot.line());
        boots.push(boot);
        daemon = Some(d);
    }
    empty.stop(daemon.take().unwrap());
    report.boots.push(("empty journal (baseline)".into(), boots));

    // --- The state: the template, then the finished targets written directly.
    let node = Node::new(broker, &dir.path().join("main"), "reconcile", testfs);
    let reaper = HelperCleanup { base: node.base.clone() };
    println!("\n== building the state");
    let (d, _) = node.start();
    let mut guard = Running(Some(d));
    rt.block_on(async {
        let mut client = Client::connect(broker).await;
        let path = guard.get().path(TEMPLATE);
        let body = s3_mount(TEMPLATE, &path, &secret_ref, TOKEN);
        let reply = client.call(&guard.get().node, &body, &uuid()).await;
        expect_success(&reply, "template mount", &guard);
        let body = unmount(TEMPLATE, &path, "s3");
        let reply = client.call(&guard.get().node, &body, &uuid()).await;
        expect_success(&reply, "template unmount", &guard);
        client.close().await;
    });
    node.stop(guard.take());
    let (took, records, per_target) = write_finished(&node.journal, finished);
    println!(
        "wrote {} finished targets from the daemon's own chain for {TEMPLATE} ({per_target} \
         records each): {records} records in {} ({:.0} records/s, appends of 63)",
        finished - 1,
        secs(took),
        records as f64 / took.as_secs_f64()
    );
    println!("journal on disk: {} MiB", du_mib(&node.journal));

    println!("\n== {finished} finished targets, none live");
    let mut boots = Vec::new();
    let (d, boot) = node.start();
    println!("  first open after the bulk write: {}", boot.line());
    report.boots.push((
        format!("{finished} finished, 0 live: first start after the bulk write"),
        vec![boot],
    ));
    let mut daemon = Some(d);
    for _ in 0..plan.restarts {
        node.stop(daemon.take().unwrap());
        let (d, boot) = node.start();
        println!("  {}", boot.line());
        boots.push(boot);
        daemon = Some(d);
    }
    report.boots.push((format!("{finished} finished, 0 live"), boots));
    let mut guard = Running(daemon);

    // --- 1,000 live mounts, for real.
    println!("\n== mounting {} targets through the daemon", plan.live);
    let live: Vec<String> = (0..plan.live).map(|i| format!("live-{i:04}")).collect();
    let bodies: Vec<String> = live
        .iter()
        .map(|t| s3_mount(t, &guard.get().path(t), &secret_ref, TOKEN).to_string())
        .collect();
    let (took, failed) = rt.block_on(async {
        let mut client = Client::connect(broker).await;
        let queue = format!("dms.{}", guard.get().node);
        let r = common::burst(&mut client, &queue, &bodies).await;
        client.close().await;
        r
    });
    println!(
        "{} mounts in {} = {:.1} mounts/s (defaults: max_concurrent_targets 16, prefetch 32){}",
        plan.live,
        secs(took),
        plan.live as f64 / took.as_secs_f64(),
        failures(&failed)
    );
    assert!(failed.is_empty(), "mounts failed; see above\n{}", guard.tail());
    let mounted = count_mounts(&node.base);
    assert_eq!(mounted, plan.live, "live mounts in the table");
    report.resources.push(("spawned by the running daemon", resources(guard.get())));
    println!("  {}", report.resources.last().unwrap().1);
    scan_log("while mounting", guard.get());

    // --- Restarts of the full state.
    let stopped = node.stop(guard.take());
    report.stops.push(("full state", stopped));
    report.breakdown = Some(breakdown(&node));
    println!("\n== {} targets, {} live: {} restart(s)", plan.targets, plan.live, plan.restarts);
    println!("  in-process (daemon stopped): {}", report.breakdown.as_ref().unwrap());
    let mut boots = Vec::new();
    let mut daemon = None;
    for i in 0..plan.restarts {
        if let Some(d) = daemon.take() {
            let stopped = node.stop(d);
            report.stops.push(("full state", stopped));
        }
        let (d, boot) = node.start();
        let alive = helpers_alive(&d);
        println!(
            "  {}; afterwards {alive} helpers alive, {} mounts, {} PID files",
            boot.line(),
            count_mounts(&node.base),
            d.pid_files().len()
        );
        if i == 0 {
            scan_log("first restart with live helpers", &d);
        }
        boots.push(boot);
        daemon = Some(d);
    }
    report.boots.push((format!("{} targets, {} live", plan.targets, plan.live), boots));
    let mut guard = Running(daemon);
    report.resources.push(("adopted at boot", resources(guard.get())));
    println!("  {}", report.resources.last().unwrap().1);

    // --- Helper deaths: adopted ones, then spawned ones.
    println!("\n== helper death → dead mount detached: {} adopted helpers", plan.deaths);
    let adopted = deaths(guard.get(), &live[..plan.deaths.min(live.len())]);
    println!("  {}", adopted.summary());
    report.deaths.push(("adopted at boot", adopted));

    println!("\n== helper death → dead mount detached: {} spawned helpers", plan.deaths);
    let spawned: Vec<String> = (0..plan.deaths).map(|i| format!("spawned-{i:02}")).collect();
    rt.block_on(async {
        let mut client = Client::connect(broker).await;
        for t in &spawned {
            let body = s3_mount(t, &guard.get().path(t), &secret_ref, TOKEN);
            let reply = client.call(&guard.get().node, &body, &uuid()).await;
            expect_success(&reply, "mount", &guard);
        }
        client.close().await;
    });
    let spawned_deaths = deaths(guard.get(), &spawned);
    println!("  {}", spawned_deaths.summary());
    report.deaths.push(("spawned by the running daemon", spawned_deaths));
    if let Some((_, adopted)) = report.deaths.first() {
        let still: Vec<&String> = adopted
            .missed
            .iter()
            .filter(|t| mountns::mount_at(Path::new(&guard.get().path(t))).is_some())
            .collect();
        if !adopted.missed.is_empty() {
            println!(
                "  the adopted helper's dead mount that was not detected: {} still attached \
                 at the end",
                still.len()
            );
        }
    }
    scan_log("after the deaths", guard.get());
    node.stop(guard.take());
    report.mem = (mem_before, mem_available_kib());
    drop(reaper);
    drop(rt);
    report.print(plan);
    if keep() {
        println!("DMS_BENCH_KEEP: keeping {}", dir.keep().display());
    }
}

// ---------------------------------------------------------------------------------------
// One daemon's files and settings; timed starts.

struct Node {
    dir: PathBuf,
    node: String,
    base: PathBuf,
    journal: PathBuf,
    pid_dir: PathBuf,
    testfs: PathBuf,
    env: Vec<(String, String)>,
    /// `$NOTIFY_SOCKET` for the daemon: systemd's readiness protocol, if it speaks it.
    notify: UnixDatagram,
    notify_path: PathBuf,
}

impl Node {
    fn new(broker: &Broker, dir: &Path, node: &str, testfs: &Path) -> Node {
        let mut env = e2e::layout_env(broker, dir, node, testfs, &common::log_level());
        env.push(("NO_COLOR".into(), "1".into()));
        let notify_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_nonblocking(true).unwrap();
        Node {
            notify,
            notify_path,
            dir: dir.to_path_buf(),
            node: node.into(),
            base: dir.join("mounts"),
            journal: dir.join("journal"),
            pid_dir: dir.join("pids"),
            testfs: testfs.to_path_buf(),
            env,
        }
    }

    /// Spawn the daemon and time it to its `consuming` line (polled every millisecond).
    fn start(&self) -> (Daemon, Boot) {
        let log = self.dir.join(format!("dms-server-{}.log", uuid::Uuid::new_v4()));
        // Another build of the daemon, if asked for (as the e2e benches do).
        let bin = std::env::var_os("DMS_E2E_SERVER_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_dms-server").into());
        let mut cmd = Command::new(bin);
        cmd.env_clear().envs(self.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
        cmd.env("NOTIFY_SOCKET", &self.notify_path);
        while self.notify_ready() {} // left over from the last run
        let wall = SystemTime::now();
        let t0 = Instant::now();
        let mut child = GroupChild::spawn("dms-server", cmd, &log);
        let mut file = File::open(&log).unwrap();
        let mut text = Vec::new();
        let mut notified = None;
        let ready = loop {
            if notified.is_none() && self.notify_ready() {
                notified = Some(t0.elapsed());
            }
            let before = text.len();
            file.read_to_end(&mut text).unwrap();
            if text.len() > before && contains(&text[before.saturating_sub(16)..], b"consuming") {
                break t0.elapsed();
            }
            if let Some(status) = child.try_wait() {
                panic!(
                    "dms-server exited ({status}) before \"consuming\"\n{}",
                    String::from_utf8_lossy(&text)
                );
            }
            assert!(
                t0.elapsed() < BOOT_LIMIT,
                "dms-server not ready within {BOOT_LIMIT:?}\n{}",
                String::from_utf8_lossy(&text)
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        // READY=1, if the daemon sends it, may follow the log line closely.
        while notified.is_none() && t0.elapsed() < ready + Duration::from_millis(300) {
            if self.notify_ready() {
                notified = Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let daemon = Daemon {
            child,
            node: self.node.clone(),
            base: self.base.clone(),
            pid_dir: self.pid_dir.clone(),
            journal: self.journal.clone(),
            log,
            env: self.env.clone(),
        };
        let mut boot = Boot::from_log(ready, wall, &daemon.log_text());
        boot.notified = notified;
        (daemon, boot)
    }

    /// Whether a pending datagram on the notify socket says `READY=1` (consumes one).
    fn notify_ready(&self) -> bool {
        let mut buf = [0u8; 4096];
        match self.notify.recv(&mut buf) {
            Ok(n) => buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1"),
            Err(_) => false,
        }
    }

    /// SIGTERM and wait for a clean exit; returns how long that took.
    fn stop(&self, daemon: Daemon) -> Duration {
        let t0 = Instant::now();
        daemon.stop();
        t0.elapsed()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A running daemon; prints its log tail if the bench panics while it runs.
struct Running(Option<Daemon>);

impl Running {
    fn get(&self) -> &Daemon {
        self.0.as_ref().unwrap()
    }

    fn take(&mut self) -> Daemon {
        self.0.take().unwrap()
    }

    fn tail(&self) -> String {
        self.0.as_ref().map(|d| support::log_tail(&d.log, 40)).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let (true, Some(d)) = (std::thread::panicking(), &self.0) {
            eprintln!("--- daemon log (tail) ---\n{}", support::log_tail(&d.log, 40));
        }
    }
}

fn expect_success(reply: &Value, what: &str, daemon: &Running) {
    assert!(reply["status"] == "success", "{what}: {reply}\n--- daemon log ---\n{}", daemon.tail());
}

/// Stops every `dms-testfs` serving a path under `base` (SIGTERM: it unmounts itself, then
/// SIGKILL), then detaches what is left (dead mounts), so nothing outlives the bench even
/// before the namespace goes.
struct HelperCleanup {
    base: PathBuf,
}

impl Drop for HelperCleanup {
    fn drop(&mut self) {
        let pids = helpers_under(&self.base);
        for &pid in &pids {
            signal(pid, Signal::TERM);
        }
        let _ = support::wait_for("helpers to exit", Duration::from_secs(20), || {
            pids.iter().all(|&p| !e2e::host::alive(p)).then_some(())
        });
        for &pid in pids.iter().filter(|&&p| e2e::host::alive(p)) {
            signal(pid, Signal::KILL);
        }
        let base = self.base.display().to_string();
        let left: Vec<String> = mountns::mounts()
            .into_iter()
            .filter(|m| m.mount_point.starts_with(&format!("{base}/")))
            .map(|m| m.mount_point)
            .collect();
        for path in left.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
        println!(
            "cleanup: stopped {} helpers, detached {} leftover mounts",
            pids.len(),
            left.len()
        );
    }
}

fn signal(pid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = kill_process(p, sig);
    }
}

/// Live `dms-testfs` processes whose `vault_data_directory` is under `base`.
fn helpers_under(base: &Path) -> Vec<u32> {
    let prefix = format!("vault_data_directory={}/", base.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != "dms-testfs" || !e2e::host::alive(pid) {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if environ.split(|&b| b == 0).any(|v| v.starts_with(prefix.as_bytes())) {
            found.push(pid);
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// Boot timing from the daemon's log

#[derive(Debug, Clone)]
struct Boot {
    /// Spawn → `consuming` seen by this process.
    ready: Duration,
    /// Spawn → `READY=1` on `$NOTIFY_SOCKET`, if the daemon sent it.
    notified: Option<Duration>,
    /// From the daemon's log timestamps, relative to the spawn (wall clock).
    starting: Option<Duration>,
    replayed: Option<Duration>,
    reconciled: Option<Duration>,
    consuming: Option<Duration>,
    replay_fields: String,
    reconcile_fields: String,
}

impl Boot {
    fn from_log(ready: Duration, spawned: SystemTime, log: &str) -> Boot {
        let spawn_sod = spawned.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() % 86_400.0;
        let lines: Vec<&str> = log.lines().collect();
        let find = |needle: &str| lines.iter().find(|l| l.contains(needle));
        let at = |needle: &str| {
            let sod = line_seconds_of_day(find(needle)?)?;
            let mut d = sod - spawn_sod;
            if d < -43_200.0 {
                d += 86_400.0; // across midnight
            }
            Some(Duration::from_secs_f64(d.max(0.0)))
        };
        let fields = |needle: &str| {
            find(needle)
                .and_then(|l| l.split_once(needle))
                .map(|(_, rest)| rest.trim().to_owned())
                .unwrap_or_default()
        };
        Boot {
            ready,
            notified: None,
            starting: at(" starting"),
            replayed: at("journal replayed"),
            reconciled: at("boot reconcile done"),
            consuming: at("consuming"),
            replay_fields: fields("journal replayed"),
            reconcile_fields: fields("boot reconcile done"),
        }
    }

    /// exec → starting, → journal replayed, → boot reconcile done, → consuming.
    fn phases(&self) -> [Option<Duration>; 4] {
        let diff = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
        [
            self.starting,
            diff(self.starting, self.replayed),
            diff(self.replayed, self.reconciled),
            diff(self.reconciled, self.consuming),
        ]
    }

    fn line(&self) -> String {
        let [exec, replay, reconcile, amqp] = self.phases();
        format!(
            "ready in {} (READY=1 {}; exec {}, replay {}, reconcile {}, AMQP {}; replayed: {}; \
             reconcile: {})",
            ms(self.ready),
            self.notified.map(ms).unwrap_or_else(|| "not sent".into()),
            opt_ms(exec),
            opt_ms(replay),
            opt_ms(reconcile),
            opt_ms(amqp),
            self.replay_fields,
            self.reconcile_fields
        )
    }
}

/// `2026-01-02T03:04:05.678901Z  INFO ...` → seconds since midnight (UTC).
fn line_seconds_of_day(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Warnings and errors in a daemon's log (limits hit show up here).
fn scan_log(when: &str, daemon: &Daemon) {
    let text = daemon.log_text();
    let bad: Vec<String> = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(str::to_owned)
        .collect();
    if bad.is_empty() {
        println!("  daemon log {when}: no warnings or errors");
        return;
    }
    let kinds: BTreeSet<String> = bad
        .iter()
        .map(|l| l.split_whitespace().skip(1).take(6).collect::<Vec<_>>().join(" "))
        .collect();
    println!("  daemon log {when}: {} warning/error lines, e.g.:", bad.len());
    for k in kinds.iter().take(5) {
        println!("    {k} ...");
    }
}

// ---------------------------------------------------------------------------------------
// The finished targets, written with the journal API

/// Replicate the template's chain into targets `fin-00001..fin-<finished-1>`. Returns the
/// time taken, the records written and the records per target.
fn write_finished(path: &Path, finished: usize) -> (Duration, usize, usize) {
    let (journal, replay) = Journal::open(path).unwrap();
    let id = TargetId::new(TEMPLATE).unwrap();
    let history = journal.history(&id).unwrap();
    let template: Vec<Record> = history.records.into_iter().map(|r| r.unwrap().record).collect();
    let names: Vec<&str> = template.iter().map(|r| r.event.name()).collect();
    assert_eq!(
        replay.state.target(&id).map(|t| t.phase),
        Some(Phase::Unmounted),
        "the template chain does not end unmounted: {names:?}"
    );
    // Identifiers to replace per target: request keys and operation ids (as JSON strings).
    let mut ids: Vec<String> = Vec::new();
    for r in &template {
        for id in [r.request.as_ref().map(|k| k.to_string()), r.op.map(|o| o.0.to_string())]
            .into_iter()
            .flatten()
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let json: Vec<String> = template.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    let first_at = template[0].at.0;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let span: u64 = 10 * 86_400_000;
    let t0 = Instant::now();
    let mut batch: Vec<Record> = Vec::with_capacity(64);
    let mut written = 0;
    for n in 1..finished {
        let name = format!("fin-{n:05}");
        let fresh: Vec<(String, String)> = ids
            .iter()
            .map(|id| (format!("\"{id}\""), format!("\"{}\"", uuid::Uuid::new_v4())))
            .collect();
        let start = now - span + span * n as u64 / finished as u64;
        for (text, original) in json.iter().zip(&template) {
            let mut text = text.replace(TEMPLATE, &name);
            for (old, new) in &fresh {
                text = text.replace(old, new);
            }
            // A spawn nonce is never shown, in JSON neither: each copy gets a fresh one.
            let nonce = format!("\"{}\"", uuid::Uuid::new_v4());
            text = text.replace("\"<redacted>\"", &nonce);
            let mut record: Record = serde_json::from_str(&text).unwrap();
            record.at = Timestamp(start + (original.at.0 - first_at));
            batch.push(record);
        }
        if batch.len() + template.len() > 64 {
            journal.append(&batch).unwrap();
            written += batch.len();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        journal.append(&batch).unwrap();
        written += batch.len();
    }
    (t0.elapsed(), written, template.len())
}

/// The boot's work, in this process, while the daemon is stopped: replay, observe, plan.
fn breakdown(node: &Node) -> String {
    let t0 = Instant::now();
    let (journal, replay) = Journal::open(&node.journal).unwrap();
    let replayed = t0.elapsed();
    let procfs = Procfs::default();
    let boot = procfs.boot_id().unwrap();
    let host = Host {
        procfs,
        pid_dir: PidDir::new(&node.pid_dir),
        mount_base: dms::journal::MountBase::new(&node.base.display().to_string()).unwrap(),
        helper_bin: node.testfs.clone(),
        probe_timeout: Duration::from_secs(5),
        fs_types: dms::journal::FsTypes::default(),
    };
    let t1 = Instant::now();
    let observed = host.observe(&replay.state).unwrap();
    let observe = t1.elapsed();
    let t2 = Instant::now();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let clock = Clock { now: Timestamp(now), boot };
    let plan = reconcile::plan(&replay.state, &observed, clock, &dms::wire::Wire);
    let planned = t2.elapsed();
    drop(journal);
    format!(
        "Journal::open {} ({} records, {} targets); Host::observe {} ({} mounts, {} PID files, \
         {} processes of interest); reconcile::plan {} ({} steps, {} findings)",
        ms(replayed),
        replay.records,
        replay.state.targets.len(),
        ms(observe),
        observed.mounts.len(),
        observed.pid_files.len(),
        observed.processes.len(),
        ms(planned),
        plan.steps.len(),
        plan.findings.len()
    )
}

// ---------------------------------------------------------------------------------------
// Helper deaths

#[derive(Debug, Default)]
struct Deaths {
    detached: Samples,
    missed: Vec<String>,
    skipped: usize,
}

impl Deaths {
    fn summary(&self) -> String {
        let mut s = if self.detached.0.is_empty() {
            "none detected".to_owned()
        } else {
            self.detached.summary()
        };
        if !self.missed.is_empty() {
            s += &format!(
                "; {} NOT detected within {} s ({}), {} further deaths skipped",
                self.missed.len(),
                DEATH_LIMIT.as_secs(),
                self.missed.join(", "),
                self.skipped
            );
        }
        s
    }
}

/// SIGKILL each target's helper in turn and time until its mount leaves the table.
fn deaths(daemon: &Daemon, targets: &[String]) -> Deaths {
    let mut out = Deaths::default();
    for (i, target) in targets.iter().enumerate() {
        let path = daemon.path(target);
        let pid = e2e::host::pid_of(daemon, target);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "dms-testfs", "{target}: PID {pid} is not its helper");
        assert!(mountns::mount_at(Path::new(&path)).is_some(), "{target} is not mounted");
        match kill_and_wait(pid, &path) {
            Some(took) => out.detached.push(took),
            None => {
                out.missed.push(target.clone());
                out.skipped = targets.len() - i - 1;
                break;
            }
        }
    }
    out
}

fn kill_and_wait(pid: u32, path: &str) -> Option<Duration> {
    // Opened before the kill: POLLPRI fires on every change of the table after this.
    let table = File::open("/proc/self/mountinfo").unwrap();
    signal(pid, Signal::KILL);
    let t0 = Instant::now();
    loop {
        if mountns::mount_at(Path::new(path)).is_none() {
            return Some(t0.elapsed());
        }
        let left = DEATH_LIMIT.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return None;
        }
        poll_table(&table, left);
    }
}

// ---------------------------------------------------------------------------------------
// Resources

fn raise_nofile() -> String {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    let want =
        Rlimit { current: Some(NOFILE), maximum: Some(NOFILE.max(before.maximum.unwrap_or(0))) };
    let mut failed = setrlimit(Resource::Nofile, want).err().map(|e| e.to_string());
    if let Some(e) = failed.as_mut() {
        // Without CAP_SYS_RESOURCE the hard limit cannot be raised: take the hard limit.
        let hard = Rlimit { current: before.maximum, maximum: before.maximum };
        let fallback = setrlimit(Resource::Nofile, hard);
        *e += &format!(" without CAP_SYS_RESOURCE; soft = hard: {fallback:?}");
    }
    let after = getrlimit(Resource::Nofile);
    format!(
        "soft {:?} hard {:?} → soft {:?} hard {:?}{}",
        before.current,
        before.maximum,
        after.current,
        after.maximum,
        failed.map(|e| format!(" (raising to {NOFILE} failed: {e})")).unwrap_or_default()
    )
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn mem_available_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn helper_pids(daemon: &Daemon) -> Vec<u32> {
    daemon
        .pid_files()
        .iter()
        .filter_map(|f| std::fs::read_to_string(daemon.pid_dir.join(f)).ok()?.trim().parse().ok())
        .collect()
}

fn helpers_alive(daemon: &Daemon) -> usize {
    helper_pids(daemon).into_iter().filter(|&p| e2e::host::alive(p)).count()
}

fn resources(daemon: &Daemon) -> String {
    let helpers = helper_pids(daemon);
    let one = helpers.first().copied().unwrap_or(0);
    let pss: u64 = helpers.iter().filter_map(|&p| pss_kib(p)).sum();
    let d = daemon.child.pid();
    format!(
        "{} helpers: one has RSS {} KiB, {} threads, {} fds; all helpers PSS {:.1} MiB in total; \
         daemon RSS {:.1} MiB, {} threads, {} open fds",
        helpers.len(),
        status_field(one, "VmRSS").unwrap_or(0),
        status_field(one, "Threads").unwrap_or(0),
        fd_count(one),
        pss as f64 / 1024.0,
        status_field(d, "VmRSS").unwrap_or(0) as f64 / 1024.0,
        status_field(d, "Threads").unwrap_or(0),
        fd_count(d)
    )
}

fn count_mounts(base: &Path) -> usize {
    let prefix = format!("{}/", base.display());
    mountns::mounts().iter().filter(|m| m.mount_point.starts_with(&prefix)).count()
}

fn du_mib(path: &Path) -> String {
    fn size(p: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(p) else { return 0 };
        if meta.is_dir() {
            std::fs::read_dir(p)
                .map(|d| d.filter_map(Result::ok).map(|e| size(&e.path())).sum())
                .unwrap_or(0)
        } else {
            meta.len()
        }
    }
    format!("{:.1}", size(path) as f64 / (1024.0 * 1024.0))
}

// ---------------------------------------------------------------------------------------
// Samples, formatting, the report

/// p90, in tenths of a millisecond.
impl Samples {
    fn summary(&self) -> String {
        self.summary_with(90, ms)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map(ms).unwrap_or_else(|| "?".into())
}

#[derive(Debug, Default)]
struct Report {
    boots: Vec<(String, Vec<Boot>)>,
    stops: Vec<(&'static str, Duration)>,
    breakdown: Option<String>,
    deaths: Vec<(&'static str, Deaths)>,
    resources: Vec<(&'static str, String)>,
    mem: (u64, u64),
}

impl Report {
    fn print(&self, plan: Plan) {
        println!(
            "\n================ summary: {} targets, {} live ================",
            plan.targets, plan.live
        );
        println!("boot: spawn → ready (`consuming`), median of phases from the daemon's log");
        println!(
            "{:<56} | {:>9} | {:>9} | {:>9} | {:>3} | {:>9} | {:>8} | {:>8} | {:>9} | {:>8}",
            "journal",
            "median",
            "min",
            "max",
            "n",
            "READY=1",
            "exec",
            "replay",
            "reconcile",
            "AMQP"
        );
        let mut medians = Vec::new();
        let mut notified_medians = Vec::new();
        for (label, boots) in &self.boots {
            let ready = Samples(boots.iter().map(|b| b.ready).collect());
            let phase = |i: usize| {
                let s: Vec<Duration> = boots.iter().filter_map(|b| b.phases()[i]).collect();
                if s.is_empty() {
                    "?".to_owned()
                } else {
                    ms(Samples(s).median())
                }
            };
            let notified: Vec<Duration> = boots.iter().filter_map(|b| b.notified).collect();
            let notified_median = (!notified.is_empty()).then(|| Samples(notified).median());
            notified_medians.push(notified_median);
            let notified = notified_median.map(ms).unwrap_or_else(|| "not sent".into());
            println!(
                "{:<56} | {:>9} | {:>9} | {:>9} | {:>3} | {:>9} | {:>8} | {:>8} | {:>9} | {:>8}",
                label,
                ms(ready.median()),
                ms(ready.pct(0.0)),
                ms(ready.pct(1.0)),
                boots.len(),
                notified,
                phase(0),
                phase(1),
                phase(2),
                phase(3)
            );
            medians.push(ready.median());
        }
        if let (Some(base), Some(full)) = (medians.first(), medians.last()) {
            println!(
                "ratio: full state / empty journal = {:.1}x ({} vs {})",
                full.as_secs_f64() / base.as_secs_f64(),
                ms(*full),
                ms(*base)
            );
        }
        if let (Some(Some(base)), Some(Some(full))) =
            (notified_medians.first(), notified_medians.last())
        {
            println!(
                "ratio (READY=1): full state / empty journal = {:.1}x ({} vs {})",
                full.as_secs_f64() / base.as_secs_f64(),
                ms(*full),
                ms(*base)
            );
        }
        if let Some(b) = &self.breakdown {
            println!("in-process boot work on the full state: {b}");
        }
        for (what, _) in [("empty journal", ()), ("full state", ())] {
            let s: Vec<Duration> =
                self.stops.iter().filter(|(w, _)| *w == what).map(|(_, d)| *d).collect();
            if !s.is_empty() {
                println!("stop (SIGTERM → exit), {what}: {}", Samples(s).summary());
            }
        }
        println!("helper death (SIGKILL) → dead mount gone from the table:");
        for (what, d) in &self.deaths {
            println!("  {what:<30} {}", d.summary());
        }
        println!("resources:");
        for (what, r) in &self.resources {
            println!("  {what:<30} {r}");
        }
        println!(
            "  host MemAvailable: {:.1} GiB before, {:.1} GiB at the end (helpers running)",
            self.mem.0 as f64 / 1048576.0,
            self.mem.1 as f64 / 1048576.0
        );
    }
}
