//! Command-line arguments (clap derive). The texts here are the `--help` output.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Which journal:
  1. --path DIR
  2. $DMS_JOURNAL_PATH
  3. journal_path in the [server] section of the config file: --config FILE, else
     $DMS_CONFIG, else /etc/trilio-dms/server.conf if it exists
  4. /var/lib/dms/journal
Error messages name the source the path came from (\"from --path\", \"from
DMS_JOURNAL_PATH\", \"from journal_path in FILE\", \"the built-in default\").
A missing or empty directory is reported, never created.

While dms-server runs it holds the journal's lock; the same command is then answered by
the daemon through its admin socket, with the same output and exit code. The socket is
$DMS_ADMIN_SOCKET, else admin_socket in the [server] section of the same config file,
else /run/dms/admin.sock. It serves root only.

Exit codes:
  0   success (verify: no problems)
  1   problems found, unknown target or request, missing journal, other errors
  2   the journal is in use by another process (or not readable by this user) and its
      admin socket cannot answer (missing, not listening, not root, another journal)
  64  bad command line";

/// Inspect, verify and export the DMS journal (read-only; online through the daemon's admin
/// socket while dms-server runs).
#[derive(Debug, Parser)]
#[command(name = "dms-journal", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The journal directory (default: see "Which journal" in `dms-journal --help`).
    #[arg(long, global = true, value_name = "DIR")]
    pub path: Option<PathBuf>,

    /// The daemon's INI config file to read journal_path from ([server] section).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every target with its current state, or one target's history (--target), or one
    /// request (--request).
    Inspect(Inspect),
    /// Decode every record and snapshot and re-check every transition; exit 1 on any problem.
    Verify,
    /// Accept history the journal lost (what `verify` reports as `lost`): seal what is
    /// there now and journal the acceptance. Until then dms-server refuses to start on it.
    AcceptLoss,
    /// Every record as one JSON object per line:
    /// {"seq","target","at","boot","request","op","event"}; problems go to stderr (exit 1).
    Export,
    /// Print a shell completion script, e.g. `dms-journal completions bash >
    /// /usr/share/bash-completion/completions/dms-journal`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for packaging: `dms-journal man > dms-journal.1`
    #[command(hide = true)]
    Man,
}

impl Command {
    /// The arguments that parse back into this command: what is sent through the admin
    /// socket. `--opt=value` so that a value starting with `-` stays a value.
    pub fn to_args(&self) -> Vec<String> {
        match self {
            Command::Inspect(i) => {
                let mut args = vec!["inspect".to_owned()];
                if let Some(target) = &i.target {
                    args.push(format!("--target={target}"));
                }
                if let Some(request) = &i.request {
                    args.push(format!("--request={request}"));
                }
                if i.summary {
                    args.push("--summary".to_owned());
                }
                if i.json {
                    args.push("--json".to_owned());
                }
                args
            }
            Command::Verify => vec!["verify".to_owned()],
            Command::Export => vec!["export".to_owned()],
            Command::AcceptLoss => vec!["accept-loss".to_owned()],
            Command::Completions { shell } => vec!["completions".to_owned(), shell.to_string()],
            Command::Man => vec!["man".to_owned()],
        }
    }
}

const INSPECT_JSON: &str = "\
JSON (--json; fields are only ever added, never renamed or removed):
  inspect            {journal: {path, source}, summary: {targets, mounted, unmounted,
                     in_flight, dirty, records, problems}, targets: [TARGET], problems: [PROBLEM]}
                     (no `targets` with --summary)
  inspect --target   {target, snapshot: {seq, records} | null, records: [RECORD],
                     problems: [PROBLEM], current: TARGET, requests: [ANSWER]}
  inspect --request  {request, target, status: answered | in_flight | unanswered,
                     answer: ANSWER | null, records: [RECORD], problems: [PROBLEM]}
  TARGET   {target, state, phase, kind, mount_path, helper: {pid, start_ticks, boot} | null,
            operation: {action, op, request, started_at} | null, last_event, last_seq,
            updated_at, updated, records}
  RECORD   {seq, target, at, boot, request, op, event}   (one `export` line has this shape)
  ANSWER   {request, outcome, text, success, at}
  PROBLEM  {target, seq, kind: corrupt | illegal, error}
Times: `at`, `updated_at`, `started_at` are milliseconds since the Unix epoch; `updated` is
RFC 3339. `event` and `outcome` keep the journal's serde form, e.g. \"Verified\" or
{\"Requested\": {\"spec\": ...}}.";

#[derive(Debug, Args)]
#[command(after_long_help = INSPECT_JSON)]
pub struct Inspect {
    /// Show the full transition history of this target.
    #[arg(long, value_name = "ID", conflicts_with = "request")]
    pub target: Option<String>,

    /// Show which target this request (correlation_id or message_id) went to, its outcome and
    /// its records.
    #[arg(long, value_name = "KEY")]
    pub request: Option<String>,

    /// Only the summary line (targets per state, records, problems), no table.
    #[arg(long, conflicts_with_all = ["target", "request"])]
    pub summary: bool,

    /// Machine-readable output (fields: see `dms-journal inspect --help`).
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn given_the_definition_when_clap_checks_it_then_it_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn given_global_flags_after_the_subcommand_when_parsed_then_they_apply() {
        let cli = Cli::try_parse_from(["dms-journal", "inspect", "--path", "/j", "--target", "t"])
            .unwrap();
        assert_eq!(cli.path, Some(PathBuf::from("/j")));
        let Command::Inspect(i) = cli.command else { panic!("not inspect") };
        assert_eq!(i.target.as_deref(), Some("t"));
    }

    #[test]
    fn given_each_command_when_turned_back_into_args_then_they_parse_to_the_same_command() {
        for line in [
            &["inspect"][..],
            &["inspect", "--summary", "--json"],
            &["inspect", "--target=-odd", "--json"],
            &["inspect", "--request", "req-1"],
            &["verify"],
            &["export"],
            &["completions", "bash"],
        ] {
            let cli =
                Cli::try_parse_from(std::iter::once("dms-journal").chain(line.iter().copied()))
                    .unwrap();
            let again = Cli::try_parse_from(
                std::iter::once("dms-journal".to_owned()).chain(cli.command.to_args()),
            )
            .unwrap();
            assert_eq!(format!("{:?}", again.command), format!("{:?}", cli.command), "{line:?}");
        }
    }

    #[test]
    fn given_target_and_request_together_when_parsed_then_it_is_refused() {
        let r = Cli::try_parse_from(["dms-journal", "inspect", "--target", "t", "--request", "r"]);
        assert!(r.is_err());
    }

    #[test]
    fn given_the_help_when_rendered_then_it_documents_the_path_sources_and_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for needle in ["DMS_JOURNAL_PATH", "DMS_CONFIG", "/etc/trilio-dms/server.conf", "64"] {
            assert!(help.contains(needle), "{needle} missing from:\n{help}");
        }
    }

    #[test]
    fn given_the_inspect_help_when_rendered_then_it_documents_the_json_fields() {
        let mut cli = Cli::command();
        let help = cli.find_subcommand_mut("inspect").unwrap().render_long_help().to_string();
        for needle in ["in_flight", "last_event", "snapshot: {seq, records}", "status: answered"] {
            assert!(help.contains(needle), "{needle} missing from:\n{help}");
        }
    }
}
