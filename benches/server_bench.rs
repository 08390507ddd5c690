//! dms-server benchmark: how long a mount takes through the daemon, and how much of that is
//! the daemon itself. Plain `std` timing, figures on stdout, no assertions on them.
//!
//! ```text
//! cargo build --release -p dms-testfs        # optional: the bench does it itself (below)
//! cargo bench -p dms --bench server_bench
//! DMS_BENCH_QUICK=1 cargo bench -p dms --bench server_bench     # smoke run, ~20 s
//! ```
//!
//! Needs what the end-to-end tests need (root, `/dev/fuse`, util-linux `unshare`, Debian's
//! rabbitmq-server, the Barbican venv: `bash scripts/infra/install-test-infra.sh`).
//!
//! Measured, in one run (median and p95; iteration counts are the full run's, about a
//! fifth of them with `DMS_BENCH_QUICK=1`):
//!
//! - **Floor 1 — the helper alone:** exec `dms-testfs` with the helper environment the
//!   daemon gives it (`vault_data_directory`, AWS keys, `vault_s3_bucket`), time exec → its
//!   mount is in `/proc/self/mountinfo` (woken by POLLPRI, as the daemon is), then the
//!   listing of its root (the daemon's probe), then SIGTERM → mount gone and process
//!   reaped. 50 runs.
//! - **Floor 2 — a bare AMQP round trip:** a client publishes a persistent request to a
//!   durable queue with a publisher confirm and waits for the answer on its exclusive reply
//!   queue; a consumer in this process (its own connection, prefetch, manual ack) publishes
//!   the reply with a confirm and then acks: the daemon's request/reply shape without the
//!   daemon. 200 round trips.
//! - **Floor 3 — the Barbican fetch alone:** the daemon's two GETs (`<secret_ref>` metadata,
//!   then `<secret_ref>/payload`) against the test Barbican, one reused HTTP client, 50 runs;
//!   the same against a **stand-in secret store** in this process (plain threads, HTTP/1.1
//!   keep-alive). Then bursts (what a burst of mounts asks of the store), each with the
//!   count of TCP listen-queue overflows meanwhile (`/proc/net/netstat`): 16 fetches at once
//!   straight at the test Barbican, 64 through a **queueing proxy** in front of it, 64 at the
//!   stand-in. The test Barbican is one Python process (GIL, ~20 ms a fetch, wsgiref with a
//!   listen backlog of 5 and HTTP/1.0, so a connection per GET): under a burst it drops
//!   SYNs and clients wait out 1 s, 3 s, ... retransmissions; 64 at once make some fetches
//!   time out. The proxy accepts everything and forwards 4 connections at a time, as
//!   Apache/HAProxy in front of a production Barbican would.
//! - **Daemon latency:** the release `dms-server` (`CARGO_BIN_EXE_dms-server`) with a private
//!   RabbitMQ, the Barbican holding the credentials and `dms-testfs` as its helper: mount
//!   (request published → reply received) and unmount, 50 cycles of distinct targets, then
//!   the daemon's overhead = daemon median − (floor 1 + floor 2 + floor 3) medians. Again
//!   with the stand-in store, where the floors are far smaller than the overhead.
//! - **Throughput:** 64 mount requests published at once, time until all 64 replies; then
//!   64 unmounts. With Barbican behind the proxy: the defaults (`max_concurrent_targets`
//!   16, `prefetch` 32), `DMS_MAX_CONCURRENT_TARGETS=64` (the prefetch of 32 still caps
//!   deliveries in flight), and both at 64; with the stand-in store: the defaults, and both
//!   at 64. Failed requests are counted and reported, not fatal.
//!
//! Everything that mounts runs in a private mount namespace: `main` re-executes this binary
//! under `unshare -m --propagation private` with `DMS_BENCH_MOUNT_NS=1` set, and exits with
//! the child's status (its output goes straight to this process's stdout/stderr).
//!
//! **The helper binary.** `cargo bench -p dms` builds this package's binaries (so
//! `dms-server`) with the bench profile (release), but not `dms-testfs`, which lives in
//! another workspace package. Before re-executing, the bench runs
//! `cargo build --release -p dms-testfs --bin dms-testfs` (`$CARGO`, else `cargo`; a no-op
//! when it is up to date; without `--release` when the bench runs as a test, in the debug
//! profile) into the target directory that holds `dms-server`, so a stale helper is never
//! measured; if that build fails but a binary is there, it says so and
//! uses it. `DMS_TESTFS_BIN=/path/to/dms-testfs` skips all that.
//!
//! Other knobs: `DMS_BENCH_LOG_LEVEL` (the daemon's `DMS_LOG_LEVEL`, default `info`);
//! `DMS_BENCH_ONLY=scale` runs only the latency and footprint at scale (about 30 s: what a
//! change to the daemon's memory is measured with); `DMS_BENCH_KEEP=1` keeps the daemon's
//! temp directory (its log has one `Mount done`/`Unmount done` line per request, with
//! `elapsed_ms` inside the daemon). The daemon's journal lives under
//! `/tmp` (the same disk as the target directory here, not tmpfs: its fsyncs count).
//!
//! Run as a test (`cargo test --benches`, no `--bench` argument) it does the quick run, with
//! the debug binaries: that is the suite's smoke run (figures printed, never compared).
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/e2e/mod.rs"]
mod e2e;

#[path = "common/mod.rs"]
mod common;

#[path = "server/scale.rs"]
mod scale;

use common::{failures, keep, poll_table, secs, Samples, TOKEN};
use e2e::{s3_mount, unmount, Daemon};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{mountns, Barbican, Broker};

const ACCESS_KEY: &str = "AKIABENCH";
const SECRET_KEY: &str = "bench-secret-key-value";
const BUCKET: &str = "bench-bucket";

/// Iteration counts for one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    helper_runs: usize,
    amqp_round_trips: usize,
    barbican_fetches: usize,
    daemon_cycles: usize,
    burst: usize,
    /// Requesters (and floor threads) in the parallel run, and cycles each.
    parallel_clients: usize,
    parallel_cycles: usize,
    /// Targets mounted beside the latency run at scale.
    live: usize,
    /// Rounds of the latency run at scale (none, then `live`, alternating).
    scale_rounds: usize,
}

const FULL: Plan = Plan {
    helper_runs: 50,
    amqp_round_trips: 200,
    barbican_fetches: 50,
    daemon_cycles: 50,
    burst: 64,
    parallel_clients: 20,
    parallel_cycles: 5,
    live: 1000,
    scale_rounds: 3,
};
const QUICK: Plan = Plan {
    helper_runs: 10,
    amqp_round_trips: 40,
    barbican_fetches: 10,
    daemon_cycles: 10,
    burst: 16,
    parallel_clients: 20,
    parallel_cycles: 1,
    live: 100,
    scale_rounds: 1,
};

fn main() {
    let Some((quick, testfs)) = common::enter() else { return };
    run(if quick { QUICK } else { FULL }, quick, &testfs);
}

fn run(plan: Plan, quick: bool, testfs: &Path) {
    println!(
        "dms-server bench ({} run{}): helper {}",
        if quick { "quick" } else { "full" },
        if quick { ", DMS_BENCH_QUICK=1 or run as a test" } else { "" },
        testfs.display()
    );
    let dir = support::temp_dir("dms-bench-");
    let t = Instant::now();
    // The suite's node and Barbican under scripts/test.sh's smoke run; private ones otherwise.
    let broker = Broker::shared();
    let barbican = Barbican::shared();
    let secret_ref = barbican.store_secret(TOKEN, &credentials());
    println!(
        "infrastructure: RabbitMQ up in {}, Barbican up in {} ({} total; 0 s: the suite's)",
        secs(broker.startup_time()),
        secs(barbican.startup_time()),
        secs(t.elapsed())
    );
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let stand_in = common::start_stand_in_store(credentials());
    // The latency and footprint at scale, against the stand-in store (its fetches are far
    // below the daemon's own time).
    let at_scale = || {
        rt.block_on(scale::latency_at_scale(
            broker,
            &stand_in,
            testfs,
            &scale::sub(dir.path(), "scale"),
            plan.live,
            plan.daemon_cycles,
            plan.scale_rounds,
            !quick,
        ))
    };
    if std::env::var("DMS_BENCH_ONLY").is_ok_and(|only| only == "scale") {
        println!("\n== DMS_BENCH_ONLY=scale: only the latency and footprint at scale");
        let ratio = at_scale();
        println!("mount latency at {} live mounts / at none: {ratio:.2}x", plan.live);
        return;
    }
    let proxy = start_queueing_proxy(barbican_port(&barbican), 4);
    let proxied_ref = secret_ref.replace(&barbican.url(), &format!("http://127.0.0.1:{proxy}"));

    println!("\n== floors");
    let helper = floor_helper(testfs, &dir.path().join("floor1"), plan.helper_runs);
    let amqp = rt.block_on(floor_amqp(broker, plan.amqp_round_trips));
    let fetch = rt.block_on(floor_fetch("Barbican", &secret_ref, plan.barbican_fetches));
    let fetch_fast = rt.block_on(floor_fetch("stand-in", &stand_in, plan.barbican_fetches));
    rt.block_on(floor_fetch_burst("Barbican", &secret_ref, plan.burst.min(16)));
    rt.block_on(floor_fetch_burst("Barbican via the proxy", &proxied_ref, plan.burst));
    rt.block_on(floor_fetch_burst("stand-in", &stand_in, plan.burst));

    let mut goals = Vec::new();
    for (store, secret, fetched) in
        [("Barbican", &secret_ref, &fetch), ("the stand-in store", &stand_in, &fetch_fast)]
    {
        println!("\n== daemon with {store}: mount/unmount latency, one request at a time");
        let node = format!("bench-latency-{}", if store == "Barbican" { "b" } else { "s" });
        let (mount, unmount) =
            rt.block_on(daemon_latency(broker, secret, testfs, plan.daemon_cycles, &node));
        let floor_mount = helper.mount.median() + amqp.median() + fetched.median();
        let floor_unmount = helper.unmount.median() + amqp.median();
        println!(
            "overhead (mount)   = daemon {} - (helper exec→mounted {} + AMQP round trip {} + \
             fetch {}) = {}",
            ms(mount.median()),
            ms(helper.mount.median()),
            ms(amqp.median()),
            ms(fetched.median()),
            signed_ms(mount.median(), floor_mount)
        );
        println!(
            "overhead (unmount) = daemon {} - (helper SIGTERM→unmounted+reaped {} + AMQP \
             round trip {}) = {}",
            ms(unmount.median()),
            ms(helper.unmount.median()),
            ms(amqp.median()),
            signed_ms(unmount.median(), floor_unmount)
        );
        if store == "Barbican" {
            goals.push(format!(
                "S3 mount median / two-GET floor (helper + RPC + metadata + payload): {} / {} \
                 = {:.2}x (goal <= 1.0x, stretch 0.8x)",
                ms(mount.median()),
                ms(floor_mount),
                scale::ratio(mount.median(), floor_mount)
            ));
            goals.push(format!(
                "unmount median / its floor (helper SIGTERM→unmounted+reaped + RPC): {} / {} \
                 = {:.2}x (goal <= 0.7x)",
                ms(unmount.median()),
                ms(floor_unmount),
                scale::ratio(unmount.median(), floor_unmount)
            ));
        }
    }
    println!(
        "(the daemon checks each new mount with one statfs, answered by the helper without \
         listing its root, which takes {} here; and flushes its journal twice per mount)",
        ms(helper.probe.median())
    );

    let clients = plan.parallel_clients;
    println!("\n== {clients} clients in parallel vs. the no-server parallel floor (Barbican via the proxy)");
    let floor = scale::parallel_floor(
        &proxied_ref,
        testfs,
        &scale::sub(dir.path(), "parallel-floor"),
        clients,
        plan.parallel_cycles,
    );
    let daemon = rt.block_on(scale::daemon_parallel(
        broker,
        &proxied_ref,
        testfs,
        &scale::sub(dir.path(), "parallel-daemon"),
        clients,
        plan.parallel_cycles,
    ));
    println!("no-server floor: {floor:.1} cycles/s; daemon: {daemon:.1} cycles/s");
    goals.push(format!(
        "{clients}-client throughput / no-server parallel floor: {daemon:.1} / {floor:.1} cycles/s \
         = {:.2}x (goal >= 1.0x)",
        daemon / floor
    ));

    println!("\n== latency at scale: {} live mounts (the stand-in store)", plan.live);
    let ratio = at_scale();
    goals.push(format!(
        "mount latency at {} live mounts / at none: {ratio:.2}x (goal <= 1.1x)",
        plan.live
    ));
    println!("\n== ratios");
    for goal in &goals {
        println!("{goal}");
    }

    println!("\n== daemon: throughput, {} targets in flight", plan.burst);
    let wide = || vec![("DMS_MAX_CONCURRENT_TARGETS", "64".to_owned())];
    let wider =
        || vec![("DMS_MAX_CONCURRENT_TARGETS", "64".to_owned()), ("DMS_PREFETCH", "64".into())];
    let configs: [(&str, &str, Settings); 5] = [
        (
            "Barbican via the proxy, defaults (max_concurrent_targets 16, prefetch 32)",
            &proxied_ref,
            vec![],
        ),
        (
            "Barbican via the proxy, DMS_MAX_CONCURRENT_TARGETS=64 (prefetch 32)",
            &proxied_ref,
            wide(),
        ),
        (
            "Barbican via the proxy, DMS_MAX_CONCURRENT_TARGETS=64 DMS_PREFETCH=64",
            &proxied_ref,
            wider(),
        ),
        ("stand-in store, defaults (16, prefetch 32)", &stand_in, vec![]),
        ("stand-in store, DMS_MAX_CONCURRENT_TARGETS=64 DMS_PREFETCH=64", &stand_in, wider()),
    ];
    for (i, (label, secret, extra)) in configs.iter().enumerate() {
        rt.block_on(daemon_throughput(
            broker,
            secret,
            testfs,
            plan.burst,
            &format!("bench-burst-{i}"),
            label,
            extra,
        ));
    }
    drop(rt);
    drop(barbican);
    if keep() {
        println!("DMS_BENCH_KEEP: keeping {}", dir.keep().display());
    }
}

fn barbican_port(barbican: &Barbican) -> u16 {
    barbican.url().rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the URL")
}

/// Extra `DMS_*` settings for a daemon.
type Settings = Vec<(&'static str, String)>;

/// The helper environment the daemon gives `dms-testfs` for a target at `path`.
fn credentials_env(path: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("vault_data_directory", path.display().to_string()),
        ("vault_s3_bucket", BUCKET.into()),
        ("vault_storage_nfs_export", BUCKET.into()),
        ("vault_s3_region_name", "us-east-1".into()),
        ("vault_s3_endpoint_url", "http://127.0.0.1:1".into()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
    ]
}

fn credentials() -> String {
    e2e::testfs_credentials(ACCESS_KEY, SECRET_KEY, BUCKET)
}

// ---------------------------------------------------------------------------------------
// Samples and formatting

/// p95, in hundredths of a millisecond.
impl Samples {
    fn summary(&self) -> String {
        self.summary_with(95, ms)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn signed_ms(a: Duration, b: Duration) -> String {
    format!("{:+.2} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1e3)
}

// ---------------------------------------------------------------------------------------
// Floor 1: the helper alone

#[derive(Debug, Default)]
struct HelperFloor {
    mount: Samples,
    probe: Samples,
    unmount: Samples,
}

/// A helper that is SIGKILLed if the bench panics before stopping it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The helper as the daemon starts it: an explicit environment, `/`, no stdin, output to
/// a log file, its own process group.
fn helper_command(bin: &Path, path: &Path, log: File) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .envs(credentials_env(path))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0);
    cmd
}

fn floor_helper(bin: &Path, dir: &Path, runs: usize) -> HelperFloor {
    std::fs::create_dir_all(dir).unwrap();
    let log_path = dir.join("helper.log");
    let warmup = 3;
    let mut floor = HelperFloor::default();
    for i in 0..warmup + runs {
        let path = dir.join(format!("target-{i}"));
        std::fs::create_dir(&path).unwrap();
        let log = File::options().create(true).append(true).open(&log_path).unwrap();
        let mut table = File::open("/proc/self/mountinfo").unwrap();
        let mut cmd = helper_command(bin, &path, log);
        let t0 = Instant::now();
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        wait_table(&mut table, || mountns::mount_at(&path).is_some(), "the helper's mount");
        let mounted = t0.elapsed();
        let entry = mountns::mount_at(&path).unwrap();
        assert_eq!(entry.fs_type, "fuse.dms-testfs", "{entry:?}");
        let t1 = Instant::now();
        std::fs::read_dir(&path).unwrap().next().transpose().unwrap();
        let probed = t1.elapsed();
        let t2 = Instant::now();
        let pid = rustix::process::Pid::from_child(&child.0);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        wait_table(&mut table, || mountns::mount_at(&path).is_none(), "the helper's unmount");
        let status = child.0.wait().unwrap();
        let stopped = t2.elapsed();
        assert!(status.success(), "dms-testfs exited with {status}");
        if i >= warmup {
            floor.mount.push(mounted);
            floor.probe.push(probed);
            floor.unmount.push(stopped);
        }
    }
    println!("floor 1, helper exec → mount in mountinfo:   {}", floor.mount.summary());
    println!("floor 1, listing the new mount's root:       {}", floor.probe.summary());
    println!("floor 1, SIGTERM → unmounted and reaped:     {}", floor.unmount.summary());
    floor
}

/// Re-check `done` whenever `/proc/self/mountinfo` changes (POLLPRI), at least every 100 ms.
fn wait_table(table: &mut File, mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        poll_table(table, left);
    }
}

// ---------------------------------------------------------------------------------------
// Floor 2: a bare AMQP round trip

/// The e2e client speaks the daemon's wire format; publishes may be left unconfirmed to
/// put many requests in flight at once.
type Requester = e2e::Client;

/// Publish, wait for the confirm, then for the reply to exactly this request; timed.
async fn timed_call(client: &mut Requester, queue: &str, body: &[u8]) -> (Value, Duration) {
    let corr = uuid::Uuid::new_v4().to_string();
    let t0 = Instant::now();
    let confirm = client.publish(queue, body, &corr, true).await;
    assert!(!confirm.await.unwrap().is_nack(), "the broker refused the request");
    loop {
        let (c, reply) = client.reply().await;
        if c == corr {
            return (reply, t0.elapsed());
        }
    }
}

async fn floor_amqp(broker: &Broker, round_trips: usize) -> Samples {
    let queue = format!("bench-echo.{}", uuid::Uuid::new_v4());
    // The responder: its own connection, confirms, prefetch, a durable queue, manual acks,
    // reply published with a confirm before the ack — as the daemon's transport does.
    let conn =
        Connection::connect(&broker.amqp_url(), ConnectionProperties::default()).await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    channel.basic_qos(32, BasicQosOptions::default()).await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queue.as_str().into(), durable, FieldTable::default()).await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let responder = tokio::spawn(async move {
        let body = br#"{"status": "success", "error_msg": null, "success_msg": "echo"}"#;
        while let Some(Ok(d)) = consumer.next().await {
            let mut props = BasicProperties::default().with_content_type("application/json".into());
            if let Some(id) = d.properties.correlation_id() {
                props = props.with_correlation_id(id.clone());
            }
            let reply_to = d.properties.reply_to().clone().unwrap();
            let confirm = channel
                .basic_publish(
                    "".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    body.as_slice(),
                    props,
                )
                .await
                .unwrap();
            assert!(!confirm.await.unwrap().is_nack());
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    });

    let mut client = Requester::connect(broker).await;
    let request = s3_mount("echo", "/nowhere", "http://127.0.0.1:1/v1/secrets/x", TOKEN);
    let body = request.to_string();
    let mut samples = Samples::default();
    for i in 0..10 + round_trips {
        let (reply, took) = timed_call(&mut client, &queue, body.as_bytes()).await;
        assert_eq!(reply["success_msg"], "echo");
        if i >= 10 {
            samples.push(took);
        }
    }
    client.close().await;
    let _ = conn.close(200, "bye".into()).await;
    responder.abort();
    println!("floor 2, AMQP request → reply (confirms):    {}", samples.summary());
    samples
}

// ---------------------------------------------------------------------------------------
// Floor 3: the Barbican fetch alone

/// The daemon's two GETs: metadata, then the payload with the advertised content type.
async fn fetch(http: reqwest::Client, secret_ref: String) -> Result<(), String> {
    let get = |url: String, accept: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(url)
                .header("X-Auth-Token", TOKEN)
                .header("Accept", accept)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            if !r.status().is_success() {
                return Err(format!("Barbican answered {}", r.status()));
            }
            r.bytes().await.map_err(|e| format!("{e:?}"))
        }
    };
    let meta = get(secret_ref.clone(), "application/json".into()).await?;
    let meta: Value = serde_json::from_slice(&meta).map_err(|e| e.to_string())?;
    let accept = meta["content_types"]["default"].as_str().unwrap_or("text/plain").to_owned();
    let payload = get(format!("{secret_ref}/payload"), accept).await?;
    let creds: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    assert_eq!(creds["bucket"], BUCKET);
    Ok(())
}

/// As the daemon's client: 10 s per request (`credentials_timeout`'s default).
fn http_client() -> reqwest::Client {
    dms::exec::credentials::install_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

async fn floor_fetch(store: &str, secret_ref: &str, fetches: usize) -> Samples {
    let http = http_client();
    let mut samples = Samples::default();
    for i in 0..3 + fetches {
        let t0 = Instant::now();
        fetch(http.clone(), secret_ref.to_owned()).await.unwrap();
        if i >= 3 {
            samples.push(t0.elapsed());
        }
    }
    println!("floor 3, {store}: metadata + payload GETs: {}", samples.summary());
    samples
}

/// `burst` fetches at once, one fresh client (what a burst of mounts asks of the store).
async fn floor_fetch_burst(store: &str, secret_ref: &str, burst: usize) {
    let http = http_client();
    let overflows = listen_overflows();
    let t0 = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..burst {
        all.spawn(fetch(http.clone(), secret_ref.to_owned()));
    }
    let mut failed = Vec::new();
    while let Some(done) = all.join_next().await {
        if let Err(e) = done.unwrap() {
            failed.push(e);
        }
    }
    let took = t0.elapsed();
    println!(
        "floor 3, {store}: {burst} fetches at once: all done in {} = {:.1} fetches/s; TCP \
         listen-queue overflows meanwhile: {}{}",
        ms(took),
        burst as f64 / took.as_secs_f64(),
        overflows.since(),
        failures(&failed)
    );
}

/// A TCP proxy in front of the test Barbican that accepts every connection at once (Rust's
/// listen backlog) and forwards at most `upstream` of them at a time, queueing the rest:
/// what a production Barbican behind Apache or HAProxy looks like to the daemon. Without it
/// a burst of 64 connections overflows the test server's listen queue of 5, the dropped
/// SYNs are retransmitted after 1, 3, 7, 15 s, and fetches time out. Returns the port.
fn start_queueing_proxy(upstream_port: u16, upstream: usize) -> u16 {
    use std::sync::{Arc, Condvar, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let permits = Arc::new((Mutex::new(upstream), Condvar::new()));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let permits = Arc::clone(&permits);
            std::thread::spawn(move || {
                let (free, freed) = &*permits;
                let mut n = freed.wait_while(free.lock().unwrap(), |n| *n == 0).unwrap();
                *n -= 1;
                drop(n);
                proxy_one(client, upstream_port);
                *free.lock().unwrap() += 1;
                freed.notify_one();
            });
        }
    });
    port
}

fn proxy_one(client: std::net::TcpStream, upstream_port: u16) {
    use std::net::{Shutdown, TcpStream};
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else { return };
    let (Ok(mut from_client), Ok(mut to_server)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut &server, &mut &client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
}

/// `TcpExt: ListenOverflows` of this network namespace (the host's: the bench only
/// unshares the mount namespace): connection attempts dropped because a listener's accept
/// queue was full; each costs the client a SYN retransmission (1 s, then 3 s, ...).
#[derive(Debug, Clone, Copy)]
struct ListenOverflows(Option<u64>);

fn listen_overflows() -> ListenOverflows {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return ListenOverflows(None);
    };
    let at = names.split_whitespace().position(|n| n == "ListenOverflows");
    ListenOverflows(at.and_then(|i| values.split_whitespace().nth(i)?.parse().ok()))
}

impl ListenOverflows {
    fn since(self) -> String {
        match (self.0, listen_overflows().0) {
            (Some(a), Some(b)) => b.saturating_sub(a).to_string(),
            _ => "unknown".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The daemon

/// A daemon with the e2e layout, the release helper and `extra` settings.
fn start_daemon(
    broker: &Broker,
    dir: &Path,
    node: &str,
    testfs: &Path,
    extra: &[(&str, String)],
) -> Daemon {
    Daemon::start_with(broker, dir, node, testfs, &common::log_level(), extra)
}

/// Kills the helpers a daemon left behind (a bench that failed half-way), then stops it.
struct DaemonGuard(Option<Daemon>);

impl DaemonGuard {
    fn daemon(&self) -> &Daemon {
        self.0.as_ref().unwrap()
    }

    fn stop(mut self) {
        let daemon = self.0.take().unwrap();
        // Unmounts are answered before their helpers are stopped: give those a moment.
        let left = daemon.pid_files_after_cleanup();
        assert!(left.is_empty(), "helpers left running: {left:?}");
        daemon.stop();
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let Some(daemon) = self.0.take() else { return };
        for name in daemon.pid_files() {
            let pid = std::fs::read_to_string(daemon.pid_dir.join(&name)).unwrap_or_default();
            if let Some(pid) = pid.trim().parse().ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        eprintln!("--- daemon log (tail) ---\n{}", support::log_tail(&daemon.log, 40));
    }
}

fn expect_success(reply: &Value, what: &str, daemon: &Daemon) {
    assert!(
        reply["status"] == "success",
        "{what}: {reply}\n--- daemon log ---\n{}",
        support::log_tail(&daemon.log, 40)
    );
}

fn daemon_dir() -> support::TestDir {
    let dir = support::temp_dir("dms-bench-daemon-");
    if keep() {
        println!("DMS_BENCH_KEEP: keeping {}", dir.path().display());
    }
    dir
}

fn finish_dir(dir: support::TestDir) {
    if keep() {
        let _ = dir.keep();
    }
}

async fn daemon_latency(
    broker: &Broker,
    secret_ref: &str,
    testfs: &Path,
    cycles: usize,
    node: &str,
) -> (Samples, Samples) {
    let dir = daemon_dir();
    let guard = DaemonGuard(Some(start_daemon(broker, dir.path(), node, testfs, &[])));
    let daemon = guard.daemon();
    let mut client = Requester::connect(broker).await;
    latency(&mut client, daemon, secret_ref, "warm", 3).await;
    let (mounts, unmounts) = latency(&mut client, daemon, secret_ref, "lat", cycles).await;
    let mut inside = Samples::default();
    client.close().await;
    // The daemon's own view: `elapsed_ms` of its `Mount done` lines.
    for line in daemon.log_text().lines().filter(|l| l.contains("Mount done for target")) {
        let elapsed = line.split("elapsed_ms=").nth(1).and_then(|s| {
            s.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<u64>().ok())
        });
        if let Some(e) = elapsed {
            inside.push(Duration::from_millis(e));
        }
    }
    println!("daemon mount   (request → reply):            {}", mounts.summary());
    println!("daemon unmount (request → reply):            {}", unmounts.summary());
    if !inside.0.is_empty() {
        println!(
            "daemon's own `Mount done` elapsed_ms (mounts, incl. warm-up; whole ms): \
             median {}",
            ms(inside.median())
        );
    }
    guard.stop();
    finish_dir(dir);
    (mounts, unmounts)
}

/// One request at a time: mount and unmount latency of `cycles` fresh targets.
async fn latency(
    client: &mut Requester,
    daemon: &Daemon,
    secret_ref: &str,
    prefix: &str,
    cycles: usize,
) -> (Samples, Samples) {
    let queue = format!("dms.{}", daemon.node);
    let (mut mounts, mut unmounts) = (Samples::default(), Samples::default());
    for i in 0..cycles {
        let target = format!("{prefix}-{i}");
        let path = daemon.path(&target);
        let body = s3_mount(&target, &path, secret_ref, TOKEN).to_string();
        let (reply, took) = timed_call(client, &queue, body.as_bytes()).await;
        expect_success(&reply, "mount", daemon);
        let entry = mountns::mount_at(Path::new(&path)).expect("mounted after a success reply");
        assert_eq!(entry.fs_type, "fuse.dms-testfs");
        mounts.push(took);
        let body = unmount(&target, &path, "s3").to_string();
        let (reply, took) = timed_call(client, &queue, body.as_bytes()).await;
        expect_success(&reply, "unmount", daemon);
        unmounts.push(took);
    }
    (mounts, unmounts)
}

async fn daemon_throughput(
    broker: &Broker,
    secret_ref: &str,
    testfs: &Path,
    burst: usize,
    node: &str,
    label: &str,
    extra: &[(&str, String)],
) {
    let dir = daemon_dir();
    let guard = DaemonGuard(Some(start_daemon(broker, dir.path(), node, testfs, extra)));
    let daemon = guard.daemon();
    let queue = format!("dms.{}", daemon.node);
    let mut client = Requester::connect(broker).await;
    // Warm-up: one mount/unmount (first Barbican connection, first helper exec).
    let path = daemon.path("warm-up");
    let body = s3_mount("warm-up", &path, secret_ref, TOKEN).to_string();
    expect_success(&timed_call(&mut client, &queue, body.as_bytes()).await.0, "mount", daemon);
    let body = unmount("warm-up", &path, "s3").to_string();
    expect_success(&timed_call(&mut client, &queue, body.as_bytes()).await.0, "unmount", daemon);

    let targets: Vec<String> = (0..burst).map(|i| format!("burst-{i}")).collect();
    let mount_bodies: Vec<String> = targets
        .iter()
        .map(|t| s3_mount(t, &daemon.path(t), secret_ref, TOKEN).to_string())
        .collect();
    let unmount_bodies: Vec<String> =
        targets.iter().map(|t| unmount(t, &daemon.path(t), "s3").to_string()).collect();
    let overflows = listen_overflows();
    let (mounted, mount_failures) = common::burst(&mut client, &queue, &mount_bodies).await;
    let overflows = overflows.since();
    let mounts_now = mountns::mounts();
    let ok: Vec<&String> = targets
        .iter()
        .filter(|t| {
            let path = daemon.path(t);
            mounts_now.iter().any(|m| m.mount_point == path && m.fs_type == "fuse.dms-testfs")
        })
        .collect();
    assert_eq!(ok.len(), burst - mount_failures.len(), "mounts in the table vs success replies");
    let (unmounted, unmount_failures) = common::burst(&mut client, &queue, &unmount_bodies).await;
    client.close().await;
    println!("{label}:");
    println!(
        "  {burst} mounts   in {} = {:.1} mounts/s (TCP listen-queue overflows meanwhile: \
         {overflows}){}",
        ms(mounted),
        burst as f64 / mounted.as_secs_f64(),
        failures(&mount_failures)
    );
    println!(
        "  {burst} unmounts in {} = {:.1} unmounts/s{}",
        ms(unmounted),
        burst as f64 / unmounted.as_secs_f64(),
        failures(&unmount_failures)
    );
    guard.stop();
    finish_dir(dir);
}
