//! dms-server on a three-node RabbitMQ cluster (issue 28, item 4): the nodes under it go
//! away while clients mount and unmount S3 targets (real cluster with the `ha-dms`
//! mirroring policy, real Barbican, dms-testfs FUSE helpers, a private mount namespace).
//! Afterwards, every time: every request was answered, only ever with the answer it should
//! get; exactly one outcome per request in the journal; no helper, mount, PID file or
//! parked request left. Clients use [`e2e::traffic::SturdyClient`] (reconnect to the next
//! node, resend unanswered requests with the same correlation id).
//!
//! One test gives the daemon one node's URL; the others the whole cluster in the
//! oslo.messaging form (`DMS_RABBITMQ_URL=amqp://u:p@h1:p1,u:p@h2:p2,u:p@h3:p3/vhost`), and
//! read the daemon's `consuming dms.<node>` lines to time its failover; every password stays
//! out of its log.
#![allow(clippy::unwrap_used)]

use crate::e2e;

use crate::infra_cluster::Survivor;
use e2e::cluster::{assert_no_secret, check_journal_and_host, consuming_lines, Stand};
use e2e::traffic::check_ledger;
use e2e::{runtime, Daemon};
use std::time::{Duration, Instant};
use support::mountns::run_isolated_with_timeout;

use crate::support;

/// Clients mounting and unmounting at once (each its own target), each pausing [`PAUSE`]
/// between its cycles: enough to have requests in flight through every fault (asserted),
/// at a fraction of the CPU of six clients back to back (~1,300 requests a run instead of
/// ~6,400, each costing the daemon, Barbican and a helper's start, on the same two cores
/// as the nodes; with the slower CLI polls and one SIGKILL less, the test went from ~200 s
/// and ~250 CPU-s to ~140 s and ~140 CPU-s on a shared two-core machine).
const CLIENTS: usize = 3;
const PAUSE: Duration = Duration::from_millis(150);
/// Traffic before a fault, and after the cluster is whole again (requests first sent
/// then are asserted answered too).
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(2);
/// Time a stopped or killed node stays down at least.
const DOWN: Duration = Duration::from_secs(2);
/// From the SIGKILL of the daemon's node to the daemon consuming from another node: the
/// issue's goal is 5 s (median over runs); a single run on two loaded cores fails beyond
/// this (the single-host daemon waited 97 s, for the dead node to come back).
const FAILOVER_BOUND: Duration = Duration::from_secs(20);
/// The whole test, every scenario, in its private mount namespace.
const LIMIT: Duration = Duration::from_secs(900);

/// Stops the clients, waits for the helpers of the last unmounts to go, stops the daemon,
/// then checks the ledger, the journal and the host; prints the figures.
fn finish(
    stand: &Stand,
    daemon: Daemon,
    traffic: e2e::cluster::Traffic,
    window: (Instant, Instant),
) {
    let rt = runtime();
    let (ledger, reconnects) = traffic.stop(&rt);
    let left = daemon.pid_files_after_cleanup();
    let (journal, pid_dir, base) =
        (daemon.journal.clone(), daemon.pid_dir.clone(), daemon.base.clone());
    let consumed = consuming_lines(&daemon);
    let log = daemon.stop();
    let s = check_ledger(&ledger, window, &log);
    assert_eq!(left, Vec::<String>::new(), "PID files left after the last unmounts\n{log}");
    eprintln!(
        "{} requests, {} replies ({} repeated, the same), {} resends, {reconnects} client \
         reconnects, worst latency {:.1} s, {} first sent during the fault; the daemon started \
         consuming {consumed} times",
        s.requests,
        s.replies,
        s.repeated,
        s.resends,
        s.worst.as_secs_f64(),
        s.in_window
    );
    assert!(s.in_window > 0, "no request was sent while the fault lasted");
    assert!(s.after_window > 0, "no request was sent after the fault: {s:?}");
    assert!(s.requests >= 2 * CLIENTS, "too little traffic: {s:?}");
    check_journal_and_host(&journal, &pid_dir, &base.display().to_string(), &ledger);
    assert_no_secret(stand, "daemon log", &log);
}

fn daemon_on_node_2_rides_out_stop_app_and_start_app_of_its_node_under_traffic_through_node_1() {
    let stand = Stand::up("stopapp");
    let node = "cl-stopapp";
    let mut daemon = stand.daemon(node, &stand.tenant.amqp_url(2), &[]);
    assert_eq!(stand.wait_consumer(1, node), 2, "the daemon consumes through node 2");
    let rt = runtime();
    let traffic = stand.traffic(&rt, &daemon, vec![stand.tenant.amqp_url(1)], CLIENTS, PAUSE);
    std::thread::sleep(BEFORE);

    let t0 = Instant::now();
    stand.cluster.stop_app(2);
    let stopped = t0.elapsed();
    std::thread::sleep(DOWN);
    stand.cluster.start_app(2);
    let window = (t0, Instant::now());
    eprintln!(
        "node 2: stop_app took {:.1} s, down {:.1} s in all (start_app and rejoin included)",
        stopped.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    // Single host: the daemon comes back only through node 2.
    support::wait_for("the daemon to consume again", e2e::T, || {
        (consuming_lines(&daemon) >= 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_text()));
    eprintln!("the daemon consumed again {:.1} s after stop_app", t0.elapsed().as_secs_f64());
    assert_eq!(stand.wait_consumer(1, node), 2);
    std::thread::sleep(AFTER);
    assert!(daemon.child.try_wait().is_none(), "the daemon exited\n{}", daemon.log_text());
    finish(&stand, daemon, traffic, window);
}

fn sigkill_of_the_daemons_node_fails_over_to_another_node_of_the_cluster_url_under_traffic() {
    let stand = Stand::up("sigkill");
    let node = "cl-sigkill";
    let mut daemon = stand.daemon(node, &stand.tenant.cluster_url_shuffled(), &[]);
    let ask = |not: usize| (1..=3).find(|&n| n != not).unwrap();
    let victim = stand.wait_consumer(1, node);
    // The fixture's SIGKILL proof rides on this kill: a persistent message in a mirrored
    // queue whose master is on the victim.
    let survivor = Survivor::plant(stand.cluster, &stand.tenant, victim);
    // The clients go through the two other nodes, which stay up.
    let others: Vec<usize> = (1..=3).filter(|&n| n != victim).collect();
    let urls = others.iter().map(|&n| stand.tenant.amqp_url(n)).collect();
    let rt = runtime();
    let traffic = stand.traffic(&rt, &daemon, urls, CLIENTS, PAUSE);
    std::thread::sleep(BEFORE);

    let before = consuming_lines(&daemon);
    let t0 = Instant::now();
    stand.cluster.kill(victim);
    let consumed =
        support::wait_for("the daemon to consume from another node", FAILOVER_BOUND, || {
            (consuming_lines(&daemon) > before).then_some(())
        });
    let failover = t0.elapsed();
    consumed.unwrap_or_else(|e| panic!("{e} (node {victim} SIGKILLed)\n{}", daemon.log_text()));
    eprintln!(
        "FAILOVER: node {victim} SIGKILLed; the daemon consumed from another node {:.2} s later",
        failover.as_secs_f64()
    );
    let now_on = stand.wait_consumer(ask(victim), node);
    assert_ne!(now_on, victim, "the daemon consumes through a surviving node");
    let master = survivor.promoted();
    eprintln!(
        "node {victim} SIGKILLed: the surviving queue's master promoted on node {master} \
         (its message kept) within {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    std::thread::sleep(DOWN.saturating_sub(t0.elapsed()));
    let t1 = Instant::now();
    stand.cluster.restart(victim);
    eprintln!("node {victim} restarted and rejoined in {:.1} s", t1.elapsed().as_secs_f64());
    let window = (t0, Instant::now());
    survivor.rejoined(master);
    std::thread::sleep(AFTER);
    assert!(daemon.child.try_wait().is_none(), "the daemon exited\n{}", daemon.log_text());
    finish(&stand, daemon, traffic, window);
}

fn rolling_restart_of_all_three_nodes_under_traffic_with_the_cluster_url() {
    let stand = Stand::up("rolling");
    let node = "cl-rolling";
    let mut daemon = stand.daemon(node, &stand.tenant.cluster_url_shuffled(), &[]);
    // Every node goes down once, the clients' too: each client knows all three.
    let urls = (1..=3).map(|n| stand.tenant.amqp_url(n)).collect();
    let rt = runtime();
    let traffic = stand.traffic(&rt, &daemon, urls, CLIENTS, PAUSE);
    std::thread::sleep(BEFORE);

    let before = consuming_lines(&daemon);
    let t0 = Instant::now();
    let outs = stand.cluster.rolling_restart(Duration::from_secs(2));
    let window = (t0, Instant::now());
    let outs: Vec<String> = outs.iter().map(|d| format!("{:.1} s", d.as_secs_f64())).collect();
    let again = consuming_lines(&daemon) - before;
    eprintln!(
        "rolling restart in {:.1} s (each node out: {outs:?}); the daemon re-consumed {again} times",
        t0.elapsed().as_secs_f64()
    );
    // Its node was stopped too: it moved at least once.
    assert!(again >= 1, "the daemon never consumed again\n{}", daemon.log_text());
    let on = stand.wait_consumer(1, node);
    eprintln!("the daemon consumes through node {on} after the rolling restart");
    std::thread::sleep(AFTER);
    assert!(daemon.child.try_wait().is_none(), "the daemon exited\n{}", daemon.log_text());
    finish(&stand, daemon, traffic, window);
}

/// Every scenario on one cluster, one after the other, in one private mount namespace: a
/// cluster start costs ~25-45 s of two busy cores, and each scenario leaves the cluster
/// whole (the fixture's own test first).
#[test]
fn one_cluster_rides_out_stop_app_a_sigkill_a_rolling_restart_and_serves_a_quorum_queue() {
    let name =
        "one_cluster_rides_out_stop_app_a_sigkill_a_rolling_restart_and_serves_a_quorum_queue";
    run_isolated_with_timeout(name, LIMIT, || {
        eprintln!("--- the fixture: three nodes, mirrored dms queues");
        crate::infra_cluster::three_nodes_form_a_cluster_and_mirror_dms_queues_only();
        eprintln!("--- a daemon on node 2 while node 2 stops and starts its app");
        daemon_on_node_2_rides_out_stop_app_and_start_app_of_its_node_under_traffic_through_node_1(
        );
        eprintln!("--- a SIGKILL of the daemon's node (the master of a mirrored queue), with the cluster URL");
        sigkill_of_the_daemons_node_fails_over_to_another_node_of_the_cluster_url_under_traffic();
        eprintln!("--- a rolling restart of all three nodes, with the cluster URL");
        rolling_restart_of_all_three_nodes_under_traffic_with_the_cluster_url();
        eprintln!("--- a quorum queue declared by the operator first");
        crate::server_cluster_quorum::a_quorum_queue_declared_first_is_refused_with_a_line_naming_queue_type_and_served_with_it();
    });
}
