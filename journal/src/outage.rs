//! An NFS server that stopped answering: the fact `decide` gets with an NFS mount command
//! while that server's circuit breaker is open.
//!
//! One hung NFS server often backs every target of a node. Each mount against it would
//! hold a mount(8) for the whole timeout only to fail the same way, so after one timed out,
//! the engine's breaker says the server is out (for a back-off window, until a probe gets
//! an answer) and the machine answers such mounts at once, with what happened and until
//! when. The breaker's bookkeeping is runtime state in the engine; the refusal is decided
//! here, like every answer.

use crate::ids::Timestamp;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// The host part of the export.
    pub server: String,
    /// What the operation that opened the breaker reported (a timeout).
    pub cause: String,
    /// When the breaker opened.
    pub since: Timestamp,
    /// When the next operation is let through as the probe.
    pub until: Timestamp,
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NFS server {} is not answering (since {}: {}); its mounts fail fast until {}, \
             when one is let through to probe it",
            self.server, self.since, self.cause, self.until
        )
    }
}
