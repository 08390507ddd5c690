//! `dms-journal`: read-only tools over a DMS journal, offline or through the daemon.
//!
//! Offline the tool opens the journal itself, found as the daemon finds it ([`resolve`], on
//! the daemon's configuration loader). While dms-server runs it holds the journal's lock;
//! the tool then sends the same command through the daemon's admin socket (the admin
//! client `dms-ctl` uses, [`crate::admin::client`]) and the daemon answers it with
//! [`answer`]: the same code as offline, over the daemon's own journal handle and state, so
//! the bytes printed are the same.
//!
//! Exit codes: 0 success; 1 problems found, unknown target or request, missing journal or
//! any other error; 2 the journal is locked by another process (or not readable by this
//! user) and its admin socket cannot answer for it; 64 bad command line.

pub mod args;
mod inspect;
mod json;
mod online;
pub mod resolve;
mod table;
mod verify;
mod view;

pub use online::answer;

use crate::admin::client::{self, AskError};
use crate::admin::protocol::{AdminRequest, JournalAnswer};
use crate::config::LookupError;
use crate::journal_cli::args::{Cli, Command};
use crate::journal_cli::resolve::{Absent, Inputs, Origin, SocketOrigin};
use clap::{CommandFactory, Parser};
use dms_journal::store::{History, Journal, Loss, Problem, StoreError};
use dms_journal::{IdError, JournalState, TargetId};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const EX_USAGE: u8 = 64;

/// How long one read or write on the admin socket may take. `verify` of a large journal is
/// the slowest answer; half a minute is far beyond it and still ends a hang.
const ONLINE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("the journal at {} is in use by another process (is dms-server running?)", path.display())]
    Locked { path: PathBuf },
    #[error(
        "the journal at {} {local} and the admin socket at {} ({socket_origin}) cannot answer \
         for it: {error}",
        path.display(),
        socket.display()
    )]
    Online {
        path: PathBuf,
        local: Local,
        socket: PathBuf,
        socket_origin: SocketOrigin,
        error: AskError,
    },
    #[error(
        "this dms-server holds the journal at {}, not {} ({why}); ask the daemon that holds \
         that journal (DMS_ADMIN_SOCKET or admin_socket in its config)",
        own.display(),
        asked.display()
    )]
    OtherJournal { own: PathBuf, asked: PathBuf, why: String },
    #[error(
        "--path and --config select a journal, which the admin socket cannot: this dms-server \
         answers for its own journal at {} only",
        path.display()
    )]
    Selects { path: PathBuf },
    #[error("no journal at {} ({origin}): {why}", path.display())]
    Absent { path: PathBuf, origin: Origin, why: Absent },
    #[error(transparent)]
    Config(#[from] LookupError),
    #[error("cannot read the journal at {}: {error}", path.display())]
    Store { path: PathBuf, error: StoreError },
    #[error("invalid {what}: {error}")]
    BadId { what: &'static str, error: IdError },
    #[error("no target {target} in the journal at {}", path.display())]
    UnknownTarget { target: String, path: PathBuf },
    #[error("no request {key} in the journal at {}", path.display())]
    UnknownRequest { key: String, path: PathBuf },
    #[error("cannot render JSON: {0}")]
    Json(serde_json::Error),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

/// Why the journal could not be read here, so the daemon was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Local {
    /// sled's lock is held: by a running dms-server, normally.
    Locked,
    /// Not readable by this user (the journal is root's).
    Denied,
}

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Local::Locked => "is in use by another process (is dms-server running?)",
            Local::Denied => "cannot be read here (permission denied)",
        })
    }
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Locked { .. } | CliError::Online { .. } | CliError::OtherJournal { .. } => 2,
            CliError::Selects { .. } => EX_USAGE,
            _ => 1,
        }
    }
}

/// An open journal, what is known about it, and how it was found. Offline the state,
/// record count and problems come from the replay at open; online from the daemon.
pub(crate) struct Ctx<'a> {
    pub journal: &'a Journal,
    pub state: &'a JournalState,
    /// Records folded into `state` and still stored (not compacted into snapshots).
    pub records: u64,
    pub problems: &'a [Problem],
    /// History lost outside any record, found at open and not accepted yet.
    pub losses: &'a [Loss],
    /// The path as shown in messages and JSON.
    pub path: &'a Path,
    pub origin: &'a Origin,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("path", &self.path).field("origin", &self.origin).finish()
    }
}

impl Ctx<'_> {
    fn store_error(&self, error: StoreError) -> CliError {
        match error {
            StoreError::Locked { .. } => CliError::Locked { path: self.path.into() },
            error => CliError::Store { path: self.path.into(), error },
        }
    }

    fn history(&self, id: &TargetId) -> Result<History, CliError> {
        self.journal.history(id).map_err(|e| self.store_error(e))
    }
}

/// The whole program: parse, run, report. Errors are printed once, here.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EX_USAGE } else { 0 });
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let result = run(cli, &mut out, &mut err).and_then(|code| {
        out.flush().map_err(CliError::Output)?;
        Ok(code)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        // `dms-journal export | head`: the reader has what it wanted.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            drop(out);
            eprintln!("dms-journal: {}", table::clean(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Resolve and open the journal, then run one command; when the daemon holds the journal,
/// have it run the command instead. Returns the exit code.
fn run(cli: Cli, out: &mut impl Write, err: &mut impl Write) -> Result<u8, CliError> {
    match cli.command {
        Command::Completions { shell } => return completions(shell, out),
        Command::Man => return man_page(out),
        Command::Inspect(_) | Command::Verify | Command::AcceptLoss | Command::Export => {}
    }
    let inputs = Inputs::from_env(cli.path, cli.config);
    let (path, origin) = resolve::resolve(&inputs)?;
    let local = match resolve::check_existing(&path) {
        Ok(()) => match Journal::open(&path) {
            Ok((journal, replay)) => {
                let ctx = Ctx {
                    journal: &journal,
                    state: &replay.state,
                    records: replay.records,
                    problems: &replay.problems,
                    losses: &replay.losses,
                    path: &path,
                    origin: &origin,
                };
                return execute(&cli.command, &ctx, out, err);
            }
            Err(StoreError::Locked { .. }) => Local::Locked,
            Err(error) if error.is_permission_denied() => Local::Denied,
            Err(error) => return Err(CliError::Store { path, error }),
        },
        Err(Absent::Denied) => Local::Denied,
        Err(why) => return Err(CliError::Absent { path, origin, why }),
    };
    online(&inputs, &path, &origin, local, &cli.command, out, err)
}

/// One command over an open journal; the code both the offline tool and the daemon run.
fn execute(
    command: &Command,
    ctx: &Ctx<'_>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<u8, CliError> {
    let text = match command {
        Command::Verify => return verify::verify(ctx, out),
        Command::AcceptLoss => return verify::accept_loss(ctx, out),
        Command::Export => return verify::export(ctx, out, err),
        Command::Completions { shell } => return completions(*shell, out),
        Command::Man => return man_page(out),
        Command::Inspect(args) => match (&args.target, &args.request) {
            (Some(target), _) => inspect::target(ctx, target, args.json)?,
            (None, Some(request)) => inspect::request(ctx, request, args.json)?,
            (None, None) => inspect::overview(ctx, args.summary, args.json)?,
        },
    };
    out.write_all(text.as_bytes()).map_err(CliError::Output)?;
    Ok(0)
}

/// The journal cannot be read here: send the command to the daemon's admin socket and relay its
/// answer. The client's view of the path goes along, so the daemon can check it holds this
/// very journal and word its output as this run would have.
fn online(
    inputs: &Inputs,
    path: &Path,
    origin: &Origin,
    local: Local,
    command: &Command,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<u8, CliError> {
    let (socket, socket_origin) = resolve::resolve_socket(inputs)?;
    // The daemon's working directory is not ours.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut args = vec![
        format!("{}{}", online::RESOLVED_PATH, absolute.display()),
        format!("{}{origin}", online::RESOLVED_SOURCE),
    ];
    args.extend(command.to_args());
    let request = AdminRequest::Journal { args };
    let answer = client::ask(&socket, &request, ONLINE_TIMEOUT)
        .and_then(|data| serde_json::from_value::<JournalAnswer>(data).map_err(AskError::Malformed))
        .map_err(|error| CliError::Online {
            path: path.to_path_buf(),
            local,
            socket: socket.clone(),
            socket_origin,
            error,
        })?;
    // Best effort for stderr, as eprintln! would be; stdout errors are reported.
    let _ = err.write_all(answer.stderr.as_bytes());
    out.write_all(answer.stdout.as_bytes()).map_err(CliError::Output)?;
    Ok(answer.exit_code)
}

/// The manual page, from the same clap definition as `--help`.
fn man_page(out: &mut impl Write) -> Result<u8, CliError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page).map_err(CliError::Output)?;
    out.write_all(&page).map_err(CliError::Output)?;
    Ok(0)
}

/// A completion script for `shell`, rendered whole first: clap_complete panics on a write
/// error, a closed pipe must not.
fn completions(shell: clap_complete::Shell, out: &mut impl Write) -> Result<u8, CliError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dms-journal", &mut script);
    out.write_all(&script).map_err(CliError::Output)?;
    Ok(0)
}
