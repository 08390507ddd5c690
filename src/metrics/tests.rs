#![allow(clippy::unwrap_used)]
use super::http::{route, Route, MAX_REQUEST};
use super::*;
use std::io::{Read, Write};
use std::sync::Arc;
use tokio::sync::watch;

const EXPECTED: &str = r##"# HELP dms_build_info The running dms-server build (always 1).
# TYPE dms_build_info gauge
dms_build_info{version="{VERSION}"} 1
# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1700000000.250
# HELP dms_requests_total Requests answered, by action (invalid: refused before it was understood) and reply status.
# TYPE dms_requests_total counter
dms_requests_total{action="mount",outcome="success"} 1
dms_requests_total{action="mount",outcome="error"} 1
dms_requests_total{action="unmount",outcome="success"} 0
dms_requests_total{action="unmount",outcome="error"} 0
dms_requests_total{action="invalid",outcome="success"} 0
dms_requests_total{action="invalid",outcome="error"} 1
# HELP dms_request_duration_seconds Time from a request's delivery until its reply is ready, by action.
# TYPE dms_request_duration_seconds histogram
dms_request_duration_seconds_bucket{action="mount",le="0.001"} 0
dms_request_duration_seconds_bucket{action="mount",le="0.0025"} 0
dms_request_duration_seconds_bucket{action="mount",le="0.005"} 1
dms_request_duration_seconds_bucket{action="mount",le="0.01"} 1
dms_request_duration_seconds_bucket{action="mount",le="0.025"} 1
dms_request_duration_seconds_bucket{action="mount",le="0.05"} 1
dms_request_duration_seconds_bucket{action="mount",le="0.1"} 1
dms_request_duration_seconds_bucket{action="mount",le="0.25"} 1
dms_request_duration_seconds_bucket{action="mount",le="0.5"} 1
dms_request_duration_seconds_bucket{action="mount",le="1"} 1
dms_request_duration_seconds_bucket{action="mount",le="2.5"} 2
dms_request_duration_seconds_bucket{action="mount",le="5"} 2
dms_request_duration_seconds_bucket{action="mount",le="15"} 2
dms_request_duration_seconds_bucket{action="mount",le="60"} 2
dms_request_duration_seconds_bucket{action="mount",le="+Inf"} 2
dms_request_duration_seconds_sum{action="mount"} 2.003000000
dms_request_duration_seconds_count{action="mount"} 2
dms_request_duration_seconds_bucket{action="unmount",le="0.001"} 0
dms_request_duration_seconds_bucket{action="unmount",le="0.0025"} 0
dms_request_duration_seconds_bucket{action="unmount",le="0.005"} 0
dms_request_duration_seconds_bucket{action="unmount",le="0.01"} 0
dms_request_duration_seconds_bucket{action="unmount",le="0.025"} 0
dms_request_duration_seconds_bucket{action="unmount",le="0.05"} 0
dms_request_duration_seconds_bucket{action="unmount",le="0.1"} 0
dms_request_duration_seconds_bucket{action="unmount",le="0.25"} 0
dms_request_duration_seconds_bucket{action="unmount",le="0.5"} 0
dms_request_duration_seconds_bucket{action="unmount",le="1"} 0
dms_request_duration_seconds_bucket{action="unmount",le="2.5"} 0
dms_request_duration_seconds_bucket{action="unmount",le="5"} 0
dms_request_duration_seconds_bucket{action="unmount",le="15"} 0
dms_request_duration_seconds_bucket{action="unmount",le="60"} 0
dms_request_duration_seconds_bucket{action="unmount",le="+Inf"} 0
dms_request_duration_seconds_sum{action="unmount"} 0.000000000
dms_request_duration_seconds_count{action="unmount"} 0
dms_request_duration_seconds_bucket{action="invalid",le="0.001"} 1
dms_request_duration_seconds_bucket{action="invalid",le="0.0025"} 1
dms_request_duration_seconds_bucket{action="invalid",le="0.005"} 1
dms_request_duration_seconds_bucket{action="invalid",le="0.01"} 1
dms_request_duration_seconds_bucket{action="invalid",le="0.025"} 1
dms_request_duration_seconds_bucket{action="invalid",le="0.05"} 1
dms_request_duration_seconds_bucket{action="invalid",le="0.1"} 1
dms_request_duration_seconds_bucket{action="invalid",le="0.25"} 1
dms_request_duration_seconds_bucket{action="invalid",le="0.5"} 1
dms_request_duration_seconds_bucket{action="invalid",le="1"} 1
dms_request_duration_seconds_bucket{action="invalid",le="2.5"} 1
dms_request_duration_seconds_bucket{action="invalid",le="5"} 1
dms_request_duration_seconds_bucket{action="invalid",le="15"} 1
dms_request_duration_seconds_bucket{action="invalid",le="60"} 1
dms_request_duration_seconds_bucket{action="invalid",le="+Inf"} 1
dms_request_duration_seconds_sum{action="invalid"} 0.000500000
dms_request_duration_seconds_count{action="invalid"} 1
# HELP dms_targets Targets the journal tracks, by phase.
# TYPE dms_targets gauge
dms_targets{phase="mounted"} 2
dms_targets{phase="unmounted"} 1
dms_targets{phase="mounting"} 0
dms_targets{phase="unmounting"} 1
dms_targets{phase="dirty"} 0
# HELP dms_helpers_tracked Targets whose journal names a helper process (running or to be cleaned up).
# TYPE dms_helpers_tracked gauge
dms_helpers_tracked 3
# HELP dms_helper_losses_total Mounted targets lost (helper died, mount gone, reboot), at runtime or at reconcile.
# TYPE dms_helper_losses_total counter
dms_helper_losses_total 2
# HELP dms_nfs_breakers_open NFS servers whose circuit breaker is open or probing: their mounts fail fast.
# TYPE dms_nfs_breakers_open gauge
dms_nfs_breakers_open 0
# HELP dms_requests_parked Requests waiting for their target's turn, parked in the journal with their delivery acked.
# TYPE dms_requests_parked gauge
dms_requests_parked 5
# HELP dms_broker_connected 1 while the AMQP session with the broker is up, 0 while the daemon reconnects.
# TYPE dms_broker_connected gauge
dms_broker_connected 1
# HELP dms_mounted_without_helper Mounted S3 targets whose journaled helper process is not running.
# TYPE dms_mounted_without_helper gauge
dms_mounted_without_helper 1
# HELP dms_nfs_breaker_trips_total Times an NFS server's breaker opened: an operation against it ran into its deadline.
# TYPE dms_nfs_breaker_trips_total counter
dms_nfs_breaker_trips_total 0
# HELP dms_reconcile_duration_seconds Duration of reconcile passes (boot and periodic resync).
# TYPE dms_reconcile_duration_seconds histogram
dms_reconcile_duration_seconds_bucket{le="0.001"} 0
dms_reconcile_duration_seconds_bucket{le="0.0025"} 0
dms_reconcile_duration_seconds_bucket{le="0.005"} 0
dms_reconcile_duration_seconds_bucket{le="0.01"} 0
dms_reconcile_duration_seconds_bucket{le="0.025"} 0
dms_reconcile_duration_seconds_bucket{le="0.05"} 1
dms_reconcile_duration_seconds_bucket{le="0.1"} 1
dms_reconcile_duration_seconds_bucket{le="0.25"} 1
dms_reconcile_duration_seconds_bucket{le="0.5"} 1
dms_reconcile_duration_seconds_bucket{le="1"} 1
dms_reconcile_duration_seconds_bucket{le="2.5"} 1
dms_reconcile_duration_seconds_bucket{le="5"} 1
dms_reconcile_duration_seconds_bucket{le="15"} 1
dms_reconcile_duration_seconds_bucket{le="60"} 1
dms_reconcile_duration_seconds_bucket{le="+Inf"} 2
dms_reconcile_duration_seconds_sum 90.040000000
dms_reconcile_duration_seconds_count 2
# HELP dms_reconcile_steps_total Reconcile steps performed to converge the journal with the host.
# TYPE dms_reconcile_steps_total counter
dms_reconcile_steps_total 3
# HELP dms_reconcile_differences Differences between journal and host at the start of the last resync pass.
# TYPE dms_reconcile_differences gauge
dms_reconcile_differences 2
# HELP dms_last_reconcile_timestamp_seconds When the last reconcile pass finished, since the Unix epoch (0: none yet).
# TYPE dms_last_reconcile_timestamp_seconds gauge
dms_last_reconcile_timestamp_seconds 1700000200.000
"##;

fn at(secs: u64, ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms)
}

#[test]
fn render_is_exact_text_for_known_observations() {
    let m = Metrics::started_at(at(1_700_000_000, 250));
    m.request(Action::Mount, Outcome::Success, Duration::from_millis(3));
    m.request(Action::Mount, Outcome::Error, Duration::from_secs(2));
    m.request(Action::Invalid, Outcome::Error, Duration::from_micros(500));
    m.helpers_lost(2);
    m.helpers_lost(0);
    m.reconcile_at(Duration::from_millis(40), 3, at(1_700_000_100, 500));
    m.reconcile_at(Duration::from_secs(90), 0, at(1_700_000_200, 0));
    let gauges = Gauges {
        mounted: 2,
        unmounted: 1,
        mounting: 0,
        unmounting: 1,
        dirty: 0,
        helpers_tracked: 3,
        nfs_breakers_open: 0,
        requests_parked: 5,
        broker_connected: true,
        reconcile_differences: 2,
        mounted_without_helper: 1,
    };
    let text = m.render(&gauges);
    let expected = EXPECTED.replace("{VERSION}", env!("CARGO_PKG_VERSION"));
    for (i, (got, want)) in text.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "line {}", i + 1);
    }
    assert_eq!(text, expected);
    // Stable: a second scrape of the same values is byte-identical.
    assert_eq!(m.render(&gauges), text);
}

#[test]
fn a_fresh_registry_renders_every_series_at_zero() {
    let text = Metrics::started_at(UNIX_EPOCH).render(&Gauges::default());
    assert!(text.contains("dms_requests_total{action=\"unmount\",outcome=\"error\"} 0\n"));
    assert!(text.contains("dms_reconcile_duration_seconds_count 0\n"));
    assert!(text.contains("dms_last_reconcile_timestamp_seconds 0.000\n"));
    assert!(text.contains("process_start_time_seconds 0.000\n"));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[test]
fn bucket_bounds_are_inclusive_and_the_rest_goes_to_inf() {
    let h = Histogram::default();
    for took in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_micros(1001),
        Duration::from_secs(60),
        Duration::from_micros(60_000_001),
        Duration::MAX,
    ] {
        h.observe(took);
    }
    let c = h.cumulative();
    assert_eq!(c[0], 2, "0 and exactly 1 ms are <= 0.001");
    assert_eq!(c[1], 3, "1.001 ms is <= 0.0025");
    assert_eq!(c[BUCKETS.len() - 2], 3, "nothing between 2.5 ms and 15 s");
    assert_eq!(c[BUCKETS.len() - 1], 4, "exactly 60 s is <= 60");
    assert_eq!(c[BUCKETS.len()], 6, "+Inf holds everything");
    assert_eq!(h.count(), 6);
    assert!(c.windows(2).all(|w| w[0] <= w[1]), "cumulative: {c:?}");
    assert!(BUCKETS.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
}

#[test]
fn histogram_sum_is_exact_nanoseconds() {
    let h = Histogram::default();
    h.observe(Duration::new(1, 5));
    h.observe(Duration::from_nanos(999_999_999));
    let mut out = String::new();
    h.render(&mut out, "x", "");
    assert!(out.contains("x_sum 2.000000004\n"), "{out}");
    assert!(out.contains("x_count 2\n"), "{out}");
}

#[test]
fn gauges_count_targets_by_phase_and_named_helpers() {
    use dms_journal::{BootId, Cleanup, HelperIdentity, MountStep, TargetId};
    let mut state = JournalState::default();
    let helper = HelperIdentity { pid: 42, start_ticks: 7, boot: BootId(uuid::Uuid::nil()) };
    let phases = [
        ("a", Phase::Mounted, Some(helper)),
        ("b", Phase::Mounted, Some(helper)),
        ("c", Phase::Unmounted, None),
        ("d", Phase::Mounting(MountStep::Requested), None),
        (
            "e",
            Phase::Dirty(Cleanup { helper: Some(helper), mount: true, pid_file: true }),
            Some(helper),
        ),
    ];
    for (id, phase, helper) in phases {
        let target = TargetId::new(id).unwrap();
        let mut t = TargetState::new(target.clone());
        t.phase = phase;
        t.helper = helper;
        state.targets.insert(target, t);
    }
    assert_eq!(
        Gauges::from_state(&state),
        Gauges {
            mounted: 2,
            unmounted: 1,
            mounting: 1,
            unmounting: 0,
            dirty: 1,
            helpers_tracked: 3,
            nfs_breakers_open: 0,
            requests_parked: 0,
            broker_connected: false,
            reconcile_differences: 0,
            mounted_without_helper: 0,
        }
    );
}

#[test]
fn mounted_without_helper_counts_only_mounted_targets_whose_helper_is_gone() {
    use dms_journal::{BootId, Cleanup, HelperIdentity, TargetId};
    let boot = BootId(uuid::Uuid::nil());
    let helper = |pid| HelperIdentity { pid, start_ticks: 7, boot };
    let rows = [
        ("alive", Phase::Mounted, Some(helper(1))),
        ("gone", Phase::Mounted, Some(helper(2))),
        ("nfs", Phase::Mounted, None),
        (
            "dirty",
            Phase::Dirty(Cleanup { helper: Some(helper(3)), mount: true, pid_file: true }),
            Some(helper(3)),
        ),
    ];
    let targets: Vec<TargetState> = rows
        .into_iter()
        .map(|(id, phase, helper)| {
            let mut t = TargetState::new(TargetId::new(id).unwrap());
            t.phase = phase;
            t.helper = helper;
            t
        })
        .collect();
    let running = |h: HelperIdentity| h.pid == 1;
    assert_eq!(Gauges::mounted_without_helper(&targets, running), 1, "only `gone`");
    assert_eq!(Gauges::mounted_without_helper(&targets, |_| true), 0);
    assert_eq!(Gauges::mounted_without_helper(&targets, |_| false), 2, "dirty is cleanup's");
}

#[test]
fn routes_only_get_metrics() {
    assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
    assert_eq!(route(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n"), Route::Metrics);
    assert_eq!(route(b"GET /metrics HTTP/1.1\n\n"), Route::Metrics);
    assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
    for garbage in [
        &b""[..],
        b"\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"\xff\xfe GET /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1 extra\r\n\r\n",
    ] {
        assert_eq!(route(garbage), Route::Bad, "{garbage:?}");
    }
}

/// A listener on 127.0.0.1:0 serving a leaked private registry, and its shutdown.
async fn server(
    metrics: &'static Metrics,
) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let gauges: Arc<dyn Fn() -> Gauges + Send + Sync> =
        Arc::new(|| Gauges { mounted: 1, helpers_tracked: 1, ..Gauges::default() });
    let task = tokio::spawn(serve_registry(listener, metrics, gauges, stopped));
    (addr, stop, task)
}

/// A blocking HTTP exchange: send `request` whole, read to EOF.
async fn exchange(addr: SocketAddr, request: &'static [u8]) -> String {
    exchange_then(addr, request, false).await
}

/// [`exchange`], optionally closing the sending side after the request (EOF).
async fn exchange_then(addr: SocketAddr, request: &'static [u8], eof: bool) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(request).unwrap();
        if eof {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn http_get_metrics_is_200_with_the_text_and_other_paths_are_404() {
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    metrics.request(Action::Unmount, Outcome::Success, Duration::from_millis(7));
    let (addr, stop, task) = server(metrics).await;

    let response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
    assert!(body.contains("dms_requests_total{action=\"unmount\",outcome=\"success\"} 1\n"));
    assert!(body.contains("dms_request_duration_seconds_count{action=\"unmount\"} 1\n"));
    assert!(body.contains("dms_targets{phase=\"mounted\"} 1\n"), "{body}");
    assert!(body.contains("dms_helpers_tracked 1\n"), "{body}");

    let response = exchange(addr, b"GET /other HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 404 Not Found\r\n"), "{response}");
    let response = exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn http_garbage_is_answered_400_or_closed_and_the_server_keeps_serving() {
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    let (addr, stop, task) = server(metrics).await;

    let response = exchange(addr, b"\x00\x01\x02\xff garbage\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    // More than the limit without a blank line: read up to the limit, then refused.
    static HUGE: [u8; 3 * MAX_REQUEST] = [b'A'; 3 * MAX_REQUEST];
    let response = exchange(addr, &HUGE).await;
    assert!(response.is_empty() || response.starts_with("HTTP/1.1 400 "), "{response}");
    // A client that connects and hangs up at once.
    drop(std::net::TcpStream::connect(addr).unwrap());
    // A request cut short by EOF (no blank line) is still routed.
    let response = exchange_then(addr, b"GET /metrics HTTP/1.1\r\n", true).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    let response = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(!task.is_finished());
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn serve_stops_when_the_shutdown_sender_is_dropped() {
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    let (_, stop, task) = server(metrics).await;
    drop(stop);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn bind_reports_the_address_it_could_not_take() {
    let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = bind(addr).await.unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
