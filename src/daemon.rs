//! The daemon process around [`server::run`]: its runtime, the stop signal, and the kill of
//! leftover mount programs once the runtime's work is done.
//!
//! A plain function on purpose. An async fn's body is compiled where it is first polled: in
//! `dms-server`'s `main`, the whole server state machine was compiled a second time in the
//! binary's crate, about 40 CPU-seconds of every release build. Polled here, it is
//! compiled once, in this library.

use crate::config::Config;
use crate::server::{self, Exit, ServerError};
use std::time::Duration;

/// Runs the daemon until a stop (SIGTERM, SIGINT) or until it must re-execute itself
/// ([`Exit::Restart`]; the caller does that, see [`crate::intake::restart_in_place`]).
pub fn serve(config: Config) -> Result<Exit, ServerError> {
    // Before the runtime starts any thread (crate::host::memory).
    let arenas = crate::host::memory::ARENAS;
    match crate::host::memory::limit_arenas(arenas) {
        true => tracing::debug!(arenas, "malloc arenas capped"),
        false => tracing::debug!("malloc arenas left to MALLOC_ARENA_MAX or the C library"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
        .map_err(|e| ServerError::Startup { what: "the tokio runtime", reason: e.to_string() })?;
    let served = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::telemetry::stop_signal().await;
            tracing::info!("stop requested: finishing in-flight requests, leaving mounts running");
            let _ = tx.send(true);
        });
        server::run(config, rx).await
    });
    // A request that outlived the drain may still have mount(8) running on a blocking
    // thread: kill it, and do not wait for that thread (dropping the runtime would).
    crate::stop::kill_leftover_mount_programs();
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// The runtime's workers: one per core, up to 4. The daemon's work is waiting (on the
/// journal's fsync, helpers, the broker, Barbican), and its blocking work has a pool of its
/// own; tokio's default of one per core gave a 64-core compute node 64 idle workers.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

/// How long an idle blocking thread (a journal write, an executor call) waits for more
/// work before it ends; tokio's default is 10 s. A burst of requests starts dozens of
/// them, and each keeps its stack until it ends; starting one again costs tens of
/// microseconds, beside a mount's milliseconds.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(2);
