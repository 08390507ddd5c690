//! `run(config, shutdown)`: the daemon as one function, used by `dms-server` and by the
//! tests alike.
//!
//! Order matters: the journal is replayed and reality reconciled against it *before* any
//! request is taken, so the first request already sees the truth (DESIGN §3.2, §3.4).

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::engine::ports::{HostMounts, HostProcesses};
use crate::engine::{Engine, EngineError, Executors, Limits};
use crate::exec::command::Program;
use crate::exec::credentials::{Barbican, BarbicanConfig, CredentialsError};
use crate::exec::helper::Helpers;
use crate::exec::mounts::Mounter;
use crate::intake::{self, Resume};
use crate::observe::pidfile::PidDir;
use crate::observe::procfs::Procfs;
use crate::observe::{Host, ObserveError};
use crate::supervisor::{Exits, SuperviseError, Supervisor};
use crate::systemd::Notifier;
use crate::transport::{self, TransportConfig, TransportError};
use dms_journal::store::{Journal, Replay, StoreError};
use dms_journal::FsTypes;
use secrecy::SecretString;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;
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
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
    #[error("cannot start {what}: {reason}")]
    Startup { what: &'static str, reason: String },
    #[error("the journal {} lost history: {}. Restore it from a backup, or accept the loss with `dms-journal --path {} accept-loss` (then `dms-journal verify`)", path.display(), losses.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "), path.display())]
    JournalLost { path: std::path::PathBuf, losses: Vec<dms_journal::store::Loss> },
}

pub type HostEngine = Engine<Barbican, HostProcesses, HostMounts>;

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A stop was requested.
    Stopped,
    /// The journal failed, intake paused, and its filesystem takes writes again: the
    /// caller re-executes the daemon ([`intake::restart_in_place`]) to reopen the journal.
    Restart,
}

/// A daemon started right after its predecessor was SIGKILLed (an OOM kill, then systemd's
/// restart) finds the journal's flock held until the children that predecessor was forking
/// have exec'd, which on a loaded node took longer than `Journal::open`'s own retries (155
/// ms; the suite's chaos test, run beside other tests). The daemon waits up to this long for
/// the lock; `dms-journal`, which turns to the admin socket when the journal is locked by a
/// running daemon, keeps the short wait.
const LOCKED_JOURNAL_PATIENCE: Duration = Duration::from_secs(3);

fn open_journal(path: &std::path::Path) -> Result<(Journal, Replay), StoreError> {
    let until = std::time::Instant::now() + LOCKED_JOURNAL_PATIENCE;
    loop {
        match Journal::open(path) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(100));
            }
            opened => return opened,
        }
    }
}

/// Run until `shutdown` turns true, or the journal fails and takes writes again ([`intake`]).
/// Mounts and helpers are left running either way (DESIGN §3.3). This function owns the
/// process: once `shutdown` turns true, the process exits at [`crate::stop::STOP_DEADLINE`]
/// even if this has not returned.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<Exit, ServerError> {
    let procfs = Procfs::default();
    let boot = procfs.boot_id().map_err(ObserveError::from)?;
    let path = config.journal_path.clone();
    let (journal, replay) = tokio::task::spawn_blocking(move || open_journal(&path))
        .await
        .map_err(|e| ServerError::Startup { what: "the journal", reason: e.to_string() })??;
    if !replay.losses.is_empty() {
        // Starting would answer redelivered requests as new and re-adopt helpers the
        // journal forgot: exactly-once and supervision would be broken silently.
        let path = config.journal_path.clone();
        return Err(ServerError::JournalLost { path, losses: replay.losses });
    }
    for problem in &replay.problems {
        tracing::error!(%problem, "journal problem found at replay");
    }
    tracing::info!(
        targets = replay.state.targets.len(),
        records = replay.records,
        "journal replayed"
    );

    raise_open_file_limit();
    // Helper exits arrive from the spawner's reapers and the pidfd watches; the supervisor
    // acts on them once the engine exists (below).
    let (exits, exits_tx) = Exits::new();

    let helpers = Helpers {
        bin: config.s3vaultfuse_bin.clone(),
        log_dir: config.helper_log_dir.clone(),
        pid_dir: PidDir::new(&config.pid_dir),
        procfs: procfs.clone(),
        boot,
        stop_grace: config.timeouts.helper_stop_grace,
        reaping: Default::default(),
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
        fs_types: FsTypes::new(config.nfs_fstypes.clone()),
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
            exits: exits_tx,
        },
        mounts: HostMounts {
            mounter,
            helpers: helpers.clone(),
            helper_mount_timeout: config.timeouts.helper_mount,
        },
    };
    let state = replay.state;
    let journal = Arc::new(journal);
    // From here on a stop has a hard deadline, whatever blocks (crate::stop).
    crate::stop::arm(shutdown.clone(), Arc::downgrade(&journal));
    let limits = Limits {
        node: config.max_concurrent_targets,
        nfs_per_server: config.nfs_ops_per_server,
        nfs_breaker_backoff: config.nfs_breaker_backoff,
    };
    let engine = Arc::new(Engine::new(journal, state.clone(), exec, boot, limits));

    let host = Host {
        procfs,
        pid_dir: PidDir::new(&config.pid_dir),
        mount_base: config.mount_base_path.clone(),
        helper_bin: config.s3vaultfuse_bin.clone(),
        probe_timeout: config.timeouts.mount_probe,
        fs_types: FsTypes::new(config.nfs_fstypes.clone()),
    };
    let mut supervisor = Supervisor::new(Arc::clone(&engine), host.clone(), helpers.clone(), exits);
    let broker_connected = Arc::new(AtomicBool::new(false));
    let requests_parked = Arc::new(AtomicUsize::new(0));
    let pause = intake::Pause::default();
    let admin = Arc::new(Admin {
        engine: Arc::clone(&engine),
        host,
        helpers,
        pass_now: supervisor.pass_now(),
        last_pass: supervisor.last_pass(),
        node: config.node_id.as_str().to_owned(),
        queue: config.queue_name(),
        boot,
        journal_path: config.journal_path.clone(),
        journal_problems: replay.problems.clone(),
        broker_connected: Arc::clone(&broker_connected),
        requests_parked: Arc::clone(&requests_parked),
        intake: pause.clone(),
        booted: AtomicBool::new(false),
        shutdown: shutdown.clone(),
        started: std::time::Instant::now(),
    });
    // Without its admin socket the daemon still serves mounts (operators lose dms-ctl).
    let admin_task = match admin::bind(&config.admin_socket) {
        Ok(listener) => {
            tracing::info!(path = %config.admin_socket.display(), "admin socket ready");
            Some(tokio::spawn(admin::serve(listener, Arc::clone(&admin))))
        }
        Err(e) => {
            tracing::error!(error = %e, "admin socket disabled (admin_socket)");
            None
        }
    };
    // The whole boot pass (observe, plan, journal, perform) finishes before intake starts.
    // While it runs, systemd is asked for more start time, so a node with many targets (or
    // a hung mount among them) is not killed at TimeoutStartSec in the middle of it.
    let notifier = Notifier::from_env().map(Arc::new);
    let extending = notifier.clone().map(|n| tokio::spawn(extend_start(n)));
    let report = supervisor.pass().await;
    if let Some(task) = extending {
        task.abort();
    }
    let report = report?;
    tracing::info!(
        steps = report.steps_performed,
        mounts = report.mounts,
        pid_files = report.pid_files,
        took_ms = report.took.as_millis() as u64,
        "boot reconcile done"
    );
    admin.booted.store(true, std::sync::atomic::Ordering::Release);
    let supervision = tokio::spawn(supervisor.run(config.timeouts.resync));
    if let Some(n) = &notifier {
        if let Err(e) = n.ready(&status_line(&engine)) {
            tracing::warn!(error = %e, "cannot tell systemd the daemon is ready");
        }
    }
    let keep_alive = notifier
        .clone()
        .map(|n| tokio::spawn(keep_alive(n, Arc::clone(&engine), shutdown.clone())));

    let transport = TransportConfig {
        url: SecretString::from(config.rabbitmq_url.expose()),
        queue: config.queue_name(),
        prefetch: config.prefetch,
        park_after: config.park_after,
        heartbeat_secs: 30,
        drain: crate::stop::DRAIN,
        connected: broker_connected,
        parked: Arc::clone(&requests_parked),
    };
    let compaction =
        tokio::spawn(compact_periodically(Arc::clone(&engine), config.journal_retention));
    let metrics = match config.metrics_listen {
        Some(addr) => serve_metrics(addr, Arc::clone(&admin), shutdown.clone()).await,
        None => None,
    };
    let policy = Arc::new(config.wire_policy());
    let served = transport::serve(engine, policy, transport, shutdown.clone()).await;
    compaction.abort();
    supervision.abort();
    // A journal that cannot be written pauses the daemon (health and metrics still
    // answer) until its filesystem takes writes again.
    let paused = match &served {
        Err(TransportError::Engine(EngineError::Journal(e))) => {
            Some(intake::until_writable(&config.journal_path, e, &pause, shutdown).await)
        }
        _ => None,
    };
    if let Some(task) = metrics {
        task.abort();
    }
    if let Some(task) = admin_task {
        task.abort();
        let _ = std::fs::remove_file(&config.admin_socket);
    }
    if let Some(task) = keep_alive {
        task.abort();
    }
    match paused {
        Some(Resume::Restart) => return Ok(Exit::Restart),
        Some(Resume::Stop) => tracing::info!("stopped while intake was paused"),
        None => served?,
    }
    tracing::info!("intake stopped; mounts and helpers left running");
    Ok(Exit::Stopped)
}

/// The Prometheus endpoint. A listener that cannot be bound is logged and the daemon serves
/// mounts without it: mounts matter more than their metrics.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    admin: Arc<Admin>,
    shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let listener = match crate::metrics::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "metrics disabled: cannot listen (metrics_listen)");
            return None;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(metrics_addr = %bound, "serving metrics");
    if bound.ip().to_canonical().is_unspecified() {
        tracing::warn!(
            metrics_addr = %bound,
            "metrics served on every address of this host (metrics_allow_any_address = true): \
             reachable from the network, no TLS, no authentication"
        );
    }
    let gauges: Arc<dyn Fn() -> crate::metrics::Gauges + Send + Sync> =
        Arc::new(move || admin.gauges());
    Some(tokio::spawn(crate::metrics::serve(listener, gauges, shutdown)))
}

/// `STATUS=` for `systemctl status`: what the daemon tracks.
fn status_line(engine: &HostEngine) -> String {
    let (targets, mounted) = engine.counts();
    format!("serving: {targets} targets tracked, {mounted} mounted")
}

/// `EXTEND_TIMEOUT_USEC` every 20 s (by 60 s each time) while the boot pass runs.
async fn extend_start(notifier: Arc<Notifier>) {
    let mut tick = tokio::time::interval(Duration::from_secs(20));
    loop {
        tick.tick().await;
        let _ = notifier.status("reconciling the journal with the host before intake");
        if let Err(e) = notifier.extend_timeout(Duration::from_secs(60)) {
            tracing::warn!(error = %e, "cannot ask systemd for more start time");
        }
    }
}

/// Watchdog keep-alives and a fresh status line from the main runtime, and the stop notice.
/// Each tick takes the engine's state lock: a runtime that no longer runs tasks, or a
/// deadlocked state lock, stops the keep-alives and systemd restarts the daemon (its mounts
/// and helpers stay). A single target stuck in an operation does not: it only stalls itself.
async fn keep_alive(
    notifier: Arc<Notifier>,
    engine: Arc<HostEngine>,
    mut stop: watch::Receiver<bool>,
) {
    let every = notifier.watchdog_interval().unwrap_or(Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                let status = "stopping: intake closed, finishing in-flight requests; mounts stay";
                if let Err(e) = notifier.stopping(status) {
                    tracing::warn!(error = %e, "cannot tell systemd the daemon is stopping");
                }
                return;
            }
        }
        let mut sent = notifier.status(&status_line(&engine));
        if notifier.watchdog_interval().is_some() {
            sent = sent.and_then(|()| notifier.watchdog());
        }
        match sent {
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot notify systemd; will keep trying");
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
    }
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

/// One pidfd per watched helper, one PID file and log per target: a node with a thousand
/// targets needs more than the usual soft limit of 1024 open files. Raise it to the hard
/// limit (what systemd's `LimitNOFILE=` or the shell allows).
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open file limit");
        }
    }
}
