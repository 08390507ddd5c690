//! The DMS journal: what happened to every backup target on this node, and what to do next.
//!
//! Pure parts (no I/O, no clock, no async runtime): identifiers ([`ids`]), records
//! ([`event`]), folded state ([`state`]), the decision function ([`machine`]) and the
//! boot-time reconcile plan ([`reconcile`]). Impure parts, one dependency each: the record
//! format ([`codec`], the only bincode user) and the durable store ([`store`], the only sled
//! user).
//!
//! No sockets, no environment, no configuration file: the `dms-journal` command line that
//! reads this crate's journals lives in the daemon's crate (`dms::journal_cli`), next to
//! the configuration loader and admin client it shares with the daemon and `dms-ctl`.

pub mod cause;
pub mod codec;
pub mod event;
pub mod host;
pub mod ids;
pub mod machine;
pub mod nesting;
pub mod outage;
pub mod reconcile;
pub mod state;
pub mod store;

pub use cause::{Cause, DebugWording, Wording};
pub use event::{
    Cleanup, Clock, Deaths, Event, FailureClass, Outcome, Record, TargetKind, TargetSpec,
};
pub use host::{FsKind, FsTypes, MountBase, MountBaseError};
pub use ids::{
    BootId, HelperIdentity, IdError, OperationId, RequestKey, SpawnNonce, TargetId, Timestamp,
};
pub use machine::{decide, Command, Decision, Effect, Rejection, Seen};
pub use nesting::{Nesting, Relation};
pub use outage::Outage;
pub use state::{
    Action, HealStep, Healing, Illegal, JournalState, MountStep, Phase, TargetState, UnmountStep,
};
