//! What the operator hears about the broker: one line per event, with the host (`host:port`,
//! never credentials) and the metric that counts it. A loss is one WARN, a failed attempt
//! one WARN with what happens next (the next host, or the backoff's wait), a recovery one
//! INFO. A refusal that retrying cannot cure by itself (the queue exists with another type,
//! the broker's certificate is not trusted) is one ERROR naming the fix, then DEBUG while
//! it repeats: the daemon keeps retrying, since the operator's fix (or a queue deleted and
//! declared anew) needs no restart.
//!
//! Also the reconnection backoff: capped, jittered, reset by every session.

use super::hosts::Next;
use super::session::OpenError;
use crate::metrics;
use std::time::{Duration, Instant};

pub(super) struct Reporter<'a> {
    queue: &'a str,
    backoff: backon::ExponentialBackoff,
    /// Since when no session has been up, and how many attempts failed since.
    outage: Option<Outage>,
    /// The lasting refusal already logged at ERROR (its kind).
    logged: Option<&'static str>,
}

/// The broker has been out of reach since `since`; `attempts` attempts failed.
#[derive(Debug)]
struct Outage {
    since: Instant,
    attempts: u32,
}

impl Outage {
    fn now() -> Self {
        Self { since: Instant::now(), attempts: 0 }
    }
}

impl<'a> Reporter<'a> {
    pub(super) fn new(queue: &'a str) -> Self {
        Self { queue, backoff: reconnect_backoff(), outage: None, logged: None }
    }

    pub(super) fn connected(&mut self, host: &str) {
        let queue = self.queue;
        match self.outage.take() {
            None => {
                tracing::info!(%queue, %host, "connected to the broker at {host}; consuming {queue}")
            }
            Some(o) => tracing::info!(
                %queue,
                %host,
                attempts = o.attempts,
                down_ms = o.since.elapsed().as_millis() as u64,
                "broker connection recovered after {} failed attempts ({:.1} s); consuming {queue} at {host}",
                o.attempts,
                o.since.elapsed().as_secs_f64()
            ),
        }
        self.backoff = reconnect_backoff();
        self.logged = None;
    }

    /// An attempt on `host` failed; `next` says whether `following` is tried at once or
    /// after a wait, which is returned.
    pub(super) fn failed(
        &mut self,
        e: &OpenError,
        host: &str,
        next: Next,
        following: &str,
    ) -> Option<Duration> {
        let o = self.outage.get_or_insert_with(Outage::now);
        o.attempts += 1;
        let attempt = o.attempts;
        // Built without a limit of tries, so it never runs out; the cap if it did.
        let wait = (next == Next::BackOff).then(|| self.backoff.next().unwrap_or(RECONNECT_CAP));
        let then = match wait {
            None => format!("trying {following} next"),
            Some(w) => format!("retrying in {:.1} s", w.as_secs_f64()),
        };
        let retry_in_ms = wait.map_or(0, |w| w.as_millis() as u64);
        let lasting = match e {
            OpenError::QueueTypeMismatch { .. } => Some("queue type"),
            OpenError::Tls { .. } => Some("tls"),
            _ => None,
        };
        match lasting {
            Some(kind) if self.logged != Some(kind) => {
                self.logged = Some(kind);
                tracing::error!(%host, attempt, retry_in_ms, "broker at {host}: {e}; {then}");
            }
            Some(_) => {
                tracing::debug!(%host, attempt, retry_in_ms, "broker at {host}: {e}; {then}")
            }
            None if matches!(e, OpenError::HomeNodeDown { .. }) => {
                metrics::global().broker_failover();
                tracing::warn!(%host, attempt, retry_in_ms, "broker at {host}: {e}; {then}");
            }
            None => tracing::warn!(
                %host,
                attempt,
                retry_in_ms,
                "cannot reach the broker (attempt {attempt}) at {host}: {e}; {then}"
            ),
        }
        wait
    }

    /// The session on `host` ended unasked; `following` is tried at once.
    pub(super) fn lost(&mut self, why: &str, host: &str, following: &str) {
        metrics::global().broker_failover();
        tracing::warn!(%host, next = %following, "broker connection lost at {host}: {why}; reconnecting to {following}");
        self.outage = Some(Outage::now());
    }

    /// The broker cancelled the consumer, and it consumes again (logged once that worked;
    /// otherwise the session ends and the loss says why).
    pub(super) fn consumer_cancelled(&self, host: &str) {
        metrics::global().broker_consumer_cancelled();
        let queue = self.queue;
        tracing::warn!(
            %queue,
            %host,
            "the broker at {host} cancelled the consumer of {queue} (queue deleted or failed over); declared it and consume it again"
        );
    }

    /// A connection-level event: the broker's memory or disk alarm blocks publishers.
    pub(super) fn event(&self, event: lapin::Event, host: &str) {
        match event {
            lapin::Event::ConnectionBlocked(reason) => {
                metrics::global().broker_blocked();
                tracing::warn!(
                    %host,
                    %reason,
                    "the broker at {host} blocked this connection ({reason}): replies wait until it unblocks"
                );
            }
            lapin::Event::ConnectionUnblocked => {
                tracing::info!(%host, "the broker at {host} unblocked this connection");
            }
            _ => {}
        }
    }
}

/// Capped exponential backoff with jitter, so that many nodes reconnecting to a restarted
/// broker do not arrive in lockstep: the n-th wait is drawn from [d, 2d) with d = 100 ms ·
/// 2^(n-1), d capped at 7.5 s, so every wait lies within [100 ms, 15 s). backon's
/// exponential backoff adds up to one more d as jitter, hence the halved bounds. Only a
/// whole round of hosts that failed waits (hosts::Rotation).
fn reconnect_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(RECONNECT_MIN / 2)
        .with_max_delay(RECONNECT_CAP / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The first wait's ceiling and every wait's ceiling.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_CAP: Duration = Duration::from_secs(15);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn given_failures_when_backing_off_then_waits_grow_to_the_cap_with_jitter_and_reset() {
        let mut b = reconnect_backoff();
        let waits: Vec<Duration> = (0..12).map(|_| b.next().unwrap()).collect();
        assert!(waits[0] >= RECONNECT_MIN / 2 && waits[0] < RECONNECT_MIN, "{waits:?}");
        assert!(waits[3] >= Duration::from_millis(800) && waits[3] < Duration::from_millis(1600));
        assert!(waits.iter().all(|w| *w < RECONNECT_CAP), "{waits:?}");
        assert!(waits[11] >= RECONNECT_CAP / 2, "{waits:?}");
        // Jittered: twelve draws are not all exactly the lower bound of their step.
        assert!(waits
            .iter()
            .enumerate()
            .any(|(i, w)| *w != (RECONNECT_MIN / 2 * (1 << i)).min(RECONNECT_CAP / 2)));
        let mut fresh = reconnect_backoff();
        assert!(fresh.next().unwrap() < RECONNECT_MIN);
    }

    #[test]
    fn given_a_round_of_failures_when_reporting_then_only_a_full_round_waits() {
        let mut r = Reporter::new("dms.n1");
        let e = OpenError::Timeout(Duration::from_secs(1));
        assert_eq!(r.failed(&e, "h1:5672", Next::Now, "h2:5672"), None);
        let wait = r.failed(&e, "h2:5672", Next::BackOff, "h1:5672").unwrap();
        assert!(wait >= RECONNECT_MIN / 2 && wait < RECONNECT_MIN, "{wait:?}");
        let second = r.failed(&e, "h1:5672", Next::BackOff, "h2:5672").unwrap();
        assert!(second >= RECONNECT_MIN, "the second round waits longer: {second:?}");
        r.connected("h1:5672");
        let reset = r.failed(&e, "h1:5672", Next::BackOff, "h2:5672").unwrap();
        assert!(reset < RECONNECT_MIN, "a session resets the backoff: {reset:?}");
    }
}
