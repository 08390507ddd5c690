//! End-to-end harness: the real `dms-server` binary, driven only by `DMS_*` environment
//! variables as an operator would, and an AMQP client speaking the wire format of the
//! existing Python clients.
#![allow(dead_code, clippy::unwrap_used)]

pub mod cluster;
pub mod ctl;
pub mod heal;
pub mod host;
pub mod journal;
pub mod recovery;
pub mod stand_in;
pub mod traffic;

use crate::support::proc::GroupChild;
use crate::support::{self, Broker};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const T: Duration = Duration::from_secs(60);

/// The in-memory FUSE helper of this workspace (built by `cargo test --workspace`).
pub fn testfs_bin() -> PathBuf {
    workspace_bin("dms-testfs")
}

/// A binary of this workspace's debug build (under `$CARGO_TARGET_DIR`, else `target/`),
/// required to be there.
pub fn workspace_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo_root().join("target"));
    let bin = target.join("debug").join(name);
    support::require_file(&bin);
    bin
}

/// A helper binary that is `dms-testfs` with a fault switch set (the daemon passes helpers
/// an explicit environment only, so the switch is baked into a wrapper).
pub fn faulty_helper(dir: &Path, fault: &str) -> PathBuf {
    let path = dir.join(format!("helper-{}", fault.replace(['=', '.'], "-")));
    std::fs::write(
        &path,
        format!("#!/bin/sh\nDMS_TESTFS_FAULT={fault} exec {}\n", testfs_bin().display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// The daemon's variables for the standard layout under `dir` (its mount base is created):
/// the broker, the node id, `mounts/`, the helper binary, `pids/`, `journal`,
/// `helper-logs/` and the log level.
pub fn layout_env(
    broker: &Broker,
    dir: &Path,
    node: &str,
    helper: &Path,
    log_level: &str,
) -> Vec<(String, String)> {
    layout_env_for(&broker.amqp_url(), dir, node, helper, log_level)
}

/// [`layout_env`] with `url` as `DMS_RABBITMQ_URL` (a node of a cluster, or all of them).
pub fn layout_env_for(
    url: &str,
    dir: &Path,
    node: &str,
    helper: &Path,
    log_level: &str,
) -> Vec<(String, String)> {
    let base = dir.join("mounts");
    std::fs::create_dir_all(&base).unwrap();
    vec![
        ("DMS_RABBITMQ_URL".into(), url.into()),
        ("DMS_NODE_ID".into(), node.into()),
        ("DMS_MOUNT_BASE".into(), base.display().to_string()),
        ("DMS_S3VAULTFUSE_BIN".into(), helper.display().to_string()),
        ("DMS_PID_DIR".into(), dir.join("pids").display().to_string()),
        ("DMS_JOURNAL_PATH".into(), dir.join("journal").display().to_string()),
        ("DMS_HELPER_LOG_DIR".into(), dir.join("helper-logs").display().to_string()),
        ("DMS_LOG_LEVEL".into(), log_level.into()),
        // No cgroups unless a test asks for them with a private root it removes
        // (tests/server_cgroup.rs): `auto` would leave `dms-helpers` under the test
        // runner's own cgroup.
        ("DMS_HELPER_CGROUP_ROOT".into(), "off".into()),
    ]
}

/// What [`Daemon::start_with`] runs the daemon with: [`layout_env`], an admin socket in
/// `dir`, metrics on a free port, then `extra` (which replaces what it names).
pub fn standard_env(
    broker: &Broker,
    dir: &Path,
    node: &str,
    helper: &Path,
    log_level: &str,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    standard_env_for(&broker.amqp_url(), dir, node, helper, log_level, extra)
}

/// [`standard_env`] with `url` as `DMS_RABBITMQ_URL`.
pub fn standard_env_for(
    url: &str,
    dir: &Path,
    node: &str,
    helper: &Path,
    log_level: &str,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut env = layout_env_for(url, dir, node, helper, log_level);
    env.push(("DMS_ADMIN_SOCKET".into(), dir.join("admin.sock").display().to_string()));
    env.push(("DMS_METRICS_LISTEN".into(), "127.0.0.1:0".into()));
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push(((*k).to_owned(), v.clone()));
    }
    env
}

/// A running daemon and its files.
pub struct Daemon {
    pub child: GroupChild,
    pub node: String,
    pub base: PathBuf,
    pub pid_dir: PathBuf,
    pub journal: PathBuf,
    pub log: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Start with the standard layout under `dir` plus `extra` variables.
    pub fn start(broker: &Broker, dir: &Path, node: &str, extra: &[(&str, String)]) -> Daemon {
        Self::start_with(broker, dir, node, &testfs_bin(), "debug", extra)
    }

    /// [`Daemon::start`] with `helper` as the helper binary and `log_level` as
    /// `DMS_LOG_LEVEL` (the benches: the release helper, a quieter log).
    pub fn start_with(
        broker: &Broker,
        dir: &Path,
        node: &str,
        helper: &Path,
        log_level: &str,
        extra: &[(&str, String)],
    ) -> Daemon {
        Self::spawn(dir, node, standard_env(broker, dir, node, helper, log_level, extra))
    }

    /// Start with exactly `env` and wait until it consumes.
    pub fn spawn(dir: &Path, node: &str, env: Vec<(String, String)>) -> Daemon {
        let mut daemon = Self::launch(dir, node, env);
        daemon.wait_log("consuming");
        daemon
    }

    /// Start with exactly `env`, without waiting for anything (it may die at boot).
    pub fn launch(dir: &Path, node: &str, env: Vec<(String, String)>) -> Daemon {
        let log = dir.join(format!("dms-server-{}.log", uuid::Uuid::new_v4()));
        Self::launch_logging_to(node, env, log)
    }

    /// [`Daemon::launch`] with stdout and stderr appended to `log` (which may exist: a
    /// test that needs the file's identity beforehand creates it).
    pub fn launch_logging_to(node: &str, env: Vec<(String, String)>, log: PathBuf) -> Daemon {
        let get = |k: &str| PathBuf::from(&env.iter().find(|(n, _)| n == k).unwrap().1);
        // Tests get the binary from cargo; the dev stack (an example) names it.
        let bin = std::env::var_os("DMS_E2E_SERVER_BIN")
            .map(PathBuf::from)
            .or_else(|| option_env!("CARGO_BIN_EXE_dms-server").map(PathBuf::from))
            .expect("the dms-server binary (CARGO_BIN_EXE_dms-server or DMS_E2E_SERVER_BIN)");
        let mut cmd = Command::new(bin);
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
        let child = GroupChild::spawn("dms-server", cmd, &log);
        Daemon {
            child,
            node: node.into(),
            base: get("DMS_MOUNT_BASE"),
            pid_dir: get("DMS_PID_DIR"),
            journal: get("DMS_JOURNAL_PATH"),
            log,
            env,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_log(&mut self, needle: &str) {
        let mut exited = None;
        let found = support::wait_for(&format!("dms-server log line {needle:?}"), T, || {
            if let Some(status) = self.child.try_wait() {
                exited = Some(status);
                return Some(());
            }
            self.log_text().contains(needle).then_some(())
        });
        if let Some(status) = exited.filter(|_| !self.log_text().contains(needle)) {
            panic!(
                "dms-server exited ({status}) before {needle:?}\n--- daemon log ---\n{}",
                self.log_text()
            );
        }
        if let Err(e) = found {
            panic!("{e}\n--- daemon log ---\n{}", self.log_text());
        }
    }

    pub fn path(&self, target: &str) -> String {
        self.base.join(target).display().to_string()
    }

    /// SIGTERM and wait: intake stops, mounts and helpers stay.
    pub fn stop(mut self) -> String {
        self.child.signal_group(rustix::process::Signal::TERM);
        let status = self.child.wait_timeout(T);
        assert!(
            status.is_some_and(|s| s.success()),
            "dms-server did not stop cleanly: {status:?}\n{}",
            self.log_text()
        );
        self.log_text()
    }

    /// The PID files left once the helpers of unmounted targets are stopped: an S3
    /// unmount is answered before its helper is stopped (and its PID file removed), so this
    /// waits, up to 10 s, for the directory to empty; what is still there then.
    pub fn pid_files_after_cleanup(&self) -> Vec<String> {
        let gone = || self.pid_files().is_empty().then_some(());
        let ten_s = std::time::Duration::from_secs(10);
        let _ = crate::support::wait_for("the helpers' PID files to go", ten_s, gone);
        self.pid_files()
    }

    pub fn pid_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.pid_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// A client of the existing wire format.
pub struct Client {
    conn: Connection,
    channel: Channel,
    replies: Consumer,
    reply_queue: String,
}

impl Client {
    pub async fn connect(broker: &Broker) -> Client {
        let conn =
            Connection::connect(&broker.amqp_url(), ConnectionProperties::default()).await.unwrap();
        let channel = conn.create_channel().await.unwrap();
        channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        let opts = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let q = channel.queue_declare("".into(), opts, FieldTable::default()).await.unwrap();
        let reply_queue = q.name().as_str().to_owned();
        let replies = channel
            .basic_consume(
                reply_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        Client { conn, channel, replies, reply_queue }
    }

    /// Publish a request body to `dms.<node>` as the Python client does.
    pub async fn send(&self, node: &str, body: &[u8], correlation_id: &str, reply: bool) {
        let confirm = self.publish(&format!("dms.{node}"), body, correlation_id, reply).await;
        assert!(!confirm.await.unwrap().is_nack());
    }

    /// Publish a persistent request to `queue` and return the broker's confirm unawaited,
    /// so a caller can put many requests in flight at once.
    pub async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        correlation_id: &str,
        reply: bool,
    ) -> lapin::PublisherConfirm {
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_correlation_id(ShortString::from(correlation_id));
        if reply {
            props = props.with_reply_to(ShortString::from(self.reply_queue.as_str()));
        }
        self.channel
            .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, props)
            .await
            .unwrap()
    }

    /// The next reply, with its correlation id.
    pub async fn reply(&mut self) -> (String, Value) {
        let delivery = tokio::time::timeout(T, self.replies.next())
            .await
            .expect("no reply within the deadline")
            .expect("reply consumer ended")
            .unwrap();
        let corr = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        assert_eq!(
            delivery.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        (corr, serde_json::from_slice(&delivery.data).unwrap())
    }

    /// Send and wait for the reply to exactly this request.
    pub async fn call(&mut self, node: &str, body: &Value, correlation_id: &str) -> Value {
        self.send(node, body.to_string().as_bytes(), correlation_id, true).await;
        loop {
            let (corr, reply) = self.reply().await;
            if corr == correlation_id {
                return reply;
            }
        }
    }

    pub async fn close(self) {
        let _ = self.conn.close(200, "bye".into()).await;
    }
}

pub fn ok(msg: &str) -> Value {
    json!({"status": "success", "error_msg": null, "success_msg": msg})
}

pub fn err(msg: &str) -> Value {
    json!({"status": "error", "error_msg": msg, "success_msg": null})
}

pub fn mounted_msg(path: &str) -> Value {
    ok(&format!("S3 target mounted successfully at {path}"))
}

pub fn unmounted_msg(path: &str) -> Value {
    ok(&format!("Target unmounted successfully from {path}"))
}

/// Credentials for the in-memory helper, as a test stores them in Barbican (dms-testfs
/// ignores the endpoint). Each test passes a secret of its own, so that its "no secret in
/// the logs" checks look for a value only it used.
pub fn testfs_credentials(key_id: &str, secret: &str, bucket: &str) -> String {
    json!({
        "aws_access_key_id": key_id, "aws_secret_access_key": secret,
        "bucket": bucket, "region": "us-east-1", "endpoint_url": "http://127.0.0.1:1"
    })
    .to_string()
}

/// The runtime a test drives its clients on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One request and its reply, on a fresh connection to the shared broker.
pub fn call(rt: &tokio::runtime::Runtime, daemon: &Daemon, body: &Value, corr: &str) -> Value {
    rt.block_on(async {
        let mut client = Client::connect(Broker::shared()).await;
        let reply = client.call(&daemon.node, body, corr).await;
        client.close().await;
        reply
    })
}

pub fn s3_mount(target: &str, path: &str, secret_ref: &str, token: &str) -> Value {
    json!({
        "context": {"user_id": "u-1", "tenant_id": "p-1"},
        "keystone_token": token,
        "job": {"jobid": 12345, "action": "backup"},
        "host": "compute-01",
        "action": "mount",
        "backup_target": {
            "id": target, "deleted": false, "type": "s3", "filesystem_export": null,
            "filesystem_export_mount_path": path, "status": "available",
            "secret_ref": secret_ref, "nfs_mount_opts": null
        }
    })
}

pub fn nfs_mount(target: &str, path: &str, export: &str, opts: &str) -> Value {
    json!({
        "keystone_token": "unused",
        "action": "mount",
        "backup_target": {
            "id": target, "type": "nfs", "filesystem_export": export,
            "filesystem_export_mount_path": path, "nfs_mount_opts": opts
        }
    })
}

pub fn unmount(target: &str, path: &str, kind: &str) -> Value {
    json!({
        "action": "unmount",
        "backup_target": {"id": target, "type": kind, "filesystem_export_mount_path": path}
    })
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Publish every request at once, then collect exactly one reply per request (matched by
/// correlation id) and compare each with the expected one.
pub async fn call_all(client: &mut Client, daemon: &Daemon, requests: Vec<(Value, Value)>) {
    let mut expected = BTreeMap::new();
    for (body, reply) in requests {
        let corr = uuid();
        client.send(&daemon.node, body.to_string().as_bytes(), &corr, true).await;
        expected.insert(corr, reply);
    }
    let mut got = BTreeMap::new();
    while got.len() < expected.len() {
        let (corr, reply) = client.reply().await;
        assert!(expected.contains_key(&corr), "a reply to an unknown request {corr:?}: {reply}");
        assert!(got.insert(corr, reply).is_none(), "two replies to one request");
    }
    assert_eq!(got, expected, "{}", daemon.log_text());
}
