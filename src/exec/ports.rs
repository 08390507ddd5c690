//! The engine's boundaries with the world, beside the executors that implement them: one
//! small trait each, so the engine can be run against recording fakes
//! (`crate::engine::fake`, tests only) as well as the host ([`HostProcesses`],
//! [`HostMounts`], [`Barbican`]).
//!
//! Process and mount operations that block (they wait for processes and the kernel) run on
//! the engine's blocking pool; mount(8) and umount(8) are awaited instead (the runtime
//! watches them). Each carries its own deadline.

use crate::exec::credentials::{Barbican, CredentialsError, S3Credentials};
use crate::exec::helper::{HelperEnv, HelperError, HelperExit, Helpers};
use crate::exec::mounts::{self, MountError, Mounter, Ran};
use dms_journal::machine::MountFailure;
use dms_journal::{HelperIdentity, TargetId};
use secrecy::SecretString;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// Where S3 credentials come from.
pub trait Credentials: Send + Sync + 'static {
    /// Why a fetch failed; its `Display` is the reason after "Failed to fetch credentials: "
    /// (the host's is [`CredentialsError`]).
    type Error: std::error::Error + Send + Sync + 'static;

    fn fetch(
        &self,
        secret_ref: &str,
        token: &SecretString,
    ) -> impl Future<Output = Result<S3Credentials, Self::Error>> + Send;
}

/// Helper processes and their PID files.
pub trait Processes: Send + Sync + 'static {
    /// Why an operation failed; its `Display` is the reason journaled and replied (the host's
    /// is [`HelperError`]).
    type Error: std::error::Error + Send + Sync + 'static;

    fn spawn(&self, target: &TargetId, env: &HelperEnv) -> Result<HelperIdentity, Self::Error>;
    /// Identity-checked; a helper already gone is success. `Some(path)`: the PID file that
    /// named this helper, removed with it.
    fn stop(
        &self,
        target: &TargetId,
        helper: HelperIdentity,
    ) -> Result<Option<PathBuf>, Self::Error>;
    /// Remove the target's PID file whatever it says (the target is being unmounted).
    /// `Some(path)` if there was one.
    fn remove_pid_file(&self, target: &TargetId) -> Result<Option<PathBuf>, Self::Error>;
    /// Where the target's PID file is (for the operator lines).
    fn pid_file(&self, target: &TargetId) -> PathBuf;
    /// How long `helper` has been running; `None` if it is not running (or not provably it).
    fn uptime(&self, helper: HelperIdentity) -> Option<Duration>;
    /// Remove it only if it still names `pid` (`None`: only if unreadable).
    fn remove_stale_pid_file(&self, target: &TargetId, pid: Option<u32>)
        -> Result<(), Self::Error>;
    fn write_pid_file(&self, target: &TargetId, pid: u32) -> Result<(), Self::Error>;
}

/// The mount table and mount(8)/umount(8).
pub trait Mounts: Send + Sync + 'static {
    /// Why an unmount, a detach or a removal failed; its `Display` is the reason journaled
    /// and replied (the host's is [`MountError`]).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Wait for `helper`'s FUSE mount at `path` to appear and answer.
    fn wait_for_helper_mount(&self, path: &str, helper: HelperIdentity)
        -> Result<(), MountFailure>;
    /// mount(8), and whether it ran into its deadline (the server's breaker counts that).
    /// Awaited: the program runs under the runtime, with no thread waiting for it.
    fn mount_nfs(
        &self,
        export: &str,
        options: &str,
        path: &str,
    ) -> impl Future<Output = Ran<Result<(), MountFailure>>> + Send;
    /// Success only when the mount table no longer has anything at `path`; and whether an
    /// umount(8) on the way ran into its deadline.
    fn unmount(
        &self,
        path: &str,
        nfs: bool,
    ) -> impl Future<Output = Ran<Result<(), Self::Error>>> + Send;
    /// Detach whatever is mounted at `path` at once (lazily), so that nothing is mounted
    /// there when this returns `Ok`; the process serving it is not waited for.
    fn detach(&self, path: &str) -> Result<(), Self::Error>;
    /// Remove the empty, unmounted mount directory of a target unmounted on request (a lost
    /// mount's directory stays, guarded against writes).
    fn remove_mount_point(&self, path: &str) -> Result<(), Self::Error>;
}

impl Credentials for Barbican {
    type Error = CredentialsError;

    async fn fetch(
        &self,
        secret_ref: &str,
        token: &SecretString,
    ) -> Result<S3Credentials, CredentialsError> {
        Barbican::fetch(self, secret_ref, token).await
    }
}

/// Helpers on this host; exits are reported to the supervisor through `exits`.
#[derive(Debug)]
pub struct HostProcesses {
    pub helpers: Helpers,
    pub mount_base: dms_journal::MountBase,
    pub exits: tokio::sync::mpsc::UnboundedSender<HelperExit>,
}

impl Processes for HostProcesses {
    type Error = HelperError;

    fn spawn(&self, target: &TargetId, env: &HelperEnv) -> Result<HelperIdentity, HelperError> {
        // The helper mounts onto its directory: created inside the base, never through a
        // symlink.
        if let Some(path) = env.get("vault_data_directory") {
            mounts::prepare_mount_point(&self.mount_base, std::path::Path::new(path))?;
        }
        self.helpers.spawn(target, env, self.exits.clone())
    }

    fn stop(
        &self,
        target: &TargetId,
        helper: HelperIdentity,
    ) -> Result<Option<PathBuf>, HelperError> {
        self.helpers.stop(target, helper)
    }

    fn remove_pid_file(&self, target: &TargetId) -> Result<Option<PathBuf>, HelperError> {
        Ok(self.helpers.pid_dir.remove(target)?)
    }

    fn pid_file(&self, target: &TargetId) -> PathBuf {
        self.helpers.pid_dir.path(target)
    }

    fn uptime(&self, helper: HelperIdentity) -> Option<Duration> {
        self.helpers.uptime(helper)
    }

    fn remove_stale_pid_file(
        &self,
        target: &TargetId,
        pid: Option<u32>,
    ) -> Result<(), HelperError> {
        Ok(self.helpers.pid_dir.remove_if(target, pid).map(drop)?)
    }

    fn write_pid_file(&self, target: &TargetId, pid: u32) -> Result<(), HelperError> {
        Ok(self.helpers.pid_dir.write(target, pid)?)
    }
}

/// Mounts on this host.
#[derive(Debug, Clone)]
pub struct HostMounts {
    pub mounter: Mounter,
    pub helpers: Helpers,
    pub helper_mount_timeout: Duration,
}

impl Mounts for HostMounts {
    type Error = MountError;

    fn wait_for_helper_mount(
        &self,
        path: &str,
        helper: HelperIdentity,
    ) -> Result<(), MountFailure> {
        let pidfd = self
            .helpers
            .pidfd(helper)
            .map_err(|e| MountFailure { reason: e.to_string(), maybe_mounted: true })?;
        let Some(pidfd) = pidfd else {
            let mounted = mounts::is_mounted(path, self.helper_mount_timeout);
            return Err(MountFailure {
                reason: "the helper exited before mounting".into(),
                maybe_mounted: mounted,
            });
        };
        mounts::wait_for_mount(
            path,
            mounts::MountKind::Fuse,
            Some(&pidfd),
            self.helper_mount_timeout,
        )
    }

    async fn mount_nfs(
        &self,
        export: &str,
        options: &str,
        path: &str,
    ) -> Ran<Result<(), MountFailure>> {
        self.mounter.mount_nfs(export, options, path).await
    }

    async fn unmount(&self, path: &str, nfs: bool) -> Ran<Result<(), MountError>> {
        self.mounter.unmount(path, nfs).await
    }

    fn detach(&self, path: &str) -> Result<(), MountError> {
        self.mounter.detach(path)
    }

    fn remove_mount_point(&self, path: &str) -> Result<(), MountError> {
        self.mounter.remove_mount_point(path)
    }
}
