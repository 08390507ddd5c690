//! The admin socket: what `dms-ctl` and an online `dms-journal` talk to. A Unix socket,
//! mode 0600, and every peer's credentials are checked: only root is served (the socket
//! can stop helpers and read the journal, which names every target of the node).
//!
//! One request per connection ([`protocol`]); each runs in its own task, bounded in size and
//! time, so a stuck client holds nothing but its own connection.

pub mod client;
pub mod protocol;
pub mod views;

use crate::engine::Engine;
use crate::engine::Job;
use crate::exec::observer::Observer;
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::supervisor::PassNow;
use crate::wire::Reply;
use crate::wire::Wire;
use dms_journal::store::Problem;
use dms_journal::{reconcile, Phase, RequestKey, TargetId};
use protocol::{AdminRequest, AdminResponse, MAX_REQUEST};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::Instrument;

/// A client has this long to send its request; the answer (a cleanup pass, a stop) may
/// take as long as the operation's own deadlines.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin socket {}: {what}: {source}", path.display())]
    Io { path: PathBuf, what: &'static str, source: std::io::Error },
    #[error("admin socket {} is served by another running process", path.display())]
    InUse { path: PathBuf },
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
}

/// Everything the admin commands read or act on: the engine (and through its executors,
/// the helpers' uptime), the reconciler's view of the host, and the daemon's own state.
#[derive(Debug)]
pub struct Admin<C, P, M, O> {
    pub engine: Arc<Engine<C, P, M>>,
    pub observer: Arc<O>,
    pub pass_now: PassNow,
    pub last_pass: crate::supervisor::LastPass,
    pub node: String,
    pub queue: String,
    pub journal_path: PathBuf,
    pub journal_problems: Vec<Problem>,
    pub broker_connected: Arc<AtomicBool>,
    /// The broker host of the session under way (`host:port`).
    pub broker_host: crate::transport::BrokerHost,
    /// Requests parked by the transport right now.
    pub requests_parked: Arc<AtomicUsize>,
    /// Why intake is paused, if it is (the journal cannot be written).
    pub intake: crate::intake::Pause,
    /// Set once the boot reconcile is done: until then nothing is stopped from here, so
    /// the boot plan is the only thing that acts on what a crash left.
    pub booted: AtomicBool,
    /// Turns true when the daemon stops: no new stop is started then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub started: Instant,
}

/// Bind the socket (replacing a stale one a crashed daemon left), mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let io = |what| move |source| AdminError::Io { path: path.to_path_buf(), what, source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("cannot create its directory"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            return Err(AdminError::NotASocket { path: path.to_path_buf() });
        }
        // Nobody listening: the socket of a daemon that died. (A second daemon cannot be
        // here: the journal's lock keeps it out before this point.)
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(io("cannot remove the stale socket"))?
            }
            Err(e) => return Err(io("cannot tell whether it is in use")(e)),
            Ok(_) => return Err(AdminError::InUse { path: path.to_path_buf() }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot inspect it")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io("cannot bind"))?;
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(path, mode).map_err(io("cannot restrict its mode"))?;
    Ok(listener)
}

/// Connections served at once; more are turned away (operators and monitoring are few).
const MAX_CONNECTIONS: usize = 16;

/// Serve until `cancel`, then wait for the connections being answered (each is bounded by
/// its own deadlines: reading the request, the operation, writing the answer).
pub async fn serve<C, P, M, O>(
    listener: UnixListener,
    admin: Arc<Admin<C, P, M, O>>,
    cancel: tokio_util::sync::CancellationToken,
) where
    C: Credentials,
    P: Processes,
    M: Mounts,
    O: Observer,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((mut stream, _)) if connections.len() >= MAX_CONNECTIONS => {
                let busy = r#"{"ok":false,"data":null,"error":"the admin socket is busy; retry"}"#;
                let line = format!("{busy}\n");
                let _ = tokio::time::timeout(READ_TIMEOUT, stream.write_all(line.as_bytes())).await;
            }
            Ok((stream, _)) => {
                let (admin, cancel) = (Arc::clone(&admin), cancel.clone());
                connections.spawn(async move { admin.connection(stream, cancel).await });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

impl<C: Credentials, P: Processes, M: Mounts, O: Observer> Admin<C, P, M, O> {
    /// One connection. A request still being read when the daemon stops is answered with
    /// that (the stop does not wait for a slow client); one being answered is finished.
    async fn connection(
        &self,
        mut stream: UnixStream,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let uid = stream.peer_cred().map(|c| c.uid());
        let response = match uid {
            Ok(0) => {
                let read = tokio::select! {
                    read = read_request(&mut stream) => read,
                    _ = cancel.cancelled() => Err("dms-server is stopping; nothing done".into()),
                };
                match read {
                    Ok(request) => self.answer(request).await,
                    Err(message) => AdminResponse::error(message),
                }
            }
            Ok(uid) => {
                // Read (and drop) the request first, so the client is not cut off mid-write
                // and sees the refusal rather than a broken pipe.
                let _ = read_request(&mut stream).await;
                tracing::warn!(uid, "admin socket: refused a non-root peer");
                AdminResponse::error(format!("permission denied: uid {uid} is not root"))
            }
            Err(e) => AdminResponse::error(format!("cannot read the peer's credentials: {e}")),
        };
        let mut line = serde_json::to_string(&response).unwrap_or_else(|e| {
            format!(r#"{{"ok":false,"data":null,"error":"cannot encode the answer: {e}"}}"#)
        });
        line.push('\n');
        // A client that never reads its answer is dropped, not waited on.
        let _ = tokio::time::timeout(READ_TIMEOUT, stream.write_all(line.as_bytes())).await;
        let _ = stream.shutdown().await;
    }

    async fn answer(&self, request: AdminRequest) -> AdminResponse {
        let result = match request {
            AdminRequest::Status => Ok(self.status()),
            AdminRequest::Targets { detailed, all } => self.targets(detailed, all).await,
            AdminRequest::Stats => self.stats().await,
            AdminRequest::Cleanup => self.cleanup().await,
            AdminRequest::Stop { target, pid } => self.stop(&target, pid).await,
            AdminRequest::Journal { args } => Ok(self.journal(args).await),
        };
        match result {
            Ok(data) => AdminResponse::ok(data),
            Err(message) => AdminResponse::error(message),
        }
    }

    fn status(&self) -> serde_json::Value {
        let (targets, mounted) = self.engine.counts();
        json(&views::Status {
            node: self.node.clone(),
            queue: self.queue.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            boot_id: self.observer.boot().to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            broker_connected: self.broker_connected.load(Ordering::Relaxed),
            broker_host: self.broker_host.lock().ok().and_then(|h| h.clone()),
            targets,
            mounted,
            journal_path: self.journal_path.display().to_string(),
            journal_problems: self.journal_problems.len(),
            nfs_breakers: self.engine.breakers().into_iter().map(Into::into).collect(),
            requests_parked: self.requests_parked.load(Ordering::Relaxed),
            intake_paused: self.intake.reason(),
        })
    }

    /// The metrics gauges at scrape time: the engine's counts, plus what only the admin side
    /// sees (the broker session, the transport's parked requests, the last resync pass, and
    /// which mounted targets' journaled helpers still run: one `/proc` read each).
    pub fn gauges(&self) -> crate::metrics::Gauges {
        let snapshot = self.engine.snapshot();
        let mounted_without_helper =
            crate::metrics::Gauges::mounted_without_helper(snapshot.targets.values(), |h| {
                self.engine.executors().processes.uptime(h).is_some()
            });
        crate::metrics::Gauges {
            requests_parked: self.requests_parked.load(Ordering::Relaxed) as u64,
            broker_connected: self.broker_connected.load(Ordering::Relaxed),
            reconcile_differences: self.last_pass.count() as u64,
            mounted_without_helper,
            ..self.engine.gauges()
        }
    }

    async fn targets(&self, detailed: bool, all: bool) -> Result<serde_json::Value, String> {
        let snapshot = self.engine.snapshot();
        let mut rows: Vec<views::TargetView> = snapshot
            .targets
            .values()
            .filter(|t| all || t.phase != Phase::Unmounted)
            .map(|t| views::target_view(t, t.helper.and_then(|h| self.uptime(h))))
            .collect();
        if detailed {
            let pids: Vec<u32> = rows
                .iter()
                .filter(|r| r.helper_alive == Some(true))
                .filter_map(|r| r.helper_pid)
                .collect();
            let found =
                blocking(move || Ok(views::resources(&pids, Duration::from_millis(250)))).await?;
            for row in &mut rows {
                if let Some((cpu, rss)) = row.helper_pid.and_then(|p| found.get(&p)) {
                    (row.cpu_percent, row.rss_bytes) = (Some(*cpu), Some(*rss));
                }
            }
        }
        Ok(json(&rows))
    }

    async fn stats(&self) -> Result<serde_json::Value, String> {
        let snapshot = self.engine.snapshot();
        let observed = self.observer.observe(snapshot.clone()).await.map_err(|e| e.to_string())?;
        let clock = self.engine.clock();
        let plan = reconcile::plan(&snapshot, &observed, clock, &Wire);
        let alive = snapshot
            .targets
            .values()
            .filter(|t| t.phase == Phase::Mounted)
            .filter_map(|t| t.helper)
            .filter(|h| self.uptime(*h).is_some())
            .count();
        let busy = self.engine.busy();
        let last_pass = self.last_pass.get();
        Ok(json(&views::stats(views::Seen {
            journal: &snapshot,
            obs: &observed,
            plan: &plan,
            clock,
            alive,
            busy: &busy,
            last_pass: &last_pass,
        })))
    }

    async fn cleanup(&self) -> Result<serde_json::Value, String> {
        let report = self.pass_now.run().await?;
        tracing::info!(steps = report.steps_performed, "admin cleanup: reconcile pass done");
        Ok(serde_json::json!({
            "steps_planned": report.steps_planned,
            "steps_performed": report.steps_performed,
            "took_ms": report.took.as_millis() as u64,
        }))
    }

    /// Only a target mounted by a helper the journal knows; the stop is an unmount through
    /// the engine, journaled under its own request key like any other request.
    async fn stop(&self, target: &str, pid: Option<u32>) -> Result<serde_json::Value, String> {
        let id = TargetId::new(target).map_err(|e| format!("invalid target id: {e}"))?;
        if !self.booted.load(Ordering::Acquire) {
            return Err(
                "the boot reconcile is still running; nothing stopped, retry shortly".into()
            );
        }
        if *self.shutdown.borrow() {
            return Err("dms-server is stopping; nothing stopped".into());
        }
        let state = self.engine.target_state(&id);
        let (Phase::Mounted, Some(helper), Some(spec)) = (&state.phase, state.helper, &state.spec)
        else {
            return Err(format!(
                "{target} is not mounted by a helper this daemon tracks (it is {}); nothing stopped",
                state.phase
            ));
        };
        if pid.is_some_and(|p| p != helper.pid) {
            return Err(format!(
                "{target}'s helper is pid {} now, not {}; nothing stopped",
                helper.pid,
                pid.unwrap_or_default()
            ));
        }
        let key = format!("dms-ctl-stop-{}", uuid::Uuid::new_v4());
        let request_key = RequestKey::new(&key).map_err(|e| e.to_string())?;
        let job = Job::unmount(Some(request_key), id, spec.mount_path.clone());
        let span = tracing::info_span!(
            "request",
            target_id = %target,
            request_key = %key,
            action = %"unmount",
            helper_pid = helper.pid
        );
        let outcome = async {
            let outcome = self.engine.handle(&job).await.map_err(|e| e.to_string())?;
            tracing::info!(outcome = %outcome.name(), "admin stop of target {target}: {outcome}");
            Ok::<_, String>(outcome)
        }
        .instrument(span)
        .await?;
        let reply = Reply::from_outcome(&outcome);
        match (outcome.is_success(), reply.success_msg, reply.error_msg) {
            (true, Some(msg), _) => {
                Ok(serde_json::json!({"message": msg, "helper_pid": helper.pid, "request": key}))
            }
            (_, _, Some(msg)) | (_, Some(msg), None) => Err(msg),
            _ => Err("the stop ended without an answer".into()),
        }
    }

    /// How long a journaled helper has been running; `None` if it is not (or not provably it).
    fn uptime(&self, helper: dms_journal::HelperIdentity) -> Option<Duration> {
        self.engine.executors().processes.uptime(helper)
    }

    async fn journal(&self, args: Vec<String>) -> serde_json::Value {
        let journal = Arc::clone(self.engine.journal());
        let state = self.engine.snapshot();
        let (problems, path) = (self.journal_problems.clone(), self.journal_path.clone());
        let answer = tokio::task::spawn_blocking(move || {
            crate::journal_cli::answer(&journal, &state, &problems, &path, &args)
        })
        .await
        .unwrap_or_else(|e| protocol::JournalAnswer {
            exit_code: 1,
            stdout: String::new(),
            stderr: format!("dms-journal: the query failed: {e}\n"),
        });
        json(&answer)
    }
}

async fn read_request(stream: &mut UnixStream) -> Result<AdminRequest, String> {
    let mut line = String::new();
    let mut reader = BufReader::new(stream).take(MAX_REQUEST as u64 + 1);
    match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => return Err("no request within 10 s".into()),
        Ok(Err(e)) => return Err(format!("cannot read the request: {e}")),
        Ok(Ok(_)) if line.len() > MAX_REQUEST => return Err("the request is too long".into()),
        Ok(Ok(_)) => {}
    }
    serde_json::from_str(line.trim_end()).map_err(|e| format!("not an admin request: {e}"))
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|e| format!("the query failed: {e}"))?
}
