//! `dms-ctl`: the operator's command line for a running dms-server — the seed guide's
//! process monitor and manager API, over the daemon's admin socket, plus real mount and
//! unmount requests over RabbitMQ.
//!
//! Exit codes: 0 success; 1 the daemon refused or the request failed; 2 the daemon (or the
//! broker) cannot be reached; 64 bad command line. `health` uses the monitoring plugin
//! convention instead: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

pub mod client;
pub mod render;
pub mod request;

use crate::admin::protocol::AdminRequest;
use crate::admin::views::{Stats, Status, TargetView};
use clap::{CommandFactory, Parser, Subcommand};
use client::ClientError;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_SOCKET: &str = "/run/dms/admin.sock";

#[derive(Debug, Parser)]
#[command(
    name = "dms-ctl",
    version,
    about = "Operate a running dms-server (Dynamic Mount Service)"
)]
pub struct Cli {
    /// Admin socket (default: admin_socket of the config file, else /run/dms/admin.sock)
    #[arg(long, global = true, env = "DMS_ADMIN_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Config file (default: $DMS_CONFIG, else /etc/trilio-dms/server.conf)
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Targets mounted or in flight, with their helpers
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        /// Add each helper's CPU % and resident memory
        #[arg(long)]
        detailed: bool,
        /// Also list unmounted targets the journal remembers
        #[arg(long)]
        all: bool,
        /// Refresh every SECS seconds until interrupted
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
    },
    /// The daemon: node, queue, broker connection, uptime, counts
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Counts per state, helpers alive, PID files, and where journal and host disagree
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Health for monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    Health {
        #[arg(long)]
        json: bool,
    },
    /// Converge journal and host now (what the periodic resync does): dead helpers, stale
    /// PID files, dead mounts
    Cleanup,
    /// Stop one target's helper (an unmount, journaled); refused unless it is a helper the
    /// daemon tracks
    Stop {
        #[arg(required_unless_present = "pid", conflicts_with = "pid")]
        target: Option<String>,
        /// The helper's PID instead (what the old monitor's --kill took); refused unless it is
        /// the journaled helper of a mounted target
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Send a mount request over RabbitMQ and print the reply
    Mount(RequestArgs),
    /// Send an unmount request over RabbitMQ and print the reply
    Unmount(RequestArgs),
    /// Print shell completions
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), for packaging: `dms-ctl man > dms-ctl.1`
    #[command(hide = true)]
    Man,
}

#[derive(Debug, clap::Args)]
struct RequestArgs {
    /// backup_target.id
    #[arg(long)]
    target: String,
    /// s3 or nfs
    #[arg(long = "type", value_name = "TYPE", default_value = "s3")]
    kind: String,
    /// filesystem_export_mount_path
    #[arg(long)]
    path: String,
    /// S3: the Barbican secret_ref
    #[arg(long)]
    secret_ref: Option<String>,
    /// S3: file holding the keystone token ("-": stdin); else $DMS_KEYSTONE_TOKEN. Never
    /// taken from the command line, where every user could read it.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// NFS: the export (host:/path)
    #[arg(long)]
    export: Option<String>,
    /// NFS: mount options
    #[arg(long)]
    options: Option<String>,
    /// Node to send to (default: node_id of the configuration)
    #[arg(long)]
    node: Option<String>,
    /// Seconds to wait for the reply
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err((code, message)) => {
            eprintln!("dms-ctl: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn failed(e: ClientError) -> Failure {
    (e.exit_code(), e.to_string())
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let socket = socket_path(&cli)?;
    let ask = |request: AdminRequest| client::ask(&socket, &request, Duration::from_secs(120));
    match cli.command {
        Command::List { json, detailed, all, watch } => {
            let show = || -> Result<String, Failure> {
                let data = ask(AdminRequest::Targets { detailed, all }).map_err(failed)?;
                let rows: Vec<TargetView> = parse(data)?;
                Ok(if json { pretty(&rows) } else { render::targets(&rows, detailed) })
            };
            match watch {
                None => print!("{}", show()?),
                Some(secs) => watch_loop(secs, show)?,
            }
        }
        Command::Status { json } => {
            let status: Status = parse(ask(AdminRequest::Status).map_err(failed)?)?;
            print!("{}", if json { pretty(&status) } else { render::status(&status) });
        }
        Command::Stats { json } => {
            let stats: Stats = parse(ask(AdminRequest::Stats).map_err(failed)?)?;
            print!("{}", if json { pretty(&stats) } else { render::stats(&stats) });
        }
        Command::Health { json } => return Ok(health(&ask, json)),
        Command::Cleanup => {
            let data = ask(AdminRequest::Cleanup).map_err(failed)?;
            let n = |k: &str| data.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            println!(
                "cleanup done: {} of {} planned step(s) performed",
                n("steps_performed"),
                n("steps_planned")
            );
        }
        Command::Stop { target, pid } => {
            let target = match (target, pid) {
                (Some(target), _) => target,
                (None, pid) => target_of_helper(&ask, pid.unwrap_or_default())?,
            };
            let data = ask(AdminRequest::Stop { target, pid }).map_err(failed)?;
            println!("{}", data.get("message").and_then(|m| m.as_str()).unwrap_or("stopped"));
        }
        Command::Mount(args) => return send("mount", &cli.config, args),
        Command::Unmount(args) => return send("unmount", &cli.config, args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "dms-ctl", &mut std::io::stdout());
        }
        Command::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut std::io::stdout()).map_err(|e| (74, format!("man page: {e}")))?;
        }
    }
    Ok(0)
}

/// The target whose tracked helper is `pid` (for `stop --pid`, the old monitor's `--kill`).
fn target_of_helper(
    ask: &dyn Fn(AdminRequest) -> Result<serde_json::Value, ClientError>,
    pid: u32,
) -> Result<String, Failure> {
    let rows: Vec<TargetView> =
        parse(ask(AdminRequest::Targets { detailed: false, all: false }).map_err(failed)?)?;
    rows.into_iter().find(|r| r.helper_pid == Some(pid)).map(|r| r.target).ok_or_else(|| {
        (1, format!("PID {pid} is not a helper this daemon tracks; nothing stopped"))
    })
}

/// `--socket`/`$DMS_ADMIN_SOCKET`, else the configuration's `admin_socket` (a config file
/// named explicitly must load; the default one may be absent or partial), else the default.
fn socket_path(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(socket) = &cli.socket {
        return Ok(socket.clone());
    }
    match crate::config::Config::from_process_env(cli.config.clone()) {
        Ok(config) => Ok(config.admin_socket),
        Err(e) if cli.config.is_some() => Err((2, format!("invalid configuration:\n{e}"))),
        Err(_) => Ok(PathBuf::from(DEFAULT_SOCKET)),
    }
}

fn health(ask: &dyn Fn(AdminRequest) -> Result<serde_json::Value, ClientError>, json: bool) -> u8 {
    let critical = |e: ClientError| (render::Level::Critical, e.to_string());
    let unknown = |(_, why): Failure| (render::Level::Unknown, why);
    let verdict = (|| {
        let status: Status =
            parse(ask(AdminRequest::Status).map_err(critical)?).map_err(unknown)?;
        let stats: Stats = parse(ask(AdminRequest::Stats).map_err(critical)?).map_err(unknown)?;
        Ok::<_, (render::Level, String)>(render::health(&status, &stats))
    })()
    .unwrap_or_else(|(level, why)| render::Health {
        level,
        summary: "dms-server cannot be asked".into(),
        problems: vec![why],
    });
    print!("{}", if json { pretty(&verdict) } else { render::health_line(&verdict) });
    verdict.level as u8
}

fn send(action: &str, config: &Option<PathBuf>, args: RequestArgs) -> Result<u8, Failure> {
    let config = crate::config::Config::from_process_env(config.clone()).map_err(|e| {
        (2, format!("mount and unmount need the daemon's configuration (broker, node):\n{e}"))
    })?;
    let token = if action == "mount" && args.kind == "s3" { Some(token(&args)?) } else { None };
    let target = request::Target {
        id: args.target,
        kind: args.kind,
        mount_path: args.path,
        secret_ref: args.secret_ref,
        export: args.export,
        nfs_options: args.options,
    };
    let body = request::body(action, &target, token.as_deref());
    let node = args.node.unwrap_or_else(|| config.node_id.as_str().to_owned());
    let timeout =
        Duration::try_from_secs_f64(args.timeout).map_err(|e| (64, format!("--timeout: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (2, format!("cannot start a runtime: {e}")))?;
    let reply = runtime
        .block_on(request::call(&config.rabbitmq_url, &config.rabbitmq_tls, &node, &body, timeout))
        .map_err(|e| (2, e.to_string()))?;
    println!("{reply}");
    Ok(if reply.get("status").and_then(|s| s.as_str()) == Some("success") { 0 } else { 1 })
}

fn token(args: &RequestArgs) -> Result<String, Failure> {
    let raw = match &args.token_file {
        Some(path) if path.as_os_str() == "-" => std::io::read_to_string(std::io::stdin())
            .map_err(|e| (64, format!("cannot read the token from stdin: {e}")))?,
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| (64, format!("cannot read the token file {}: {e}", path.display())))?,
        None => std::env::var("DMS_KEYSTONE_TOKEN").map_err(|_| {
            (
                64,
                "an S3 mount needs a keystone token: --token-file PATH or $DMS_KEYSTONE_TOKEN"
                    .to_owned(),
            )
        })?,
    };
    Ok(raw.trim().to_owned())
}

fn watch_loop(secs: f64, show: impl Fn() -> Result<String, Failure>) -> Result<(), Failure> {
    let every = Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d >= Duration::from_millis(100))
        .ok_or((64, "--watch needs at least 0.1 seconds".to_owned()))?;
    let clear = std::io::stdout().is_terminal();
    loop {
        let text = show()?;
        if clear {
            print!("\x1b[2J\x1b[H");
        }
        println!("every {secs}s (Ctrl-C to stop)\n");
        print!("{text}");
        std::thread::sleep(every);
    }
}

fn parse<T: serde::de::DeserializeOwned>(data: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(data).map_err(|e| (3, format!("unexpected answer from dms-server: {e}")))
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).map(|s| s + "\n").unwrap_or_default()
}
