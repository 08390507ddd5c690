//! dms-server over `amqps://` (issue 28, item 3) against a real RabbitMQ node with a TLS
//! listener that requires a client certificate ([`TlsBroker`]), its certificates issued by
//! a throwaway CA made with openssl:
//! - the CA and the client certificate given: served, over TLS (`rabbitmqctl` says `ssl`);
//! - no CA (the system's store does not know the test CA): refused by the daemon during
//!   the handshake, before any AMQP byte (the node never accepts an AMQP connection), one
//!   ERROR line that says what to set, and the daemon keeps retrying;
//! - the CA but no client certificate: refused by the node, one ERROR line naming the keys.
//!
//! Requests are published over the node's plain listener, as another client would.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::{runtime, standard_env, testfs_bin, unmount, uuid, Client, Daemon};
use std::time::Duration;
use support::mountns::run_isolated_with_timeout;
use support::TlsBroker;

const LIMIT: Duration = Duration::from_secs(180);

fn env(
    tls: &TlsBroker,
    dir: &std::path::Path,
    node: &str,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut all = vec![("DMS_RABBITMQ_URL", tls.amqps_url())];
    all.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    standard_env(&tls.broker, dir, node, &testfs_bin(), "debug", &all)
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Waits until the daemon has refused the broker at least three times (it keeps retrying),
/// then checks the one ERROR line and that it never consumed.
fn assert_refused_once(daemon: &mut Daemon, needles: &[&str]) -> String {
    support::wait_for("three refused TLS connections", e2e::T, || {
        assert!(daemon.child.try_wait().is_none(), "exited:\n{}", daemon.log_text());
        (daemon.log_text().matches("TLS with the broker failed").count() >= 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_text()));
    let log = daemon.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "one ERROR line, then DEBUG:\n{log}");
    for needle in needles {
        assert!(errors[0].contains(needle), "{needle:?} missing from {}", errors[0]);
    }
    assert!(!log.contains("; consuming dms."), "consumed without TLS trust:\n{log}");
    log
}

/// The node's own log lines about AMQP connections accepted on its TLS port.
fn tls_connections_accepted(tls: &TlsBroker) -> usize {
    let log = std::fs::read_to_string(&tls.broker.logs()[1]).unwrap_or_default();
    let port = format!("-> 127.0.0.1:{})", tls.tls_port);
    log.lines().filter(|l| l.contains("accepting AMQP connection") && l.contains(&port)).count()
}

#[test]
fn given_the_ca_and_a_client_certificate_when_connecting_over_tls_then_the_daemon_serves() {
    let name =
        "given_the_ca_and_a_client_certificate_when_connecting_over_tls_then_the_daemon_serves";
    run_isolated_with_timeout(name, LIMIT, || {
        let tls = TlsBroker::shared();
        let dir = support::temp_dir("dms-broker-tls-");
        let extra = [
            ("DMS_RABBITMQ_CA_FILE", path(&tls.ca)),
            ("DMS_RABBITMQ_CERT_FILE", path(&tls.client_cert)),
            ("DMS_RABBITMQ_KEY_FILE", path(&tls.client_key)),
        ];
        let daemon = Daemon::spawn(dir.path(), "tls-1", env(tls, dir.path(), "tls-1", &extra));
        let target_path = daemon.path("t-1");
        let rt = runtime();
        let reply = rt.block_on(async {
            let mut client = Client::connect(&tls.broker).await;
            let reply = client.call("tls-1", &unmount("t-1", &target_path, "s3"), &uuid()).await;
            client.close().await;
            reply
        });
        assert_eq!(reply["success_msg"], format!("Target not mounted at {target_path}"));
        let listing =
            tls.broker.rabbitmqctl(&["list_connections", "ssl", "client_properties"]).unwrap();
        let ours = format!("dms-server tls-1 pid {}", daemon.child.pid());
        let line = listing.lines().find(|l| l.contains(&ours));
        assert!(line.is_some_and(|l| l.starts_with("true")), "not over TLS:\n{listing}");
        assert!(tls_connections_accepted(tls) >= 1);
        let log = daemon.stop();
        assert!(log.contains(&format!("connected to the broker at 127.0.0.1:{}", tls.tls_port)));
        assert!(!log.contains("PRIVATE KEY"), "{log}");
    });
}

#[test]
fn given_no_ca_when_connecting_over_tls_then_the_handshake_refuses_before_any_amqp_byte() {
    let name =
        "given_no_ca_when_connecting_over_tls_then_the_handshake_refuses_before_any_amqp_byte";
    run_isolated_with_timeout(name, LIMIT, || {
        let tls = TlsBroker::shared();
        let dir = support::temp_dir("dms-broker-tls-");
        let accepted_before = tls_connections_accepted(tls);
        // The client certificate is there, so only the trust in the node is missing.
        let extra = [
            ("DMS_RABBITMQ_CERT_FILE", path(&tls.client_cert)),
            ("DMS_RABBITMQ_KEY_FILE", path(&tls.client_key)),
        ];
        let mut daemon = Daemon::launch(dir.path(), "tls-2", env(tls, dir.path(), "tls-2", &extra));
        assert_refused_once(
            &mut daemon,
            &["invalid peer certificate", "nothing was sent", "rabbitmq_ca_file"],
        );
        daemon.stop();
        // The node saw TLS handshakes fail, never an AMQP connection.
        assert_eq!(tls_connections_accepted(tls), accepted_before);

        // Trusting another CA is no better.
        let extra =
            [("DMS_RABBITMQ_CA_FILE", path(&tls.other_ca)), extra[0].clone(), extra[1].clone()];
        let mut daemon = Daemon::launch(dir.path(), "tls-2", env(tls, dir.path(), "tls-2", &extra));
        assert_refused_once(&mut daemon, &["invalid peer certificate", "UnknownIssuer"]);
        daemon.stop();
        assert_eq!(tls_connections_accepted(tls), accepted_before);
    });
}

#[test]
fn given_the_ca_but_no_client_certificate_when_the_node_requires_one_then_it_is_refused() {
    let name =
        "given_the_ca_but_no_client_certificate_when_the_node_requires_one_then_it_is_refused";
    run_isolated_with_timeout(name, LIMIT, || {
        let tls = TlsBroker::shared();
        let dir = support::temp_dir("dms-broker-tls-");
        let extra = [("DMS_RABBITMQ_CA_FILE", path(&tls.ca))];
        let mut daemon = Daemon::launch(dir.path(), "tls-3", env(tls, dir.path(), "tls-3", &extra));
        assert_refused_once(&mut daemon, &["the broker refused this client", "rabbitmq_cert_file"]);
        daemon.stop();
    });
}
