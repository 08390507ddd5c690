//! What the dms-server benchmarks share: the re-execution in a private mount namespace with
//! the release helper, the in-process stand-in secret store, bursts of requests, samples
//! and their formatting. Included by each bench with `#[path = "common/mod.rs"]`, after
//! `support` and `e2e`.
#![allow(dead_code, clippy::unwrap_used)]

use crate::e2e::Client;
use crate::support;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NS_ENV: &str = "DMS_BENCH_MOUNT_NS";
const TESTFS_ENV: &str = "DMS_TESTFS_BIN";
pub const TOKEN: &str = "gAAAAAB-bench-keystone-token";

/// The start of a bench's `main`. `None` for `cargo bench -- --list` and test harness
/// probes. Outside the private mount namespace: build or locate the helper, re-execute
/// this binary under `unshare -m --propagation private` and exit with its status. Inside:
/// whether this is the quick run (`DMS_BENCH_QUICK=1`, or run as a test without
/// `--bench`) and the helper binary.
pub fn enter() -> Option<(bool, PathBuf)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return None;
    }
    if std::env::var_os(NS_ENV).is_none() {
        let testfs = build_or_locate_testfs();
        let exe = std::env::current_exe().expect("current_exe");
        let status = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--"])
            .arg(exe)
            .args(&args)
            .env(NS_ENV, "1")
            .env(TESTFS_ENV, &testfs)
            .status()
            .unwrap_or_else(|e| panic!("cannot run unshare (util-linux): {e}"));
        std::process::exit(status.code().unwrap_or(1));
    }
    let quick = std::env::var_os("DMS_BENCH_QUICK").is_some_and(|v| v == "1")
        || !args.iter().any(|a| a == "--bench");
    let testfs = PathBuf::from(std::env::var_os(TESTFS_ENV).expect("set by the parent"));
    Some((quick, testfs))
}

/// `$DMS_TESTFS_BIN`, else `dms-testfs` built next to `dms-server`, in the same profile: a
/// release build for `cargo bench`, a debug one when the bench runs as a test (`cargo test
/// --benches`, the suite's smoke run, which then reuses the debug build the tests made).
fn build_or_locate_testfs() -> PathBuf {
    if let Some(bin) = std::env::var_os(TESTFS_ENV) {
        let bin = PathBuf::from(bin);
        support::require_file(&bin);
        return bin;
    }
    let server = PathBuf::from(env!("CARGO_BIN_EXE_dms-server"));
    let profile_dir = server.parent().expect("dms-server has a directory");
    let bin = profile_dir.join("dms-testfs");
    let target_dir = profile_dir.parent().expect("the profile directory has a parent");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut build = vec!["build", "-p", "dms-testfs", "--bin", "dms-testfs"];
    if release {
        build.push("--release");
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(&cargo)
        .args(&build)
        .arg("--manifest-path")
        .arg(support::repo_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdout(Stdio::null())
        .status();
    let command = format!("cargo {}", build.join(" "));
    match built {
        Ok(s) if s.success() => {}
        other if bin.exists() => eprintln!(
            "warning: `{command}` failed ({other:?}); using the existing {}",
            bin.display()
        ),
        other => panic!("cannot build dms-testfs ({other:?}); build it with `{command}`"),
    }
    support::require_file(&bin);
    bin
}

/// `DMS_BENCH_KEEP=1`: keep the temp directories.
pub fn keep() -> bool {
    std::env::var_os("DMS_BENCH_KEEP").is_some_and(|v| v == "1")
}

/// The daemon's `DMS_LOG_LEVEL`: `DMS_BENCH_LOG_LEVEL`, default `info`.
pub fn log_level() -> String {
    std::env::var("DMS_BENCH_LOG_LEVEL").unwrap_or_else(|_| "info".into())
}

// ---------------------------------------------------------------------------------------
// Samples and formatting

#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Nearest-rank percentile.
    pub fn pct(&self, p: f64) -> Duration {
        let mut s = self.0.clone();
        s.sort_unstable();
        let rank = ((s.len() as f64 * p).ceil() as usize).clamp(1, s.len());
        s[rank - 1]
    }

    pub fn median(&self) -> Duration {
        self.pct(0.5)
    }

    /// "median …, p<tail> …, min …, max … (n=…)", each duration written by `ms`.
    pub fn summary_with(&self, tail: u8, ms: fn(Duration) -> String) -> String {
        format!(
            "median {}, p{tail} {}, min {}, max {} (n={})",
            ms(self.median()),
            ms(self.pct(f64::from(tail) / 100.0)),
            ms(self.pct(0.0)),
            ms(self.pct(1.0)),
            self.0.len()
        )
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// "; N FAILED (first: ...)" or nothing.
pub fn failures(failed: &[String]) -> String {
    match failed.first() {
        None => String::new(),
        Some(first) => format!("; {} FAILED (first: {first})", failed.len()),
    }
}

/// Wait until `/proc/self/mountinfo` (opened as `table`) changes (POLLPRI), `left` at the
/// most and 100 ms at the most.
pub fn poll_table(table: &File, left: Duration) {
    let nap = left.min(Duration::from_millis(100));
    let ts = Timespec { tv_sec: nap.as_secs() as i64, tv_nsec: i64::from(nap.subsec_nanos()) };
    let mut fds = [PollFd::new(table, PollFlags::PRI | PollFlags::ERR)];
    let _ = poll(&mut fds, Some(&ts));
}

// ---------------------------------------------------------------------------------------
// Requests

/// Publish every body at once (confirms awaited after all are sent), then wait for every
/// reply; returns first publish → last reply, and the error texts of failed requests.
pub async fn burst(client: &mut Client, queue: &str, bodies: &[String]) -> (Duration, Vec<String>) {
    let t0 = Instant::now();
    let mut pending = HashSet::new();
    let mut confirms = Vec::with_capacity(bodies.len());
    for body in bodies {
        let corr = uuid::Uuid::new_v4().to_string();
        confirms.push(client.publish(queue, body.as_bytes(), &corr, true).await);
        pending.insert(corr);
    }
    for confirm in confirms {
        assert!(!confirm.await.unwrap().is_nack(), "the broker refused a request");
    }
    let mut failed = Vec::new();
    while !pending.is_empty() {
        let (corr, reply) = client.reply().await;
        if pending.remove(&corr) && reply["status"] != "success" {
            failed.push(reply["error_msg"].as_str().unwrap_or("?").to_owned());
        }
    }
    (t0.elapsed(), failed)
}

// ---------------------------------------------------------------------------------------
// The stand-in secret store

/// A stand-in secret store: answers Barbican's two GETs for any secret (metadata naming
/// `text/plain`, then `payload`, the credentials) from plain threads, a thread per
/// connection, HTTP/1.1 keep-alive, Rust's listen backlog. The test Barbican is Python (one
/// GIL, wsgiref with a listen backlog of 5 and HTTP/1.0, so a new connection per GET):
/// under a burst it drops SYNs and the clients wait out 1 s retransmissions. With this
/// store in its place, a burst measures the daemon rather than Barbican. Returns a secret
/// ref.
pub fn start_stand_in_store(payload: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let payload = payload.clone();
            std::thread::spawn(move || serve_secrets(conn, &payload));
        }
    });
    format!("http://127.0.0.1:{port}/v1/secrets/00000000-0000-4000-8000-0000000000be")
}

fn serve_secrets(conn: std::net::TcpStream, payload: &str) {
    use std::io::{BufRead, Write};
    let _ = conn.set_nodelay(true);
    let Ok(read_half) = conn.try_clone() else { return };
    let mut reader = std::io::BufReader::new(read_half);
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let (content_type, body) = if path.ends_with("/payload") {
            ("text/plain", payload.to_owned())
        } else {
            let meta = serde_json::json!({
                "status": "ACTIVE", "secret_type": "opaque",
                "content_types": {"default": "text/plain"}
            });
            ("application/json", meta.to_string())
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
