//! The broker's keys loaded together: hosts, `queue_type`, and the TLS keys' consistency.

#![allow(clippy::unwrap_used)]

use super::*;

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> =
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Config::load(Sources {
        config_path: None,
        env: &env,
        default_config_path: PathBuf::from("/nonexistent/dms-test/server.conf"),
    })
}

const TLS_URL: &str = "amqps://dms:pw@ctrl1:5671,dms:pw@ctrl2:5671/";

fn problems(pairs: &[(&str, &str)]) -> Vec<String> {
    load(pairs).unwrap_err().problems.iter().map(ToString::to_string).collect()
}

#[test]
fn given_defaults_when_loaded_then_classic_queue_and_no_tls_settings() {
    let c = load(&[("DMS_RABBITMQ_URL", "rabbit://u:p@a,u:p@b/"), ("DMS_NODE_ID", "n1")]).unwrap();
    assert_eq!(c.queue_type, QueueType::Classic);
    assert_eq!(c.rabbitmq_tls, BrokerTls::default());
    assert_eq!(c.rabbitmq_url.hosts().len(), 2);
    assert_eq!(c.rabbitmq_url.to_string(), "rabbit://u:***@a,u:***@b/");
}

#[test]
fn given_broker_keys_when_loaded_then_they_reach_the_config() {
    let c = load(&[
        ("DMS_RABBITMQ_URL", TLS_URL),
        ("DMS_NODE_ID", "n1"),
        ("DMS_QUEUE_TYPE", "Quorum"),
        ("DMS_RABBITMQ_CA_FILE", "/etc/dms/ca.pem"),
        ("DMS_RABBITMQ_CERT_FILE", "/etc/dms/client.pem"),
        ("DMS_RABBITMQ_KEY_FILE", "/etc/dms/client.key"),
    ])
    .unwrap();
    assert_eq!(c.queue_type, QueueType::Quorum);
    assert_eq!(c.rabbitmq_tls.ca_file, Some(PathBuf::from("/etc/dms/ca.pem")));
    let cert = c.rabbitmq_tls.client_cert.unwrap();
    assert_eq!(cert.cert_file, PathBuf::from("/etc/dms/client.pem"));
    assert_eq!(cert.key_file, PathBuf::from("/etc/dms/client.key"));
    let insecure = load(&[
        ("DMS_RABBITMQ_URL", TLS_URL),
        ("DMS_NODE_ID", "n1"),
        ("DMS_RABBITMQ_INSECURE", "true"),
    ])
    .unwrap();
    assert!(insecure.rabbitmq_tls.insecure);
}

#[test]
fn given_inconsistent_broker_keys_when_loaded_then_each_is_a_clear_problem() {
    let base = [("DMS_RABBITMQ_URL", TLS_URL), ("DMS_NODE_ID", "n1")];
    let with = |extra: &[(&'static str, &'static str)]| [&base[..], extra].concat();
    assert_eq!(
        problems(&with(&[("DMS_QUEUE_TYPE", "stream")])),
        ["queue_type (environment variable DMS_QUEUE_TYPE): must be classic or quorum"]
    );
    assert_eq!(
        problems(&with(&[("DMS_RABBITMQ_CERT_FILE", "/c.pem")])),
        ["rabbitmq_cert_file (environment variable DMS_RABBITMQ_CERT_FILE): is set but rabbitmq_key_file is not; set both or neither"]
    );
    assert_eq!(
        problems(&with(&[("DMS_RABBITMQ_KEY_FILE", "/c.key")])),
        ["rabbitmq_key_file (environment variable DMS_RABBITMQ_KEY_FILE): is set but rabbitmq_cert_file is not; set both or neither"]
    );
    assert_eq!(
        problems(&with(&[("DMS_RABBITMQ_CA_FILE", "/ca.pem"), ("DMS_RABBITMQ_INSECURE", "yes")])),
        ["rabbitmq_ca_file (environment variable DMS_RABBITMQ_CA_FILE): has no effect with rabbitmq_insecure = true"]
    );
    assert_eq!(
        problems(&with(&[("DMS_RABBITMQ_CA_FILE", "ca.pem")])),
        ["rabbitmq_ca_file (environment variable DMS_RABBITMQ_CA_FILE): must be an absolute path"]
    );
    let plain = [("DMS_RABBITMQ_URL", "amqp://u:p@h/"), ("DMS_NODE_ID", "n1")];
    assert_eq!(
        problems(&[&plain[..], &[("DMS_RABBITMQ_CA_FILE", "/ca.pem")]].concat()),
        ["rabbitmq_ca_file (environment variable DMS_RABBITMQ_CA_FILE): has no effect: rabbitmq_url is not amqps://"]
    );
    assert_eq!(
        problems(&[&plain[..], &[("DMS_RABBITMQ_INSECURE", "true")]].concat()),
        ["rabbitmq_insecure (environment variable DMS_RABBITMQ_INSECURE): has no effect: rabbitmq_url is not amqps://"]
    );
}

#[test]
fn given_a_malformed_cluster_url_when_loaded_then_the_problem_hides_every_password() {
    let p = problems(&[
        ("DMS_RABBITMQ_URL", "rabbit://u:pw-one@h1,,u:pw-two@h3/"),
        ("DMS_NODE_ID", "n1"),
    ]);
    assert_eq!(
        p,
        ["rabbitmq_url (environment variable DMS_RABBITMQ_URL): host entry 2 is empty (stray comma?)"]
    );
}
