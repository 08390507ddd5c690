//! Prometheus metrics (text exposition format 0.0.4) on a local address.
//!
//! A hand-written registry rather than the `prometheus` crate: the daemon has a dozen
//! series with fixed label sets, which fit in arrays of atomics, and recording from a hot
//! path then costs one relaxed add — no locks, no allocation, no registration step.
//!
//! One process-wide instance ([`global`]) so a hook anywhere (delivery, supervisor,
//! engine) is one line and needs no plumbing; [`Metrics::new`] builds private instances
//! for tests. Values the engine owns (targets per phase, tracked helpers) are not
//! mirrored here, where they could drift: the server passes a callback that computes
//! [`Gauges`] from the journal state at scrape time.
//!
//! The HTTP side is a minimal HTTP/1.1 responder on a tokio listener: `GET /metrics` and
//! nothing else, one short-lived task per connection, a bounded number of them, a bounded
//! and deadlined read. It is meant for a loopback or local address (the default is
//! `127.0.0.1:9477`), so it has no TLS and no authentication.

use dms_journal::{JournalState, Phase, TargetState};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Upper bounds (seconds) of the latency buckets: a request or a reconcile pass takes from
/// about a millisecond (an answer from the journal) to the longest deadlines (a helper
/// mount or a hung NFS server, tens of seconds).
pub const BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

/// What a request asked for, as a label. Requests refused before they were understood
/// (bad JSON, unknown action, missing fields) are `Invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Mount,
    Unmount,
    Invalid,
}

impl Action {
    const ALL: [Action; 3] = [Action::Mount, Action::Unmount, Action::Invalid];

    pub fn label(self) -> &'static str {
        match self {
            Action::Mount => "mount",
            Action::Unmount => "unmount",
            Action::Invalid => "invalid",
        }
    }
}

/// The reply's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Error,
}

impl Outcome {
    const ALL: [Outcome; 2] = [Outcome::Success, Outcome::Error];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
        }
    }
}

/// Scrape-time values computed from the engine's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub mounted: u64,
    pub unmounted: u64,
    pub mounting: u64,
    pub unmounting: u64,
    pub dirty: u64,
    /// Targets whose journal names a helper (running, or possibly left behind).
    pub helpers_tracked: u64,
}

impl Gauges {
    pub fn from_state(state: &JournalState) -> Gauges {
        Gauges::from_targets(state.targets.values())
    }

    /// For a caller that walks the targets under its own lock instead of cloning them.
    pub fn from_targets<'a>(targets: impl IntoIterator<Item = &'a TargetState>) -> Gauges {
        let mut g = Gauges::default();
        for t in targets {
            *match t.phase {
                Phase::Mounted => &mut g.mounted,
                Phase::Unmounted => &mut g.unmounted,
                Phase::Mounting(_) => &mut g.mounting,
                Phase::Unmounting(_) => &mut g.unmounting,
                Phase::Dirty(_) => &mut g.dirty,
            } += 1;
            g.helpers_tracked += u64::from(t.helper.is_some());
        }
        g
    }
}

/// A cumulative histogram over [`BUCKETS`]. Each observation lands in exactly one slot
/// (the last is `+Inf`); the count is the sum of the slots, so a scrape racing an
/// observation still sees `_count` equal to the `+Inf` bucket. The sum is kept in whole
/// nanoseconds so it renders exactly.
#[derive(Debug, Default)]
pub struct Histogram {
    slots: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = BUCKETS.iter().position(|le| secs <= *le).unwrap_or(BUCKETS.len());
        self.slots[slot].fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Cumulative counts, one per bucket of [`BUCKETS`] and then `+Inf` (= the count).
    pub fn cumulative(&self) -> [u64; BUCKETS.len() + 1] {
        let mut out = [0; BUCKETS.len() + 1];
        let mut total = 0;
        for (slot, c) in self.slots.iter().zip(out.iter_mut()) {
            total += slot.load(Relaxed);
            *c = total;
        }
        out
    }

    pub fn count(&self) -> u64 {
        self.cumulative()[BUCKETS.len()]
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let counts = self.cumulative();
        let sep = if labels.is_empty() { "" } else { "," };
        for (le, c) in BUCKETS.iter().zip(counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {c}");
        }
        let count = counts[BUCKETS.len()];
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = |l: &str| if l.is_empty() { String::new() } else { format!("{{{l}}}") };
        let sum = self.sum_nanos.load(Relaxed);
        let (s, ns) = (sum / 1_000_000_000, sum % 1_000_000_000);
        let _ = writeln!(out, "{name}_sum{} {s}.{ns:09}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// The daemon's own metrics (everything but the scrape-time [`Gauges`]).
#[derive(Debug)]
pub struct Metrics {
    /// `[action][outcome]`, indexed as [`Action::ALL`] × [`Outcome::ALL`].
    requests: [[AtomicU64; 2]; 3],
    request_duration: [Histogram; 3],
    helper_losses: AtomicU64,
    reconcile_duration: Histogram,
    reconcile_steps: AtomicU64,
    /// Milliseconds since the epoch; 0 until the first pass.
    last_reconcile_ms: AtomicU64,
    start_ms: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The process-wide registry the hooks record into and `serve` exposes.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::new)
}

impl Metrics {
    /// A registry whose process started now.
    pub fn new() -> Metrics {
        Metrics::started_at(SystemTime::now())
    }

    /// A registry with a given start time (tests render exact text with it).
    pub fn started_at(start: SystemTime) -> Metrics {
        Metrics {
            requests: Default::default(),
            request_duration: Default::default(),
            helper_losses: AtomicU64::new(0),
            reconcile_duration: Histogram::default(),
            reconcile_steps: AtomicU64::new(0),
            last_reconcile_ms: AtomicU64::new(0),
            start_ms: epoch_ms(start),
        }
    }

    /// One request answered (or refused), and how long it took from delivery until its reply
    /// was ready (recorded before the reply is sent, so a requester holding its answer sees
    /// it counted).
    pub fn request(&self, action: Action, outcome: Outcome, took: Duration) {
        self.requests[action as usize][outcome as usize].fetch_add(1, Relaxed);
        self.request_duration[action as usize].observe(took);
    }

    pub fn requests(&self, action: Action, outcome: Outcome) -> u64 {
        self.requests[action as usize][outcome as usize].load(Relaxed)
    }

    /// `n` targets found lost (helper died, mount gone, reboot), at runtime or at reconcile.
    pub fn helpers_lost(&self, n: u64) {
        if n > 0 {
            self.helper_losses.fetch_add(n, Relaxed);
        }
    }

    pub fn helper_losses(&self) -> u64 {
        self.helper_losses.load(Relaxed)
    }

    /// One reconcile pass (boot or resync) finished now.
    pub fn reconcile(&self, took: Duration, steps_performed: usize) {
        self.reconcile_at(took, steps_performed, SystemTime::now());
    }

    pub fn reconcile_at(&self, took: Duration, steps_performed: usize, at: SystemTime) {
        self.reconcile_duration.observe(took);
        self.reconcile_steps.fetch_add(steps_performed as u64, Relaxed);
        self.last_reconcile_ms.store(epoch_ms(at), Relaxed);
    }

    /// The exposition text: fixed family order, fixed label order, `# HELP`/`# TYPE` for
    /// every family, so two scrapes differ only in values.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        family(&mut out, "dms_build_info", "gauge", "The running dms-server build (always 1).");
        let _ = writeln!(out, "dms_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        family(
            &mut out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds.",
        );
        let _ = writeln!(out, "process_start_time_seconds {}", seconds(self.start_ms));

        family(
            &mut out,
            "dms_requests_total",
            "counter",
            "Requests answered, by action (invalid: refused before it was understood) and reply status.",
        );
        for action in Action::ALL {
            for outcome in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "dms_requests_total{{action=\"{}\",outcome=\"{}\"}} {}",
                    action.label(),
                    outcome.label(),
                    self.requests(action, outcome)
                );
            }
        }
        family(
            &mut out,
            "dms_request_duration_seconds",
            "histogram",
            "Time from a request's delivery until its reply is ready, by action.",
        );
        for action in Action::ALL {
            let labels = format!("action=\"{}\"", action.label());
            self.request_duration[action as usize].render(
                &mut out,
                "dms_request_duration_seconds",
                &labels,
            );
        }

        family(&mut out, "dms_targets", "gauge", "Targets the journal tracks, by phase.");
        for (phase, n) in [
            ("mounted", gauges.mounted),
            ("unmounted", gauges.unmounted),
            ("mounting", gauges.mounting),
            ("unmounting", gauges.unmounting),
            ("dirty", gauges.dirty),
        ] {
            let _ = writeln!(out, "dms_targets{{phase=\"{phase}\"}} {n}");
        }
        family(
            &mut out,
            "dms_helpers_tracked",
            "gauge",
            "Targets whose journal names a helper process (running or to be cleaned up).",
        );
        let _ = writeln!(out, "dms_helpers_tracked {}", gauges.helpers_tracked);
        family(
            &mut out,
            "dms_helper_losses_total",
            "counter",
            "Mounted targets lost (helper died, mount gone, reboot), at runtime or at reconcile.",
        );
        let _ = writeln!(out, "dms_helper_losses_total {}", self.helper_losses());

        family(
            &mut out,
            "dms_reconcile_duration_seconds",
            "histogram",
            "Duration of reconcile passes (boot and periodic resync).",
        );
        self.reconcile_duration.render(&mut out, "dms_reconcile_duration_seconds", "");
        family(
            &mut out,
            "dms_reconcile_steps_total",
            "counter",
            "Reconcile steps performed to converge the journal with the host.",
        );
        let _ = writeln!(out, "dms_reconcile_steps_total {}", self.reconcile_steps.load(Relaxed));
        family(
            &mut out,
            "dms_last_reconcile_timestamp_seconds",
            "gauge",
            "When the last reconcile pass finished, since the Unix epoch (0: none yet).",
        );
        let last = seconds(self.last_reconcile_ms.load(Relaxed));
        let _ = writeln!(out, "dms_last_reconcile_timestamp_seconds {last}");
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

// ---------------------------------------------------------------------------------------
// HTTP

/// Requests are one line and a few headers; anything longer is not a scraper.
const MAX_REQUEST: usize = 4 * 1024;
/// A client gets this long to send its request and this long again to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapers are one or two Prometheus servers; more connections than this are refused.
const MAX_CONNECTIONS: usize = 16;
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bind the metrics listener; separate from [`serve`] so the server can log the address
/// actually bound (port 0 picks a free one) and fail the start on a bad address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })
}

/// Serve the [`global`] registry on `listener` until `shutdown` turns true (or its sender
/// is dropped). `gauges` runs once per scrape.
pub async fn serve(
    listener: TcpListener,
    gauges: Arc<dyn Fn() -> Gauges + Send + Sync>,
    shutdown: watch::Receiver<bool>,
) {
    serve_registry(listener, global(), gauges, shutdown).await
}

/// [`serve`] with a given registry.
pub async fn serve_registry(
    listener: TcpListener,
    metrics: &'static Metrics,
    gauges: Arc<dyn Fn() -> Gauges + Send + Sync>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        while connections.try_join_next().is_some() {}
        tokio::select! {
            changed = shutdown.changed() => if changed.is_err() { return },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() >= MAX_CONNECTIONS => {
                    tracing::debug!(%peer, "too many metrics connections; closing this one");
                    drop(stream);
                }
                Ok((stream, peer)) => {
                    let gauges = Arc::clone(&gauges);
                    connections.spawn(async move {
                        if let Err(e) = answer(&stream, metrics, gauges.as_ref()).await {
                            tracing::debug!(%peer, error = %e, "metrics connection failed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Read one request (bounded, deadlined), write one response, close.
async fn answer(
    stream: &TcpStream,
    metrics: &Metrics,
    gauges: &(dyn Fn() -> Gauges + Send + Sync),
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(IO_TIMEOUT, read_head(stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()), // silent client: just close
    };
    let response = match route(&head) {
        Route::Metrics => respond("200 OK", CONTENT_TYPE, &metrics.render(&gauges())),
        Route::NotFound => respond("404 Not Found", "text/plain", "not found; try /metrics\n"),
        Route::NotAllowed => respond("405 Method Not Allowed", "text/plain", "GET only\n"),
        Route::Bad => respond("400 Bad Request", "text/plain", "bad request\n"),
    };
    match tokio::time::timeout(IO_TIMEOUT, write_all(stream, response.as_bytes())).await {
        Ok(written) => written,
        Err(_) => Ok(()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    NotAllowed,
    Bad,
}

/// What the request line asks for. Only the request line matters: no body is expected
/// and every response closes the connection.
fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|b| *b == b'\n').next() else { return Route::Bad };
    let Ok(line) = std::str::from_utf8(line) else { return Route::Bad };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Route::Bad;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics,
        (_, "/metrics") => Route::NotAllowed,
        _ => Route::NotFound,
    }
}

fn respond(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Read until the end of the headers, EOF, or [`MAX_REQUEST`] bytes (what was read is then
/// routed; an incomplete or oversized head usually fails to parse and gets a 400).
async fn read_head(stream: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; MAX_REQUEST];
    let mut len = 0;
    while len < MAX_REQUEST {
        stream.readable().await?;
        match stream.try_read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                let head = &buf[..len];
                if head.windows(4).any(|w| w == b"\r\n\r\n")
                    || head.windows(2).any(|w| w == b"\n\n")
                {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{Read, Write};

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
                helpers_tracked: 3
            }
        );
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
    async fn connections_beyond_the_bound_are_closed_at_once() {
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let (addr, stop, task) = server(metrics).await;
        // Idle clients hold every slot (each until its read deadline).
        let idle: Vec<_> =
            (0..MAX_CONNECTIONS).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let response = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(response, "", "refused without an answer");
        drop(idle);
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
}
