//! The quorum-queue case of issue 28 (item 2) on the three-node cluster, as Kolla sets it up
//! now: the operator declares `dms.<node>` as a quorum queue before the daemon starts.
//! Without `queue_type = quorum` the daemon's plain declare gets PRECONDITION_FAILED: it
//! must say so in one clear line naming the key (`queue_type`) and the existing type, keep
//! running and retrying, and consume nothing; a request sent meanwhile stays queued. With
//! `DMS_QUEUE_TYPE=quorum` it declares with `x-queue-type: quorum`, consumes, answers that
//! request and the next, and the queue stays a quorum queue.
//!
//! Ignored until the `queue_type` key lands (it assumes: the variable `DMS_QUEUE_TYPE`
//! with the values `classic`/`quorum`; a log line containing `queue_type` and `quorum` on
//! the PRECONDITION_FAILED; `consuming dms.<node>` logged when it consumes, as today).
#![allow(clippy::unwrap_used)]

use crate::e2e;

use e2e::cluster::{assert_no_secret, check_journal_and_host, consuming_lines, Stand, TOKEN};
use e2e::traffic::{check_ledger, Ledger, SturdyClient};
use e2e::{mounted_msg, runtime, s3_mount, unmount, unmounted_msg, Daemon};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use std::time::{Duration, Instant};

/// How long the refusing daemon is watched to keep running and retrying.
const WATCH: Duration = Duration::from_secs(6);

/// The queue's type as `rabbitmqctl list_queues` (asked of node 3) shows it.
fn queue_type(stand: &Stand, queue: &str) -> String {
    let rows = stand.cluster.list(3, "queues", &stand.tenant.vhost, &["name", "type"]).unwrap();
    let row = rows.iter().find(|r| r["name"] == queue);
    row.map(|r| r["type"].clone()).unwrap_or_else(|| panic!("no queue {queue}: {rows:?}"))
}

/// One scenario of `server_cluster`'s test (on its cluster, in its namespace).
pub(crate) fn a_quorum_queue_declared_first_is_refused_with_a_line_naming_queue_type_and_served_with_it(
) {
    let stand = Stand::up("quorum");
    let node = "cl-quorum";
    let queue = format!("dms.{node}");
    let rt = runtime();
    rt.block_on(async {
        let conn = Connection::connect(&stand.tenant.amqp_url(1), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(queue.as_str().into(), durable, args).await.unwrap();
        conn.close(200, "bye".into()).await.unwrap();
    });
    assert_eq!(queue_type(&stand, &queue), "quorum");

    // Without queue_type: one clear line, still running, not consuming.
    let url = stand.tenant.amqp_url(2);
    let mut refused = Daemon::launch(stand.dir.path(), node, stand.env(node, &url, &[]));
    refused.wait_log("queue_type");
    let text = refused.log_text();
    let line = text.lines().find(|l| l.contains("queue_type")).unwrap();
    assert!(line.contains("quorum"), "the line names the existing type: {line}");
    // A request sent meanwhile, through node 3, waits in the queue.
    let ledger = Ledger::default();
    let base = refused.base.display().to_string();
    let path = format!("{base}/t-quorum");
    let mount = s3_mount("t-quorum", &path, &stand.secret_ref, TOKEN);
    let mut client = SturdyClient::new(vec![stand.tenant.amqp_url(3)], 0);
    let (q, l, expected) = (queue.clone(), ledger.clone(), mounted_msg(&path));
    let pending = rt.spawn(async move {
        let reply = client.call(&q, "t-quorum", &mount, expected, &l).await;
        (client, reply)
    });
    let t0 = Instant::now();
    std::thread::sleep(WATCH);
    assert!(refused.child.try_wait().is_none(), "the daemon keeps retrying\n{text}");
    assert_eq!(consuming_lines(&refused), 0, "it consumed nothing\n{}", refused.log_text());
    let vhost = &stand.tenant.vhost;
    assert_eq!(stand.cluster.consumer_node(1, vhost, &queue).unwrap(), None);
    assert!(!pending.is_finished(), "the request was answered by a daemon that cannot consume");
    let log = refused.stop();
    assert_no_secret(&stand, "daemon log", &log);
    assert_eq!(queue_type(&stand, &queue), "quorum", "the daemon left the operator's queue alone");

    // With queue_type = quorum: served, the waiting request first.
    let quorum = [("DMS_QUEUE_TYPE", "quorum".to_owned())];
    let daemon = stand.daemon(node, &url, &quorum);
    let (mut client, reply) = rt.block_on(pending).unwrap();
    assert_eq!(reply, Some(mounted_msg(&path)), "{}", daemon.log_text());
    e2e::host::mounted(&path, "fuse.dms-testfs");
    let unmount = unmount("t-quorum", &path, "s3");
    let reply =
        rt.block_on(client.call(&queue, "t-quorum", &unmount, unmounted_msg(&path), &ledger));
    assert_eq!(reply, Some(unmounted_msg(&path)));
    rt.block_on(client.finish(Duration::from_secs(1), &ledger));
    assert_eq!(queue_type(&stand, &queue), "quorum");
    let left = daemon.pid_files_after_cleanup();
    assert_eq!(left, Vec::<String>::new());
    let (journal, pid_dir) = (daemon.journal.clone(), daemon.pid_dir.clone());
    let log = daemon.stop();
    let s = check_ledger(&ledger, (t0, Instant::now()), &log);
    eprintln!("quorum: {} requests, worst latency {:.1} s", s.requests, s.worst.as_secs_f64());
    check_journal_and_host(&journal, &pid_dir, &base, &ledger);
    assert_no_secret(&stand, "daemon log", &log);
}
