//! `run(ports, config, shutdown)`: the daemon's tasks on one node, whatever performs and
//! observes for them. [`crate::server::run`] hands it the host's executors and the broker
//! transport (`dms-server`); the in-process harness ([`jobs`], its tests) hands it the
//! recording fakes and a channel of jobs, so boot reconcile, supervision and the admin
//! socket are tested in milliseconds beside the real end-to-end tests.
//!
//! Order matters: the journal is replayed and reality reconciled against it *before* any
//! request is taken, so the first request already sees the truth (DESIGN §3.2, §3.4).

mod background;
#[cfg(any(test, feature = "testing"))]
pub mod jobs;
#[cfg(test)]
mod tests;

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::engine::{Engine, EngineError, Executors, Limits};
use crate::exec::credentials::CredentialsError;
use crate::exec::observer::Observer;
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::intake::{self, Resume};
use crate::observe::ObserveError;
use crate::supervisor::{Exits, SuperviseError, Supervisor};
use crate::systemd::Notifier;
use crate::transport::{self, TransportConfig, TransportError};
use dms_journal::store::{Journal, Replay, StoreError};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A stop was requested.
    Stopped,
    /// The journal failed, intake paused, and its filesystem takes writes again: the
    /// caller re-executes the daemon ([`intake::restart_in_place`]) to reopen the journal.
    Restart,
}

/// Everything [`run`] drives: the engine's executors, the reconciler's view of the host,
/// where the executors report helper exits, and where requests come from.
#[derive(Debug)]
pub struct Ports<C, P, M, O> {
    pub executors: Executors<C, P, M>,
    pub observer: O,
    /// Helper exits the processes port reports (its reapers hold senders of this).
    pub exits: Exits,
    pub intake: Intake,
    /// [`run`] owns the process (`dms-server`): a stop has a hard deadline
    /// ([`crate::stop::arm`]), which exits the process. Off for in-process harnesses.
    pub owns_process: bool,
}

/// Where requests come from.
#[derive(Debug)]
pub enum Intake {
    /// The node's queue on RabbitMQ (the configured `rabbitmq_url`).
    Broker,
    /// Jobs sent in process, each answered on its own channel (the fake harness).
    #[cfg(any(test, feature = "testing"))]
    Jobs(jobs::Receiver),
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
/// Mounts and helpers are left running either way (DESIGN §3.3). With
/// [`Ports::owns_process`], once `shutdown` turns true the process exits at
/// [`crate::stop::STOP_DEADLINE`] even if this has not returned.
pub async fn run<C, P, M, O>(
    ports: Ports<C, P, M, O>,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<Exit, ServerError>
where
    C: Credentials,
    P: Processes,
    M: Mounts,
    O: Observer,
{
    let Ports { executors, observer, exits, intake, owns_process } = ports;
    let boot = observer.boot();
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
    let journal = Arc::new(journal);
    if owns_process {
        // From here on a stop has a hard deadline, whatever blocks (crate::stop).
        crate::stop::arm(shutdown.clone(), Arc::downgrade(&journal));
    }
    let limits = Limits {
        node: config.max_concurrent_targets,
        nfs_per_server: config.nfs_ops_per_server,
        nfs_breaker_backoff: config.nfs_breaker_backoff,
        heal: config.heal,
    };
    let engine = Arc::new(Engine::new(journal, replay.state, executors, boot, limits));
    let observer = Arc::new(observer);
    // Every task beside intake runs on `tasks`; at the end each is told to stop (`cancel`,
    // or for the engine's own work first, `engine_work`) and waited for, not aborted.
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    let engine_work = cancel.child_token();
    let mut supervisor = Supervisor::new(
        Arc::clone(&engine),
        Arc::clone(&observer),
        exits,
        engine_work.clone(),
        tasks.clone(),
    );
    let broker_connected = Arc::new(AtomicBool::new(false));
    let broker_host = transport::BrokerHost::default();
    let requests_parked = Arc::new(AtomicUsize::new(0));
    let pause = intake::Pause::default();
    let admin = Arc::new(Admin {
        engine: Arc::clone(&engine),
        observer,
        pass_now: supervisor.pass_now(),
        last_pass: supervisor.last_pass(),
        node: config.node_id.as_str().to_owned(),
        queue: config.queue_name(),
        journal_path: config.journal_path.clone(),
        journal_problems: replay.problems.clone(),
        broker_connected: Arc::clone(&broker_connected),
        broker_host: Arc::clone(&broker_host),
        requests_parked: Arc::clone(&requests_parked),
        intake: pause.clone(),
        booted: AtomicBool::new(false),
        shutdown: shutdown.clone(),
        started: std::time::Instant::now(),
    });
    // Without its admin socket the daemon still serves mounts (operators lose dms-ctl).
    let admin_served = match admin::bind(&config.admin_socket) {
        Ok(listener) => {
            tracing::info!(path = %config.admin_socket.display(), "admin socket ready");
            tasks.spawn(admin::serve(listener, Arc::clone(&admin), cancel.clone()));
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "admin socket disabled (admin_socket)");
            false
        }
    };
    // The whole boot pass (observe, plan, journal, perform) finishes before intake starts.
    // While it runs, systemd is asked for more start time, so a node with many targets (or
    // a hung mount among them) is not killed at TimeoutStartSec in the middle of it.
    let notifier = Notifier::from_env().map(Arc::new);
    let booting = cancel.child_token();
    if let Some(n) = notifier.clone() {
        tasks.spawn(background::extend_start(n, booting.clone()));
    }
    let report = supervisor.pass().await;
    booting.cancel();
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            drain(&tasks, &cancel).await;
            return Err(e.into());
        }
    };
    tracing::info!(
        steps = report.steps_performed,
        mounts = report.mounts,
        pid_files = report.pid_files,
        took_ms = report.took.as_millis() as u64,
        "boot reconcile done"
    );
    admin.booted.store(true, std::sync::atomic::Ordering::Release);
    tasks.spawn(supervisor.run(config.timeouts.resync));
    if let Some(n) = &notifier {
        if let Err(e) = n.ready(&background::status_line(&engine)) {
            tracing::warn!(error = %e, "cannot tell systemd the daemon is ready");
        }
    }
    if let Some(n) = notifier.clone() {
        let (engine, stop) = (Arc::clone(&engine), shutdown.clone());
        tasks.spawn(background::keep_alive(n, engine, stop, cancel.clone()));
    }
    let retention = config.journal_retention;
    let compaction =
        background::compact_periodically(Arc::clone(&engine), retention, engine_work.clone());
    tasks.spawn(compaction);
    if owns_process {
        // Trimming the heap is a matter for the process, not for a harness inside a test.
        tasks.spawn(background::release_freed_memory(Arc::clone(&engine), cancel.clone()));
    }
    if let Some(addr) = config.metrics_listen {
        let (admin, stop) = (Arc::clone(&admin), shutdown.clone());
        background::serve_metrics(addr, admin, stop, &tasks, cancel.clone()).await;
    }
    let served = match intake {
        Intake::Broker => {
            let transport = TransportConfig {
                url: config.rabbitmq_url.clone(),
                tls: config.rabbitmq_tls.clone(),
                queue: config.queue_name(),
                queue_type: config.queue_type,
                connection_name: format!(
                    "dms-server {} pid {}",
                    config.node_id.as_str(),
                    std::process::id()
                ),
                prefetch: config.prefetch,
                park_after: config.park_after,
                heartbeat_secs: 30,
                drain: crate::stop::DRAIN,
                connected: broker_connected,
                host: Arc::clone(&broker_host),
                parked: Arc::clone(&requests_parked),
                tokens: Arc::new(crate::exec::keyring::KernelKeyring),
            };
            let policy = Arc::new(config.wire_policy());
            transport::serve(engine, policy, transport, shutdown.clone()).await
        }
        #[cfg(any(test, feature = "testing"))]
        Intake::Jobs(jobs) => jobs::serve(engine, jobs, shutdown.clone()).await,
    };
    // Intake has stopped: so does the engine's own work (a pass or compaction under way
    // is finished first).
    engine_work.cancel();
    // A journal that cannot be written pauses the daemon (health and metrics still
    // answer) until its filesystem takes writes again.
    let paused = match &served {
        Err(TransportError::Engine(EngineError::Journal(e))) => {
            Some(intake::until_writable(&config.journal_path, e, &pause, shutdown).await)
        }
        _ => None,
    };
    drain(&tasks, &cancel).await;
    if admin_served {
        let _ = std::fs::remove_file(&config.admin_socket);
    }
    match paused {
        Some(Resume::Restart) => return Ok(Exit::Restart),
        Some(Resume::Stop) => tracing::info!("stopped while intake was paused"),
        None => served?,
    }
    tracing::info!("intake stopped; mounts and helpers left running");
    Ok(Exit::Stopped)
}

/// How long the stop waits for the tasks beside intake (an admin request or a reconcile
/// step under way) once intake has drained; what is still running then is left to the
/// runtime's shutdown (`dms-server`'s hard stop deadline bounds the whole stop anyway).
const TASKS_DRAIN: Duration = Duration::from_secs(5);

/// Tell every task to stop and wait for them, up to [`TASKS_DRAIN`].
async fn drain(tasks: &TaskTracker, cancel: &CancellationToken) {
    cancel.cancel();
    tasks.close();
    if tokio::time::timeout(TASKS_DRAIN, tasks.wait()).await.is_err() {
        tracing::warn!(
            tasks = tasks.len(),
            "tasks still running {} s after the stop; left to the runtime",
            TASKS_DRAIN.as_secs()
        );
    }
}
