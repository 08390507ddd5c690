//! The daemon's periodic and background tasks beside intake: the metrics endpoint, systemd
//! start-time extensions and keep-alives, journal compaction.

use crate::admin::Admin;
use crate::engine::Engine;
use crate::exec::observer::Observer;
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::systemd::Notifier;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The Prometheus endpoint, served on `tasks` until `shutdown` (or `cancel`, when the
/// daemon ends without a stop: a restart in place). A listener that cannot be bound is
/// logged and the daemon serves mounts without it: mounts matter more than their metrics.
pub(super) async fn serve_metrics<C: Credentials, P: Processes, M: Mounts, O: Observer>(
    addr: std::net::SocketAddr,
    admin: Arc<Admin<C, P, M, O>>,
    shutdown: watch::Receiver<bool>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) {
    let listener = match crate::metrics::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "metrics disabled: cannot listen (metrics_listen)");
            return;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(metrics_addr = %bound, "serving metrics");
    if bound.ip().to_canonical().is_unspecified() {
        tracing::warn!(
            metrics_addr = %bound,
            "metrics served on every address of this host (metrics_allow_any_address = true): \
             reachable from the network, no TLS, no authentication"
        );
    }
    let gauges: Arc<dyn Fn() -> crate::metrics::Gauges + Send + Sync> =
        Arc::new(move || admin.gauges());
    tasks.spawn(async move {
        tokio::select! {
            _ = crate::metrics::serve(listener, gauges, shutdown) => {}
            _ = cancel.cancelled() => {}
        }
    });
}

/// `STATUS=` for `systemctl status`: what the daemon tracks.
pub(super) fn status_line<C: Credentials, P: Processes, M: Mounts>(
    engine: &Engine<C, P, M>,
) -> String {
    let (targets, mounted) = engine.counts();
    format!("serving: {targets} targets tracked, {mounted} mounted")
}

/// `EXTEND_TIMEOUT_USEC` every 20 s (by 60 s each time) while the boot pass runs (until
/// `done`).
pub(super) async fn extend_start(notifier: Arc<Notifier>, done: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(20));
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tick.tick() => {}
        }
        let _ = notifier.status("reconciling the journal with the host before intake");
        if let Err(e) = notifier.extend_timeout(Duration::from_secs(60)) {
            tracing::warn!(error = %e, "cannot ask systemd for more start time");
        }
    }
}

/// Watchdog keep-alives and a fresh status line from the main runtime, and the stop notice.
/// Each tick takes the engine's state lock: a runtime that no longer runs tasks, or a
/// deadlocked state lock, stops the keep-alives and systemd restarts the daemon (its mounts
/// and helpers stay). A single target stuck in an operation does not: it only stalls itself.
pub(super) async fn keep_alive<C: Credentials, P: Processes, M: Mounts>(
    notifier: Arc<Notifier>,
    engine: Arc<Engine<C, P, M>>,
    mut stop: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    let every = notifier.watchdog_interval().unwrap_or(Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            _ = stop.changed() => {
                let status = "stopping: intake closed, finishing in-flight requests; mounts stay";
                if let Err(e) = notifier.stopping(status) {
                    tracing::warn!(error = %e, "cannot tell systemd the daemon is stopping");
                }
                return;
            }
        }
        let mut sent = notifier.status(&status_line(&engine));
        if notifier.watchdog_interval().is_some() {
            sent = sent.and_then(|()| notifier.watchdog());
        }
        match sent {
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot notify systemd; will keep trying");
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
    }
}

/// Bounded growth: compact finished history older than the retention, at start and hourly,
/// until `cancel` (a compaction under way is finished).
pub(super) async fn compact_periodically<C: Credentials, P: Processes, M: Mounts>(
    engine: Arc<Engine<C, P, M>>,
    retention: Duration,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        match engine.compact(retention).await {
            Ok(report) if report.records_removed > 0 || report.requests_forgotten > 0 => {
                tracing::info!(
                    targets = report.targets_compacted,
                    records_removed = report.records_removed,
                    requests_forgotten = report.requests_forgotten,
                    "journal compacted"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "journal compaction failed; will retry"),
        }
    }
}

/// How often [`release_freed_memory`] looks whether the journal was written.
const MEMORY_LOOK: Duration = Duration::from_secs(5);

/// Under steady work the heap is trimmed every this many looks (a minute) all the same: a
/// trickle of requests after a burst keeps the journal moving, and would otherwise keep
/// what the burst freed.
const LOOKS_BETWEEN_BUSY_TRIMS: u32 = 12;

/// Hands the memory a burst freed back to the kernel once the burst is over: every
/// [`MEMORY_LOOK`] it reads the journal's flush count (every request flushes), and the
/// first look that finds it unchanged after it moved trims the heap
/// ([`crate::host::memory`]); under steady work, once a minute. An idle daemon does
/// nothing here.
pub(super) async fn release_freed_memory<C: Credentials, P: Processes, M: Mounts>(
    engine: Arc<Engine<C, P, M>>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(MEMORY_LOOK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trims = Trims::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if trims.due(engine.journal().flushes()) {
            let released = crate::host::memory::release_freed();
            tracing::debug!(released, "freed heap handed back to the kernel");
        }
    }
}

/// When to trim, from successive looks at a count that grows with work.
#[derive(Debug, Default)]
struct Trims {
    last: Option<u64>,
    /// The count moved since the last trim.
    worked: bool,
    looks_since_trim: u32,
}

impl Trims {
    /// Whether this look trims: work was done since the last trim, and either it stopped
    /// (the count did not move since the last look) or it has gone on for
    /// [`LOOKS_BETWEEN_BUSY_TRIMS`]. The first look counts as work (the boot pass came
    /// before it).
    fn due(&mut self, count: u64) -> bool {
        let moved = self.last != Some(count);
        self.last = Some(count);
        self.worked |= moved;
        self.looks_since_trim = self.looks_since_trim.saturating_add(1);
        let due = self.worked && (!moved || self.looks_since_trim >= LOOKS_BETWEEN_BUSY_TRIMS);
        if due {
            self.worked = false;
            self.looks_since_trim = 0;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::{Trims, LOOKS_BETWEEN_BUSY_TRIMS};

    fn trimmed_at(looks: impl IntoIterator<Item = u64>) -> Vec<usize> {
        let mut trims = Trims::default();
        looks
            .into_iter()
            .enumerate()
            .filter(|&(_, count)| trims.due(count))
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn a_burst_is_trimmed_at_the_first_look_without_work_and_idleness_never() {
        assert_eq!(trimmed_at([0, 0, 0, 3, 9, 9, 9, 10, 10]), [1, 5, 8]);
        assert_eq!(trimmed_at([7; 40]), [1]);
    }

    #[test]
    fn steady_work_is_trimmed_once_a_minute() {
        let n = LOOKS_BETWEEN_BUSY_TRIMS as usize;
        let trims = trimmed_at(0..(3 * n as u64));
        assert_eq!(trims, [n - 1, 2 * n - 1, 3 * n - 1]);
    }
}
