//! Executors: the code that performs the effects the journal's state machine decides on,
//! one module per boundary with the host.

pub mod cgroup;
pub mod command;
pub mod credentials;
pub mod death;
pub mod helper;
pub mod keyring;
pub mod mount_point;
pub mod mounts;
pub mod observer;
pub mod pgroup;
pub mod ports;
pub mod spawn;
