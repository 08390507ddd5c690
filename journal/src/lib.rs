//! The DMS journal: what happened to every backup target on this node, and what to do next.
//!
//! Pure parts (no I/O, no clock, no async runtime): identifiers ([`ids`]), records
//! ([`event`]), folded state ([`state`]), the decision function ([`machine`]) and the
//! boot-time reconcile plan ([`reconcile`]). Impure parts, one dependency each: the record
//! format ([`codec`], the only bincode user) and the durable store ([`store`], the only sled
//! user).
//!
//! With the `cli` feature (on by default) the crate also holds the `dms-journal` command
//! line ([`cli`]): the binary runs it offline, and the daemon runs the very same code to
//! answer it through its admin socket, so both print the same bytes.

#[cfg(feature = "cli")]
pub mod cli;
pub mod codec;
pub mod event;
pub mod ids;
pub mod machine;
pub mod nesting;
pub mod outage;
pub mod reconcile;
pub mod state;
pub mod store;

pub use event::{Cleanup, Clock, Event, FailureClass, Outcome, Record, TargetKind, TargetSpec};
pub use ids::{BootId, HelperIdentity, IdError, OperationId, RequestKey, TargetId, Timestamp};
pub use machine::{decide, Command, Decision, Effect, Rejection};
pub use nesting::{Nesting, Relation};
pub use outage::Outage;
pub use state::{Action, Illegal, JournalState, MountStep, Phase, TargetState, UnmountStep};
