//! `run(config, shutdown)`: the daemon as one function, used by `dms-server` and by the
//! tests alike.
//!
//! Order matters: the journal is replayed and reality reconciled against it *before* any
//! request is taken, so the first request already sees the truth (DESIGN §3.2, §3.4).

use crate::config::Config;
use crate::engine::ports::{HostMounts, HostProcesses};
use crate::engine::{Engine, EngineError, Executors};
use crate::exec::command::Program;
use crate::exec::credentials::{Barbican, BarbicanConfig, CredentialsError};
use crate::exec::helper::{HelperExit, Helpers};
use crate::exec::mounts::Mounter;
use crate::observe::pidfile::PidDir;
use crate::observe::procfs::Procfs;
use crate::observe::{Host, ObserveError};
use crate::transport::{self, TransportConfig, TransportError};
use dms_journal::reconcile;
use dms_journal::store::{Journal, StoreError};
use dms_journal::{BootId, Clock, Timestamp};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read the host: {0}")]
    Observe(#[from] ObserveError),
    #[error("cannot open the journal: {0}")]
    Journal(#[from] StoreError),
    #[error("cannot set up the credentials client: {0}")]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot start {what}: {reason}")]
    Startup { what: &'static str, reason: String },
}

pub type HostEngine = Engine<Barbican, HostProcesses, HostMounts>;

/// Run until `shutdown` turns true or the journal fails. Mounts and helpers are left
/// running either way (DESIGN §3.3).
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), ServerError> {
    let procfs = Procfs::default();
    let boot = procfs.boot_id().map_err(ObserveError::from)?;
    let path = config.journal_path.clone();
    let (journal, replay) = tokio::task::spawn_blocking(move || Journal::open(&path))
        .await
        .map_err(|e| ServerError::Startup { what: "the journal", reason: e.to_string() })??;
    for problem in &replay.problems {
        tracing::error!(%problem, "journal problem found at replay");
    }
    tracing::info!(
        targets = replay.state.targets.len(),
        records = replay.records,
        "journal replayed"
    );

    // Helper exits arrive from the reaper threads; the supervisor acts on them once the
    // engine exists (below).
    let (exits_tx, exits_rx) = std::sync::mpsc::channel::<HelperExit>();
    let (exits_async, mut exits) = tokio::sync::mpsc::unbounded_channel::<HelperExit>();
    std::thread::Builder::new()
        .name("dms-helper-exits".into())
        .spawn(move || {
            for exit in exits_rx {
                if exits_async.send(exit).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| ServerError::Startup {
            what: "the helper exit watcher",
            reason: e.to_string(),
        })?;

    let helpers = Helpers {
        bin: config.s3vaultfuse_bin.clone(),
        log_dir: config.helper_log_dir.clone(),
        pid_dir: PidDir::new(&config.pid_dir),
        procfs: procfs.clone(),
        boot,
        stop_grace: config.timeouts.helper_stop_grace,
    };
    let program = |p: &std::path::Path| Program {
        program: p.to_path_buf(),
        rootwrap: config.rootwrap.as_ref().map(|r| (r.bin.clone(), r.conf.clone())),
    };
    let mounter = Mounter {
        mount: program(&config.mount_program),
        umount: program(&config.umount_program),
        mount_timeout: config.timeouts.nfs_mount,
        umount_timeout: config.timeouts.umount,
        nfs_fstypes: config.nfs_fstypes.clone(),
        mount_base: config.mount_base_path.clone(),
    };
    let credentials = Barbican::new(BarbicanConfig {
        timeout: config.timeouts.credentials,
        ca_file: config.barbican_ca_file.clone(),
        insecure: config.barbican_insecure,
        ..BarbicanConfig::default()
    })?;
    let exec = Executors {
        credentials,
        processes: HostProcesses {
            helpers: helpers.clone(),
            mount_base: config.mount_base_path.clone(),
            exits: std::sync::Mutex::new(exits_tx),
        },
        mounts: HostMounts {
            mounter,
            helpers: helpers.clone(),
            helper_mount_timeout: config.timeouts.helper_mount,
        },
    };
    let state = replay.state;
    let engine = Arc::new(Engine::new(
        Arc::new(journal),
        state.clone(),
        exec,
        boot,
        config.max_concurrent_targets,
    ));

    let host = Host {
        procfs,
        pid_dir: PidDir::new(&config.pid_dir),
        mount_base: config.mount_base_path.to_string_lossy().into_owned(),
        helper_bin: config.s3vaultfuse_bin.clone(),
        probe_timeout: Duration::from_secs(5),
        nfs_fstypes: config.nfs_fstypes.clone(),
    };
    reconcile_at_boot(&engine, &host, boot).await?;
    let supervisor = Arc::clone(&engine);
    let supervision = tokio::spawn(async move {
        while let Some(exit) = exits.recv().await {
            let (target, pid, status) =
                (exit.target.to_string(), exit.helper.pid, exit.status.clone());
            match supervisor.helper_exited(&exit.target, exit.helper, &exit.status).await {
                Ok(true) => {
                    tracing::warn!(target_id = %target, pid, %status, "helper died: target lost, dead mount detached")
                }
                Ok(false) => tracing::info!(target_id = %target, pid, %status, "helper exited"),
                Err(e) => {
                    tracing::error!(target_id = %target, pid, error = %e, "cannot journal a helper's death")
                }
            }
        }
    });

    let transport = TransportConfig {
        url: config.rabbitmq_url.expose().to_owned(),
        queue: config.queue_name(),
        prefetch: config.prefetch,
        heartbeat_secs: 30,
        drain: Duration::from_secs(30),
    };
    let compaction =
        tokio::spawn(compact_periodically(Arc::clone(&engine), config.journal_retention));
    let served =
        transport::serve(engine, Arc::new(config.wire_policy()), transport, shutdown).await;
    compaction.abort();
    supervision.abort();
    served?;
    tracing::info!("intake stopped; mounts and helpers left running");
    Ok(())
}

/// Bounded growth: compact finished history older than the retention, at start and hourly.
async fn compact_periodically(engine: Arc<HostEngine>, retention: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match engine.compact(retention).await {
            Ok(report) if report.records_removed > 0 || report.requests_forgotten > 0 => {
                tracing::info!(
                    targets = report.targets_compacted,
                    records_removed = report.records_removed,
                    requests_forgotten = report.requests_forgotten,
                    "journal compacted"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "journal compaction failed; will retry"),
        }
    }
}

/// Observe, plan, journal and perform, before intake. Findings are logged, never acted on.
async fn reconcile_at_boot(
    engine: &HostEngine,
    host: &Host,
    boot: BootId,
) -> Result<(), ServerError> {
    let state = engine.snapshot();
    let observer = host.clone();
    let observed =
        tokio::task::spawn_blocking(move || observer.observe(&state)).await.map_err(|e| {
            ServerError::Startup { what: "the boot reconcile", reason: e.to_string() }
        })??;
    let now =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let plan = reconcile::plan(&engine.snapshot(), &observed, Clock { now: Timestamp(now), boot });
    for finding in &plan.findings {
        tracing::warn!(target_id = ?finding.target.as_ref().map(|t| t.to_string()), "{}", finding.what);
    }
    let steps = plan.steps.len();
    engine.reconcile(plan).await?;
    tracing::info!(
        steps,
        mounts = observed.mounts.len(),
        pid_files = observed.pid_files.len(),
        "boot reconcile done"
    );
    Ok(())
}
