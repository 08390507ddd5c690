//! Fleet benchmark (issue 28, item 5): N daemons on one three-node RabbitMQ cluster, the
//! way a deployment's compute nodes share their control plane's broker. Figures on stdout,
//! nothing asserted on them (failed or unanswered requests are counted and reported).
//!
//! ```text
//! cargo bench -p dms --bench fleet_bench                            # N = 1, 10, 50
//! DMS_BENCH_QUICK=1 cargo bench -p dms --bench fleet_bench          # N = 2, paced; ~1 min
//! DMS_BENCH_FLEET_URL=node cargo bench -p dms --bench fleet_bench   # one node per daemon
//! ```
//!
//! For each N: a tenant (virtual host and user) of its own on the cluster
//! (`tests/support/cluster.rs`, started once, with the `ha-dms` mirroring policy), N
//! `dms-server`s, each with its own node id, mount base, PID directory and journal, the
//! release `dms-testfs` as helper and the in-process stand-in secret store (so the figures
//! are the daemons' and the broker's, not the test Barbican's). Each daemon is given all
//! three nodes in a shuffled oslo.messaging URL, as deployments configure it (issue 28 item
//! 1), or with `DMS_BENCH_FLEET_URL=node` daemon `i` node `i % 3 + 1` alone. The load is the same for every N: [`CLIENTS`] clients, each connected to the
//! cluster (all three URLs, starting at a different node, reconnecting on loss), mount and
//! unmount a target of their own, moving round the daemons: the broker's side (N
//! connections, consumers, heartbeats, mirrored queues) grows with N, the offered load does
//! not (one machine's two cores cannot stand for N compute nodes under N times the load).
//! The quick run (a smoke run beside the suite's tests, on the same two cores) offers less:
//! [`QUICK_CLIENTS`] clients, each pausing [`QUICK_PAUSE`] after a mount and unmount, enough
//! for every window to have mounts to report; the full run's clients go back to back.
//!
//! Reported per N: the broker's connections and channels in the tenant
//! (`rabbitmqctl list_connections` / `list_channels`: N daemons plus the clients), then
//! mount latency (request published → reply) p50/p99 in three windows: steady; one node
//! SIGKILLed, down a while, restarted and rejoined; a rolling restart of all three nodes
//! (`stop_app`/`start_app`; full run only: it takes about half a minute more).
//! Run as a test (`cargo test --benches`, the suite's smoke run) it does the quick run.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/e2e/mod.rs"]
mod e2e;

#[path = "common/mod.rs"]
mod common;

use common::{secs, Samples, TOKEN};
use e2e::traffic::{Ledger, SturdyClient};
use e2e::{mounted_msg, s3_mount, unmount, unmounted_msg, Daemon};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Cluster, Tenant};

/// Clients mounting at once, whatever N (full run).
const CLIENTS: usize = 4;
/// The quick run's clients, and their pause between two cycles (see the module docs).
const QUICK_CLIENTS: usize = 2;
const QUICK_PAUSE: Duration = Duration::from_millis(200);

/// One mount: when it was sent, how long until its reply, whether it was the right reply.
type Sample = (Instant, Duration, bool);

/// The durations of one run.
struct Plan {
    fleets: &'static [usize],
    clients: usize,
    /// A client's pause after each mount and unmount.
    pause: Duration,
    steady: Duration,
    down: Duration,
    rolling: bool,
}

fn main() {
    let Some((quick, testfs)) = common::enter() else { return };
    let plan = if quick {
        Plan {
            fleets: &[2],
            clients: QUICK_CLIENTS,
            pause: QUICK_PAUSE,
            steady: Duration::from_secs(3),
            down: Duration::from_secs(2),
            rolling: false,
        }
    } else {
        Plan {
            fleets: &[1, 10, 50],
            clients: CLIENTS,
            pause: Duration::ZERO,
            steady: Duration::from_secs(15),
            down: Duration::from_secs(5),
            rolling: true,
        }
    };
    let cluster_url = !std::env::var("DMS_BENCH_FLEET_URL").is_ok_and(|v| v == "node");
    println!(
        "fleet bench ({} run): N = {:?}, {} clients pausing {:?} between cycles, daemons given {}; helper {}",
        if quick { "quick" } else { "full" },
        plan.fleets,
        plan.clients,
        plan.pause,
        if cluster_url { "the cluster URL (all three nodes)" } else { "one node each (i % 3 + 1)" },
        testfs.display()
    );
    let cluster = Cluster::start();
    println!("three-node cluster started in {}", cluster.startup_report());
    let secret_ref = common::start_stand_in_store(e2e::testfs_credentials(
        "AKIAFLEET",
        "fleet-bench-secret",
        "bench-bucket",
    ));
    let rt = e2e::runtime();
    for &n in plan.fleets {
        let tenant = cluster.tenant(&format!("fleet{n}"));
        let dir = support::temp_dir("dms-fleet-");
        let t0 = Instant::now();
        let daemons: Vec<Daemon> = (0..n)
            .map(|i| {
                let url = if cluster_url {
                    tenant.cluster_url_shuffled()
                } else {
                    tenant.amqp_url(i % 3 + 1)
                };
                let sub = dir.path().join(format!("d{i}"));
                std::fs::create_dir_all(&sub).unwrap();
                let node = format!("fleet-{n}-{i}");
                let env =
                    e2e::standard_env_for(&url, &sub, &node, &testfs, &common::log_level(), &[]);
                Daemon::spawn(&sub, &node, env)
            })
            .collect();
        let started = t0.elapsed();
        let (connections, channels) =
            (count(&cluster, "connections", &tenant), count(&cluster, "channels", &tenant));
        let load = Load::start(&rt, &tenant, &daemons, &secret_ref, &plan);
        std::thread::sleep(plan.steady);
        let steady = load.mark();
        println!(
            "N={n:>2}: {n} daemons consuming in {}; broker: {connections} connections, {channels} channels \
             before the clients ({} and {} with them)",
            secs(started),
            count(&cluster, "connections", &tenant),
            count(&cluster, "channels", &tenant)
        );
        cluster.kill(3);
        std::thread::sleep(plan.down);
        cluster.restart(3);
        std::thread::sleep(Duration::from_secs(2));
        let killed = load.mark();
        let rolled = plan.rolling.then(|| {
            cluster.rolling_restart(Duration::from_secs(1));
            std::thread::sleep(Duration::from_secs(2));
            load.mark()
        });
        let (samples, unanswered) = load.stop(&rt);
        report(n, "steady", &samples, (t0, steady));
        report(n, "node 3 SIGKILLed, restarted", &samples, (steady, killed));
        if let Some(rolled) = rolled {
            report(n, "rolling restart", &samples, (killed, rolled));
        }
        let left: usize = daemons.iter().map(|d| d.pid_files_after_cleanup().len()).sum();
        if unanswered > 0 || left > 0 {
            println!("N={n:>2}: {unanswered} requests UNANSWERED, {left} PID files left after the last unmounts");
        }
        for daemon in daemons {
            daemon.stop();
        }
        if common::keep() {
            println!("DMS_BENCH_KEEP: {}", dir.keep().display());
        }
    }
}

/// How many `list_<what>` rows the tenant's virtual host has (asked of node 1).
fn count(cluster: &Cluster, what: &str, tenant: &Tenant) -> usize {
    cluster.list(1, what, &tenant.vhost, &["pid"]).map_or(0, |rows| rows.len())
}

/// p50/p99 of the mounts first sent in `window`, and how many got a wrong reply.
fn report(n: usize, phase: &str, samples: &[Sample], window: (Instant, Instant)) {
    let inside: Vec<&Sample> =
        samples.iter().filter(|s| s.0 >= window.0 && s.0 < window.1).collect();
    let wrong = inside.iter().filter(|s| !s.2).count();
    let mut latencies = Samples::default();
    inside.iter().for_each(|s| latencies.push(s.1));
    if latencies.0.is_empty() {
        println!("N={n:>2} {phase}: no mount finished in this window");
        return;
    }
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "N={n:>2} {phase}: mount p50 {}, p99 {}, max {} (n={}){}",
        ms(latencies.median()),
        ms(latencies.pct(0.99)),
        ms(latencies.pct(1.0)),
        latencies.0.len(),
        if wrong > 0 { format!("; {wrong} WRONG replies") } else { String::new() }
    );
}

/// The clients of one N (see the module docs).
struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
}

impl Load {
    fn start(
        rt: &tokio::runtime::Runtime,
        tenant: &Tenant,
        daemons: &[Daemon],
        secret_ref: &str,
        plan: &Plan,
    ) -> Load {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let urls: Vec<String> = (1..=3).map(|n| tenant.amqp_url(n)).collect();
        let fleet: Vec<(String, PathBuf)> =
            daemons.iter().map(|d| (d.node.clone(), d.base.clone())).collect();
        let (clients, pause) = (plan.clients, plan.pause);
        let tasks = (0..clients)
            .map(|j| {
                let (urls, fleet, secret_ref) =
                    (urls.clone(), fleet.clone(), secret_ref.to_owned());
                let (samples, stop) = (Arc::clone(&samples), Arc::clone(&stop));
                let pace = (clients, pause);
                rt.spawn(client(j, pace, urls, fleet, secret_ref, samples, stop))
            })
            .collect();
        Load { samples, stop, tasks }
    }

    /// Now, as a window's boundary.
    fn mark(&self) -> Instant {
        Instant::now()
    }

    /// Stops the clients (each ends its cycle unmounted); the samples and how many
    /// requests went unanswered.
    fn stop(self, rt: &tokio::runtime::Runtime) -> (Vec<Sample>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let unanswered: usize = rt.block_on(async {
            let mut total = 0;
            for task in self.tasks {
                total += task.await.unwrap();
            }
            total
        });
        let samples = std::mem::take(&mut *self.samples.lock().unwrap());
        (samples, unanswered)
    }
}

/// Client `j` of `clients`: target `c<j>` on daemon `j`, `j + clients`, ... (mod N), mount
/// then unmount each, then `pause`; returns how many of its requests went unanswered.
async fn client(
    j: usize,
    (clients, pause): (usize, Duration),
    urls: Vec<String>,
    fleet: Vec<(String, PathBuf)>,
    secret_ref: String,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut sturdy = SturdyClient::new(urls, j);
    let ledger = Ledger::default();
    let target = format!("c{j}");
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let (node, base) = &fleet[(j + k * clients) % fleet.len()];
        k += 1;
        let path = base.join(&target).display().to_string();
        let queue = format!("dms.{node}");
        let t0 = Instant::now();
        let mount = s3_mount(&target, &path, &secret_ref, TOKEN);
        let Some(reply) = sturdy.call(&queue, &target, &mount, mounted_msg(&path), &ledger).await
        else {
            return 1;
        };
        samples.lock().unwrap().push((t0, t0.elapsed(), reply == mounted_msg(&path)));
        let unmount = unmount(&target, &path, "s3");
        if sturdy.call(&queue, &target, &unmount, unmounted_msg(&path), &ledger).await.is_none() {
            return 1;
        }
        if !pause.is_zero() && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(pause).await;
        }
    }
    sturdy.finish(Duration::from_millis(200), &ledger).await;
    0
}
