//! The main job, locally: a private RabbitMQ node, a private Barbican holding demo S3
//! credentials, and `dms-server` with the in-memory FUSE helper (`dms-testfs`), all in a
//! private mount namespace so nothing leaks onto the machine. It mounts and unmounts a
//! target over AMQP, shows the replies, the mount and the journal, then keeps the stack
//! running until Ctrl-C (or exits at once with `DMS_DEV_EXIT=1`).
//!
//! Run through `scripts/run.sh` (it installs what is needed and builds the binaries).
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/e2e/mod.rs"]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::Command;

const INSIDE: &str = "DMS_DEV_PRIVATE_NS";
const TOKEN: &str = "dev-keystone-token";

fn main() {
    if std::env::var_os(INSIDE).is_none() {
        // Re-run in a private mount namespace: the daemon's mounts live and die there.
        let status = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--"])
            .arg(format!("/proc/{}/exe", std::process::id()))
            .env(INSIDE, "1")
            .status()
            .expect("unshare(1) from util-linux is required");
        std::process::exit(status.code().unwrap_or(1));
    }
    let release = support::repo_root().join("target/release");
    let testfs = release.join("dms-testfs");
    let server = release.join("dms-server");
    let journal_tool = release.join("dms-journal");
    let ctl = release.join("dms-ctl");
    for bin in [&testfs, &server, &journal_tool, &ctl] {
        support::require_file(bin);
    }

    step("starting a private RabbitMQ node");
    let broker = support::Broker::start();
    println!("  {} at {}", broker.node_name(), broker.amqp_url());
    step("starting a private Barbican and storing demo S3 credentials");
    let barbican = support::Barbican::start();
    let creds = serde_json::json!({
        "aws_access_key_id": "AKIADEMO", "aws_secret_access_key": "demo-secret",
        "bucket": "demo-bucket", "region": "us-west-2"
    });
    let secret_ref = barbican.store_secret(TOKEN, &creds.to_string());
    println!("  secret_ref {secret_ref}");

    let dir = PathBuf::from("/tmp/dms-dev");
    support::unguard_tree(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    step("starting dms-server (node dev-node) with dms-testfs as the S3 helper");
    let env = vec![
        ("DMS_RABBITMQ_URL".to_owned(), broker.amqp_url()),
        ("DMS_NODE_ID".to_owned(), "dev-node".to_owned()),
        ("DMS_MOUNT_BASE".to_owned(), dir.join("mounts").display().to_string()),
        ("DMS_S3VAULTFUSE_BIN".to_owned(), testfs.display().to_string()),
        ("DMS_PID_DIR".to_owned(), dir.join("pids").display().to_string()),
        ("DMS_JOURNAL_PATH".to_owned(), dir.join("journal").display().to_string()),
        ("DMS_HELPER_LOG_DIR".to_owned(), dir.join("helper-logs").display().to_string()),
        ("DMS_LOG_LEVEL".to_owned(), "info".to_owned()),
        ("DMS_ADMIN_SOCKET".to_owned(), dir.join("admin.sock").display().to_string()),
        ("DMS_METRICS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    std::fs::create_dir_all(dir.join("mounts")).unwrap();
    let daemon = spawn_release(&server, &dir, env);
    println!("  log: {}", daemon.log.display());

    let path = daemon.path("demo-target");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = e2e::Client::connect(&broker).await;
        let mount = e2e::s3_mount("demo-target", &path, &secret_ref, TOKEN);
        step("request: mount (the Python client's wire format)");
        println!("{}", serde_json::to_string_pretty(&redacted(&mount)).unwrap());
        let reply = client.call(&daemon.node, &mount, &e2e::uuid()).await;
        println!("  reply: {reply}");
        step("the mount, as the kernel shows it");
        if let Some(m) = support::mountns::mount_at(Path::new(&path)) {
            println!("  {} on {} type {}", m.source, m.mount_point, m.fs_type);
        }
        std::fs::write(Path::new(&path).join("hello.txt"), b"written through the FUSE mount\n")
            .unwrap();
        println!("  wrote {path}/hello.txt; PID files: {:?}", daemon.pid_files());
        step("request: mount again (idempotent)");
        println!("  reply: {}", client.call(&daemon.node, &mount, &e2e::uuid()).await);
        step("request: unmount");
        let reply = client
            .call(&daemon.node, &e2e::unmount("demo-target", &path, "s3"), &e2e::uuid())
            .await;
        println!("  reply: {reply}");
        client.close().await;
    });
    step("the journal of demo-target, online (dms-journal inspect --target demo-target)");
    let socket = dir.join("admin.sock");
    let out = Command::new(&journal_tool)
        .env("DMS_ADMIN_SOCKET", &socket)
        .args([
            "--path",
            dir.join("journal").to_str().unwrap(),
            "inspect",
            "--target",
            "demo-target",
        ])
        .output()
        .unwrap();
    print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    step("the daemon as an operator sees it (dms-ctl status, dms-ctl health)");
    for args in [&["status"][..], &["health"][..]] {
        let out = Command::new(&ctl).arg("--socket").arg(&socket).args(args).output().unwrap();
        print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    step("the stack is running");
    println!("  broker  {}   queue dms.dev-node", broker.amqp_url());
    println!("  daemon  pid {}  log {}", daemon.child.pid(), daemon.log.display());
    println!(
        "  mounts live in this private namespace: nsenter -t {} -m ls {}",
        daemon.child.pid(),
        dir.join("mounts").display()
    );
    if std::env::var_os("DMS_DEV_EXIT").is_some() {
        let log = daemon.stop();
        print_journal(&journal_tool, &dir);
        println!("stopped ({} log lines)", log.lines().count());
        return;
    }
    println!("  press Ctrl-C to stop everything");
    let runtime2 = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime2.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    daemon.stop();
    print_journal(&journal_tool, &dir);
}

fn spawn_release(server: &Path, dir: &Path, env: Vec<(String, String)>) -> e2e::Daemon {
    // Daemon::spawn starts the debug binary of the tests; start the release one the same way.
    std::env::set_var("DMS_E2E_SERVER_BIN", server);
    e2e::Daemon::spawn(dir, "dev-node", env)
}

fn print_journal(tool: &Path, dir: &Path) {
    let out = Command::new(tool)
        .args(["--path", dir.join("journal").to_str().unwrap(), "inspect"])
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

fn redacted(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    v["keystone_token"] = serde_json::Value::String("***".into());
    v
}

fn step(what: &str) {
    println!("\n== {what}");
}
