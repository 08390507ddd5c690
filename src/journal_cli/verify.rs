//! `dms-journal verify` and `dms-journal export`.

use crate::journal_cli::json::RecordJson;
use crate::journal_cli::view::{problem_kind, problem_line};
use crate::journal_cli::{CliError, Ctx};
use dms_journal::store::{History, Seq};
use dms_journal::{TargetId, TargetState};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// Something wrong with one target's records.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub target: String,
    /// The record (or snapshot) concerned; `None` when the target could not be read at all.
    pub seq: Option<Seq>,
    pub kind: &'static str,
    pub error: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => {
                write!(f, "target {} seq {seq}: {}: {}", self.target, self.kind, self.error)
            }
            None => write!(f, "target {}: {}: {}", self.target, self.kind, self.error),
        }
    }
}

/// Fold a target's history from its snapshot (or from nothing), checking each record's
/// legality in the state it was appended to. Illegal records are still applied (the fold
/// is total, as in the daemon's replay); corrupt ones cannot be and are reported.
pub fn fold_checked(history: &History) -> (TargetState, Vec<Finding>) {
    let target = history.target.as_str().to_owned();
    let mut state = match &history.snapshot {
        Some((_, snap)) => snap.clone(),
        None => TargetState::new(history.target.clone()),
    };
    let mut findings = Vec::new();
    for entry in &history.records {
        if findings.iter().any(|f: &Finding| f.kind == "corrupt") {
            // As in the daemon's replay: records after a damaged one were appended to a
            // state nobody can know any more, so their legality cannot be judged.
            break;
        }
        match entry {
            Ok(stored) => {
                if stored.record.target != history.target {
                    findings.push(Finding {
                        target: target.clone(),
                        seq: Some(stored.seq),
                        kind: "misfiled",
                        error: format!("record names target {}", stored.record.target),
                    });
                }
                if let Err(illegal) = state.check(&stored.record.event) {
                    findings.push(Finding {
                        target: target.clone(),
                        seq: Some(stored.seq),
                        kind: "illegal",
                        error: illegal.to_string(),
                    });
                }
                state.apply(&stored.record);
            }
            Err(p) => findings.push(Finding {
                target: target.clone(),
                seq: Some(p.seq),
                kind: problem_kind(&p.kind),
                error: p.error.clone(),
            }),
        }
    }
    (state, findings)
}

/// Re-read everything: the problems the store found while opening, every record decoded
/// once more in a full scan, and every target's history folded again with the legality
/// check and compared with the replayed state. Returns the exit code.
pub fn verify(ctx: &Ctx<'_>, out: &mut impl Write) -> Result<u8, CliError> {
    // The replay's own findings first: on duplicates they are the ones kept.
    let mut findings: Vec<Finding> = ctx
        .problems
        .iter()
        .map(|p| Finding {
            target: p.target.clone(),
            seq: Some(p.seq),
            kind: problem_kind(&p.kind),
            error: p.error.clone(),
        })
        .collect();
    findings.extend(ctx.losses.iter().map(|loss| Finding {
        target: "*".into(),
        seq: None,
        kind: "lost",
        error: format!("{loss}; after restoring a backup failed, `dms-journal accept-loss`"),
    }));
    let mut records = 0u64;
    let mut targets: BTreeSet<TargetId> = ctx.state.targets.keys().cloned().collect();
    for entry in ctx.journal.records() {
        match entry {
            Ok(stored) => {
                records += 1;
                targets.insert(stored.record.target);
            }
            Err(p) => {
                if let Ok(id) = TargetId::new(&p.target) {
                    targets.insert(id);
                }
                findings.push(Finding {
                    target: p.target.clone(),
                    seq: Some(p.seq),
                    kind: problem_kind(&p.kind),
                    error: p.error.clone(),
                });
            }
        }
    }
    match ctx.journal.snapshots() {
        Ok(snapshots) => {
            for (id, seq, state) in snapshots {
                if let Err(p) = state {
                    findings.push(Finding {
                        target: id.to_string(),
                        seq: Some(seq),
                        kind: problem_kind(&p.kind),
                        error: p.error,
                    });
                }
                targets.insert(id);
            }
        }
        Err(e) => {
            let error = e.to_string();
            findings.push(Finding { target: "*".into(), seq: None, kind: "unreadable", error });
        }
    }
    for id in &targets {
        let history = match ctx.journal.history(id) {
            Ok(h) => h,
            Err(e) => {
                let error = e.to_string();
                findings.push(Finding {
                    target: id.to_string(),
                    seq: None,
                    kind: "unreadable",
                    error,
                });
                continue;
            }
        };
        let (folded, found) = fold_checked(&history);
        let clean = found.is_empty();
        findings.extend(found);
        let replayed = ctx.state.target(id);
        if clean && replayed != Some(&folded) {
            let seq = history.records.iter().rev().find_map(|r| r.as_ref().ok()).map(|s| s.seq);
            let seq = seq.or(history.snapshot.as_ref().map(|(seq, _)| *seq));
            findings.push(Finding {
                target: id.to_string(),
                seq,
                kind: "inconsistent",
                error: format!(
                    "replaying the journal gives {}, folding the target's history gives {}",
                    replayed.map_or("no state".to_owned(), |s| s.phase.to_string()),
                    folded.phase
                ),
            });
        }
    }
    let findings = dedup(findings);
    let w = |e| CliError::Output(e);
    if findings.is_empty() {
        writeln!(out, "ok: {records} records, {} targets", ctx.state.targets.len()).map_err(w)?;
        return Ok(0);
    }
    for f in &findings {
        writeln!(out, "{}", crate::journal_cli::table::clean(&f.to_string())).map_err(w)?;
    }
    writeln!(
        out,
        "verify: {} in {records} records, {} targets",
        crate::journal_cli::table::count(findings.len() as u64, "problem", "problems"),
        ctx.state.targets.len()
    )
    .map_err(w)?;
    Ok(1)
}

/// `dms-journal accept-loss`: re-seal a journal that lost history, journaling what was
/// accepted. Returns the exit code (0: accepted, or nothing to accept).
pub fn accept_loss(ctx: &Ctx<'_>, out: &mut impl Write) -> Result<u8, CliError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let accepted =
        ctx.journal.accept_losses(dms_journal::Timestamp(now)).map_err(|e| ctx.store_error(e))?;
    let w = |e| CliError::Output(e);
    if accepted.is_empty() {
        writeln!(out, "nothing to accept: the journal lost no history").map_err(w)?;
        return Ok(0);
    }
    for loss in &accepted {
        writeln!(out, "accepted: {loss}").map_err(w)?;
    }
    let n = crate::journal_cli::table::count(accepted.len() as u64, "loss", "losses");
    writeln!(out, "accept-loss: {n} accepted and journaled; the journal is sealed again")
        .map_err(w)?;
    Ok(0)
}

/// The same problem is usually found twice (at open and in the scan), possibly worded
/// differently: keep the first per (target, seq, kind), sorted by target and seq.
fn dedup(findings: Vec<Finding>) -> Vec<Finding> {
    let mut seen = BTreeMap::new();
    for f in findings {
        seen.entry((f.target.clone(), f.seq, f.kind)).or_insert(f);
    }
    seen.into_values().collect()
}

/// Every record as a JSON line; problems to `err` (stderr, or the admin socket's answer).
/// Returns the exit code.
pub fn export(ctx: &Ctx<'_>, out: &mut impl Write, err: &mut impl Write) -> Result<u8, CliError> {
    let mut problems = 0u64;
    for entry in ctx.journal.records() {
        match entry {
            Ok(stored) => {
                serde_json::to_writer(&mut *out, &RecordJson::from(&stored))
                    .map_err(|e| CliError::Output(e.into()))?;
                out.write_all(b"\n").map_err(CliError::Output)?;
            }
            Err(p) => {
                problems += 1;
                // Best effort, as eprintln! would be: stderr going away is no reason to stop.
                let _ = writeln!(err, "dms-journal: {}", problem_line(&p));
            }
        }
    }
    out.flush().map_err(CliError::Output)?;
    if problems > 0 {
        let n = crate::journal_cli::table::count(problems, "record", "records");
        let _ = writeln!(err, "dms-journal: {n} could not be exported (see above)");
        return Ok(1);
    }
    Ok(0)
}
