//! The host as every part of the daemon sees it: the mount table ([`mount_table`]: read,
//! parsed, searched and watched in one place) and the probe of a mount point
//! ([`probe`]: a deadline, and a stuck-set so a hung mount never collects threads). The
//! executors and the observer both look through these, so they cannot disagree about what
//! is mounted or what answers. And the daemon's own memory ([`memory`]): what a burst freed
//! is handed back to the kernel.

pub mod memory;
pub mod mount_table;
pub mod probe;
