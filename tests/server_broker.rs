//! dms-server against a broker given as several hosts, and against a queue that exists with
//! another type than the daemon declares (issue 28, items 1 and 2), on a real RabbitMQ node:
//! - `rabbitmq_url` names a dead host beside the live node: the daemon serves, and when its
//!   session is closed it moves on at once (trying the dead host, then the live one again,
//!   without a backoff), with no password in any log line, `--check-config` or status;
//! - `dms.<node>` declared as a quorum queue first: the default `queue_type = classic` is
//!   refused with one ERROR line naming the fix while the daemon keeps retrying, and with
//!   `DMS_QUEUE_TYPE=quorum` the request waiting in the queue is answered.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::ctl::Ctl;
use e2e::{runtime, standard_env, testfs_bin, unmount, uuid, Client, Daemon};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use support::mountns::run_isolated_with_timeout;
use support::Broker;

const LIMIT: Duration = Duration::from_secs(180);
/// The dead host's password: it must never be seen anywhere.
const DEAD_PASSWORD: &str = "dead-host-pw-4d1f";

/// How many broker sessions the daemon has started (each logs `consuming` once).
fn sessions(daemon: &Daemon) -> usize {
    daemon.log_text().matches("; consuming dms.").count()
}

fn not_mounted_reply(daemon: &Daemon, target: &str) -> (serde_json::Value, String) {
    let path = daemon.path(target);
    (unmount(target, &path, "s3"), format!("Target not mounted at {path}"))
}

#[test]
fn given_a_dead_host_beside_the_live_node_when_sessions_end_then_the_daemon_moves_on_and_serves() {
    let name =
        "given_a_dead_host_beside_the_live_node_when_sessions_end_then_the_daemon_moves_on_and_serves";
    run_isolated_with_timeout(name, LIMIT, || {
        // A node of its own: the test closes every connection on it.
        let broker = Broker::start();
        let dir = support::temp_dir("dms-broker-hosts-");
        let (dead, live) = (support::free_port(), broker.amqp_port());
        let url = format!(
            "rabbit://guest:{DEAD_PASSWORD}@127.0.0.1:{dead},guest:guest@127.0.0.1:{live}/%2f"
        );
        let extra = [("DMS_RABBITMQ_URL", url.clone())];
        let env = standard_env(&broker, dir.path(), "hosts-1", &testfs_bin(), "debug", &extra);

        // --check-config shows both hosts, no password.
        let check = std::process::Command::new(env!("CARGO_BIN_EXE_dms-server"))
            .arg("--check-config")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "{shown}{}", String::from_utf8_lossy(&check.stderr));
        let redacted =
            format!("rabbit://guest:***@127.0.0.1:{dead},guest:***@127.0.0.1:{live}/%2f");
        assert!(shown.contains(&redacted), "{shown}");
        assert!(!shown.contains(DEAD_PASSWORD), "{shown}");

        let daemon = Daemon::spawn(dir.path(), "hosts-1", env);
        let rt = runtime();
        let (body, expected) = not_mounted_reply(&daemon, "t-1");
        let reply = rt.block_on(async {
            let mut client = Client::connect(&broker).await;
            let reply = client.call("hosts-1", &body, &uuid()).await;
            client.close().await;
            reply
        });
        assert_eq!(reply["success_msg"], expected, "{}", daemon.log_text());

        // Operators find the connection by name, and the status names the host.
        let names = broker.rabbitmqctl(&["list_connections", "client_properties"]).unwrap();
        let ours = format!("dms-server hosts-1 pid {}", daemon.child.pid());
        assert!(names.contains(&ours), "{names}");
        let ctl = Ctl::new(&daemon, dir.path());
        let (code, status, _) = ctl.run(&["status"]);
        assert_eq!(code, 0, "{status}");
        assert!(status.contains(&format!("broker:   connected to 127.0.0.1:{live}")), "{status}");

        // The session ends: the next host (the dead one) is tried at once, then the live
        // one again, with no backoff since the round did not fail as a whole.
        let before = sessions(&daemon);
        let log_before = daemon.log_text().len();
        broker.close_all_connections();
        support::wait_for("the daemon to consume again", e2e::T, || {
            (sessions(&daemon) > before).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_text()));
        let log = daemon.log_text();
        let after = &log[log_before..];
        let lost = format!("broker connection lost at 127.0.0.1:{live}");
        let tried = format!("cannot reach the broker (attempt 1) at 127.0.0.1:{dead}");
        let next = format!("trying 127.0.0.1:{live} next");
        for needle in [&lost, &format!("reconnecting to 127.0.0.1:{dead}"), &tried, &next] {
            assert!(after.contains(needle.as_str()), "{needle:?} missing:\n{after}");
        }
        assert!(!after.contains("retrying in"), "backed off within a round:\n{after}");
        assert!(after.contains("recovered after 1 failed attempts"), "{after}");

        let (body, expected) = not_mounted_reply(&daemon, "t-2");
        let reply = rt.block_on(async {
            let mut client = Client::connect(&broker).await;
            let reply = client.call("hosts-1", &body, &uuid()).await;
            client.close().await;
            reply
        });
        assert_eq!(reply["success_msg"], expected, "{}", daemon.log_text());
        let log = daemon.stop();
        assert!(!log.contains(DEAD_PASSWORD), "the dead host's password was logged:\n{log}");
        assert!(!status.contains(DEAD_PASSWORD) && !status.contains("guest:guest"), "{status}");
    });
}

#[test]
fn given_a_quorum_queue_when_the_daemon_declares_classic_then_one_clear_line_and_quorum_serves() {
    let name =
        "given_a_quorum_queue_when_the_daemon_declares_classic_then_one_clear_line_and_quorum_serves";
    run_isolated_with_timeout(name, LIMIT, || {
        let broker = Broker::shared();
        let dir = support::temp_dir("dms-broker-quorum-");
        let node = "quorum-1";
        let rt = runtime();
        // The operator (or a client) made dms.quorum-1 a quorum queue first.
        rt.block_on(async {
            let conn = Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
                .await
                .unwrap();
            let channel = conn.create_channel().await.unwrap();
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
            let durable = QueueDeclareOptions { durable: true, ..Default::default() };
            channel
                .queue_declare(format!("dms.{node}").as_str().into(), durable, args)
                .await
                .unwrap();
            let _ = conn.close(200, "declared".into()).await;
        });
        let mut client = rt.block_on(Client::connect(broker));
        let env = |extra: &[(&str, String)]| {
            standard_env(broker, dir.path(), node, &testfs_bin(), "debug", extra)
        };
        let mut refused = Daemon::launch(dir.path(), node, env(&[]));
        let waiting = refused.path("t-q");
        let (corr, body) = (uuid(), unmount("t-q", &waiting, "s3"));
        rt.block_on(client.send(node, body.to_string().as_bytes(), &corr, true));

        let clear = "exists as a quorum queue but this daemon declares it classic";
        support::wait_for("three refused declarations", e2e::T, || {
            assert!(refused.child.try_wait().is_none(), "exited:\n{}", refused.log_text());
            (refused.log_text().matches(clear).count() >= 3).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", refused.log_text()));
        let log = refused.log_text();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
        assert_eq!(errors.len(), 1, "one ERROR line, then DEBUG:\n{log}");
        let fix = "set queue_type = quorum in /etc/trilio-dms/server.conf or DMS_QUEUE_TYPE=quorum";
        assert!(errors[0].contains(clear) && errors[0].contains(fix), "{}", errors[0]);
        assert!(!log.contains("; consuming dms."), "served a queue it cannot declare:\n{log}");
        refused.wait_log("retrying in");
        refused.stop();

        let served = Daemon::spawn(dir.path(), node, env(&[("DMS_QUEUE_TYPE", "quorum".into())]));
        let (reply_corr, reply) = rt.block_on(client.reply());
        assert_eq!(reply_corr, corr);
        assert_eq!(reply["success_msg"], format!("Target not mounted at {waiting}"), "{reply}");
        rt.block_on(client.close());
        served.stop();
    });
}

/// The daemon's `dms_broker_consumer_cancels_total`, from its metrics endpoint.
fn consumer_cancels(daemon: &Daemon) -> String {
    let log = daemon.log_text();
    let line = log.lines().find(|l| l.contains("serving metrics")).unwrap();
    let addr = line.split("metrics_addr=").nth(1).unwrap().split_whitespace().next().unwrap();
    let body =
        support::http::request("GET", &format!("http://{addr}/metrics"), &[], b"").unwrap().text();
    let series = body.lines().find(|l| l.starts_with("dms_broker_consumer_cancels_total "));
    series.unwrap_or_else(|| panic!("no consumer cancels series:\n{body}")).to_owned()
}

#[test]
fn given_the_queue_deleted_under_the_daemon_when_the_broker_cancels_it_then_it_consumes_again() {
    let name =
        "given_the_queue_deleted_under_the_daemon_when_the_broker_cancels_it_then_it_consumes_again";
    run_isolated_with_timeout(name, LIMIT, || {
        let broker = Broker::shared();
        let dir = support::temp_dir("dms-broker-cancel-");
        let mut daemon = Daemon::start(broker, dir.path(), "cancel-1", &[]);
        assert_eq!(consumer_cancels(&daemon), "dms_broker_consumer_cancels_total 0");
        let rt = runtime();
        rt.block_on(async {
            let conn = Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
                .await
                .unwrap();
            let channel = conn.create_channel().await.unwrap();
            let options = lapin::options::QueueDeleteOptions::default();
            channel.queue_delete("dms.cancel-1".into(), options).await.unwrap();
            let _ = conn.close(200, "deleted".into()).await;
        });
        daemon.wait_log("cancelled the consumer of dms.cancel-1");
        let log = daemon.log_text();
        assert!(!log.contains("broker connection lost"), "the session was dropped:\n{log}");
        assert_eq!(consumer_cancels(&daemon), "dms_broker_consumer_cancels_total 1");
        let path = daemon.path("t-c");
        let reply = rt.block_on(async {
            let mut client = Client::connect(broker).await;
            let reply = client.call("cancel-1", &unmount("t-c", &path, "s3"), &uuid()).await;
            client.close().await;
            reply
        });
        assert_eq!(reply["success_msg"], format!("Target not mounted at {path}"));
        daemon.stop();
    });
}
