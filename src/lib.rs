//! `dms`: the Dynamic Mount Service daemon.
//!
//! The daemon (`dms-server`: configuration, RabbitMQ transport, executors, engine,
//! supervisor, systemd notification) is built on the journal crate re-exported here, which
//! holds the pure state machine, the reconcile plan and the store. [`node::run`] is the
//! daemon as one async function over its executors; [`server::run`] hands it this host's,
//! and [`daemon::serve`] runs that as the `dms-server` process.
//! The operator's tools live here too, on the daemon's configuration loader and admin
//! client: `dms-ctl` ([`ctl`]) and `dms-journal` ([`journal_cli`]).

pub use dms_journal as journal;

pub mod admin;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod engine;
pub mod exec;
pub mod failpoint;
pub mod host;
pub mod intake;
pub mod journal_cli;
pub mod metrics;
pub mod node;
pub mod observe;
pub mod server;
pub mod stop;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
pub mod transport;
pub mod wire;
