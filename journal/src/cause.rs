//! Why a request failed, typed; and its one rendering, the reply's `error_msg`.
//!
//! The machine decides failures as [`Cause`]s, and the engine's own refusals (a rejected
//! command, a decision the journal refused) are causes too, so every failure text a
//! requester can read is written here, next to its siblings. The text is rendered when the
//! failure is decided and the journal keeps it (`Failed { reason }`, `Answered`): a replay
//! answers with the bytes the first answer had, even if a later version words a cause
//! differently. Success texts are rendered from the typed [`Outcome`] by the wire codec.

use crate::event::{Cleanup, Outcome};
use crate::ids::TargetId;
use crate::machine::Rejection;
use crate::nesting::Nesting;
use crate::outage::Outage;
use std::fmt;

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

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Credentials(e) => write!(f, "Failed to fetch credentials: {e}"),
            Cause::HelperStart(e) => write!(f, "Failed to start helper: {e}"),
            Cause::MountVerification(e) => write!(f, "Mount verification failed: {e}"),
            Cause::NfsMount(e) => write!(f, "NFS mount failed: {e}"),
            Cause::NfsOutage(outage) => write!(f, "NFS mount failed: {outage}"),
            Cause::Unmount(e) => write!(f, "Unmount failed: {e}"),
            Cause::MountedElsewhere { target, path } => {
                write!(f, "Target {target} is already mounted at {path}; unmount it first")
            }
            Cause::NeedsCleanup { target, cleanup } => write!(
                f,
                "Target {target} needs cleanup after a failed operation ({cleanup}); send an \
                 unmount or wait for the reconciler"
            ),
            Cause::Nests { path, nesting } => {
                write!(f, "Mount path {path} {nesting}; targets never nest")
            }
            Cause::Refused(rejection) => write!(f, "{rejection}"),
            Cause::Internal(illegal) => write!(f, "internal error: {illegal}; nothing was done"),
            Cause::NoAnswer => f.write_str("the request ended without an answer"),
        }
    }
}

impl From<Cause> for Outcome {
    fn from(cause: Cause) -> Outcome {
        Outcome::Failed { reason: cause.to_string() }
    }
}
