//! dms-server: the Dynamic Mount Service daemon. Configuration comes from the `[server]`
//! section of the config file and `DMS_*` environment variables (see docs/configuration.md).

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "dms-server",
    version,
    about = "Dynamic Mount Service: mounts backup targets on request from RabbitMQ"
)]
struct Args {
    /// Config file (default: $DMS_CONFIG, else /etc/trilio-dms/server.conf)
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the configuration, print what the daemon would use, and exit (0 valid, 78
    /// invalid) without touching the journal, the broker or any mount
    #[arg(long)]
    check_config: bool,
    /// Print the manual page (roff) and exit, for packaging
    #[arg(long, hide = true)]
    man: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.man {
        let man = clap_mangen::Man::new(<Args as clap::CommandFactory>::command());
        man.render(&mut std::io::stdout()).context("cannot write the man page")?;
        return Ok(());
    }
    let config = match dms::config::Config::from_process_env(args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dms-server: invalid configuration:\n{e}");
            std::process::exit(78); // EX_CONFIG
        }
    };
    if args.check_config {
        println!(
            "configuration OK: node {}, queue {}, broker {}, mount base {}, journal {}, admin socket {}",
            config.node_id.as_str(),
            config.queue_name(),
            config.rabbitmq_url,
            config.mount_base_path,
            config.journal_path.display(),
            config.admin_socket.display()
        );
        return Ok(());
    }
    let logging = dms::telemetry::init(config.log_level, config.log_format);
    if let Some(problem) = &logging.fallback {
        tracing::warn!(%problem, "log_format");
    }
    tracing::info!(
        node = %config.node_id.as_str(),
        queue = %config.queue_name(),
        broker = %config.rabbitmq_url,
        log = %logging.sink.as_str(),
        "starting"
    );
    match dms::daemon::serve(config)? {
        dms::server::Exit::Stopped => Ok(()),
        dms::server::Exit::Restart => {
            tracing::info!("re-executing to reopen the journal (same PID; mounts stay up)");
            let e = dms::intake::restart_in_place();
            Err(e).context("cannot re-execute dms-server")
        }
    }
}
