//! Proof that a process the journal does not name is a helper for a mount path.
//!
//! The journal names the helpers the daemon spawned by PID, start time and boot id, and
//! that identity is proof enough; a helper spawned just before a crash, before its identity
//! was journaled, is proven by the nonce of its journaled spawn intent (see
//! [`super::Host::observe`]). Any other process (one an operator started by hand, or one
//! whose wrapper dropped the nonce from its environment) claims a path
//! through its environment (`vault_data_directory`), and anyone can set an environment or
//! an `argv[0]`. So a claim counts only when
//! 1. the process is owned by the daemon's user (all four of its uids), and
//! 2. it runs the configured helper: its `/proc/<pid>/exe` is the helper binary, or, for a
//!    script, the interpreter its `#!` line names with the script among its first two
//!    arguments; **or** it holds the FUSE connection of the mount at the path (a helper
//!    that re-executes another program, like a wrapper that `exec`s s3fs).
//!
//! Whether it holds that connection ([`Proof::serves_mount`]) is read from its `/dev/fuse`
//! descriptors: Linux 6.15 and later name each one's connection, which must equal the
//! mount's minor device number. An older kernel does not say which mount a descriptor
//! serves; there, holding any `/dev/fuse` descriptor counts. The reconciler requires it
//! before adopting such a helper or taking it for a path where a mount exists, so a process
//! that only claims a dead mount's path is never signalled.

use super::procfs::{FuseFds, Procfs, MOUNT_PATH_VAR};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What looking at one process established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// It does not claim to serve any path.
    None,
    /// Proven a helper for `path`.
    Helper { path: String, serves_mount: bool },
    /// It claims `path` but the proof failed, for the reason given.
    Unproven { path: String, why: String },
}

/// The facts a proof is checked against, gathered once per observation pass.
#[derive(Debug, Clone)]
pub struct Proof {
    uid: u32,
    helper: PathBuf,
    /// The interpreter of a script helper, resolved as the kernel would run it.
    interpreter: Option<PathBuf>,
}

impl Proof {
    /// For helpers of `helper_bin`, owned by this process's effective user.
    pub fn new(helper_bin: &Path) -> Self {
        let helper = std::fs::canonicalize(helper_bin).unwrap_or_else(|_| helper_bin.into());
        let interpreter = interpreter_of(&helper);
        Self { uid: rustix::process::geteuid().as_raw(), helper, interpreter }
    }

    /// Check process `pid`. `fuse_mount` is the minor device number of the FUSE mount at
    /// the path it claims, if there is one.
    pub fn check(
        &self,
        procfs: &Procfs,
        pid: u32,
        fuse_mount: impl FnOnce(&str) -> Option<u32>,
    ) -> Claim {
        let Some(path) = procfs.env_var(pid, MOUNT_PATH_VAR) else { return Claim::None };
        match procfs.uids(pid) {
            Some(uids) if uids.iter().all(|u| *u == self.uid) => {}
            Some(uids) => {
                let why = format!("owned by uid {}, not {}", uids[0], self.uid);
                return Claim::Unproven { path, why };
            }
            None => return Claim::None, // gone while we looked
        }
        let serves_mount = fuse_mount(&path).is_some_and(|minor| {
            let FuseFds { labelled, unlabelled } = procfs.fuse_connections(pid);
            labelled.contains(&minor) || (labelled.is_empty() && unlabelled > 0)
        });
        if serves_mount || self.runs_helper(procfs, pid) {
            return Claim::Helper { path, serves_mount };
        }
        let exe = procfs.exe(pid).map_or_else(|| "?".into(), |e| e.display().to_string());
        let why = format!(
            "runs {exe}, not {}, and serves no FUSE mount at the path",
            self.helper.display()
        );
        Claim::Unproven { path, why }
    }

    fn runs_helper(&self, procfs: &Procfs, pid: u32) -> bool {
        let Some(exe) = procfs.exe(pid) else { return false };
        if exe == self.helper {
            return true;
        }
        if self.interpreter.as_deref() != Some(exe.as_path()) {
            return false;
        }
        // `interp [arg] script`: the kernel passes the script's path as given to exec.
        let script = self.helper.as_os_str().as_encoded_bytes();
        procfs.cmdline(pid).iter().skip(1).take(2).any(|arg| {
            arg.as_slice() == script
                || std::fs::canonicalize(std::ffi::OsStr::from_bytes(arg))
                    .is_ok_and(|p| p == self.helper)
        })
    }
}

/// The program a `#!` line runs, canonicalized; `#!/usr/bin/env NAME` is NAME on the PATH.
fn interpreter_of(script: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(script).ok()?.take(256).read_to_end(&mut head).ok()?;
    let line = head.strip_prefix(b"#!")?.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_ascii_whitespace();
    let program = PathBuf::from(words.next()?);
    if program.file_name().is_some_and(|n| n == "env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        return std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .and_then(|p| std::fs::canonicalize(p).ok());
    }
    std::fs::canonicalize(program).ok()
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
