//! `dms-journal`: read-only tools over a journal the daemon is not running on.
//!
//! Exit codes: 0 success; 1 problems found, unknown target or request, missing journal or
//! any other error; 2 the journal is locked by another process (a running dms-server);
//! 64 bad command line.

pub mod args;
mod config;
mod inspect;
mod json;
mod table;
mod verify;
mod view;

use crate::cli::args::{Cli, Command};
use crate::cli::config::{Absent, ConfigError, Inputs, Origin};
use clap::Parser;
use dms_journal::store::{History, Journal, Replay, StoreError};
use dms_journal::{IdError, TargetId};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const EX_USAGE: u8 = 64;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "the journal at {} is in use by another process (is dms-server running?); stop it \
         or retry later — online inspection comes with the admin socket",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("no journal at {} ({origin}): {why}", path.display())]
    Absent { path: PathBuf, origin: Origin, why: Absent },
    #[error(transparent)]
    Config(#[from] ConfigError),
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

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Locked { .. } => 2,
            _ => 1,
        }
    }
}

/// An open journal and how it was found.
pub struct Ctx<'a> {
    pub journal: &'a Journal,
    pub replay: &'a Replay,
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
    let result = run(cli, &mut out).and_then(|code| {
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

/// Resolve and open the journal, then run one command. Returns the exit code.
pub fn run(cli: Cli, out: &mut impl Write) -> Result<u8, CliError> {
    let (path, origin) = config::resolve(&Inputs::from_env(cli.path, cli.config))?;
    config::check_existing(&path).map_err(|why| CliError::Absent {
        path: path.clone(),
        origin: origin.clone(),
        why,
    })?;
    let (journal, replay) = Journal::open(&path).map_err(|error| match error {
        StoreError::Locked { .. } => CliError::Locked { path: path.clone() },
        error => CliError::Store { path: path.clone(), error },
    })?;
    let ctx = Ctx { journal: &journal, replay: &replay, path: &path, origin: &origin };
    let text = match cli.command {
        Command::Verify => return verify::verify(&ctx, out),
        Command::Export => return verify::export(&ctx, out),
        Command::Inspect(args) => match (args.target, args.request) {
            (Some(target), _) => inspect::target(&ctx, &target, args.json)?,
            (None, Some(request)) => inspect::request(&ctx, &request, args.json)?,
            (None, None) => inspect::overview(&ctx, args.summary, args.json)?,
        },
    };
    out.write_all(text.as_bytes()).map_err(CliError::Output)?;
    Ok(0)
}
