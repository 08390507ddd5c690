//! Snapshot tests: the exact text operators (and their scripts) read.
#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::BTreeMap;

fn rows() -> Vec<TargetView> {
    vec![
        TargetView {
            target: "t-1".into(),
            kind: Some("s3".into()),
            state: "mounted".into(),
            mount_path: Some("/var/lib/trilio/triliovault-mounts/t-1".into()),
            helper_pid: Some(4242),
            helper_alive: Some(true),
            uptime_secs: Some(3_725),
            cpu_percent: Some(0.25),
            rss_bytes: Some(2_621_440),
            updated_at_ms: 1_700_000_000_000,
        },
        TargetView {
            target: "nfs-backup".into(),
            kind: Some("nfs".into()),
            state: "dirty (mount)".into(),
            mount_path: Some("/var/lib/trilio/triliovault-mounts/nfs-backup".into()),
            helper_pid: None,
            helper_alive: None,
            uptime_secs: None,
            cpu_percent: None,
            rss_bytes: None,
            updated_at_ms: 1_700_000_000_000,
        },
    ]
}

#[test]
fn given_targets_when_listed_then_the_table_is_aligned_with_dashes_for_nothing() {
    assert_eq!(
        targets(&rows(), false),
        "\
TARGET      TYPE  STATE          PID   ALIVE  UPTIME  MOUNT PATH
t-1         s3    mounted        4242  yes    1h02m   /var/lib/trilio/triliovault-mounts/t-1
nfs-backup  nfs   dirty (mount)  -     -      -       /var/lib/trilio/triliovault-mounts/nfs-backup
"
    );
}

#[test]
fn given_targets_when_listed_in_detail_then_cpu_and_rss_are_shown() {
    assert_eq!(
        targets(&rows(), true),
        "\
TARGET      TYPE  STATE          PID   ALIVE  UPTIME  CPU%  RSS      MOUNT PATH
t-1         s3    mounted        4242  yes    1h02m   0.2   2.5 MiB  /var/lib/trilio/triliovault-mounts/t-1
nfs-backup  nfs   dirty (mount)  -     -      -       -     -        /var/lib/trilio/triliovault-mounts/nfs-backup
"
    );
    assert_eq!(
        targets(&[], false),
        "no targets mounted or in flight (dms-ctl list --all shows the history)\n"
    );
}

#[test]
fn given_targets_when_serialized_then_the_json_keys_are_stable() {
    let json = serde_json::to_string(&rows()[0]).unwrap();
    assert_eq!(
        json,
        r#"{"target":"t-1","kind":"s3","state":"mounted","mount_path":"/var/lib/trilio/triliovault-mounts/t-1","helper_pid":4242,"helper_alive":true,"uptime_secs":3725,"cpu_percent":0.25,"rss_bytes":2621440,"updated_at_ms":1700000000000}"#
    );
}

fn status(broker: bool, problems: usize) -> Status {
    Status {
        node: "compute-01".into(),
        queue: "dms.compute-01".into(),
        version: "0.1.0".into(),
        pid: 99,
        boot_id: "6f1c2d3e-0000-4000-8000-000000000001".into(),
        uptime_secs: 303,
        broker_connected: broker,
        broker_host: broker.then(|| "ctrl2:5671".into()),
        targets: 3,
        mounted: 1,
        journal_path: "/var/lib/dms/journal".into(),
        journal_problems: problems,
        nfs_breakers: vec![],
        requests_parked: 0,
        intake_paused: None,
    }
}

fn stats(alive: usize, disagreements: Vec<String>) -> Stats {
    Stats {
        tracked: 2,
        by_state: BTreeMap::from([
            ("dirty".into(), 1),
            ("mounted".into(), 1),
            ("unmounted".into(), 1),
        ]),
        helpers_expected: 1,
        helpers_alive: alive,
        pid_files_on_disk: 1,
        mounts_under_base: 2,
        agreement: disagreements.is_empty(),
        disagreements,
        settling: vec![],
        in_flight: vec![],
    }
}

#[test]
fn given_stats_and_status_when_rendered_then_the_text_is_pinned() {
    assert_eq!(
        super::stats(&stats(1, vec!["t-9: cleanup would do Lost (helper pid 7 exited)".into()])),
        "\
targets tracked:    2
  dirty:            1
  mounted:          1
  unmounted:        1
helpers:            1 alive of 1 expected
PID files on disk:  1
mounts under base:  2
memory vs. disk:    1 disagreement(s); `dms-ctl cleanup` converges them
  - t-9: cleanup would do Lost (helper pid 7 exited)
"
    );
    assert_eq!(
        super::status(&status(true, 0)),
        "\
dms-server 0.1.0 (pid 99), node compute-01, queue dms.compute-01
broker:   connected to ctrl2:5671
uptime:   5m03s
targets:  3 in the journal, 1 mounted
journal:  /var/lib/dms/journal (no problems at replay)
boot id:  6f1c2d3e-0000-4000-8000-000000000001
nfs:      every server answering
"
    );
}

#[test]
fn given_an_open_nfs_breaker_when_rendered_and_judged_then_shown_and_a_warning() {
    let mut st = status(true, 0);
    st.nfs_breakers = vec![crate::admin::views::BreakerLine {
        server: "filer-1".into(),
        state: "open".into(),
        since: "2026-12-04T10:00:00.000Z".into(),
        until: "2026-12-04T10:00:30.000Z".into(),
        cause: "mount did not finish within 20s".into(),
    }];
    assert!(super::status(&st).ends_with(
        "nfs:      server filer-1 breaker open since 2026-12-04T10:00:00.000Z, mounts fail fast until 2026-12-04T10:00:30.000Z (mount did not finish within 20s)\n"
    ));
    let verdict = health(&st, &stats(1, vec![]));
    assert_eq!(verdict.level, Level::Warning);
    assert_eq!(
        verdict.problems,
        ["NFS server filer-1 not answering (breaker open until 2026-12-04T10:00:30.000Z)"]
    );
}

#[test]
fn given_intake_paused_when_rendered_and_judged_then_critical_with_the_reason() {
    let mut st = status(false, 0);
    let reason = "the journal cannot be written (No space left on device)";
    st.intake_paused = Some(reason.into());
    assert!(super::status(&st).contains(&format!(
        "\nintake:   PAUSED: {reason}; resumes when the journal takes writes\n"
    )));
    let verdict = health(&st, &stats(1, vec![]));
    assert_eq!(verdict.level, Level::Critical);
    assert_eq!(
        verdict.problems,
        [format!("intake paused: {reason}")],
        "the broker is not the news"
    );
}

#[test]
fn given_parked_requests_when_rendered_then_counted_and_no_trouble() {
    let mut st = status(true, 0);
    st.requests_parked = 39;
    assert!(super::status(&st).contains(
        "\nparked:   39 request(s) waiting for their target, delivery acked\nnfs:      every"
    ));
    assert_eq!(health(&st, &stats(1, vec![])).level, Level::Ok, "waiting is not trouble");
}

#[test]
fn given_work_in_flight_and_settling_when_rendered_and_judged_then_shown_but_no_trouble() {
    let mut s = stats(1, vec![]);
    s.settling = vec!["t-2: cleanup would do WritePidFile".into()];
    s.in_flight = vec!["t-3: cleanup would do Abandoned (mount interrupted)".into()];
    let text = super::stats(&s);
    assert!(
        text.ends_with(
            "\
memory vs. disk:    agree
settling:           1 (new since the last resync pass)
  - t-2: cleanup would do WritePidFile
in flight:          1 target(s) with a request running
  - t-3: cleanup would do Abandoned (mount interrupted)
"
        ),
        "{text}"
    );
    assert_eq!(health(&status(true, 0), &s).level, Level::Ok);
}

#[test]
fn given_each_kind_of_trouble_when_health_is_judged_then_the_worst_level_wins() {
    let ok = health(&status(true, 0), &stats(1, vec![]));
    assert_eq!(ok.level, Level::Ok);
    assert_eq!(health_line(&ok), "OK: 1 mounted, 1 of 1 helpers alive, broker connected\n");

    let warn = health(&status(false, 2), &stats(1, vec!["x".into()]));
    assert_eq!(warn.level, Level::Warning);
    assert_eq!(warn.problems.len(), 3, "{warn:?}");

    let critical = health(&status(false, 0), &stats(0, vec![]));
    assert_eq!(critical.level, Level::Critical);
    assert_eq!(
        health_line(&critical),
        "CRITICAL: 1 mounted, 0 of 1 helpers alive, broker disconnected; 1 mounted target(s) without a live helper; not connected to the broker\n"
    );
    assert_eq!(Level::Critical as u8, 2);
}

#[test]
fn given_durations_and_sizes_when_formatted_then_they_are_short() {
    assert_eq!(duration(0), "0s");
    assert_eq!(duration(59), "59s");
    assert_eq!(duration(61), "1m01s");
    assert_eq!(duration(7_200), "2h00m");
    assert_eq!(duration(90_061), "1d01h");
    assert_eq!(bytes(512), "0.5 KiB");
    assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
}
