//! One circuit breaker per NFS server: after a mount(8) or umount(8) against a server runs
//! into its deadline, that server's mounts fail fast for a back-off window instead of each
//! holding a mount(8) (and a permit of the server's pool) for the whole timeout only to
//! fail the same way. When the window ends, one mount is let through as the probe: an
//! answer (success or a quick refusal: either way the server talks) closes the breaker; a
//! timeout opens it again for twice as long, up to a cap.
//!
//! Runtime state only, never journaled: after a restart every server gets a first try, which
//! is the probe a restart should be. Unmounts are never refused (their last step, the lazy
//! detach, does not wait on the server, so refusing one would only leave a dead mount in
//! place); their timeouts do open the breaker. Time comes in as a parameter, so the rules
//! are tested without sleeping.

use crate::exec::mounts::Heard;
use dms_journal::{Outage, Timestamp};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

#[derive(Debug)]
pub(super) struct Breakers {
    first_window_ms: u64,
    max_window_ms: u64,
    open: Mutex<BTreeMap<String, Open>>,
}

/// A breaker that is not closed. Closed breakers are not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Open {
    since: Timestamp,
    until: Timestamp,
    window_ms: u64,
    cause: String,
    /// A probe is out: everyone else still fails fast until it reports.
    probing: bool,
}

/// What a mount against a server may do now.
#[derive(Debug)]
pub(super) enum Gate<'a> {
    /// The breaker is closed.
    Pass,
    /// This mount is the probe. If it ends without reporting (it was answered without
    /// running mount(8)), the next mount probes instead.
    Probe(Probe<'a>),
    /// Fail fast.
    Refuse(Outage),
}

#[derive(Debug)]
pub(super) struct Probe<'a> {
    breakers: &'a Breakers,
    server: String,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(open) = lock(&self.breakers.open).get_mut(&self.server) {
            open.probing = false;
        }
    }
}

/// One breaker as `dms-ctl status` and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerView {
    pub server: String,
    /// `open` (failing fast) or `probing` (one mount is testing the server).
    pub state: &'static str,
    pub since: Timestamp,
    pub until: Timestamp,
    pub cause: String,
}

impl Breakers {
    pub(super) fn new(first_window: Duration) -> Self {
        let first = u64::try_from(first_window.as_millis()).unwrap_or(u64::MAX).max(1);
        Self {
            first_window_ms: first,
            max_window_ms: first.saturating_mul(10),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// May a mount against `server` run mount(8) now?
    pub(super) fn gate(&self, server: &str, now: Timestamp) -> Gate<'_> {
        let mut open = lock(&self.open);
        let Some(breaker) = open.get_mut(server) else { return Gate::Pass };
        if breaker.probing || now < breaker.until {
            return Gate::Refuse(Outage {
                server: server.to_owned(),
                cause: breaker.cause.clone(),
                since: breaker.since,
                until: breaker.until,
            });
        }
        breaker.probing = true;
        Gate::Probe(Probe { breakers: self, server: server.to_owned() })
    }

    /// What an operation against `server` showed. Returns whether the breaker changed
    /// (opened, reopened or closed), for the log line.
    pub(super) fn report(&self, server: &str, heard: &Heard, now: Timestamp) -> Option<Change> {
        let mut open = lock(&self.open);
        match (heard, open.get_mut(server)) {
            (Heard::Nothing, _) | (Heard::Answered, None) => None,
            (Heard::Answered, Some(_)) => {
                open.remove(server);
                Some(Change::Closed)
            }
            (Heard::TimedOut(cause), None) => {
                let window_ms = self.first_window_ms;
                let until = Timestamp(now.0.saturating_add(window_ms));
                let cause = cause.clone();
                open.insert(
                    server.to_owned(),
                    Open { since: now, until, window_ms, cause, probing: false },
                );
                Some(Change::Opened { until })
            }
            // The probe timed out: twice the window. Another operation that was already
            // running when the breaker opened and times out now changes nothing.
            (Heard::TimedOut(cause), Some(breaker)) if breaker.probing => {
                breaker.window_ms = breaker.window_ms.saturating_mul(2).min(self.max_window_ms);
                breaker.until = Timestamp(now.0.saturating_add(breaker.window_ms));
                breaker.cause = cause.clone();
                breaker.probing = false;
                Some(Change::Opened { until: breaker.until })
            }
            (Heard::TimedOut(_), Some(_)) => None,
        }
    }

    /// Every breaker that is not closed, by server.
    pub(super) fn views(&self) -> Vec<BreakerView> {
        lock(&self.open)
            .iter()
            .map(|(server, b)| BreakerView {
                server: server.clone(),
                state: if b.probing { "probing" } else { "open" },
                since: b.since,
                until: b.until,
                cause: b.cause.clone(),
            })
            .collect()
    }
}

/// How a report changed a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Opened { until: Timestamp },
    Closed,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "filer";

    fn at(secs: u64) -> Timestamp {
        Timestamp(secs * 1000)
    }

    fn timed_out(cause: &str) -> Heard {
        Heard::TimedOut(cause.to_owned())
    }

    fn refused(gate: Gate<'_>) -> Option<Outage> {
        match gate {
            Gate::Refuse(outage) => Some(outage),
            Gate::Pass | Gate::Probe(_) => None,
        }
    }

    #[test]
    fn given_a_timeout_when_mounting_then_the_server_fails_fast_until_the_window_ends() {
        let b = Breakers::new(Duration::from_secs(30));
        assert!(matches!(b.gate(S, at(0)), Gate::Pass));
        assert_eq!(
            b.report(S, &timed_out("mount timed out"), at(10)),
            Some(Change::Opened { until: at(40) })
        );
        let outage = refused(b.gate(S, at(39))).expect("open: fail fast");
        assert_eq!(
            (outage.since, outage.until, outage.cause.as_str()),
            (at(10), at(40), "mount timed out")
        );
        assert!(matches!(b.gate("other", at(39)), Gate::Pass), "another server is not affected");
        // Another operation that was already running times out too: the window stays.
        assert_eq!(b.report(S, &timed_out("again"), at(20)), None);
        assert_eq!(refused(b.gate(S, at(39))).map(|o| o.until), Some(at(40)));
    }

    #[test]
    fn given_the_window_over_when_a_probe_runs_then_others_wait_and_its_answer_closes_the_breaker()
    {
        let b = Breakers::new(Duration::from_secs(30));
        b.report(S, &timed_out("timed out"), at(0));
        let probe = b.gate(S, at(30));
        assert!(matches!(probe, Gate::Probe(_)), "{probe:?}");
        assert!(refused(b.gate(S, at(31))).is_some(), "one probe at a time");
        assert_eq!(b.report(S, &Heard::Nothing, at(31)), None, "an unmount is no answer");
        assert_eq!(b.views()[0].state, "probing");
        assert_eq!(b.report(S, &Heard::Answered, at(32)), Some(Change::Closed));
        drop(probe);
        assert!(matches!(b.gate(S, at(33)), Gate::Pass));
        assert!(b.views().is_empty());
    }

    #[test]
    fn given_failed_probes_when_reopening_then_the_window_doubles_up_to_ten_times_the_first() {
        let b = Breakers::new(Duration::from_secs(30));
        b.report(S, &timed_out("timed out"), at(0));
        let mut now = 0;
        let mut windows = Vec::new();
        for _ in 0..6 {
            let until = b.views()[0].until;
            now = until.0 / 1000;
            let _probe = b.gate(S, at(now));
            let Some(Change::Opened { until }) = b.report(S, &timed_out("timed out"), at(now))
            else {
                panic!("a failed probe reopens");
            };
            windows.push(until.0 / 1000 - now);
        }
        assert_eq!(windows, vec![60, 120, 240, 300, 300, 300]);
        assert!(now > 0);
    }

    #[test]
    fn given_a_probe_that_never_ran_mount_when_it_ends_then_the_next_mount_probes() {
        let b = Breakers::new(Duration::from_secs(30));
        b.report(S, &timed_out("timed out"), at(0));
        drop(b.gate(S, at(30)));
        assert!(matches!(b.gate(S, at(31)), Gate::Probe(_)));
    }
}
