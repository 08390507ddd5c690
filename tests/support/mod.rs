//! Test support: real components started by the test suite itself.
//!
//! Every service is a RAII guard. Its processes run in their own process group and its
//! state (data, config, logs) lives in a private temp directory; `Drop` kills the process
//! group(s), stops what the service left behind (RabbitMQ's epmd) and removes the
//! directory. When a guard is dropped while the test is panicking, the tail of each of its
//! logs is printed (libtest shows it with the failure). Set `DMS_TEST_KEEP=1` to keep
//! the temp directories for inspection.
//!
//! A guard that is never dropped (the per-binary [`Broker::shared`] lives in a static;
//! or the test process is SIGKILLed) is cleaned up by a janitor process
//! (`scripts/infra/janitor.sh`) holding the read end of a pipe whose write end only the
//! test process holds: when the test process exits for any reason, the pipe closes and the
//! janitor kills the recorded process groups, stops the private epmd and removes the
//! directory.
//!
//! Components (installed by `ensure_test_infra` in `scripts/lib/deps.sh`; a missing
//! component FAILS the test, it never skips):
//! - [`Broker`]: a private RabbitMQ node (Debian's rabbitmq-server) with its own ports,
//!   node name and epmd port.
//! - [`Cluster`]: three clustered RabbitMQ nodes (one epmd, one cookie, `join_cluster`)
//!   with fault injection (`cluster_ops.rs`), and a [`Tenant`] per test.
//! - [`S3`]: moto_server (PyPI `moto[server]` in the test venv) with a bucket.
//! - [`Barbican`]: Barbican from PyPI behind `scripts/infra/barbican_launcher.py`, with
//!   fault injection.
//! - [`mountns`]: run a test body in a private mount namespace (re-exec under `unshare`).
//! - [`http`]: a tiny blocking HTTP/1.1 client for test setup (no async runtime needed).
//!
//! The s3vaultfuse stand-in is `scripts/infra/s3vaultfuse-s3fs` ([`s3vaultfuse_s3fs`]).

#![allow(dead_code, unused_imports)]

pub mod barbican;
pub mod broker;
pub mod broker_tls;
pub mod cluster;
pub mod cluster_ops;
pub mod http;
pub mod mountns;
pub mod proc;
pub mod s3;

pub use barbican::{Barbican, Fault};
pub use broker::Broker;
pub use broker_tls::TlsBroker;
pub use cluster::Cluster;
pub use cluster_ops::Tenant;
pub use s3::S3;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The workspace root (the root package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/infra/<name>` in this repository.
pub fn infra_script(name: &str) -> PathBuf {
    repo_root().join("scripts/infra").join(name)
}

/// The s3vaultfuse-compatible helper (s3fs wrapper) to configure as `s3vaultfuse_bin`.
pub fn s3vaultfuse_s3fs() -> PathBuf {
    infra_script("s3vaultfuse-s3fs")
}

/// The Python venv holding moto and barbican: `$DMS_TEST_VENV` or `/var/lib/dms-test/venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("DMS_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/dms-test/venv"))
}

/// `<venv>/bin/<name>`; panics with an install hint if it is missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let p = venv().join("bin").join(name);
    require_file(&p);
    p
}

/// Panics (never skips) with an install hint when a required program is missing.
pub fn require_file(p: &Path) {
    assert!(
        p.exists(),
        "test infrastructure missing: {} does not exist. Install it with \
         `bash scripts/infra/install-test-infra.sh` (the `ensure_test_infra` function of \
         scripts/lib/deps.sh, run by scripts/test.sh).",
        p.display()
    );
}

/// A currently free TCP port on 127.0.0.1 (bound, read, released), never one this process
/// handed out before (a broker whose AMQP and epmd ports came out equal failed to start,
/// `eaddrinuse`), and below the kernel's ephemeral range (32768–60999 here): a port the
/// kernel hands out is soon the local port of someone's outgoing connection, so a broker
/// restarted on it found it taken (`dist_port_already_used ... not_erlang`).
pub fn free_port() -> u16 {
    const PORTS: std::ops::Range<u32> = 20_000..32_768;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let pick = uuid::Uuid::new_v4().as_u128() % u128::from(PORTS.end - PORTS.start);
        let port = u16::try_from(u128::from(PORTS.start) + pick).expect("below 32768");
        let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
}

/// Polls `check` every 50-200 ms until it returns `Some`, or fails after `timeout` with
/// an error naming `what`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let mut pause = Duration::from_millis(25);
    poll(what, timeout, check, move || {
        pause = (pause * 2).min(Duration::from_millis(200));
        pause
    })
}

/// A pause of [`poll_every`] between two calls of a RabbitMQ CLI tool: each call boots an
/// Erlang VM (0.2-1 CPU-second on two loaded cores), so polling one at [`wait_for`]'s pace
/// keeps a core busy.
pub const CLI_POLL: Duration = Duration::from_secs(1);

/// Like [`wait_for`], with a fixed `pause` between two checks (for checks that cost CPU,
/// such as a RabbitMQ CLI call: see [`CLI_POLL`]).
pub fn poll_every<T>(
    what: &str,
    timeout: Duration,
    pause: Duration,
    check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    poll(what, timeout, check, || pause)
}

/// `check` until it gives a value or `timeout` passes, sleeping `pause()` in between.
fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    mut pause: impl FnMut() -> Duration,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(pause());
    }
}

/// The last `max_lines` lines of a log file, for failure messages.
pub fn log_tail(path: &Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(max_lines);
            lines[from..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Whether temp directories should be kept (`DMS_TEST_KEEP=1`).
/// The `N` fields of the descriptor file a suite service published (named by the variable
/// `env`; `examples/suite_services.rs` writes them). Panics, naming both, when it cannot.
pub fn suite_descriptor<const N: usize>(env: &str, file: &Path) -> [String; N] {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{env}={}: {e}", file.display()));
    let fields: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    fields.try_into().unwrap_or_else(|_| {
        panic!("{env}={}: not a descriptor of {N} fields: {text:?}", file.display())
    })
}

pub fn keep_temp() -> bool {
    std::env::var_os("DMS_TEST_KEEP").is_some_and(|v| v == "1")
}

/// A new private temp directory `/tmp/<prefix>XXXXXX` (mode 0700).
pub fn temp_dir(prefix: &str) -> TestDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create temp dir in /tmp");
    TestDir(Some(dir))
}

/// A temp directory that, when dropped, first detaches whatever is still mounted inside it,
/// unguards the mount points left in it, and then removes it. A daemon's helpers outlive it by design, so a test can end with a
/// (possibly dead) FUSE mount under its directory, and removing a mount point fails: the
/// removal stopped there and left the directory behind after every passing suite.
#[derive(Debug)]
pub struct TestDir(Option<tempfile::TempDir>);

impl TestDir {
    pub fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Keep it (for `DMS_*_KEEP`): nothing is detached or removed.
    pub fn keep(mut self) -> PathBuf {
        self.0.take().map(tempfile::TempDir::keep).unwrap_or_default()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let Some(dir) = &self.0 else { return };
        if std::fs::metadata("/proc/self/mountinfo").is_err() {
            return; // no table to read: nothing to detach (and no panic inside a drop)
        }
        let inside = format!("{}/", dir.path().display());
        let mut points: Vec<String> = mountns::mounts()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(&inside))
            .collect();
        // Deepest first; lazily, since a dead or busy mount refuses a plain umount.
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = std::process::Command::new("umount").arg("-l").arg(&point).status();
        }
        unguard_tree(dir.path());
    }
}

/// Clear the immutable flag the daemon sets on bare mount points (`chattr -R -i`, as an
/// operator would), or removing the tree fails on them and leaves it behind.
pub fn unguard_tree(root: &Path) {
    let _ = std::process::Command::new("chattr")
        .args(["-R", "-f", "-i"])
        .arg(root)
        .stderr(std::process::Stdio::null())
        .status();
}
