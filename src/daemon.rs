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
    let runtime = tokio::runtime::Builder::new_multi_thread()
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
