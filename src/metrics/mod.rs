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
//! `127.0.0.1:9477`), so it has no TLS and no authentication; `0.0.0.0`/`::` need an
//! explicit opt-in (`metrics_allow_any_address`). How slow clients are kept from starving
//! scrapes is explained in `http.rs`.

use dms_journal::{HelperIdentity, JournalState, Phase, TargetState};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// NFS servers whose breaker is open or probing (their mounts fail fast).
    pub nfs_breakers_open: u64,
    /// Requests parked in the journal's inbox, waiting for their target's turn.
    pub requests_parked: u64,
    /// The AMQP session is up (requests can arrive).
    pub broker_connected: bool,
    /// Where journal and host differed at the start of the last resync pass (targets in
    /// flight left out): lasting ones are what the pass could not converge.
    pub reconcile_differences: u64,
    /// Mounted targets whose journaled helper is not running (supervision should have
    /// noticed at once; lasting, it did not).
    pub mounted_without_helper: u64,
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

    /// Mounted targets whose journaled helper `running` says is gone. Supervision turns such a
    /// target `Lost` within moments, so a lasting non-zero count means it did not notice.
    pub fn mounted_without_helper<'a>(
        targets: impl IntoIterator<Item = &'a TargetState>,
        running: impl Fn(HelperIdentity) -> bool,
    ) -> u64 {
        let gone = targets
            .into_iter()
            .filter(|t| t.phase == Phase::Mounted)
            .filter_map(|t| t.helper)
            .filter(|h| !running(*h))
            .count();
        gone as u64
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
    nfs_breaker_trips: AtomicU64,
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
            nfs_breaker_trips: AtomicU64::new(0),
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

    /// An NFS server's breaker opened (or reopened after a failed probe).
    pub fn nfs_breaker_tripped(&self) {
        self.nfs_breaker_trips.fetch_add(1, Relaxed);
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
            "dms_nfs_breakers_open",
            "gauge",
            "NFS servers whose circuit breaker is open or probing: their mounts fail fast.",
        );
        let _ = writeln!(out, "dms_nfs_breakers_open {}", gauges.nfs_breakers_open);
        family(
            &mut out,
            "dms_requests_parked",
            "gauge",
            "Requests waiting for their target's turn, parked in the journal with their delivery acked.",
        );
        let _ = writeln!(out, "dms_requests_parked {}", gauges.requests_parked);
        family(
            &mut out,
            "dms_broker_connected",
            "gauge",
            "1 while the AMQP session with the broker is up, 0 while the daemon reconnects.",
        );
        let _ = writeln!(out, "dms_broker_connected {}", u8::from(gauges.broker_connected));
        family(
            &mut out,
            "dms_mounted_without_helper",
            "gauge",
            "Mounted S3 targets whose journaled helper process is not running.",
        );
        let _ = writeln!(out, "dms_mounted_without_helper {}", gauges.mounted_without_helper);
        family(
            &mut out,
            "dms_nfs_breaker_trips_total",
            "counter",
            "Times an NFS server's breaker opened: an operation against it ran into its deadline.",
        );
        let _ =
            writeln!(out, "dms_nfs_breaker_trips_total {}", self.nfs_breaker_trips.load(Relaxed));

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
            "dms_reconcile_differences",
            "gauge",
            "Differences between journal and host at the start of the last resync pass.",
        );
        let _ = writeln!(out, "dms_reconcile_differences {}", gauges.reconcile_differences);
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

mod http;
pub use http::{bind, serve, serve_registry};

#[cfg(test)]
mod tests;
