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
            config.mount_base_path.display(),
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let served = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            dms::telemetry::stop_signal().await;
            tracing::info!("stop requested: finishing in-flight requests, leaving mounts running");
            let _ = tx.send(true);
        });
        dms::server::run(config, rx).await
    });
    // A request that outlived the drain may still have mount(8) running on a blocking
    // thread: kill it, and do not wait for that thread (dropping the runtime would).
    dms::stop::kill_leftover_mount_programs();
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match served? {
        dms::server::Exit::Stopped => Ok(()),
        dms::server::Exit::Restart => {
            tracing::info!("re-executing to reopen the journal (same PID; mounts stay up)");
            let e = dms::intake::restart_in_place();
            Err(e).context("cannot re-execute dms-server")
        }
    }
}
