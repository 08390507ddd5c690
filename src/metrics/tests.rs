#![allow(clippy::unwrap_used)]
use super::*;

/// The exposition of `render_is_exact_text_for_known_observations`: prometheus-client's
/// classic text encoder (shortest float form: `90.04`, `0.0`), the registry's families in
/// registration order, the labelled ones, then the scrape-time ones.
const EXPECTED: &str = r##"# HELP dms_build_info The running dms-server build (always 1).
# TYPE dms_build_info gauge
dms_build_info{version="{VERSION}"} 1
# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1700000000.25
# HELP dms_helper_losses_total Mounted targets lost (helper died, mount gone, reboot), at runtime or at reconcile.
# TYPE dms_helper_losses_total counter
dms_helper_losses_total 2
# HELP dms_nfs_breaker_trips_total Times an NFS server's breaker opened: an operation against it ran into its deadline.
# TYPE dms_nfs_breaker_trips_total counter
dms_nfs_breaker_trips_total 0
# HELP dms_broker_failovers_total Broker sessions that ended unasked (connection lost, or the queue's home node down); the next host of rabbitmq_url is tried.
# TYPE dms_broker_failovers_total counter
dms_broker_failovers_total 1
# HELP dms_broker_consumer_cancels_total Times the broker cancelled the daemon's consumer (queue deleted, mirror promoted); it consumes again.
# TYPE dms_broker_consumer_cancels_total counter
dms_broker_consumer_cancels_total 0
# HELP dms_broker_blocked_total Times the broker blocked the daemon's connection (its memory or disk alarm); replies wait until it unblocks.
# TYPE dms_broker_blocked_total counter
dms_broker_blocked_total 2
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
dms_reconcile_duration_seconds_sum 90.04
dms_reconcile_duration_seconds_count 2
# HELP dms_reconcile_steps_total Reconcile steps performed to converge the journal with the host.
# TYPE dms_reconcile_steps_total counter
dms_reconcile_steps_total 3
# HELP dms_last_reconcile_timestamp_seconds When the last reconcile pass finished, since the Unix epoch (0: none yet).
# TYPE dms_last_reconcile_timestamp_seconds gauge
dms_last_reconcile_timestamp_seconds 1700000200.0
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
dms_request_duration_seconds_sum{action="mount"} 2.003
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
dms_request_duration_seconds_sum{action="unmount"} 0.0
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
dms_request_duration_seconds_sum{action="invalid"} 0.0005
dms_request_duration_seconds_count{action="invalid"} 1
# HELP dms_helper_deaths_total Deaths of mounted targets' helpers, by cause (exit, signal, oom; unknown: an adopted helper, whose status only its parent could read).
# TYPE dms_helper_deaths_total counter
dms_helper_deaths_total{cause="exit"} 0
dms_helper_deaths_total{cause="signal"} 1
dms_helper_deaths_total{cause="oom"} 2
dms_helper_deaths_total{cause="unknown"} 0
# HELP dms_helper_heals_total What became of targets whose helper died: healed, failed or given_up (lost).
# TYPE dms_helper_heals_total counter
dms_helper_heals_total{outcome="healed"} 2
dms_helper_heals_total{outcome="failed"} 0
dms_helper_heals_total{outcome="given_up"} 1
# HELP dms_targets Targets the journal tracks, by phase.
# TYPE dms_targets gauge
dms_targets{phase="mounted"} 2
dms_targets{phase="unmounted"} 1
dms_targets{phase="mounting"} 0
dms_targets{phase="unmounting"} 1
dms_targets{phase="dirty"} 0
dms_targets{phase="healing"} 1
# HELP dms_helpers_tracked Targets whose journal names a helper process (running or to be cleaned up).
# TYPE dms_helpers_tracked gauge
dms_helpers_tracked 3
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
# HELP dms_reconcile_differences Differences between journal and host at the start of the last resync pass.
# TYPE dms_reconcile_differences gauge
dms_reconcile_differences 2
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
    use crate::exec::death::DeathCause;
    m.helper_died(DeathCause::Signal(9));
    m.helper_died(DeathCause::Oom);
    m.helper_died(DeathCause::Oom);
    m.helper_heal(HealOutcome::Healed);
    m.helper_heal(HealOutcome::Healed);
    m.helper_heal(HealOutcome::GivenUp);
    m.broker_failover();
    m.broker_blocked();
    m.broker_blocked();
    m.reconcile_at(Duration::from_millis(40), 3, at(1_700_000_100, 500));
    m.reconcile_at(Duration::from_secs(90), 0, at(1_700_000_200, 0));
    let gauges = Gauges {
        mounted: 2,
        unmounted: 1,
        mounting: 0,
        unmounting: 1,
        dirty: 0,
        healing: 1,
        helpers_tracked: 3,
        nfs_breakers_open: 0,
        requests_parked: 5,
        broker_connected: true,
        reconcile_differences: 2,
        mounted_without_helper: 1,
    };
    let text = m.render(&gauges).unwrap();
    let expected = EXPECTED.replace("{VERSION}", env!("CARGO_PKG_VERSION"));
    for (i, (got, want)) in text.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "line {}", i + 1);
    }
    assert_eq!(text, expected);
    // Stable: a second scrape of the same values is byte-identical.
    assert_eq!(m.render(&gauges).unwrap(), text);
}

#[test]
fn a_fresh_registry_renders_every_series_at_zero() {
    let text = Metrics::started_at(UNIX_EPOCH).render(&Gauges::default()).unwrap();
    assert!(text.contains("dms_requests_total{action=\"unmount\",outcome=\"error\"} 0\n"));
    assert!(text.contains("dms_request_duration_seconds_count{action=\"invalid\"} 0\n"));
    assert!(text.contains("dms_reconcile_duration_seconds_count 0\n"));
    assert!(text.contains("dms_last_reconcile_timestamp_seconds 0.0\n"));
    assert!(text.contains("process_start_time_seconds 0.0\n"));
    assert!(text.contains("dms_broker_connected 0\n"));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

/// The bucket of an observation, read from the exposition: `le` bounds are inclusive and
/// what exceeds the last bound only counts in `+Inf`.
#[test]
fn bucket_bounds_are_inclusive_and_the_rest_goes_to_inf() {
    let m = Metrics::started_at(UNIX_EPOCH);
    for took in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_micros(1001),
        Duration::from_secs(60),
        Duration::from_micros(60_000_001),
        Duration::MAX,
    ] {
        m.reconcile_at(took, 0, UNIX_EPOCH);
    }
    let text = m.render(&Gauges::default()).unwrap();
    let bucket = |le: &str| {
        let prefix = format!("dms_reconcile_duration_seconds_bucket{{le=\"{le}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].parse::<u64>().unwrap()
    };
    assert_eq!(bucket("0.001"), 2, "0 and exactly 1 ms are <= 0.001");
    assert_eq!(bucket("0.0025"), 3, "1.001 ms is <= 0.0025");
    assert_eq!(bucket("15"), 3, "nothing between 2.5 ms and 15 s");
    assert_eq!(bucket("60"), 4, "exactly 60 s is <= 60");
    assert_eq!(bucket("+Inf"), 6, "+Inf holds everything");
    assert!(text.contains("dms_reconcile_duration_seconds_count 6\n"), "{text}");
    assert!(BUCKETS.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
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
            healing: 0,
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
