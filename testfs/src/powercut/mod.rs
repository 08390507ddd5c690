//! `dms-powercutfs`: an in-memory FUSE filesystem that can "lose power", for crash tests
//! of programs that rely on fsync (like Jepsen's LazyFS). It keeps two images of its tree:
//! the live one, which every operation sees, and the durable one, which only fsync (file
//! data) and fsyncdir (directory entries) advance. On SIGUSR1 it writes the durable image
//! to its backing directory and exits; on SIGTERM/SIGINT or an external umount, the live
//! one. The contract is in testfs/README.md.
//!
//! - `pages.rs`: file contents as shared 4 KiB pages; fsync costs what changed.
//! - `model.rs`, `durable.rs`: the inode table with both images; the live operations, and
//!   fsync, fsyncdir, inode lifetime and image extraction.
//! - `image.rs`, `backing.rs`: a tree as plain values; loading and writing the backing dir.
//! - `fuse.rs`: the `fuser::Filesystem` over the model.
//! - `run.rs`: arguments, signals, mount, and the stop.

mod backing;
mod durable;
mod fuse;
mod image;
mod model;
mod pages;
pub mod run;

#[cfg(test)]
mod tests;
