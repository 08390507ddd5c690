//! Loading from explicit sources: precedence, defaults, and every problem at once.

#![allow(clippy::unwrap_used)]

use super::*;
use std::io::Write;
use std::time::Duration;

const URL: &str = "amqp://dms_user:s3cr3t-pw@rabbitmq-host:5672/";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// Sources whose default file does not exist, so the host's /etc never leaks into a test.
fn sources<'a>(path: Option<&std::path::Path>, env: &'a BTreeMap<String, String>) -> Sources<'a> {
    Sources {
        config_path: path.map(Into::into),
        env,
        default_config_path: PathBuf::from("/nonexistent/dms-test/server.conf"),
    }
}

fn load(
    path: Option<&std::path::Path>,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    Config::load(sources(path, env))
}

fn minimal_env() -> BTreeMap<String, String> {
    env(&[("DMS_RABBITMQ_URL", URL), ("DMS_NODE_ID", "compute-01")])
}

#[test]
fn given_only_the_required_variables_when_loaded_then_every_default_applies() {
    let c = load(None, &minimal_env()).unwrap();
    assert_eq!(c.config_file, None);
    assert_eq!(c.rabbitmq_url.hosts()[0].expose(), URL);
    assert_eq!(c.queue_name(), "dms.compute-01");
    assert_eq!(c.auth_url, None);
    assert_eq!(c.mount_base_path.as_str(), "/var/lib/trilio/triliovault-mounts");
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_format, LogFormat::Auto);
    assert_eq!(c.s3vaultfuse_bin, PathBuf::from("/usr/bin/s3vaultfuse.py"));
    assert_eq!(c.pid_dir, PathBuf::from("/run/dms/s3"));
    assert_eq!(c.admin_socket, PathBuf::from("/run/dms/admin.sock"));
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9477".parse().unwrap()));
    assert_eq!(c.journal_path, PathBuf::from("/var/lib/dms/journal"));
    assert_eq!(c.mount_program, PathBuf::from("mount"));
    assert_eq!(c.umount_program, PathBuf::from("umount"));
    assert_eq!(c.rootwrap, None);
    assert_eq!(c.helper_log_dir, PathBuf::from("/var/log/dms/helpers"));
    let s = Duration::from_secs;
    assert_eq!(
        c.timeouts,
        Timeouts {
            credentials: s(10),
            helper_mount: s(30),
            helper_stop_grace: s(10),
            nfs_mount: s(60),
            umount: s(30),
            resync: s(30),
            mount_probe: s(5)
        }
    );
    assert_eq!((c.max_concurrent_targets, c.prefetch), (16, 32));
    assert_eq!(c.park_after, Duration::from_millis(500));
    assert_eq!((c.barbican_ca_file.clone(), c.barbican_insecure), (None, false));
    assert!(c.secret_ref_prefixes.is_empty());
    assert!(c.nfs_allowed_options.contains("nfsvers") && !c.nfs_allowed_options.contains("suid"));
    assert_eq!(c.wire_policy(), crate::wire::Policy::default());
}

#[test]
fn given_the_seed_file_and_overriding_variables_when_loaded_then_the_environment_wins() {
    let f = file(
        "[server]\nrabbitmq_url = amqp://openstack:PASSWORD@localhost:5672/\nnode_id = controller\n\
         auth_url = https://keystone:5000\nmount_base_path = /srv/mounts/\nlog_level = INFO\n\
         s3vaultfuse_bin = /usr/bin/s3vaultfuse.py\nrootwrap_bin = /usr/bin/workloadmgr-rootwrap\n\
         rootwrap_conf = /etc/triliovault-wlm/rootwrap.conf\n",
    );
    let e = env(&[
        ("DMS_NODE_ID", "compute-07"),
        ("DMS_MOUNT_BASE", "/mnt//dms/./base"),
        ("DMS_LOG_LEVEL", "DEBUG"),
        ("DMS_PID_DIR", "/tmp/pids"),
        ("DMS_JOURNAL_PATH", "/tmp/journal"),
        ("DMS_MOUNT_PROGRAM", "/opt/fake-mount"),
        ("DMS_UMOUNT_PROGRAM", "umount.fake"),
        ("DMS_S3VAULTFUSE_BIN", "/opt/helper"),
        ("DMS_HELPER_MOUNT_TIMEOUT", "0.25"),
        ("DMS_AUTH_URL", ""),
        ("DMS_LOG_FORMAT", "JSON"),
        ("DMS_UNRELATED", "ignored"),
    ]);
    let c = load(Some(f.path()), &e).unwrap();
    assert_eq!(c.config_file.as_deref(), Some(f.path()));
    assert_eq!(c.rabbitmq_url.hosts()[0].expose(), "amqp://openstack:PASSWORD@localhost:5672/");
    assert_eq!(c.node_id.as_str(), "compute-07");
    assert_eq!(c.auth_url, None, "an empty variable switches an optional key off");
    assert_eq!(c.mount_base_path.as_str(), "/mnt/dms/base");
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.pid_dir, PathBuf::from("/tmp/pids"));
    assert_eq!(c.journal_path, PathBuf::from("/tmp/journal"));
    assert_eq!(c.mount_program, PathBuf::from("/opt/fake-mount"));
    assert_eq!(c.umount_program, PathBuf::from("umount.fake"));
    assert_eq!(c.s3vaultfuse_bin, PathBuf::from("/opt/helper"));
    assert_eq!(c.timeouts.helper_mount, Duration::from_millis(250));
    assert_eq!(
        c.rootwrap,
        Some(Rootwrap {
            bin: "/usr/bin/workloadmgr-rootwrap".into(),
            conf: "/etc/triliovault-wlm/rootwrap.conf".into()
        })
    );
    let e = env(&[("DMS_ROOTWRAP_BIN", "/opt/rw"), ("DMS_ROOTWRAP_CONF", "/opt/rw.conf")]);
    let c = load(Some(f.path()), &e).unwrap();
    assert_eq!(c.rootwrap.unwrap().bin, PathBuf::from("/opt/rw"));
    assert_eq!(c.mount_base_path.as_str(), "/srv/mounts");
}

#[test]
fn given_dms_config_or_cli_when_loaded_then_the_cli_path_wins_and_both_must_exist() {
    let a = file("[server]\nnode_id = from-a\nrabbitmq_url = amqp://h\n");
    let b = file("[server]\nnode_id = from-b\nrabbitmq_url = amqp://h\n");
    let e = env(&[("DMS_CONFIG", a.path().to_str().unwrap())]);
    assert_eq!(load(None, &e).unwrap().node_id.as_str(), "from-a");
    assert_eq!(load(Some(b.path()), &e).unwrap().node_id.as_str(), "from-b");
    let missing = env(&[
        ("DMS_CONFIG", "/nonexistent/x.conf"),
        ("DMS_RABBITMQ_URL", URL),
        ("DMS_NODE_ID", "n"),
    ]);
    let err = load(None, &missing).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(err.to_string().contains("/nonexistent/x.conf: cannot be read"), "{err}");
    let minimal = minimal_env();
    let default_file = Sources { default_config_path: a.path().into(), ..sources(None, &minimal) };
    let c = Config::load(default_file).unwrap();
    assert_eq!(c.config_file.as_deref(), Some(a.path()), "the default file is read when present");
    assert_eq!(c.node_id.as_str(), "compute-01");
}

#[test]
fn given_many_mistakes_when_loaded_then_every_problem_is_listed_with_its_origin() {
    let f = file(
        "[server]\nmount_base = /srv\nlog_level = loud\nprefetch = 0\numount_timeout = -1\n\
         rootwrap_bin = /usr/bin/rw\nbogus line\n",
    );
    let e = env(&[
        ("DMS_RABBITMQ_URL", "rabbitmq://u:hunter2@h/"),
        ("DMS_MOUNT_BASE", "relative/base"),
        ("DMS_MAX_CONCURRENT_TARGETS", "1025"),
        ("DMS_NFS_ALLOWED_OPTIONS", "rw,suid"),
        ("DMS_SECRET_REF_PREFIXES", "https://kms/,"),
        ("DMS_BARBICAN_INSECURE", "maybe"),
        ("DMS_PID_DIR", ""),
        ("DMS_LOG_FORMAT", "colourful"),
        ("DMS_PARK_AFTER", "0"),
    ]);
    let err = load(Some(f.path()), &e).unwrap_err();
    let p = f.path().display();
    let expected = vec![
        format!("{p}:7: expected 'key = value'"),
        format!("mount_base ({p}:2): unknown key (did you mean `mount_base_path`?)"),
        "rabbitmq_url (environment variable DMS_RABBITMQ_URL): must be an amqp://, amqps:// or rabbit:// URL".to_owned(),
        "node_id (not set): is required: set DMS_NODE_ID or `node_id` in [server]".to_owned(),
        "mount_base_path (environment variable DMS_MOUNT_BASE): must be an absolute path".to_owned(),
        format!("log_level ({p}:3): must be one of error, warn, info, debug, trace"),
        "log_format (environment variable DMS_LOG_FORMAT): must be one of auto, text, json, journal".to_owned(),
        "pid_dir (environment variable DMS_PID_DIR): is empty; unset it to get the default".to_owned(),
        format!("umount_timeout ({p}:5): must be a number of seconds (e.g. 30 or 0.5)"),
        "max_concurrent_targets (environment variable DMS_MAX_CONCURRENT_TARGETS): must be a whole number from 1 to 1024".to_owned(),
        format!("prefetch ({p}:4): must be a whole number from 1 to 65535"),
        "park_after (environment variable DMS_PARK_AFTER): must be more than 0 and at most 86400 seconds".to_owned(),
        "barbican_insecure (environment variable DMS_BARBICAN_INSECURE): must be true or false".to_owned(),
        "secret_ref_prefixes (environment variable DMS_SECRET_REF_PREFIXES): has an empty item (stray comma?)".to_owned(),
        "nfs_allowed_options (environment variable DMS_NFS_ALLOWED_OPTIONS): 'suid' can never be allowed (nosuid,nodev are enforced)".to_owned(),
        format!("rootwrap_bin ({p}:6): is set but rootwrap_conf is not; set both or neither"),
    ];
    let got: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(got, expected);
    assert!(err.to_string().starts_with("invalid configuration (16 problems):\n  "));
    assert!(!err.to_string().contains("hunter2"), "the broker password is never shown");
}

#[test]
fn given_half_a_rootwrap_or_a_contradiction_when_loaded_then_it_is_refused() {
    let mut e = minimal_env();
    e.insert("DMS_ROOTWRAP_CONF".into(), "/etc/rw.conf".into());
    let err = load(None, &e).unwrap_err();
    assert_eq!(
        err.problems[0].to_string(),
        "rootwrap_conf (environment variable DMS_ROOTWRAP_CONF): is set but rootwrap_bin is not; set both or neither"
    );
    let mut e = minimal_env();
    e.insert("DMS_BARBICAN_INSECURE".into(), "yes".into());
    assert!(load(None, &e).unwrap().barbican_insecure);
    e.insert("DMS_BARBICAN_CA_FILE".into(), "/etc/ca.pem".into());
    let err = load(None, &e).unwrap_err();
    assert!(err.problems[0].message.contains("has no effect with barbican_insecure = true"));
}

#[test]
fn given_a_loaded_config_when_debug_printed_then_the_broker_password_is_hidden() {
    let c = load(None, &minimal_env()).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cr3t-pw") && shown.contains("dms_user:***@"), "{shown}");
}

#[test]
fn given_bad_node_ids_when_loaded_then_the_queue_name_rules_apply() {
    for (id, message) in [
        ("../etc", "node id must not start with '.'"),
        ("compute 01", "node id contains ' '; only A-Z a-z 0-9 . _ - are allowed"),
    ] {
        let mut e = minimal_env();
        e.insert("DMS_NODE_ID".into(), id.into());
        assert_eq!(load(None, &e).unwrap_err().problems[0].message, message);
    }
}

#[test]
fn given_value_syntaxes_when_parsed_then_edges_are_handled() {
    use super::values::{abs_path, boolean, program, seconds};
    assert_eq!(seconds("1.5").unwrap(), Duration::from_millis(1500));
    for bad in ["0", "0.0", "1.", ".5", "1.2345", "86401", "1e3", "", " 1"] {
        assert!(seconds(bad).is_err(), "{bad}");
    }
    assert_eq!(abs_path("/a//b/./c/").unwrap(), PathBuf::from("/a/b/c"));
    assert!(abs_path("/a/../b").is_err() && abs_path("/a\u{0}").is_err());
    assert!(program("-x").is_err() && program("../mount").is_err() && program("a b").is_err());
    assert!(boolean("On").unwrap() && !boolean("0").unwrap());
    let mut e = minimal_env();
    e.insert("DMS_MOUNT_BASE".into(), "//".into());
    assert_eq!(load(None, &e).unwrap_err().problems[0].message, "must not be '/'");
}

#[test]
fn given_the_key_table_when_compared_with_the_docs_then_they_agree() {
    let doc = include_str!("../../docs/configuration.md");
    let table = keys::markdown_table();
    assert!(doc.contains(&table), "docs/configuration.md is stale; its table must be:\n{table}");
    for option in crate::wire::nfs::DEFAULT_ALLOWED_OPTIONS {
        assert!(
            doc.contains(&format!("`{option}`")),
            "default NFS option {option} is undocumented"
        );
    }
    for key in keys::KEYS {
        let expected = if key.name == "mount_base_path" {
            "DMS_MOUNT_BASE".to_owned()
        } else {
            format!("DMS_{}", key.name.to_ascii_uppercase())
        };
        assert_eq!(key.env, expected, "env var of {}", key.name);
    }
}

#[test]
fn given_an_unspecified_metrics_address_when_loaded_then_it_is_refused_unless_explicitly_allowed() {
    for any in ["0.0.0.0:9477", "[::]:9477", "[::ffff:0.0.0.0]:9477"] {
        let mut e = minimal_env();
        e.insert("DMS_METRICS_LISTEN".into(), any.into());
        let err = load(None, &e).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{any}: {err}");
        let problem = err.problems[0].to_string();
        assert!(
            problem.starts_with("metrics_listen (environment variable DMS_METRICS_LISTEN): ")
                && problem.contains("every address of this host")
                && problem.contains("metrics_allow_any_address = true"),
            "{any}: {problem}"
        );
        // From the file too, with its line.
        let f = file(&format!("[server]\nmetrics_listen = {any}\n"));
        let err = load(Some(f.path()), &minimal_env()).unwrap_err();
        assert!(err.to_string().contains("every address of this host"), "{err}");

        e.insert("DMS_METRICS_ALLOW_ANY_ADDRESS".into(), "true".into());
        let c = load(None, &e).unwrap();
        assert_eq!(c.metrics_listen, Some(any.parse().unwrap()));
        assert!(c.metrics_allow_any_address);
    }
    // Loopback and specific addresses stay allowed without the opt-in, and so does off.
    for local in ["127.0.0.1:0", "[::1]:9477", "10.1.2.3:9477", "127.0.0.53:1"] {
        let mut e = minimal_env();
        e.insert("DMS_METRICS_LISTEN".into(), local.into());
        let c = load(None, &e).unwrap();
        assert_eq!(c.metrics_listen, Some(local.parse().unwrap()), "{local}");
        assert!(!c.metrics_allow_any_address);
    }
    let mut e = minimal_env();
    e.insert("DMS_METRICS_LISTEN".into(), "off".into());
    assert_eq!(load(None, &e).unwrap().metrics_listen, None);
    e.insert("DMS_METRICS_ALLOW_ANY_ADDRESS".into(), "maybe".into());
    let err = load(None, &e).unwrap_err();
    assert!(err.problems[0].to_string().starts_with("metrics_allow_any_address "), "{err}");
}

#[test]
fn helper_memory_max_takes_bytes_and_binary_suffixes() {
    use super::values::bytes;
    assert_eq!(bytes("1048576"), Ok(1 << 20));
    assert_eq!(bytes("64K").map(|_| ()), Err(bytes("1").unwrap_err()), "under 1M");
    assert_eq!(bytes("512M"), Ok(512 << 20));
    assert_eq!(bytes("2g"), Ok(2 << 30));
    assert_eq!(bytes("1T"), Ok(1 << 40));
    for bad in ["", "M", "1.5G", "-1G", "12 M", "1MB", "99999999999999999999", "16777216T"] {
        assert!(bytes(bad).is_err(), "{bad:?} accepted");
    }
}
