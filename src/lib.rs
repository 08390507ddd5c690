//! `dms`: the Dynamic Mount Service daemon.
//!
//! The daemon (`dms-server`: configuration, RabbitMQ transport, executors, engine,
//! reconciler) is built on the journal crate re-exported here. Until it lands, this crate
//! only pins the workspace shape of DESIGN §6; everything that exists today lives in
//! [`journal`].

pub use dms_journal as journal;

pub mod config;
pub mod engine;
pub mod exec;
pub mod failpoint;
pub mod observe;
pub mod server;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
pub mod transport;
pub mod wire;
