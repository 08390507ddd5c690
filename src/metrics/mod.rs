//! Prometheus metrics (text exposition format 0.0.4) on a local address.
//!
//! The registry, the metric types and the exposition format are `prometheus-client`'s
//! (the Prometheus project's Rust client): its classic text encoder, not OpenMetrics, so
//! every Prometheus version and `promtool check metrics` read it, and the Content-Type stays
//! `text/plain; version=0.0.4`. Recording from a hot path is one relaxed atomic add
//! (counters) or one short lock (histograms).
//!
//! One process-wide instance ([`global`]) so a hook anywhere (delivery, supervisor,
//! engine) is one line and needs no plumbing; [`Metrics::new`] builds private instances
//! for tests. Values the engine owns (targets per phase, tracked helpers) are not
//! mirrored here, where they could drift: the server passes a callback that computes
//! [`Gauges`] from the journal state at scrape time, encoded by a collector of each scrape
//! (`collect.rs`), so two concurrent scrapes never see each other's values.
//!
//! The HTTP side is a minimal HTTP/1.1 responder on a tokio listener: `GET /metrics` and
//! nothing else, one short-lived task per connection, a bounded number of them, a bounded
//! and deadlined read. It is meant for a loopback or local address (the default is
//! `127.0.0.1:9477`), so it has no TLS and no authentication; `0.0.0.0`/`::` need an
//! explicit opt-in (`metrics_allow_any_address`). How slow clients are kept from starving
//! scrapes is explained in `http.rs`.

use dms_journal::{HelperIdentity, JournalState, Phase, TargetState};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
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
    /// The text encoder refused a metric (only possible for kinds this daemon does not use,
    /// such as native histograms); a bug, answered with 500.
    #[error("cannot encode the metrics exposition")]
    Encode,
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
    /// Mounted targets whose helper died and is being replaced.
    pub healing: u64,
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
                Phase::Healing(_) => &mut g.healing,
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

/// The daemon's own metrics (everything but the scrape-time [`Gauges`]). The fields are
/// handles on what the registry encodes (the library's metrics share their value between
/// clones).
#[derive(Debug)]
pub struct Metrics {
    /// `[action][outcome]`, indexed as [`Action::ALL`] × [`Outcome::ALL`].
    requests: [[Counter; 2]; 3],
    request_duration: [Histogram; 3],
    helper_losses: Counter,
    /// Indexed as `heals::CAUSES` and [`HealOutcome::ALL`].
    helper_deaths: [Counter; 4],
    helper_heals: [Counter; 3],
    nfs_breaker_trips: Counter,
    broker_failovers: Counter,
    broker_consumer_cancels: Counter,
    broker_blocked: Counter,
    reconcile_duration: Histogram,
    reconcile_steps: Counter,
    /// Seconds since the epoch; 0 until the first pass.
    last_reconcile: Gauge<f64, AtomicU64>,
    registry: Registry,
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

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Metrics {
    /// A registry whose process started now.
    pub fn new() -> Metrics {
        Metrics::started_at(SystemTime::now())
    }

    /// A registry with a given start time (tests render exact text with it). Families are
    /// registered in a fixed order, with every label set present from the start (at zero),
    /// so two scrapes differ only in values.
    pub fn started_at(start: SystemTime) -> Metrics {
        let m = Metrics {
            requests: Default::default(),
            request_duration: [histogram(), histogram(), histogram()],
            helper_losses: Counter::default(),
            helper_deaths: Default::default(),
            helper_heals: Default::default(),
            nfs_breaker_trips: Counter::default(),
            broker_failovers: Counter::default(),
            broker_consumer_cancels: Counter::default(),
            broker_blocked: Counter::default(),
            reconcile_duration: histogram(),
            reconcile_steps: Counter::default(),
            last_reconcile: Gauge::default(),
            registry: Registry::default(),
        };
        let mut registry = Registry::default();
        // The library appends the final full stop of every help text given to `register`.
        registry.register(
            "dms_build",
            "The running dms-server build (always 1)",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            ConstGauge::new(epoch_seconds(start)),
        );
        registry.register(
            "dms_helper_losses",
            "Mounted targets lost (helper died, mount gone, reboot), at runtime or at reconcile",
            m.helper_losses.clone(),
        );
        registry.register(
            "dms_nfs_breaker_trips",
            "Times an NFS server's breaker opened: an operation against it ran into its deadline",
            m.nfs_breaker_trips.clone(),
        );
        registry.register(
            "dms_broker_failovers",
            "Broker sessions that ended unasked (connection lost, or the queue's home node down); the next host of rabbitmq_url is tried",
            m.broker_failovers.clone(),
        );
        registry.register(
            "dms_broker_consumer_cancels",
            "Times the broker cancelled the daemon's consumer (queue deleted, mirror promoted); it consumes again",
            m.broker_consumer_cancels.clone(),
        );
        registry.register(
            "dms_broker_blocked",
            "Times the broker blocked the daemon's connection (its memory or disk alarm); replies wait until it unblocks",
            m.broker_blocked.clone(),
        );
        registry.register(
            "dms_reconcile_duration_seconds",
            "Duration of reconcile passes (boot and periodic resync)",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "dms_reconcile_steps",
            "Reconcile steps performed to converge the journal with the host",
            m.reconcile_steps.clone(),
        );
        registry.register(
            "dms_last_reconcile_timestamp_seconds",
            "When the last reconcile pass finished, since the Unix epoch (0: none yet)",
            m.last_reconcile.clone(),
        );
        let mut requests = Fixed::new(
            "dms_requests",
            "Requests answered, by action (invalid: refused before it was understood) and reply status.",
        );
        let mut durations = Fixed::new(
            "dms_request_duration_seconds",
            "Time from a request's delivery until its reply is ready, by action.",
        );
        for action in Action::ALL {
            for outcome in Outcome::ALL {
                requests.add(
                    vec![("action", action.label()), ("outcome", outcome.label())],
                    m.requests[action as usize][outcome as usize].clone(),
                );
            }
            durations
                .add(vec![("action", action.label())], m.request_duration[action as usize].clone());
        }
        registry.register_collector(Box::new(requests));
        registry.register_collector(Box::new(durations));
        let mut deaths = Fixed::new(
            "dms_helper_deaths",
            "Deaths of mounted targets' helpers, by cause (exit, signal, oom; unknown: an adopted helper, whose status only its parent could read).",
        );
        for cause in heals::CAUSES {
            let counter = m.helper_deaths[heals::cause_index(cause)].clone();
            deaths.add(vec![("cause", cause.label())], counter);
        }
        let mut heals = Fixed::new(
            "dms_helper_heals",
            "What became of targets whose helper died: healed, failed or given_up (lost).",
        );
        for outcome in HealOutcome::ALL {
            heals.add(vec![("outcome", outcome.label())], m.helper_heals[outcome as usize].clone());
        }
        registry.register_collector(Box::new(deaths));
        registry.register_collector(Box::new(heals));
        Metrics { registry, ..m }
    }

    /// One request answered (or refused), and how long it took from delivery until its reply
    /// was ready (recorded before the reply is sent, so a requester holding its answer sees
    /// it counted).
    pub fn request(&self, action: Action, outcome: Outcome, took: Duration) {
        self.requests[action as usize][outcome as usize].inc();
        self.request_duration[action as usize].observe(took.as_secs_f64());
    }

    pub fn requests(&self, action: Action, outcome: Outcome) -> u64 {
        self.requests[action as usize][outcome as usize].get()
    }

    /// `n` targets found lost (helper died, mount gone, reboot), at runtime or at reconcile.
    pub fn helpers_lost(&self, n: u64) {
        if n > 0 {
            self.helper_losses.inc_by(n);
        }
    }

    pub fn helper_losses(&self) -> u64 {
        self.helper_losses.get()
    }

    /// An NFS server's breaker opened (or reopened after a failed probe).
    /// A mounted target's helper died of `cause`.
    pub fn helper_died(&self, cause: crate::exec::death::DeathCause) {
        self.helper_deaths[heals::cause_index(cause)].inc();
    }

    pub fn helper_heal(&self, outcome: HealOutcome) {
        self.helper_heals[outcome as usize].inc();
    }

    pub fn helper_heals(&self, outcome: HealOutcome) -> u64 {
        self.helper_heals[outcome as usize].get()
    }

    pub fn nfs_breaker_tripped(&self) {
        self.nfs_breaker_trips.inc();
    }

    /// A broker session ended unasked, or the queue's home node was down: the next host.
    pub fn broker_failover(&self) {
        self.broker_failovers.inc();
    }

    pub fn broker_failovers(&self) -> u64 {
        self.broker_failovers.get()
    }

    /// The broker cancelled the consumer.
    pub fn broker_consumer_cancelled(&self) {
        self.broker_consumer_cancels.inc();
    }

    /// The broker blocked the connection (`connection.blocked`).
    pub fn broker_blocked(&self) {
        self.broker_blocked.inc();
    }

    /// One reconcile pass (boot or resync) finished now.
    pub fn reconcile(&self, took: Duration, steps_performed: usize) {
        self.reconcile_at(took, steps_performed, SystemTime::now());
    }

    pub fn reconcile_at(&self, took: Duration, steps_performed: usize, at: SystemTime) {
        self.reconcile_duration.observe(took.as_secs_f64());
        self.reconcile_steps.inc_by(steps_performed as u64);
        self.last_reconcile.set(epoch_seconds(at));
    }

    /// The exposition text: the registry's families, then the scrape-time ones.
    pub fn render(&self, gauges: &Gauges) -> Result<String, MetricsError> {
        let mut out = String::with_capacity(8 * 1024);
        let mut scraped = Registry::default();
        scraped.register_collector(Box::new(Scraped(*gauges)));
        prometheus_text::encode(&mut out, &self.registry).map_err(|_| MetricsError::Encode)?;
        prometheus_text::encode(&mut out, &scraped).map_err(|_| MetricsError::Encode)?;
        Ok(out)
    }
}

/// Milliseconds are what the journal's clock gives; the exposition has always shown them.
fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

mod collect;
mod heals;
use collect::{Fixed, Scraped};
pub use heals::HealOutcome;
mod http;
pub use http::{bind, serve, serve_registry};

#[cfg(test)]
mod tests;
