//! What `dms-ctl` prints: tables for people, and the health verdict for monitoring. Pure
//! functions of the admin views, so their output is pinned by snapshot tests.

use crate::admin::views::{Stats, Status, TargetView};
use serde::Serialize;
use std::fmt::Write;

/// Columns separated by two spaces, each as wide as its widest cell; the last is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

pub fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    match n {
        n if n >= 1024 * 1024 * 1024 => format!("{:.1} GiB", n as f64 / (1024.0 * MIB)),
        n if n >= 1024 * 1024 => format!("{:.1} MiB", n as f64 / MIB),
        n => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}

/// `dms-ctl list`.
pub fn targets(rows: &[TargetView], detailed: bool) -> String {
    if rows.is_empty() {
        return "no targets mounted or in flight (dms-ctl list --all shows the history)\n".into();
    }
    let dash = || "-".to_owned();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.target.clone(),
                r.kind.clone().unwrap_or_else(dash),
                r.state.clone(),
                r.helper_pid.map_or_else(dash, |p| p.to_string()),
                r.helper_alive.map_or_else(dash, |a| if a { "yes" } else { "NO" }.to_owned()),
                r.uptime_secs.map_or_else(dash, duration),
            ];
            if detailed {
                row.push(r.cpu_percent.map_or_else(dash, |c| format!("{c:.1}")));
                row.push(r.rss_bytes.map_or_else(dash, bytes));
            }
            row.push(r.mount_path.clone().unwrap_or_else(dash));
            row
        })
        .collect();
    let mut header = vec!["TARGET", "TYPE", "STATE", "PID", "ALIVE", "UPTIME"];
    if detailed {
        header.extend(["CPU%", "RSS"]);
    }
    header.push("MOUNT PATH");
    table(&header, &cells)
}

/// `dms-ctl stats`.
pub fn stats(s: &Stats) -> String {
    let mut out = format!("targets tracked:    {}\n", s.tracked);
    for (state, n) in &s.by_state {
        let _ = writeln!(out, "  {:<17} {n}", format!("{state}:"));
    }
    let _ = writeln!(
        out,
        "helpers:            {} alive of {} expected",
        s.helpers_alive, s.helpers_expected
    );
    let _ = writeln!(out, "PID files on disk:  {}", s.pid_files_on_disk);
    let _ = writeln!(out, "mounts under base:  {}", s.mounts_under_base);
    let sections = [
        ("memory vs. disk:", &s.disagreements, "disagreement(s); `dms-ctl cleanup` converges them"),
        ("settling:", &s.settling, "(new since the last resync pass)"),
        ("in flight:", &s.in_flight, "target(s) with a request running"),
    ];
    if s.disagreements.is_empty() {
        out.push_str("memory vs. disk:    agree\n");
    }
    for (label, lines, what) in sections.into_iter().filter(|(_, lines, _)| !lines.is_empty()) {
        let _ = writeln!(out, "{label:<20}{} {what}", lines.len());
        for line in lines {
            let _ = writeln!(out, "  - {line}");
        }
    }
    out
}

/// `dms-ctl status`.
pub fn status(s: &Status) -> String {
    let broker = match (s.broker_connected, &s.broker_host) {
        (true, Some(host)) => format!("connected to {host}"),
        (true, None) => "connected".to_owned(),
        (false, _) => "NOT connected (retrying)".to_owned(),
    };
    let problems = match s.journal_problems {
        0 => "no problems at replay".to_owned(),
        n => format!("{n} problem(s) at replay: dms-journal verify"),
    };
    let mut out = format!(
        "dms-server {} (pid {}), node {}, queue {}\nbroker:   {broker}\nuptime:   {}\ntargets:  {} in the journal, {} mounted\njournal:  {} ({problems})\nboot id:  {}\n",
        s.version, s.pid, s.node, s.queue, duration(s.uptime_secs), s.targets, s.mounted, s.journal_path, s.boot_id
    );
    if let Some(reason) = &s.intake_paused {
        let _ = writeln!(out, "intake:   PAUSED: {reason}; resumes when the journal takes writes");
    }
    if s.requests_parked > 0 {
        let _ = writeln!(
            out,
            "parked:   {} request(s) waiting for their target, delivery acked",
            s.requests_parked
        );
    }
    if s.nfs_breakers.is_empty() {
        out.push_str("nfs:      every server answering\n");
    }
    for b in &s.nfs_breakers {
        let _ = writeln!(
            out,
            "nfs:      server {} breaker {} since {}, mounts fail fast until {} ({})",
            b.server, b.state, b.since, b.until, b.cause
        );
    }
    out
}

/// Monitoring plugin convention: the exit code is the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub level: Level,
    pub summary: String,
    pub problems: Vec<String>,
}

/// Mounted S3 targets without a live helper are broken mounts (critical); a missing broker,
/// memory/disk disagreement or journal damage needs attention (warning).
pub fn health(status: &Status, stats: &Stats) -> Health {
    let mut problems = Vec::new();
    let mut level = Level::Ok;
    let mut raise = |to: Level, what: String, problems: &mut Vec<String>| {
        level = level.max(to);
        problems.push(what);
    };
    if stats.helpers_alive < stats.helpers_expected {
        let dead = stats.helpers_expected - stats.helpers_alive;
        raise(
            Level::Critical,
            format!("{dead} mounted target(s) without a live helper"),
            &mut problems,
        );
    }
    match &status.intake_paused {
        Some(reason) => raise(Level::Critical, format!("intake paused: {reason}"), &mut problems),
        None if !status.broker_connected => {
            raise(Level::Warning, "not connected to the broker".into(), &mut problems)
        }
        None => {}
    }
    if !stats.agreement {
        let n = stats.disagreements.len();
        raise(
            Level::Warning,
            format!("{n} disagreement(s) between journal and host, outliving a resync pass"),
            &mut problems,
        );
    }
    for b in &status.nfs_breakers {
        raise(
            Level::Warning,
            format!(
                "NFS server {} not answering (breaker {} until {})",
                b.server, b.state, b.until
            ),
            &mut problems,
        );
    }
    if status.journal_problems > 0 {
        raise(
            Level::Warning,
            format!("{} journal problem(s) at replay", status.journal_problems),
            &mut problems,
        );
    }
    let summary = format!(
        "{} mounted, {} of {} helpers alive, broker {}",
        status.mounted,
        stats.helpers_alive,
        stats.helpers_expected,
        if status.broker_connected { "connected" } else { "disconnected" }
    );
    Health { level, summary, problems }
}

pub fn health_line(h: &Health) -> String {
    let level = serde_json::to_value(h.level).ok().and_then(|v| v.as_str().map(str::to_owned));
    let mut out = format!("{}: {}", level.unwrap_or_default(), h.summary);
    for p in &h.problems {
        let _ = write!(out, "; {p}");
    }
    out.push('\n');
    out
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
