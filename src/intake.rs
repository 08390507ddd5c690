//! Intake paused while the journal cannot be written (a full disk, above all).
//!
//! Nothing is lost meanwhile: a request whose records could not be made durable was not
//! acked (the transport requeued it and closed its broker session), and a parked one is in
//! the inbox. What is missing is a journal that takes writes again, and sled cannot give
//! that back by itself: after a failed flush, a sled handle keeps failing every write even
//! once space returns (measured: ENOSPC on a full tmpfs, the filler removed, five more
//! writes, five more ENOSPC); a reopened one works, with everything flushed before intact.
//! So the daemon pauses, says why (the log line below, CRITICAL in `dms-ctl health`),
//! probes the journal's filesystem, and once that takes a write again it restarts in place
//! (re-executes itself, same PID): the journal is reopened and replayed, the host
//! reconciled and the inbox resumed exactly as after any restart, the path the crash
//! tests prove. Mounts and helpers stay up throughout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// How often the journal's filesystem is probed while paused.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// The probe writes this much (and syncs it) before it believes there is room: more than
/// one journal segment, so the records that failed fit once the probe is removed.
const PROBE_BYTES: usize = 2 << 20;

/// Why intake is paused, if it is (shared with the admin socket).
#[derive(Debug, Clone, Default)]
pub struct Pause(Arc<Mutex<Option<String>>>);

impl Pause {
    pub fn reason(&self) -> Option<String> {
        lock(&self.0).clone()
    }

    fn set(&self, reason: String) {
        *lock(&self.0) = Some(reason);
    }
}

/// How a paused daemon goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The journal's filesystem takes writes again: restart in place.
    Restart,
    /// A stop was requested while paused.
    Stop,
}

/// Pause after `error` until the journal's filesystem takes a write again or `shutdown`.
pub async fn until_writable(
    journal: &Path,
    error: &impl std::fmt::Display,
    pause: &Pause,
    mut shutdown: watch::Receiver<bool>,
) -> Resume {
    let reason = format!("the journal cannot be written ({error})");
    tracing::error!(
        journal = %journal.display(),
        "intake paused: {reason}; unanswered requests stay with the broker or in the inbox, \
         mounts and helpers stay up; resuming by itself once {} takes writes again",
        journal.display()
    );
    pause.set(reason);
    loop {
        let probe = probe_path(journal);
        let wrote = tokio::task::spawn_blocking(move || probe_write(&probe)).await;
        match wrote {
            Ok(Ok(())) => {
                tracing::info!(
                    journal = %journal.display(),
                    "the journal's filesystem takes writes again: restarting in place to reopen \
                     the journal"
                );
                return Resume::Restart;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "journal filesystem probe failed"),
            Err(e) => tracing::debug!(error = %e, "journal filesystem probe did not run"),
        }
        if *shutdown.borrow() {
            return Resume::Stop;
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = shutdown.changed() => return Resume::Stop,
        }
    }
}

/// Beside the journal's own files, in its directory (sled ignores other names).
fn probe_path(journal: &Path) -> PathBuf {
    journal.join("space-probe")
}

/// Write [`PROBE_BYTES`] durably, then remove them: room for the journal, on the journal's
/// filesystem, now. The probe is removed whether or not the write succeeded.
fn probe_write(path: &Path) -> std::io::Result<()> {
    let written = (|| {
        let mut file = std::fs::File::create(path)?;
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    })();
    let removed = std::fs::remove_file(path);
    written.and(removed)
}

/// Re-execute this binary with the same arguments and environment, same PID. Returns only
/// if that failed.
pub fn restart_in_place() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    std::process::Command::new(exe).args(std::env::args_os().skip(1)).exec()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn given_room_when_probing_then_it_writes_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        probe_write(&probe_path(dir.path())).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn given_no_directory_when_probing_then_it_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe_write(&probe_path(&dir.path().join("gone"))).is_err());
    }

    #[tokio::test]
    async fn given_a_writable_journal_when_paused_then_resumes_with_a_restart_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let pause = Pause::default();
        let (_tx, rx) = watch::channel(false);
        let resume = until_writable(dir.path(), &"No space left on device", &pause, rx).await;
        assert_eq!(resume, Resume::Restart);
        assert_eq!(
            pause.reason().as_deref(),
            Some("the journal cannot be written (No space left on device)")
        );
    }

    #[tokio::test]
    async fn given_a_stop_while_paused_then_it_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(false);
        tx.send(true).unwrap();
        let gone = dir.path().join("gone");
        assert_eq!(until_writable(&gone, &"x", &Pause::default(), rx).await, Resume::Stop);
    }
}
