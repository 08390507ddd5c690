//! Containment benchmark: what hung NFS work costs the healthy targets beside it, and how
//! fast an NFS server's circuit breaker opens and closes. Plain `std` timing, figures on
//! stdout, no assertions on them (only on correctness: every healthy request succeeds).
//!
//! ```text
//! cargo bench -p dms --bench containment_bench
//! DMS_BENCH_QUICK=1 cargo bench -p dms --bench containment_bench     # smoke run, ~1.5 min
//! ```
//!
//! Needs what the end-to-end tests need (see `server_bench.rs`). One release `dms-server`
//! with a private RabbitMQ, the in-process stand-in secret store (so the figures are the
//! daemon's, not the test Barbican's) and the release `dms-testfs` as its S3 helper;
//! mount(8) is the test suite's stand-in (`tests/e2e/stand_in.rs`), which hangs for every
//! export of server 192.0.2.10 and mounts a tmpfs for any other.
//!
//! - **Healthy S3 latency:** mount and unmount (request published → reply), one at a time,
//!   of fresh targets: idle; beside 20 hung NFS targets of one server; beside 50; beside 50
//!   plus a backlog of 40 more requests for one of the hung targets (more than the prefetch
//!   of 32). Median and p95, and each p95 against the idle one (the goal: within 2×).
//! - **Breaker:** with `nfs_mount_timeout` 2 s and `nfs_breaker_backoff` 3 s, the time from a
//!   mount against the hung server to its failure (the breaker opens), the latency of the
//!   mounts refused meanwhile, and the time from the server answering again to the first
//!   successful mount (the probe closes it).
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/e2e/mod.rs"]
mod e2e;

#[path = "common/mod.rs"]
mod common;

use common::{secs, Samples, TOKEN};
use e2e::stand_in::StandIn;
use e2e::{mounted_msg, s3_mount, unmount, unmounted_msg, uuid, Client, Daemon};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::Broker;

const HUNG: &str = "192.0.2.10";

fn main() {
    let Some((quick, testfs)) = common::enter() else { return };
    let cycles = if quick { 8 } else { 40 };
    println!(
        "containment bench ({} run, {cycles} S3 cycles per phase): helper {}",
        if quick { "quick" } else { "full" },
        testfs.display()
    );
    // The suite's node under scripts/test.sh's smoke run (a virtual host of its own), a
    // private one otherwise.
    let broker = Broker::shared();
    let secret_ref = common::start_stand_in_store(e2e::testfs_credentials(
        "AKIACONTAIN",
        "containment-bench-secret",
        "bench-bucket",
    ));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    latency_beside_hung_targets(&rt, broker, &testfs, &secret_ref, cycles);
    breaker_timing(&rt, broker, &testfs, cycles);
}

fn daemon(
    broker: &Broker,
    dir: &Path,
    testfs: &Path,
    node: &str,
    extra: &[(&str, String)],
) -> Daemon {
    Daemon::start_with(broker, dir, node, testfs, &common::log_level(), extra)
}

fn nfs(target: &str, path: &str, server: &str) -> Value {
    e2e::nfs_mount(target, path, &format!("{server}:/exports/backup"), "hard")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn latency_beside_hung_targets(
    rt: &tokio::runtime::Runtime,
    broker: &Broker,
    testfs: &Path,
    secret_ref: &str,
    cycles: usize,
) {
    println!(
        "\n== healthy S3 mount/unmount latency beside hung NFS work (nfs_mount_timeout 600 s)"
    );
    let dir = support::temp_dir("dms-contain-bench-");
    let stand_in = StandIn::new(dir.path());
    stand_in.set(&format!("hang {HUNG}"));
    let mut extra = stand_in.env();
    extra.push(("DMS_NFS_MOUNT_TIMEOUT", "600".into()));
    let daemon = daemon(broker, dir.path(), testfs, "bench-contain", &extra);
    let mut phases: Vec<(String, Samples, Samples)> = Vec::new();
    rt.block_on(async {
        let mut client = Client::connect(broker).await;
        cycles_of(&mut client, &daemon, secret_ref, "warm", 3).await;
        let (m, u) = cycles_of(&mut client, &daemon, secret_ref, "idle", cycles).await;
        phases.push(("idle".into(), m, u));
        let mut hung = 0;
        for (upto, label) in
            [(20, "beside 20 hung NFS targets"), (50, "beside 50 hung NFS targets")]
        {
            while hung < upto {
                let target = format!("nfs-{hung}");
                let body = nfs(&target, &daemon.path(&target), HUNG).to_string();
                client.send(&daemon.node, body.as_bytes(), &uuid(), true).await;
                hung += 1;
            }
            // The server's pool is busy with hung mount(8)s, the rest are parked.
            stand_in.wait_runs(4, &daemon);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (m, u) =
                cycles_of(&mut client, &daemon, secret_ref, &format!("h{upto}"), cycles).await;
            phases.push((label.into(), m, u));
        }
        let body = nfs("nfs-0", &daemon.path("nfs-0"), HUNG).to_string();
        for _ in 0..40 {
            client.send(&daemon.node, body.as_bytes(), &uuid(), true).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (m, u) = cycles_of(&mut client, &daemon, secret_ref, "backlog", cycles).await;
        phases.push(("beside 50 hung + a backlog of 40 for one".into(), m, u));
        client.close().await;
    });
    let idle_p95 = phases[0].1.pct(0.95);
    for (label, mounts, unmounts) in &phases {
        println!(
            "{label:<42} mount {}; unmount median {}; mount p95 / idle p95 = {:.2}",
            mounts.summary_with(95, ms),
            ms(unmounts.median()),
            mounts.pct(0.95).as_secs_f64() / idle_p95.as_secs_f64()
        );
    }
    println!(
        "mount(8) runs against the hung server: {} (nfs_ops_per_server 4)",
        stand_in.runs().len()
    );
    let t = Instant::now();
    daemon.stop();
    println!("stop with 4 hung mount(8)s and 86 parked requests: {}", secs(t.elapsed()));
}

/// `count` S3 mount/unmount cycles of fresh targets, one request at a time.
async fn cycles_of(
    client: &mut Client,
    daemon: &Daemon,
    secret_ref: &str,
    prefix: &str,
    count: usize,
) -> (Samples, Samples) {
    let (mut mounts, mut unmounts) = (Samples::default(), Samples::default());
    for i in 0..count {
        let target = format!("{prefix}-{i}");
        let path = daemon.path(&target);
        let t = Instant::now();
        let reply =
            client.call(&daemon.node, &s3_mount(&target, &path, secret_ref, TOKEN), &uuid()).await;
        mounts.push(t.elapsed());
        assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
        let t = Instant::now();
        let reply = client.call(&daemon.node, &unmount(&target, &path, "s3"), &uuid()).await;
        unmounts.push(t.elapsed());
        assert_eq!(reply, unmounted_msg(&path));
    }
    (mounts, unmounts)
}

fn breaker_timing(rt: &tokio::runtime::Runtime, broker: &Broker, testfs: &Path, refusals: usize) {
    println!("\n== the hung server's breaker (nfs_mount_timeout 2 s, nfs_breaker_backoff 3 s)");
    let dir = support::temp_dir("dms-contain-bench-");
    let stand_in = StandIn::new(dir.path());
    stand_in.set(&format!("hang {HUNG}"));
    let mut extra = stand_in.env();
    extra.push(("DMS_NFS_MOUNT_TIMEOUT", "2".into()));
    extra.push(("DMS_NFS_BREAKER_BACKOFF", "3".into()));
    let daemon = daemon(broker, dir.path(), testfs, "bench-breaker", &extra);
    rt.block_on(async {
        let mut client = Client::connect(broker).await;
        let path = daemon.path("first");
        let t = Instant::now();
        let reply = client.call(&daemon.node, &nfs("first", &path, HUNG), &uuid()).await;
        let opened = t.elapsed();
        let opened_at = Instant::now();
        assert_eq!(reply["status"], "error", "{reply}");
        let mut refused = Samples::default();
        for i in 0..refusals {
            let target = format!("refused-{i}");
            let t = Instant::now();
            let reply = client
                .call(&daemon.node, &nfs(&target, &daemon.path(&target), HUNG), &uuid())
                .await;
            refused.push(t.elapsed());
            let text = reply["error_msg"].as_str().unwrap_or_default();
            assert!(text.contains("is not answering"), "{reply}");
        }
        stand_in.set("ok");
        let back = Instant::now();
        let path = daemon.path("probe");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let reply = client.call(&daemon.node, &nfs("probe", &path, HUNG), &uuid()).await;
            if reply["status"] == "success" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let closed = back.elapsed();
        let after_window = opened_at.elapsed().saturating_sub(Duration::from_secs(3));
        println!("opened: the first mount failed after {} (its mount(8) deadline)", ms(opened));
        println!("refused while open: {}", refused.summary_with(95, ms));
        println!(
            "closed: the first mount succeeded {} after the server answered again, {} after \
             the 3 s window ended ({attempts} attempts 50 ms apart; refused until the window \
             ends, then one mount probes)",
            ms(closed),
            ms(after_window)
        );
        client.close().await;
    });
    daemon.stop();
}
