//! Asking a mount point something (`stat`, `statfs`) with a deadline: the one probe the
//! executors and the observer share.
//!
//! A call into a hung FUSE or NFS mount blocks its thread in the kernel, for good. So a
//! probe runs on a thread of its own, and the caller stops waiting at its deadline. The
//! thread may be left behind; what keeps such threads from piling up on one hung mount is
//! the **stuck-set**: a path whose probe outlived a deadline is stuck until that probe
//! comes back, and asking a stuck path again starts no thread: it is reported stuck at
//! once. A node with a hung mount keeps at most a few threads on it (one per caller that
//! asked before the first deadline passed), however often it is asked.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

/// What one probe found.
#[derive(Debug)]
pub enum Probed<T> {
    /// The path answered (the answer may itself be an error from the filesystem).
    Answered(T),
    /// No answer by the deadline: the path is stuck from now on, until the probe returns.
    TimedOut,
    /// A probe of the path was stuck already: asked again without a thread.
    Stuck,
    /// No thread could start: no evidence either way.
    NoThread(std::io::Error),
}

/// A probe on its way: [`Pending::wait`] collects it.
#[derive(Debug)]
pub struct Pending<T> {
    path: String,
    state: Started<T>,
}

#[derive(Debug)]
enum Started<T> {
    Running(Receiver<T>),
    Stuck,
    NoThread(std::io::Error),
}

/// The probes on their way, per path.
#[derive(Debug, Default)]
struct Entry {
    /// Threads still asking.
    running: usize,
    /// One of them outlived its caller's deadline.
    stuck: bool,
}

fn probes() -> MutexGuard<'static, HashMap<String, Entry>> {
    static PROBES: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    PROBES.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner)
}

/// Start asking `ask(path)` on a thread of its own (none if `path` is stuck).
pub fn start<T: Send + 'static>(path: &str, ask: fn(&Path) -> T) -> Pending<T> {
    let mut all = probes();
    let entry = all.entry(path.to_owned()).or_default();
    if entry.stuck {
        return Pending { path: path.to_owned(), state: Started::Stuck };
    }
    entry.running += 1;
    drop(all);
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_owned();
    let spawned = std::thread::Builder::new().name("dms-mount-probe".into()).spawn(move || {
        let answer = ask(Path::new(&owned));
        // It answered: whatever was stuck on this path is not any more.
        let mut all = probes();
        if let Some(entry) = all.get_mut(&owned) {
            entry.running -= 1;
            entry.stuck = false;
            if entry.running == 0 {
                all.remove(&owned);
            }
        }
        drop(all);
        let _ = tx.send(answer);
    });
    let state = match spawned {
        Ok(_) => Started::Running(rx),
        Err(e) => {
            let mut all = probes();
            if let Some(entry) = all.get_mut(path) {
                entry.running -= 1;
                if entry.running == 0 && !entry.stuck {
                    all.remove(path);
                }
            }
            Started::NoThread(e)
        }
    };
    Pending { path: path.to_owned(), state }
}

impl<T> Pending<T> {
    /// The answer if it comes by `deadline`; else the path is marked stuck.
    pub fn wait(self, deadline: Instant) -> Probed<T> {
        let rx = match self.state {
            Started::Running(rx) => rx,
            Started::Stuck => return Probed::Stuck,
            Started::NoThread(e) => return Probed::NoThread(e),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(answer) => Probed::Answered(answer),
            Err(RecvTimeoutError::Disconnected) => Probed::TimedOut,
            Err(RecvTimeoutError::Timeout) => {
                // Marked under the lock the probe clears it under: if it came back in
                // between, its entry is gone (or no longer counts this probe) and nothing
                // is marked; the answer is then waiting in the channel.
                let mut all = probes();
                if let Some(entry) = all.get_mut(&self.path) {
                    entry.stuck = true;
                }
                drop(all);
                match rx.try_recv() {
                    Ok(answer) => {
                        unmark(&self.path);
                        Probed::Answered(answer)
                    }
                    Err(_) => Probed::TimedOut,
                }
            }
        }
    }
}

/// A probe that answered after its caller marked the path stuck: the path answers.
fn unmark(path: &str) {
    let mut all = probes();
    if let Some(entry) = all.get_mut(path) {
        entry.stuck = false;
        if entry.running == 0 {
            all.remove(path);
        }
    }
}

/// The path names something else now (what hung there was unmounted or detached): it is
/// not stuck any more, and the next probe starts a thread. The stuck probe's thread, if it
/// ever returns, is still counted.
pub fn forget(path: &str) {
    unmark(path);
}

/// `ask(path)`, answered by `deadline` or not at all.
pub fn probe<T: Send + 'static>(path: &str, deadline: Instant, ask: fn(&Path) -> T) -> Probed<T> {
    start(path, ask).wait(deadline)
}

/// Paths whose probes are stuck right now.
#[cfg(test)]
pub(crate) fn stuck_paths() -> Vec<String> {
    probes().iter().filter(|(_, e)| e.stuck).map(|(p, _)| p.clone()).collect()
}

/// Probes on their way right now.
#[cfg(test)]
pub(crate) fn running() -> usize {
    probes().values().map(|e| e.running).sum()
}

/// Errors that mean the filesystem behind a mount point is gone: a FUSE mount whose helper
/// died (`ENOTCONN`, `ECONNABORTED`), a stale NFS handle.
pub fn is_gone(error: &std::io::Error) -> bool {
    use rustix::io::Errno;
    let gone = [Errno::NOTCONN, Errno::CONNABORTED, Errno::STALE].map(|e| e.raw_os_error());
    error.raw_os_error().is_some_and(|code| gone.contains(&code))
}

/// Whether `here` is on another mount than `above`, its parent: the mount id where the
/// kernel reports it (exact even for a bind mount of the parent's own filesystem), the
/// device number otherwise.
pub fn mount_differs(above: &rustix::fs::Statx, here: &rustix::fs::Statx) -> bool {
    use rustix::fs::StatxFlags;
    let has_mnt_id = |s: &rustix::fs::Statx| {
        StatxFlags::from_bits_retain(s.stx_mask).contains(StatxFlags::MNT_ID)
    };
    if has_mnt_id(above) && has_mnt_id(here) {
        return here.stx_mnt_id != above.stx_mnt_id;
    }
    (here.stx_dev_major, here.stx_dev_minor) != (above.stx_dev_major, above.stx_dev_minor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    static RELEASE: AtomicBool = AtomicBool::new(false);

    /// Stands for a `stat` on a hung mount: it does not come back until released.
    fn hang(_: &Path) -> bool {
        while !RELEASE.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(100)
    }

    #[test]
    fn given_a_hung_path_when_asked_again_then_it_is_stuck_at_once_without_a_thread() {
        let path = "/dms-probe-test/hung";
        assert!(matches!(probe(path, soon(), hang), Probed::TimedOut));
        assert_eq!(stuck_paths(), [path]);
        let threads = running();
        let started = Instant::now();
        for _ in 0..10 {
            assert!(matches!(probe(path, soon(), hang), Probed::Stuck));
        }
        assert!(started.elapsed() < Duration::from_millis(100), "answered without waiting");
        assert_eq!(running(), threads, "no thread started on a stuck path");
        // Detached: the path names something else now, and is asked afresh (here it hangs
        // again, which marks it again).
        forget(path);
        assert!(stuck_paths().is_empty());
        assert!(matches!(probe(path, soon(), hang), Probed::TimedOut));
        assert_eq!(running(), threads + 1, "a forgotten path gets a new thread");
        // It comes back: the path is asked again, and answers.
        RELEASE.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while (running() > 0 || !stuck_paths().is_empty()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(stuck_paths().is_empty(), "an answer unsticks the path");
        assert!(matches!(probe(path, soon(), hang), Probed::Answered(true)));
    }

    #[test]
    fn given_paths_and_errors_then_only_a_gone_filesystem_counts_as_gone() {
        let stat = |p: &Path| std::fs::metadata(p).map(drop);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(probe("/", deadline, stat), Probed::Answered(Ok(()))));
        let Probed::Answered(Err(missing)) = probe("/nonexistent/dms", deadline, stat) else {
            panic!("a missing path is an answer");
        };
        assert!(!is_gone(&missing));
        let errno = |e: rustix::io::Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
        assert!(is_gone(&errno(rustix::io::Errno::NOTCONN)));
        assert!(is_gone(&errno(rustix::io::Errno::STALE)));
        for answered in [rustix::io::Errno::ACCESS, rustix::io::Errno::IO, rustix::io::Errno::NOENT]
        {
            assert!(!is_gone(&errno(answered)), "{answered:?}");
        }
        assert!(!stuck_paths().contains(&"/".to_owned()), "finished probes are forgotten");
    }
}
