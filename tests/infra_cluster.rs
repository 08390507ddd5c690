//! The three-node RabbitMQ cluster of tests/support works for real: the nodes form one
//! cluster, a `dms.*` queue declared through node 1 is mirrored to the two others by the
//! `ha-dms` policy (and another queue is not), and a SIGKILLed node, the queue's master,
//! leaves its message on a promoted mirror and rejoins when restarted ([`Survivor`]). The
//! end-to-end tests (`server_cluster.rs`) rely on each of these. The SIGKILL is not a fault
//! of its own: a node restart costs two loaded cores ~10-20 s, so [`Survivor`] rides on the
//! one of `server_cluster`'s SIGKILL scenario, planted on the node it kills (the daemon's).
#![allow(clippy::unwrap_used)]

use crate::support::cluster_ops::{self, Row};
use crate::support::{self, Cluster, Tenant};

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
/// exactly the other running nodes (asked of node `ask` every [`support::CLI_POLL`]);
/// returns the master's node.
fn wait_mirrored(
    cluster: &Cluster,
    ask: usize,
    vhost: &str,
    queue: &str,
    masters: &[usize],
) -> usize {
    let mut last = Row::new();
    let what = format!("{queue} mirrored and synchronised");
    let found = support::poll_every(&what, T, support::CLI_POLL, || {
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
/// cluster start costs ~25-45 s of two busy cores); its SIGKILL part is [`Survivor`].
pub(crate) fn three_nodes_form_a_cluster_and_mirror_dms_queues_only() {
    let t0 = Instant::now();
    let cluster = Cluster::shared();
    eprintln!("three-node cluster started in {}", cluster.startup_report());
    let names = sorted_names(cluster);
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
    eprintln!("fixture test done in {:.1} s", t0.elapsed().as_secs_f64());
}

/// The cluster's node names, sorted (as `cluster_status` lists them once sorted).
fn sorted_names(cluster: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = (1..=3).map(|n| cluster.node_name(n).to_owned()).collect();
    names.sort();
    names
}

/// The fixture's SIGKILL proof, around a kill and restart that a test makes anyway: a
/// persistent message in a mirrored `dms.*` queue whose master is on the node to be
/// killed. [`Survivor::plant`] before [`Cluster::kill`], [`Survivor::promoted`] after it,
/// [`Survivor::rejoined`] after [`Cluster::restart`].
pub(crate) struct Survivor<'a> {
    cluster: &'a Cluster,
    tenant: &'a Tenant,
    /// The node holding the master, the one to kill.
    on: usize,
}

const SURVIVOR: &str = "dms.survivor";

impl<'a> Survivor<'a> {
    /// Declares the queue through node `on` and publishes a persistent message to it
    /// (confirmed); waits until the master is on `on` with synchronised mirrors on the two
    /// other nodes.
    pub(crate) fn plant(cluster: &'a Cluster, tenant: &'a Tenant, on: usize) -> Survivor<'a> {
        crate::e2e::runtime().block_on(async {
            let (conn, ch) = channel(&tenant.amqp_url(on)).await;
            let durable = QueueDeclareOptions { durable: true, ..Default::default() };
            ch.queue_declare(SURVIVOR.into(), durable, FieldTable::default()).await.unwrap();
            let props = BasicProperties::default().with_delivery_mode(2);
            let confirm = ch
                .basic_publish(
                    "".into(),
                    SURVIVOR.into(),
                    BasicPublishOptions::default(),
                    b"survivor",
                    props,
                )
                .await
                .unwrap();
            assert!(!confirm.await.unwrap().is_nack(), "the cluster nacked a persistent publish");
            conn.close(200, "bye".into()).await.unwrap();
        });
        let ask = if on == 3 { 2 } else { 3 };
        assert_eq!(wait_mirrored(cluster, ask, &tenant.vhost, SURVIVOR, &[on]), on);
        assert_eq!(queue_row(cluster, ask, &tenant.vhost, SURVIVOR)["policy"], "ha-dms");
        Survivor { cluster, tenant, on }
    }

    /// After node `on`'s SIGKILL: it leaves the running nodes, a mirror on a surviving node
    /// is promoted master with the message. Returns the new master's node.
    pub(crate) fn promoted(&self) -> usize {
        let (cluster, on, vhost) = (self.cluster, self.on, &self.tenant.vhost);
        let ask = if on == 1 { 2 } else { 1 };
        support::poll_every(
            &format!("node {on} to leave the running nodes"),
            T,
            support::CLI_POLL,
            || (cluster.running_nodes(ask).ok()?.len() == 2).then_some(()),
        )
        .unwrap();
        let survivors: Vec<usize> = (1..=3).filter(|&n| n != on).collect();
        let master = wait_mirrored(cluster, ask, vhost, SURVIVOR, &survivors);
        assert_eq!(queue_row(cluster, ask, vhost, SURVIVOR)["messages"], "1");
        master
    }

    /// After node `on`'s restart (which waits until every node reports all three running):
    /// the restarted node reports all three running, holds a synchronised mirror again of
    /// `master`'s queue, and serves the message that survived the SIGKILL.
    pub(crate) fn rejoined(&self, master: usize) {
        let (cluster, on, vhost) = (self.cluster, self.on, &self.tenant.vhost);
        let mut running = cluster.running_nodes(on).unwrap();
        running.sort();
        assert_eq!(running, sorted_names(cluster), "cluster_status of the restarted node");
        wait_mirrored(cluster, on, vhost, SURVIVOR, &[master]);
        crate::e2e::runtime().block_on(async {
            let (conn, ch) = channel(&self.tenant.amqp_url(on)).await;
            let no_ack = BasicGetOptions { no_ack: true };
            let got = ch.basic_get(SURVIVOR.into(), no_ack).await.unwrap();
            assert_eq!(
                got.expect("the message survived the master's SIGKILL").delivery.data,
                b"survivor"
            );
            conn.close(200, "bye".into()).await.unwrap();
        });
    }
}
