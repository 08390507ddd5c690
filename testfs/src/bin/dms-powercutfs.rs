//! `dms-powercutfs BACKING_DIR MOUNT_POINT`: serves BACKING_DIR's tree at MOUNT_POINT from
//! memory, and writes back to BACKING_DIR only what was made durable (fsync, fsyncdir)
//! when it gets SIGUSR1 (a power cut), or everything on SIGTERM/SIGINT/umount (a clean
//! shutdown). See testfs/README.md, "dms-powercutfs".

// The mount code is shared with `dms-testfs` (the crate has no library).
#[path = "../mount.rs"]
mod mount;
#[path = "../powercut/mod.rs"]
mod powercut;

fn main() -> std::process::ExitCode {
    powercut::run::main(std::env::args_os().skip(1).collect())
}
