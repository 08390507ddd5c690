//! The daemon's side of online `dms-journal`: the same command line, parsed by the same
//! clap definition and rendered by the same code, over the journal the daemon holds.
//!
//! The daemon cannot let the tool open its journal (sled's lock is exclusive), so it runs
//! the tool's code itself and returns what the tool would have printed. Options that pick
//! a journal (`--path`, `--config`) are refused: the daemon answers for its own journal
//! only. The client sends its own view of the path instead, as leading
//! `--resolved-path=DIR` and `--resolved-source=TEXT` words that are not part of the command
//! line (so neither `--help` nor shell completions show them, and offline they are unknown
//! options); the path is checked to be the daemon's journal and then shown, so the text and
//! JSON read exactly as the offline run would.

use crate::admin::protocol::JournalAnswer;
use crate::journal_cli::args::Cli;
use crate::journal_cli::resolve::Origin;
use crate::journal_cli::table::clean;
use crate::journal_cli::{execute, CliError, Ctx, EX_USAGE};
use clap::Parser;
use dms_journal::store::{Journal, Problem};
use dms_journal::JournalState;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The words the client puts ahead of the command line: its view of the journal.
pub const RESOLVED_PATH: &str = "--resolved-path=";
pub const RESOLVED_SOURCE: &str = "--resolved-source=";

/// The client's view of the journal, if it sent one.
#[derive(Debug, Default)]
struct ClientView {
    path: Option<PathBuf>,
    source: Option<String>,
}

/// Split the leading client-view words off `args`.
fn client_view(args: &[String]) -> (ClientView, &[String]) {
    let mut view = ClientView::default();
    let mut rest = args;
    while let Some((first, tail)) = rest.split_first() {
        if let Some(path) = first.strip_prefix(RESOLVED_PATH) {
            view.path = Some(PathBuf::from(path));
        } else if let Some(source) = first.strip_prefix(RESOLVED_SOURCE) {
            view.source = Some(source.to_owned());
        } else {
            break;
        }
        rest = tail;
    }
    (view, rest)
}

/// Run the `dms-journal` command line `args` (without the program name) against the
/// daemon's open `journal`, whose current folded `state` the daemon passes in with the
/// `problems` its boot replay found; `path` is where the journal is. Never fails: errors
/// become the exit code and stderr text the offline tool would have produced.
///
/// Blocking (sled reads; `verify` and `export` read the whole journal): call it off the
/// async runtime's worker threads.
pub fn answer(
    journal: &Journal,
    state: &JournalState,
    problems: &[Problem],
    path: &Path,
    args: &[String],
) -> JournalAnswer {
    let (view, args) = client_view(args);
    let argv = std::iter::once("dms-journal".to_owned()).chain(args.iter().cloned());
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // What `e.print()` shows offline (usage errors to stderr, --help to stdout),
            // without colour: StyledStr's Display is plain text.
            let text = e.render().to_string();
            return if e.use_stderr() {
                JournalAnswer { exit_code: EX_USAGE, stdout: String::new(), stderr: text }
            } else {
                JournalAnswer { exit_code: 0, stdout: text, stderr: String::new() }
            };
        }
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit_code = match serve(cli, view, journal, state, problems, path, &mut out, &mut err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "dms-journal: {}", clean(&e.to_string()));
            e.exit_code()
        }
    };
    JournalAnswer {
        exit_code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

#[allow(clippy::too_many_arguments)] // one call site, each argument a distinct input
fn serve(
    cli: Cli,
    view: ClientView,
    journal: &Journal,
    state: &JournalState,
    problems: &[Problem],
    path: &Path,
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
) -> Result<u8, CliError> {
    if cli.path.is_some() || cli.config.is_some() {
        return Err(CliError::Selects { path: path.to_path_buf() });
    }
    let (shown, origin) = match view.path {
        Some(asked) => {
            same_journal(&asked, path)?;
            let origin = view.source.map_or(Origin::Daemon, Origin::Reported);
            (asked, origin)
        }
        None => (path.to_path_buf(), Origin::Daemon),
    };
    let ctx = Ctx {
        journal,
        state,
        records: stored_records(journal),
        problems,
        // A running daemon holds a journal whose losses, if any, were accepted.
        losses: &[],
        path: &shown,
        origin: &origin,
    };
    execute(&cli.command, &ctx, out, err)
}

/// Whether `asked` (the client's path) is the directory `own` (the daemon's): compared by
/// device and inode, so symlinks and spellings do not matter.
fn same_journal(asked: &Path, own: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let why = match (id(asked), id(own)) {
        (Ok(a), Ok(b)) if a == b => return Ok(()),
        (Ok(_), Ok(_)) => "another directory".to_owned(),
        (Err(e), _) => format!("which the daemon cannot see: {e}"),
        (_, Err(e)) => format!("and the daemon cannot see its own: {e}"),
    };
    Err(CliError::OtherJournal { own: own.to_path_buf(), asked: asked.to_path_buf(), why })
}

/// The number an offline open would report as folded: every stored record not covered by
/// a snapshot, except those after a damaged one in the same target (replay stops there).
/// The daemon's boot replay count is stale as soon as it appends, so count afresh.
fn stored_records(journal: &Journal) -> u64 {
    let mut stopped = BTreeSet::new();
    let mut n = 0;
    for entry in journal.records() {
        match entry {
            Ok(stored) if !stopped.contains(stored.record.target.as_str()) => n += 1,
            Ok(_) => {}
            Err(problem) => {
                stopped.insert(problem.target);
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn given_an_empty_journal_when_asked_for_a_summary_then_the_tools_text_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (journal, replay) = Journal::open(&path).unwrap();
        let args = vec!["inspect".to_owned(), "--summary".to_owned()];
        let a = answer(&journal, &replay.state, &replay.problems, &path, &args);
        assert_eq!(
            a,
            JournalAnswer {
                exit_code: 0,
                stdout: "0 targets: 0 mounted, 0 unmounted, 0 in flight, 0 dirty; 0 records; \
                         no problems\n"
                    .into(),
                stderr: String::new(),
            }
        );
        let a =
            answer(&journal, &replay.state, &[], &path, &["--path=/x".into(), "inspect".into()]);
        assert_eq!(a.exit_code, 64);
    }
}
