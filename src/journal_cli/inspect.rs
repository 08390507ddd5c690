//! `dms-journal inspect`: all targets, one target's history, or one request.

use crate::journal_cli::json::{
    self, HistoryJson, OverviewJson, RecordJson, RequestJson, TargetJson,
};
use crate::journal_cli::json::{AnswerJson, JournalJson, SnapshotJson};
use crate::journal_cli::table::{clean, count, or_dash, Table};
use crate::journal_cli::verify::fold_checked;
use crate::journal_cli::view::{self, TargetView};
use crate::journal_cli::{CliError, Ctx};
use dms_journal::store::{History, Problem, Seq, Stored};
use dms_journal::{RequestKey, TargetId, TargetState};
use std::collections::BTreeMap;

/// Every target: a table and a summary line (or only the summary).
pub fn overview(ctx: &Ctx<'_>, summary_only: bool, as_json: bool) -> Result<String, CliError> {
    let state = ctx.state;
    let last = if summary_only { BTreeMap::new() } else { last_events(ctx) };
    let views: Vec<TargetView<'_>> = state
        .targets
        .values()
        .map(|s| TargetView { state: s, last: last.get(&s.target).copied() })
        .collect();
    let (summary, line) = view::summary(state.targets.values(), ctx.records, ctx.problems.len());
    if as_json {
        let doc = OverviewJson {
            journal: JournalJson {
                path: ctx.path.display().to_string(),
                source: ctx.origin.to_string(),
            },
            summary,
            targets: (!summary_only).then(|| views.iter().map(TargetJson::new).collect()),
            problems: ctx.problems,
        };
        return to_json(&doc);
    }
    let mut out = if summary_only { String::new() } else { view::overview_table(&views) };
    out.push_str(&line);
    out.push('\n');
    Ok(out)
}

/// The newest stored record of every target: one pass over the journal, which yields
/// records grouped by target in seq order.
fn last_events(ctx: &Ctx<'_>) -> BTreeMap<TargetId, (Seq, &'static str)> {
    let mut last = BTreeMap::new();
    let mut current: Option<(TargetId, Seq, &'static str)> = None;
    for stored in ctx.journal.records().flatten() {
        let name = stored.record.event.name();
        match &mut current {
            Some((target, seq, event)) if *target == stored.record.target => {
                (*seq, *event) = (stored.seq, name);
            }
            _ => {
                if let Some((target, seq, event)) = current.take() {
                    last.insert(target, (seq, event));
                }
                current = Some((stored.record.target, stored.seq, name));
            }
        }
    }
    if let Some((target, seq, event)) = current {
        last.insert(target, (seq, event));
    }
    last
}

/// One target's full history, then its current state.
pub fn target(ctx: &Ctx<'_>, raw: &str, as_json: bool) -> Result<String, CliError> {
    let id = TargetId::new(raw).map_err(|error| CliError::BadId { what: "target id", error })?;
    let history = ctx.history(&id)?;
    let known = ctx.state.target(&id);
    if known.is_none() && history.records.is_empty() && history.snapshot.is_none() {
        return Err(CliError::UnknownTarget { target: raw.to_owned(), path: ctx.path.into() });
    }
    let state = known.cloned().unwrap_or_else(|| TargetState::new(id.clone()));
    let (_, illegal) = fold_checked(&history);
    let illegal: BTreeMap<Seq, String> =
        illegal.into_iter().filter_map(|p| Some((p.seq?, p.error))).collect();
    let records: Vec<&Result<Stored, Problem>> = history.records.iter().collect();
    let last = records.iter().rev().find_map(|r| r.as_ref().ok());
    let last = last.map(|s| (s.seq, s.record.event.name()));
    if as_json {
        let doc = HistoryJson {
            target: &id,
            snapshot: history
                .snapshot
                .as_ref()
                .map(|(seq, snap)| SnapshotJson { seq: *seq, records: snap.records }),
            records: oks(&records),
            problems: errs(&records),
            current: TargetJson::new(&TargetView { state: &state, last }),
            requests: json::answers(&state),
        };
        return to_json(&doc);
    }
    let stored = count(records.len() as u64, "record", "records");
    let mut out = format!("target {id}: {stored} in the journal\n");
    if let Some((seq, snap)) = &history.snapshot {
        let n = count(snap.records, "earlier record", "earlier records");
        out.push_str(&format!("{n} compacted into a snapshot at seq {seq}\n"));
    }
    out.push_str(&view::history_table(&records, &illegal));
    out.push('\n');
    out.push_str(&view::state_block(&state));
    Ok(out)
}

/// Which target a request went to, what it was answered, and its records.
pub fn request(ctx: &Ctx<'_>, raw: &str, as_json: bool) -> Result<String, CliError> {
    let key =
        RequestKey::new(raw).map_err(|error| CliError::BadId { what: "request key", error })?;
    let unknown = || CliError::UnknownRequest { key: raw.to_owned(), path: ctx.path.into() };
    let target = match ctx.journal.request_target(&key).map_err(|e| ctx.store_error(e))? {
        Some(target) => target,
        // Not indexed (or the index lost it): the folded state still knows recent requests.
        None => ctx
            .state
            .targets
            .values()
            .find(|s| {
                s.requests.contains_key(&key)
                    || s.op.as_ref().is_some_and(|op| op.request.as_ref() == Some(&key))
            })
            .map(|s| s.target.clone())
            .ok_or_else(unknown)?,
    };
    let history: History = ctx.history(&target)?;
    let state = ctx.state.target_or_new(&target);
    let records: Vec<&Result<Stored, Problem>> = history
        .records
        .iter()
        .filter(|r| match r {
            Ok(s) => s.record.request.as_ref() == Some(&key),
            Err(_) => false,
        })
        .collect();
    let answer = state.requests.get(&key);
    let in_flight = state.op.as_ref().filter(|op| op.request.as_ref() == Some(&key));
    let status = match (answer, in_flight) {
        (Some(_), _) => "answered",
        (None, Some(_)) => "in_flight",
        (None, None) => "unanswered",
    };
    if as_json {
        let doc = RequestJson {
            request: &key,
            target: &target,
            status,
            answer: answer.map(|d| AnswerJson {
                request: &key,
                outcome: &d.outcome,
                text: d.outcome.to_string(),
                success: d.outcome.is_success(),
                at: d.at,
            }),
            records: oks(&records),
            problems: errs(&history.records.iter().collect::<Vec<_>>()),
        };
        return to_json(&doc);
    }
    let outcome = match (answer, in_flight) {
        (Some(d), _) => format!("{} (answered {})", d.outcome, d.at),
        (None, Some(op)) => format!(
            "in flight since {} (op {})",
            op.started_at,
            or_dash(op.id.map(|i| i.to_string()))
        ),
        (None, None) => "none: never answered (interrupted and rolled back, or lost); \
                         a redelivery starts it afresh"
            .to_owned(),
    };
    let mut t = Table::headless(2);
    t.row(vec!["  target".into(), target.to_string()]);
    t.row(vec!["  outcome".into(), outcome]);
    let mut out = format!("request {}\n{}", clean(key.as_str()), t.render());
    if records.is_empty() {
        out.push_str("its records are no longer in the journal (compacted)\n");
    } else {
        out.push_str(&view::history_table(&records, &BTreeMap::new()));
    }
    Ok(out)
}

fn oks<'a>(records: &[&'a Result<Stored, Problem>]) -> Vec<RecordJson<'a>> {
    records.iter().filter_map(|r| r.as_ref().ok()).map(RecordJson::from).collect()
}

fn errs<'a>(records: &[&'a Result<Stored, Problem>]) -> Vec<&'a Problem> {
    records.iter().filter_map(|r| r.as_ref().err()).collect()
}

fn to_json(doc: &impl serde::Serialize) -> Result<String, CliError> {
    let mut text = serde_json::to_string_pretty(doc).map_err(CliError::Json)?;
    text.push('\n');
    Ok(text)
}
