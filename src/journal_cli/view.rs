//! Text views of journal state: the target table, the summary line, a history table and a
//! target's current state. Pure functions over model values.

use crate::journal_cli::json::SummaryJson;
use crate::journal_cli::table::{clean, count, or_dash, short, Table};
use dms_journal::state::{Phase, TargetState};
use dms_journal::store::{Problem, ProblemKind, Seq, Stored};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A target's state with the newest stored record (seq and event name), if any remains.
#[derive(Debug, Clone, Copy)]
pub struct TargetView<'a> {
    pub state: &'a TargetState,
    pub last: Option<(Seq, &'static str)>,
}

pub fn problem_kind(kind: &ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Corrupt => "corrupt",
        ProblemKind::Illegal => "illegal",
    }
}

/// `target <id> seq <n>: <kind>: <error>`
pub fn problem_line(p: &Problem) -> String {
    format!(
        "target {} seq {}: {}: {}",
        clean(&p.target),
        p.seq,
        problem_kind(&p.kind),
        clean(&p.error)
    )
}

pub fn overview_table(views: &[TargetView<'_>]) -> String {
    let mut t =
        Table::new(&["TARGET", "STATE", "KIND", "MOUNT PATH", "HELPER", "LAST EVENT", "UPDATED"]);
    for v in views {
        let s = v.state;
        t.row(vec![
            s.target.to_string(),
            s.phase.to_string(),
            or_dash(s.spec.as_ref().map(|spec| spec.kind.name().to_owned())),
            or_dash(s.mount_path().map(str::to_owned)),
            or_dash(s.helper.map(|h| h.pid.to_string())),
            or_dash(v.last.map(|(_, name)| name.to_owned())),
            s.updated_at.to_string(),
        ]);
    }
    t.render()
}

/// Counts per state and the summary line:
/// `5 targets: 2 mounted, 1 unmounted, 1 in flight, 1 dirty; 20 records; no problems`.
pub fn summary<'a>(
    states: impl IntoIterator<Item = &'a TargetState>,
    records: u64,
    problems: usize,
) -> (SummaryJson, String) {
    let mut s = SummaryJson { records, problems: problems as u64, ..SummaryJson::default() };
    for state in states {
        s.targets += 1;
        match state.phase {
            Phase::Mounted => s.mounted += 1,
            Phase::Unmounted => s.unmounted += 1,
            Phase::Mounting(_) | Phase::Unmounting(_) | Phase::Healing(_) => s.in_flight += 1,
            Phase::Dirty(_) => s.dirty += 1,
        }
    }
    let problems = match s.problems {
        0 => "no problems".to_owned(),
        n => format!("{} (run dms-journal verify)", count(n, "problem", "problems")),
    };
    let line = format!(
        "{}: {} mounted, {} unmounted, {} in flight, {} dirty; {}; {problems}",
        count(s.targets, "target", "targets"),
        s.mounted,
        s.unmounted,
        s.in_flight,
        s.dirty,
        count(s.records, "record", "records"),
    );
    (s, line)
}

/// One row per record, oldest first. A record that does not decode shows as `CORRUPT`; a
/// record listed in `illegal` (seq → why) keeps its row with the reason appended.
pub fn history_table(
    records: &[&Result<Stored, Problem>],
    illegal: &BTreeMap<Seq, String>,
) -> String {
    let mut t = Table::new(&["SEQ", "AT", "BOOT", "EVENT", "REQUEST", "OP", "DETAILS"]);
    for entry in records {
        match entry {
            Ok(stored) => {
                let r = &stored.record;
                let mut details = r.event.details();
                if let Some(why) = illegal.get(&stored.seq) {
                    if !details.is_empty() {
                        details.push(' ');
                    }
                    let _ = write!(details, "[ILLEGAL: {why}]");
                }
                t.row(vec![
                    stored.seq.to_string(),
                    r.at.to_string(),
                    short(r.boot),
                    r.event.name().to_owned(),
                    or_dash(r.request.as_ref().map(ToString::to_string)),
                    or_dash(r.op.map(short)),
                    details,
                ]);
            }
            Err(p) => t.row(vec![
                p.seq.to_string(),
                "-".into(),
                "-".into(),
                problem_kind(&p.kind).to_uppercase(),
                "-".into(),
                "-".into(),
                p.error.clone(),
            ]),
        }
    }
    t.render()
}

/// The current state of one target, as an indented block.
pub fn state_block(s: &TargetState) -> String {
    let mut t = Table::headless(2);
    let mut field = |k: &str, v: String| t.row(vec![format!("  {k}"), v]);
    field("state", s.phase.to_string());
    field("kind", or_dash(s.spec.as_ref().map(|spec| spec.kind.name().to_owned())));
    field("mount path", or_dash(s.mount_path().map(str::to_owned)));
    field("helper", or_dash(s.helper.map(|h| h.to_string())));
    let op = s.op.as_ref().map(|op| {
        let action = op.action.name();
        format!(
            "{action} since {} (request {}, op {})",
            op.started_at,
            or_dash(op.request.as_ref().map(ToString::to_string)),
            or_dash(op.id.map(|id| id.to_string())),
        )
    });
    field("operation", op.unwrap_or_else(|| "none".to_owned()));
    field("updated", s.updated_at.to_string());
    field("records", s.records.to_string());
    field("requests", format!("{} answered", s.requests.len()));
    let mut out = format!("current state:\n{}", t.render());
    if !s.requests.is_empty() {
        let mut r = Table::new(&["    REQUEST", "ANSWERED", "OUTCOME"]);
        for (key, d) in &s.requests {
            r.row(vec![format!("    {key}"), d.at.to_string(), d.outcome.to_string()]);
        }
        out.push_str(&r.render());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dms_journal::{Cleanup, TargetId};

    fn state(id: &str, phase: Phase) -> TargetState {
        let mut s = TargetState::new(TargetId::new(id).unwrap());
        s.phase = phase;
        s
    }

    #[test]
    fn given_one_target_per_phase_when_summarized_then_each_is_counted_once() {
        let states = [
            state("a", Phase::Mounted),
            state("b", Phase::Unmounted),
            state("c", Phase::Mounting(dms_journal::MountStep::Spawned)),
            state("d", Phase::Unmounting(dms_journal::UnmountStep::Requested)),
            state("e", Phase::Dirty(Cleanup { mount: true, ..Cleanup::default() })),
        ];
        let (json, line) = summary(&states, 7, 0);
        assert_eq!(
            line,
            "5 targets: 1 mounted, 1 unmounted, 2 in flight, 1 dirty; 7 records; no problems"
        );
        assert_eq!((json.targets, json.in_flight, json.dirty, json.records), (5, 2, 1, 7));
        let (_, line) = summary(&states[..1], 1, 1);
        assert_eq!(
            line,
            "1 target: 1 mounted, 0 unmounted, 0 in flight, 0 dirty; 1 record; \
             1 problem (run dms-journal verify)"
        );
    }

    #[test]
    fn given_a_fresh_target_when_shown_then_unknown_fields_are_dashes() {
        let s = state("fresh", Phase::Unmounted);
        let table = overview_table(&[TargetView { state: &s, last: None }]);
        assert_eq!(
            table,
            "TARGET  STATE      KIND  MOUNT PATH  HELPER  LAST EVENT  UPDATED\n\
             fresh   unmounted  -     -           -       -           1970-01-01T00:00:00.000Z\n"
        );
        assert!(state_block(&s).contains("  operation   none\n"), "{}", state_block(&s));
    }
}
