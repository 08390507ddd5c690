//! Crash points for the crash-matrix tests: the daemon SIGKILLs itself at a named point, so
//! a test can prove that a crash between any two steps converges after a restart
//! (DESIGN §3.2).
//!
//! `DMS_FAILPOINT=<point>[@<n>]` arms one point: the daemon dies the `n`th time (default:
//! the first) it passes it. Points are named after what just became true:
//! - `append:<Event>`: a record with that event is journaled (e.g. `append:Spawned`):
//!   durable, or only applied when no effect depends on it yet (write-ahead);
//! - `effect:<Effect>`: that effect was performed, its outcome not yet journaled
//!   (e.g. `effect:SpawnHelper`);
//! - `reply:acked`, `reply:sent`: a delivery was acked, its reply published.
//!
//! Only debug builds read the variable: in a release build [`hit`] is an empty inline
//! function, so a production daemon cannot be made to kill itself by its environment.

/// The daemon passed the point `<kind>:<name>`. Dies here with SIGKILL if that point is
/// armed and this is its `n`th pass.
#[inline]
pub fn hit(kind: &str, name: &str) {
    #[cfg(debug_assertions)]
    armed::hit(kind, name);
    #[cfg(not(debug_assertions))]
    let _ = (kind, name);
}

#[cfg(debug_assertions)]
mod armed {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;

    struct Armed {
        point: String,
        nth: u32,
        seen: AtomicU32,
    }

    fn armed() -> Option<&'static Armed> {
        static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let spec = std::env::var("DMS_FAILPOINT").ok()?;
                let (point, nth) = match spec.split_once('@') {
                    Some((point, n)) => (point.to_owned(), n.parse().ok()?),
                    None => (spec, 1),
                };
                Some(Armed { point, nth, seen: AtomicU32::new(0) })
            })
            .as_ref()
    }

    pub(super) fn hit(kind: &str, name: &str) {
        let Some(armed) = armed() else { return };
        if armed.point.split_once(':') != Some((kind, name))
            || armed.seen.fetch_add(1, Ordering::SeqCst) + 1 != armed.nth
        {
            return;
        }
        // Written straight to stderr (not through tracing) so the line is out before death.
        eprintln!("dms-server: failpoint {kind}:{name} reached: SIGKILL");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; should it somehow not be delivered, stop anyway.
        std::process::abort();
    }
}
