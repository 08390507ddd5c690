//! Running mount(8) and umount(8) (or the configured stand-ins): argv only, never a shell,
//! always with a deadline, optionally behind a rootwrap prefix.
//!
//! A hung NFS server makes mount(8) block in the kernel; the deadline turns that into a
//! failure of that one target (DESIGN §3.5) instead of a stuck worker. The deadline bounds
//! the whole call: the program runs in a process group of its own, its output is read with
//! the same deadline, and at the deadline the whole group is killed and the caller
//! answered ([`super::pgroup`] says how, and why stragglers die even after a clean exit).

use super::pgroup;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{program} did not finish within {timeout:?} and was killed")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed { program: String, status: String, stderr: String },
}

/// A program and the prefix it runs behind (`rootwrap_bin rootwrap_conf`, DESIGN §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub program: PathBuf,
    pub rootwrap: Option<(PathBuf, PathBuf)>,
}

impl Program {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into(), rootwrap: None }
    }

    /// The full argv for `args`.
    pub fn argv(&self, args: &[&str]) -> Vec<OsString> {
        let mut argv = Vec::new();
        if let Some((bin, conf)) = &self.rootwrap {
            argv.push(bin.clone().into_os_string());
            argv.push(conf.clone().into_os_string());
        }
        argv.push(self.program.clone().into_os_string());
        argv.extend(args.iter().map(OsString::from));
        argv
    }

    /// Run with `args`; success is exit status 0 within `timeout`. Returns stdout. The
    /// call returns by `timeout` (plus a fraction of a second to kill and collect), whatever
    /// the program or its children do. Awaited on the runtime: no thread waits for it.
    pub async fn run(&self, args: &[&str], timeout: Duration) -> Result<String, RunError> {
        self.run_in(args, timeout, &pgroup::RUNNING).await
    }

    async fn run_in(
        &self,
        args: &[&str],
        timeout: Duration,
        running: &pgroup::Running,
    ) -> Result<String, RunError> {
        let deadline = Instant::now() + timeout;
        let argv = self.argv(args);
        let name = self.program.display().to_string();
        let spawn_error =
            |e: std::io::Error| RunError::Spawn { program: name.clone(), reason: e.to_string() };
        let (first, rest) = argv
            .split_first()
            .ok_or_else(|| spawn_error(std::io::ErrorKind::InvalidInput.into()))?;
        let mut command = Command::new(first);
        command
            .args(rest)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C");
        let outcome = pgroup::run(command, deadline, running).await.map_err(spawn_error)?;
        match outcome.status {
            None => Err(RunError::Timeout { program: name, timeout }),
            Some(status) if status.success() => Ok(outcome.stdout),
            Some(status) => Err(RunError::Failed {
                program: name,
                status: status.to_string(),
                stderr: outcome.stderr.trim().to_owned(),
            }),
        }
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
