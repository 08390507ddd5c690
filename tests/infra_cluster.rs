//! The three-node RabbitMQ cluster of tests/support works for real: the nodes form one
//! cluster, a `dms.*` queue declared through node 1 is mirrored to the two others by the
//! `ha-dms` policy (and another queue is not), and a SIGKILLed node, the queue's master,
//! leaves its message on a promoted mirror and rejoins when restarted. The end-to-end
//! tests (`server_cluster.rs`) rely on each of these.
#![allow(clippy::unwrap_used)]

use crate::support::cluster_ops::{self, Row};
use crate::support::{self, Cluster};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

#[test]
fn oslo_urls_list_every_node_in_the_given_order_sharing_one_vhost() {
    let url = cluster_ops::oslo_url("u", "p", &[5672, 5673, 5674], "v1");
    assert_eq!(url, "amqp://u:p@127.0.0.1:5672,u:p@127.0.0.1:5673,u:p@127.0.0.1:5674/v1");
    assert_eq!(
        cluster_ops::oslo_url("guest", "guest", &[1], "/"),
        "amqp://guest:guest@127.0.0.1:1/%2f"
    );
    let order = cluster_ops::shuffled();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2, 3], "a shuffle of the nodes: {order:?}");
    assert_eq!(
        cluster_ops::pid_node("<dms-cl-1-0-n2@localhost.1700000000.1234.0>"),
        "dms-cl-1-0-n2@localhost"
    );
}

/// The queue's row in `list_queues`, asked of node `n`.
fn queue_row(cluster: &Cluster, n: usize, vhost: &str, queue: &str) -> Row {
    let columns = ["name", "type", "policy", "pid", "synchronised_slave_pids", "messages"];
    let rows = cluster.list(n, "queues", vhost, &columns).unwrap();
    rows.into_iter()
        .find(|r| r["name"] == queue)
        .unwrap_or_else(|| panic!("no queue {queue} on node {n}"))
}

/// Waits until `queue`'s master is on a node of `masters` with synchronised mirrors on
/// exactly the other running nodes; returns the master's node.
fn wait_mirrored(
    cluster: &Cluster,
    ask: usize,
    vhost: &str,
    queue: &str,
    masters: &[usize],
) -> usize {
    let mut last = Row::new();
    let found = support::wait_for(&format!("{queue} mirrored and synchronised"), T, || {
        last = queue_row(cluster, ask, vhost, queue);
        let master = *cluster.nodes_of(&last["pid"]).first()?;
        let synced = cluster.nodes_of(&last["synchronised_slave_pids"]);
        let others: Vec<usize> = (1..=3).filter(|&n| n != master && cluster.is_up(n)).collect();
        (masters.contains(&master) && synced == others).then_some(master)
    });
    found.unwrap_or_else(|e| panic!("{e}: {last:?}"))
}

async fn channel(url: &str) -> (Connection, Channel) {
    let conn = tokio::time::timeout(T, Connection::connect(url, ConnectionProperties::default()))
        .await
        .unwrap()
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (conn, ch)
}

/// The fixture's own proof, run first on the cluster of `server_cluster`'s one test (a
/// cluster start costs ~25-45 s of two busy cores).
pub(crate) fn three_nodes_form_a_cluster_mirror_dms_queues_and_a_killed_master_node_rejoins() {
    let t0 = Instant::now();
    let cluster = Cluster::shared();
    eprintln!("three-node cluster started in {}", cluster.startup_report());
    let mut names: Vec<String> = (1..=3).map(|n| cluster.node_name(n).to_owned()).collect();
    names.sort();
    for n in 1..=3 {
        let mut running = cluster.running_nodes(n).unwrap();
        running.sort();
        assert_eq!(running, names, "cluster_status of node {n}");
    }
    let tenant = cluster.tenant("infra");
    let (queue, other) = ("dms.mirrored", "other.not-mirrored");
    let rt = crate::e2e::runtime();
    rt.block_on(async {
        let (conn, ch) = channel(&tenant.amqp_url(1)).await;
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        for q in [queue, other] {
            ch.queue_declare(q.into(), durable, FieldTable::default()).await.unwrap();
        }
        let props = BasicProperties::default().with_delivery_mode(2);
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                b"survivor",
                props,
            )
            .await
            .unwrap();
        assert!(!confirm.await.unwrap().is_nack(), "the cluster nacked a persistent publish");
        conn.close(200, "bye".into()).await.unwrap();
    });
    // Declared through node 1: its master is there, with synchronised mirrors on 2 and 3.
    assert_eq!(wait_mirrored(cluster, 3, &tenant.vhost, queue, &[1]), 1);
    assert_eq!(queue_row(cluster, 3, &tenant.vhost, queue)["policy"], "ha-dms");
    let row = queue_row(cluster, 2, &tenant.vhost, other);
    assert_eq!(cluster.nodes_of(&row["pid"]), [1], "{other}: {row:?}");
    assert_eq!(
        cluster.nodes_of(&row["synchronised_slave_pids"]),
        [0; 0],
        "{other} is not mirrored"
    );
    assert_eq!(row["type"], "classic");

    // SIGKILL the master's node: a mirror takes over with the message.
    let killed = Instant::now();
    cluster.kill(1);
    support::wait_for("node 1 to leave the running nodes", T, || {
        (cluster.running_nodes(2).ok()?.len() == 2).then_some(())
    })
    .unwrap();
    let master = wait_mirrored(cluster, 2, &tenant.vhost, queue, &[2, 3]);
    assert_eq!(queue_row(cluster, 3, &tenant.vhost, queue)["messages"], "1");
    eprintln!(
        "node 1 SIGKILLed: master promoted on node {master} within {:.1} s",
        killed.elapsed().as_secs_f64()
    );

    // Restarted, it rejoins (restart waits for all three running) and gets a mirror again.
    let restarted = Instant::now();
    cluster.restart(1);
    eprintln!("node 1 restarted and rejoined in {:.1} s", restarted.elapsed().as_secs_f64());
    let mut running = cluster.running_nodes(1).unwrap();
    running.sort();
    assert_eq!(running, names, "cluster_status of the restarted node");
    wait_mirrored(cluster, 1, &tenant.vhost, queue, &[master]);
    rt.block_on(async {
        let (conn, ch) = channel(&tenant.amqp_url(1)).await;
        let got = ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.unwrap();
        assert_eq!(
            got.expect("the message survived the master's SIGKILL").delivery.data,
            b"survivor"
        );
        conn.close(200, "bye".into()).await.unwrap();
    });
    eprintln!("fixture test done in {:.1} s", t0.elapsed().as_secs_f64());
}
