//! The operators' monitoring kit in `dist/`: the alert rules pass `promtool check rules` and
//! their own unit tests (`promtool test rules`), the daemon's exposition passes `promtool
//! check metrics`, and every series the rules and the dashboard query is one the daemon
//! exports, so a renamed metric breaks this test instead of an operator's alert.

use super::*;
use dms::metrics::{Action, Gauges, Metrics, Outcome};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

const RULES: &str = "dist/prometheus/dms-alerts.yml";
const RULE_TESTS: &str = "dist/prometheus/dms-alerts.test.yml";
const DASHBOARD: &str = "dist/grafana/dms-dashboard.json";

/// Series that come from Prometheus itself, not from the daemon.
const PROMETHEUS_OWN: [&str; 1] = ["up"];

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install the Debian package `prometheus` \
                 (scripts/lib/deps.sh ensure_test_infra)"
            )
        });
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The exposition of a registry that has seen one request of each kind, so every family
/// (histograms included) carries samples.
fn exposition() -> String {
    let metrics = Metrics::new();
    for action in [Action::Mount, Action::Unmount, Action::Invalid] {
        for outcome in [Outcome::Success, Outcome::Error] {
            metrics.request(action, outcome, Duration::from_millis(12));
        }
    }
    metrics.helpers_lost(1);
    metrics.nfs_breaker_tripped();
    metrics.reconcile(Duration::from_millis(3), 2);
    metrics.render(&Gauges::default()).unwrap()
}

/// Series names in the exposition: each sample line's name, as Prometheus stores it.
fn exported_series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Every identifier in a PromQL expression that names a series of the daemon or Prometheus
/// (`dms_*`, `process_*`, `up`): functions, labels and keywords are not series.
fn queried_series(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        let word = &tail[..end.unwrap_or(tail.len())];
        let before = rest[..start].chars().last();
        let quoted_or_label = matches!(before, Some('"' | '$' | '.'));
        if !quoted_or_label
            && (word.starts_with("dms_")
                || word.starts_with("process_")
                || PROMETHEUS_OWN.contains(&word))
        {
            names.push(word.to_owned());
        }
        rest = &tail[word.len()..];
    }
    names
}

fn rule_exprs() -> Vec<(String, String)> {
    // The rules file is YAML; its alerts are `- alert: NAME` followed by `expr:` (inline or a
    // `|` block), which is all this reads.
    let text = std::fs::read_to_string(repo().join(RULES)).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            out.push((name.to_owned(), String::new()));
        } else if let Some(expr) = line.trim().strip_prefix("expr:") {
            let (_, current) = out.last_mut().expect("expr: before any alert");
            if expr.trim() == "|" {
                while let Some(next) = lines.next_if(|l| l.starts_with("          ")) {
                    current.push_str(next.trim());
                    current.push(' ');
                }
            } else {
                current.push_str(expr.trim());
            }
        }
    }
    out
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join(DASHBOARD)).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut out = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.clone(), expr.to_owned()));
            }
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, text) = promtool(&["check", "rules", RULES], None);
    assert!(ok, "promtool check rules {RULES}:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");

    let (ok, text) = promtool(&["test", "rules", RULE_TESTS], None);
    assert!(ok, "promtool test rules {RULE_TESTS}:\n{text}");

    let tests = std::fs::read_to_string(repo().join(RULE_TESTS)).unwrap();
    for (alert, _) in rule_exprs() {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{RULE_TESTS} has no test for the alert {alert}"
        );
    }
}

#[test]
fn the_daemons_exposition_passes_promtool_check_metrics() {
    let text = exposition();
    let (ok, out) = promtool(&["check", "metrics"], Some(&text));
    assert!(ok, "promtool check metrics:\n{out}\n--- exposition ---\n{text}");
}

#[test]
fn every_series_the_rules_and_the_dashboard_query_is_exported_by_the_daemon() {
    let exported = exported_series(&exposition());
    let rules = rule_exprs();
    assert!(rules.len() >= 5, "the kit's alerts: {rules:?}");
    let names: BTreeSet<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    // The alerts the operators' kit promises (issue 11): a mounted target without a live
    // helper, the broker, journal/host disagreement, the error rate, an open breaker.
    for needed in [
        "DmsMountedWithoutHelper",
        "DmsBrokerDisconnected",
        "DmsJournalHostDisagree",
        "DmsRequestErrors",
        "DmsNfsBreakerOpen",
    ] {
        assert!(names.contains(needed), "{RULES} lacks {needed}: {names:?}");
    }

    let panels = dashboard_exprs();
    assert!(panels.len() >= 10, "the dashboard's queries: {panels:?}");
    let mut unknown = Vec::new();
    for (place, expr) in rules.iter().chain(&panels) {
        let series = queried_series(expr);
        assert!(!series.is_empty(), "{place}: `{expr}` queries no series");
        for name in series {
            if !exported.contains(&name) && !PROMETHEUS_OWN.contains(&name.as_str()) {
                unknown.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(unknown.is_empty(), "queried but never exported: {unknown:#?}\nexported: {exported:?}");
}

#[test]
fn the_series_reader_finds_names_and_skips_labels_functions_and_strings() {
    assert_eq!(
        queried_series(
            "sum by (instance) (rate(dms_requests_total{outcome=\"error\",x=\"dms_fake\"}[5m])) \
             / up{job=\"dms\"} * on (instance) group_left (version) dms_build_info"
        ),
        ["dms_requests_total", "up", "dms_build_info"]
    );
    assert_eq!(
        queried_series("time() - process_start_time_seconds"),
        ["process_start_time_seconds"]
    );
    assert!(queried_series("vector(1)").is_empty());
}
