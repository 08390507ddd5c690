//! Why a request failed, typed, and who words it.
//!
//! The machine decides failures as [`Cause`]s, and the engine's own refusals (a rejected
//! command, a decision the journal refused) are causes too. What a requester reads is the
//! wire's business: the daemon's wire module words every cause (and every success) in one
//! place, and hands that [`Wording`] to [`crate::decide`]. The text is rendered when the
//! failure is decided and the journal keeps it (`Failed { reason }`, `Answered`): a replay
//! answers with the bytes the first answer had, even if a later version words a cause
//! differently.

use crate::event::Cleanup;
use crate::ids::TargetId;
use crate::machine::Rejection;
use crate::nesting::Nesting;
use crate::outage::Outage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// Barbican (or the token) refused, or did not answer: the fetcher's reason.
    Credentials(String),
    /// The helper could not be started.
    HelperStart(String),
    /// The helper started but its mount did not appear, or did not answer.
    MountVerification(String),
    /// mount(8) failed, timed out, or left something else at the path.
    NfsMount(String),
    /// The NFS server's breaker is open: refused before mount(8) ran.
    NfsOutage(Outage),
    Unmount(String),
    /// A mount for a target that is mounted at another path.
    MountedElsewhere {
        target: TargetId,
        path: String,
    },
    /// A mount for a target that a failed operation left dirty.
    NeedsCleanup {
        target: TargetId,
        cleanup: Cleanup,
    },
    /// The requested path nests with another tracked target's.
    Nests {
        path: String,
        nesting: Nesting,
    },
    /// The machine would not take the command now (busy, already in flight).
    Refused(Rejection),
    /// The machine decided a record the journal refused as illegal: a bug, and nothing was
    /// done.
    Internal(String),
    /// The engine ran out of effects without an answer (a bug).
    NoAnswer,
}

/// How causes read to a requester (the reply's `error_msg`).
pub trait Wording {
    fn failure(&self, cause: &Cause) -> String;
}

/// A cause's `Debug` form: the wording of this crate's own tests and examples, which answer
/// no requester.
#[derive(Debug, Clone, Copy, Default)]
pub struct DebugWording;

impl Wording for DebugWording {
    fn failure(&self, cause: &Cause) -> String {
        format!("{cause:?}")
    }
}
