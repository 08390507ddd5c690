//! Prometheus metrics end to end (issue 5 item 4): the real `dms-server` with
//! `DMS_METRICS_LISTEN=127.0.0.1:0`, in a private mount namespace, driven through the real
//! broker. One mount, one unmount and one invalid request later, `/metrics` shows exactly
//! those requests, the histograms have the matching counts, the target gauges follow the
//! mount, and the boot reconcile is on record. A helper killed under its mount is one loss.
#![allow(clippy::unwrap_used)]

use crate::{e2e, support};

use e2e::host::{mounted, not_mounted, pid_of, sigkill, HelperReaper, SETTLE};
use e2e::{err, ok, s3_mount, unmount, uuid, Client, Daemon};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::mountns::run_isolated_with_timeout;
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-metrics-keystone-token";
const LIMIT: Duration = Duration::from_secs(240);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn credentials() -> String {
    serde_json::json!({
        "aws_access_key_id": "AKIAMETRICS", "aws_secret_access_key": "metrics-secret",
        "bucket": "metrics", "region": "us-east-1", "endpoint_url": "http://127.0.0.1:1"
    })
    .to_string()
}

/// The bound address from the "serving metrics" line (`metrics_addr=<ip:port>`).
pub(crate) fn metrics_addr(daemon: &mut Daemon) -> SocketAddr {
    daemon.wait_log("serving metrics");
    let log = daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("serving metrics") && l.contains("metrics_addr"))
        .unwrap_or_else(|| panic!("no metrics_addr in the log\n{log}"));
    let (_, rest) = line.split_once("metrics_addr").unwrap();
    let addr: String = rest
        .trim_start_matches(['=', ':', '"', ' '])
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().unwrap_or_else(|e| panic!("metrics_addr {addr:?} in {line:?}: {e}"))
}

/// One HTTP/1.1 GET; returns the status line and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

pub(crate) fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    body
}

/// Scrape until `settled` holds (at most 10 s); the last scrape either way.
fn scrape_until(addr: SocketAddr, settled: impl Fn(&str) -> bool) -> String {
    let settle = || Some(scrape(addr)).filter(|body| settled(body));
    support::wait_for("the metrics to settle", Duration::from_secs(10), settle)
        .unwrap_or_else(|_| scrape(addr))
}

/// The value of one sample, named exactly (`name{labels}`).
pub(crate) fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {series}\n{body}"))
        .parse()
        .unwrap()
}

fn requests(body: &str, action: &str, outcome: &str) -> f64 {
    value(body, &format!("dms_requests_total{{action=\"{action}\",outcome=\"{outcome}\"}}"))
}

/// Every request counter, in a fixed order: mount, unmount, invalid × success, error.
fn all_requests(body: &str) -> [f64; 6] {
    let mut out = [0.0; 6];
    let pairs = ["mount", "unmount", "invalid"]
        .into_iter()
        .flat_map(|a| ["success", "error"].into_iter().map(move |o| (a, o)));
    for (slot, (a, o)) in out.iter_mut().zip(pairs) {
        *slot = requests(body, a, o);
    }
    out
}

fn duration_count(body: &str, action: &str) -> f64 {
    let count = value(body, &format!("dms_request_duration_seconds_count{{action=\"{action}\"}}"));
    let inf = value(
        body,
        &format!("dms_request_duration_seconds_bucket{{action=\"{action}\",le=\"+Inf\"}}"),
    );
    assert_eq!(count, inf, "{action}: _count is the +Inf bucket");
    count
}

fn targets(body: &str, phase: &str) -> f64 {
    value(body, &format!("dms_targets{{phase=\"{phase}\"}}"))
}

#[test]
fn metrics_count_exactly_the_requests_served_and_follow_the_mounted_target() {
    let name = "metrics_count_exactly_the_requests_served_and_follow_the_mounted_target";
    run_isolated_with_timeout(name, LIMIT, || {
        let broker = Broker::shared();
        let barbican = Barbican::shared();
        let secret_ref = barbican.store_secret(TOKEN, &credentials());
        let dir = support::temp_dir("dms-e2e-metrics-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let mut daemon = Daemon::start(broker, dir.path(), "e2e-metrics", &[]);
        let addr = metrics_addr(&mut daemon);
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_ne!(addr.port(), 0, "the bound port is logged, not the configured 0");

        // At start: nothing served, the boot reconcile on record.
        let body = scrape(addr);
        assert!(body.contains("# TYPE dms_requests_total counter\n"), "{body}");
        assert!(body.contains("# TYPE dms_request_duration_seconds histogram\n"), "{body}");
        assert_eq!(all_requests(&body), [0.0; 6], "{body}");
        assert_eq!(
            value(&body, &format!("dms_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))),
            1.0
        );
        assert!(value(&body, "process_start_time_seconds") > 1.0e9, "{body}");
        let passes = value(&body, "dms_reconcile_duration_seconds_count");
        assert!(passes >= 1.0, "the boot pass is observed\n{body}");
        assert_eq!(value(&body, "dms_reconcile_duration_seconds_bucket{le=\"+Inf\"}"), passes);
        assert!(value(&body, "dms_last_reconcile_timestamp_seconds") > 1.0e9, "{body}");
        assert_eq!(value(&body, "dms_reconcile_steps_total"), 0.0, "a fresh node: nothing to do");
        assert_eq!(value(&body, "dms_helper_losses_total"), 0.0);
        assert_eq!(targets(&body, "mounted"), 0.0);
        assert_eq!(value(&body, "dms_helpers_tracked"), 0.0);
        assert_eq!(value(&body, "dms_broker_connected"), 1.0, "consuming: {body}");
        assert_eq!(value(&body, "dms_mounted_without_helper"), 0.0, "{body}");
        assert_eq!(value(&body, "dms_reconcile_differences"), 0.0, "a fresh node: {body}");

        let path = daemon.path("metrics-1");
        let rt = runtime();
        rt.block_on(async {
            let mut client = Client::connect(broker).await;

            let reply = client
                .call(&daemon.node, &s3_mount("metrics-1", &path, &secret_ref, TOKEN), &uuid())
                .await;
            assert_eq!(reply, ok(&format!("S3 target mounted successfully at {path}")));
            mounted(&path, "fuse.dms-testfs");
            let body = scrape(addr);
            assert_eq!(all_requests(&body), [1.0, 0.0, 0.0, 0.0, 0.0, 0.0], "{body}");
            assert_eq!(duration_count(&body, "mount"), 1.0, "{body}");
            assert!(
                value(&body, "dms_request_duration_seconds_sum{action=\"mount\"}") > 0.0,
                "{body}"
            );
            assert_eq!(duration_count(&body, "unmount"), 0.0, "{body}");
            assert_eq!(targets(&body, "mounted"), 1.0, "{body}");
            assert_eq!(value(&body, "dms_helpers_tracked"), 1.0, "{body}");
            assert_eq!(value(&body, "dms_mounted_without_helper"), 0.0, "its helper runs: {body}");

            let reply =
                client.call(&daemon.node, &unmount("metrics-1", &path, "s3"), &uuid()).await;
            assert_eq!(reply, ok(&format!("Target unmounted successfully from {path}")));
            not_mounted(&path);
            // The answer comes once the mount is detached; its helper is stopped after it.
            let body = scrape_until(addr, |b| value(b, "dms_helpers_tracked") == 0.0);
            assert_eq!(all_requests(&body), [1.0, 0.0, 1.0, 0.0, 0.0, 0.0], "{body}");
            assert_eq!(duration_count(&body, "unmount"), 1.0, "{body}");
            assert_eq!(targets(&body, "mounted"), 0.0, "{body}");
            assert_eq!(targets(&body, "unmounted"), 1.0, "{body}");
            assert_eq!(value(&body, "dms_helpers_tracked"), 0.0, "{body}");

            // Not JSON: refused, answered, counted as `invalid`/`error`.
            let corr = uuid();
            client.send(&daemon.node, b"{not json", &corr, true).await;
            loop {
                let (got, reply) = client.reply().await;
                if got == corr {
                    assert_eq!(reply, err("Invalid JSON format in request"));
                    break;
                }
            }
            client.close().await;
        });

        let body = scrape(addr);
        assert_eq!(all_requests(&body), [1.0, 0.0, 1.0, 0.0, 0.0, 1.0], "{body}");
        assert_eq!(duration_count(&body, "mount"), 1.0, "{body}");
        assert_eq!(duration_count(&body, "unmount"), 1.0, "{body}");
        assert_eq!(duration_count(&body, "invalid"), 1.0, "{body}");
        assert_eq!(value(&body, "dms_helper_losses_total"), 0.0, "{body}");
        for phase in ["mounted", "mounting", "unmounting", "dirty"] {
            assert_eq!(targets(&body, phase), 0.0, "{phase}\n{body}");
        }
        assert!(value(&body, "dms_reconcile_duration_seconds_count") >= passes);

        // A helper killed under its mount: one death by signal, one heal, and the target
        // still mounted by its replacement; no loss.
        let path = daemon.path("metrics-2");
        rt.block_on(async {
            let mut client = Client::connect(broker).await;
            let reply = client
                .call(&daemon.node, &s3_mount("metrics-2", &path, &secret_ref, TOKEN), &uuid())
                .await;
            assert_eq!(reply, ok(&format!("S3 target mounted successfully at {path}")));
            client.close().await;
        });
        assert_eq!(targets(&scrape(addr), "mounted"), 1.0);
        sigkill(pid_of(&daemon, "metrics-2"), "the helper");
        let heals = |body: &str, outcome: &str| {
            value(body, &format!("dms_helper_heals_total{{outcome=\"{outcome}\"}}"))
        };
        let deaths = |body: &str, cause: &str| {
            value(body, &format!("dms_helper_deaths_total{{cause=\"{cause}\"}}"))
        };
        let healed = support::wait_for("the heal to be counted", SETTLE, || {
            let body = scrape(addr);
            (heals(&body, "healed") >= 1.0).then_some(body)
        });
        let body = healed.unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_text()));
        assert_eq!((heals(&body, "healed"), heals(&body, "given_up")), (1.0, 0.0), "{body}");
        assert_eq!((deaths(&body, "signal"), deaths(&body, "oom")), (1.0, 0.0), "{body}");
        assert_eq!(targets(&body, "mounted"), 1.0, "{body}");
        assert_eq!(value(&body, "dms_helper_losses_total"), 0.0, "{body}");
        assert_eq!(value(&body, "dms_helpers_tracked"), 1.0, "{body}");
        assert_eq!(all_requests(&body), [2.0, 0.0, 1.0, 0.0, 0.0, 1.0], "{body}");

        let (status, _) = get(addr, "/other");
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let log = daemon.stop();
        assert!(!log.contains(TOKEN), "the token reached the log");
    });
}
