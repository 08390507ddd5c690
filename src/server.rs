//! `run(config, shutdown)`: `dms-server`'s daemon as one function: it builds this host's
//! executors (Barbican, helper processes, mount(8), the mount table and `/proc`) and hands
//! them with the broker transport to [`crate::node::run`], the same entry point the
//! in-process harness drives with fakes.

use crate::config::Config;
use crate::engine::Executors;
use crate::exec::cgroup::HelperCgroups;
use crate::exec::command::Program;
use crate::exec::credentials::{Barbican, BarbicanConfig};
use crate::exec::helper::Helpers;
use crate::exec::mounts::Mounter;
use crate::exec::observer::HostObserver;
use crate::exec::ports::{HostMounts, HostProcesses};
use crate::node::{Intake, Ports};
use crate::observe::pidfile::PidDir;
use crate::observe::procfs::Procfs;
use crate::observe::{Host, ObserveError};
use crate::supervisor::Exits;
use dms_journal::FsTypes;
use tokio::sync::watch;

pub use crate::node::{Exit, ServerError};

/// Run this host's daemon until `shutdown` turns true, or the journal fails and takes
/// writes again ([`crate::intake`]). Mounts and helpers are left running either way (DESIGN
/// §3.3). This function owns the process: once `shutdown` turns true, the process exits at
/// [`crate::stop::STOP_DEADLINE`] even if this has not returned.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<Exit, ServerError> {
    let procfs = Procfs::default();
    let boot = procfs.boot_id().map_err(ObserveError::from)?;
    raise_open_file_limit();
    // Helper exits arrive from the spawner's reapers and the pidfd watches; the supervisor
    // acts on them once the engine exists. An unbounded sender works from any thread.
    let exits = Exits::default();
    let exits_tx = exits.sender();
    let helpers = Helpers {
        bin: config.s3vaultfuse_bin.clone(),
        log_dir: config.helper_log_dir.clone(),
        pid_dir: PidDir::new(&config.pid_dir),
        procfs: procfs.clone(),
        boot,
        stop_grace: config.timeouts.helper_stop_grace,
        reaping: Default::default(),
        cgroups: helper_cgroups(&config),
    };
    let program = |p: &std::path::Path| Program {
        program: p.to_path_buf(),
        rootwrap: config.rootwrap.as_ref().map(|r| (r.bin.clone(), r.conf.clone())),
    };
    let mounter = Mounter {
        mount: program(&config.mount_program),
        umount: program(&config.umount_program),
        mount_timeout: config.timeouts.nfs_mount,
        umount_timeout: config.timeouts.umount,
        fs_types: FsTypes::new(config.nfs_fstypes.clone()),
        mount_base: config.mount_base_path.clone(),
    };
    let credentials = Barbican::new(BarbicanConfig {
        timeout: config.timeouts.credentials,
        ca_file: config.barbican_ca_file.clone(),
        insecure: config.barbican_insecure,
        ..BarbicanConfig::default()
    })?;
    let executors = Executors {
        credentials,
        processes: HostProcesses {
            helpers: helpers.clone(),
            mount_base: config.mount_base_path.clone(),
            exits: exits_tx,
        },
        mounts: HostMounts {
            mounter,
            helpers: helpers.clone(),
            helper_mount_timeout: config.timeouts.helper_mount,
        },
    };
    let host = Host {
        procfs,
        pid_dir: PidDir::new(&config.pid_dir),
        mount_base: config.mount_base_path.clone(),
        helper_bin: config.s3vaultfuse_bin.clone(),
        probe_timeout: config.timeouts.mount_probe,
        fs_types: FsTypes::new(config.nfs_fstypes.clone()),
    };
    let ports = Ports {
        executors,
        observer: HostObserver { host, helpers },
        exits,
        intake: Intake::Broker,
        owns_process: true,
    };
    crate::node::run(ports, config, shutdown).await
}

/// Each helper's cgroup, as this host offers it: one line at start either way, saying where
/// or why not and what that costs.
fn helper_cgroups(config: &Config) -> Option<HelperCgroups> {
    let wanted = &config.helper_cgroup;
    match HelperCgroups::detect(&wanted.root, wanted.limits) {
        Ok(Some(cgroups)) => {
            tracing::info!(
                cgroups = %cgroups.layout(),
                memory_max = ?wanted.limits.memory_max,
                tasks_max = ?wanted.limits.tasks_max,
                "each helper runs in a cgroup of its own"
            );
            Some(cgroups)
        }
        Ok(None) => {
            tracing::info!(
                "helper cgroups are off (helper_cgroup_root = off): no helper limits, and an \
                 OOM kill is recognised from the kernel log only"
            );
            None
        }
        Err(error) => {
            tracing::warn!(
                %error,
                "helpers run without cgroups: helper_memory_max and helper_tasks_max are not \
                 applied, a helper's leftovers are found by its process group only, and an OOM \
                 kill is recognised from the kernel log only"
            );
            None
        }
    }
}

/// One pidfd per watched helper, one PID file and log per target: a node with a thousand
/// targets needs more than the usual soft limit of 1024 open files. Raise it to the hard
/// limit (what systemd's `LimitNOFILE=` or the shell allows).
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open file limit");
        }
    }
}
