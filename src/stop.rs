//! How long a stop may take, and what makes that bound hard.
//!
//! SIGTERM stops intake and gives in-flight requests [`DRAIN`] to finish; the process is
//! gone [`STOP_DEADLINE`] after the signal whatever is still blocking (a mount(8) stuck on a
//! hung NFS server, a broker that does not answer the close, a boot reconcile still
//! probing). The systemd unit's `TimeoutStopSec=` must stay well above [`STOP_DEADLINE`], so
//! systemd's SIGKILL is never what ends the daemon (a test reads the unit to check).
//!
//! Why a hard exit is safe: the journal is write-ahead (DESIGN §3.1). Every record that
//! licensed an effect, and every record behind an ack, is durable already; a request that
//! did not finish was not acked and is redelivered, then answered from the journal or
//! resumed. Leaving at the deadline is therefore a crash at a point the daemon survives by
//! design. It is made a gentler one still: the journal is flushed (bounded) so that even
//! records not yet due to be durable survive, and the mount programs still running are
//! killed with their process groups (so none mounts after the daemon is gone).

use dms_journal::store::Journal;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// Time in-flight requests get to finish after SIGTERM (unfinished ones are redelivered).
pub const DRAIN: Duration = Duration::from_secs(30);

/// The process has exited this long after SIGTERM at the latest: [`DRAIN`], then up to 5 s
/// to close the broker connection, kill leftover mount programs and flush the journal.
pub const STOP_DEADLINE: Duration = Duration::from_secs(35);

/// How long the flush at the stop deadline may take (a disk that hangs must not hold the
/// exit: the records behind every ack are durable already).
const FLUSH_BOUND: Duration = Duration::from_secs(2);

/// Arm the hard deadline: once `shutdown` turns true, a thread of its own (not a task: it
/// must fire even if every runtime thread is stuck) waits [`STOP_DEADLINE`], then flushes
/// the journal, kills the mount programs still running and exits the process with status 0
/// (the stop was asked for). A process that finished its stop in time never gets there.
pub fn arm(mut shutdown: watch::Receiver<bool>, journal: Weak<Journal>) {
    let spawned = std::thread::Builder::new().name("dms-stop-deadline".into()).spawn(move || {
        // Err: the sender is gone, so no stop can be asked for any more.
        if futures_lite::future::block_on(shutdown.wait_for(|stop| *stop)).is_err() {
            return;
        }
        std::thread::sleep(STOP_DEADLINE);
        let flushed = journal.upgrade().map(flush_bounded);
        tracing::warn!(
            journal_flushed = ?flushed,
            "stop deadline of {} s passed with work still blocking; exiting now (unfinished \
             requests are redelivered)",
            STOP_DEADLINE.as_secs()
        );
        // Last, right before the exit: a killed mount program is an error outcome for its
        // request, and none must be journaled and answered for a stop (the request is
        // redelivered instead); the engine has no time left to do so.
        crate::exec::pgroup::RUNNING.close();
        std::process::exit(0);
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot arm the stop deadline; a blocked stop may overrun");
    }
}

/// After a stop that finished in time: mount programs of requests that did not (their
/// tasks are still awaiting them) must not outlive the daemon either. Intake is
/// closed, so the kill answers nobody; and a request still waiting for a pool slot must
/// not start another program once a killed one frees it.
pub fn kill_leftover_mount_programs() {
    let killed = crate::exec::pgroup::RUNNING.close();
    if killed > 0 {
        tracing::warn!(mount_programs_killed = killed, "killed mount programs still running");
    }
}

/// Make everything appended so far durable, giving up after [`FLUSH_BOUND`].
fn flush_bounded(journal: Arc<Journal>) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dms-stop-flush".into())
        .spawn(move || {
            let flushed = journal.flush().map_err(|e| e.to_string());
            let _ = tx.send(flushed);
        })
        .map_err(|e| format!("cannot start the flush: {e}"))?;
    rx.recv_timeout(FLUSH_BOUND).unwrap_or_else(|_| Err("the flush did not finish".to_owned()))
}
