//! The daemon's configuration (DESIGN §4): the seed's `[server]` INI file overridden by
//! `DMS_<KEY>` environment variables, checked completely at start-up.
//!
//! [`Config::load`] is pure apart from reading the one file: the environment comes in as a
//! map, so tests (and `--check-config` style tooling) see exactly what the daemon would.
//! A broken configuration is reported as one [`ConfigError`] listing every problem, each
//! with its key and where the value came from, so an operator fixes them in one round.
//! Every key is described in [`keys::KEYS`] and in `docs/configuration.md`. Tools that
//! need one path of the daemon's (`dms-journal`: the journal, the admin socket) look it up
//! with [`lookup_path`], the same loader applied to one key.

mod broker_tls;
mod broker_url;
mod ini;
pub mod keys;
mod load;
mod lookup;
mod values;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_broker;
#[cfg(test)]
mod tests_lookup;

pub use broker_url::{AmqpUrl, HostUrl};
pub use keys::{CONFIG_ENV, DEFAULT_CONFIG_PATH};
pub use load::{ChosenBy, FileError};
pub use lookup::{lookup_path, LookupError, PathKey};
pub use values::{LogFormat, LogLevel, NodeId, QueueType};

use crate::wire::Policy;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the daemon is configured with, validated. `Debug` is safe to log: the broker
/// password is redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file that was read, if any.
    pub config_file: Option<PathBuf>,
    pub rabbitmq_url: AmqpUrl,
    pub node_id: NodeId,
    pub auth_url: Option<String>,
    pub mount_base_path: dms_journal::MountBase,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub s3vaultfuse_bin: PathBuf,
    pub pid_dir: PathBuf,
    pub admin_socket: PathBuf,
    /// `None`: metrics are off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `metrics_listen` may be an unspecified address (checked at load).
    pub metrics_allow_any_address: bool,
    pub journal_path: PathBuf,
    pub mount_program: PathBuf,
    pub umount_program: PathBuf,
    pub rootwrap: Option<Rootwrap>,
    pub helper_log_dir: PathBuf,
    /// Each helper's cgroup: where, and its limits.
    pub helper_cgroup: HelperCgroup,
    /// Finished history older than this is compacted away.
    pub journal_retention: Duration,
    pub timeouts: Timeouts,
    pub max_concurrent_targets: usize,
    pub nfs_ops_per_server: usize,
    /// The first fail-fast window of an NFS server's breaker.
    pub nfs_breaker_backoff: Duration,
    /// How often a mounted target's dying helper is replaced.
    pub heal: Heal,
    pub prefetch: u16,
    /// How `dms.<node_id>` is declared.
    pub queue_type: QueueType,
    /// TLS towards the broker (`amqps://`).
    pub rabbitmq_tls: BrokerTls,
    /// How long a keyed request keeps its delivery before it is parked.
    pub park_after: Duration,
    pub barbican_ca_file: Option<PathBuf>,
    pub barbican_insecure: bool,
    /// Empty: any plain http(s) `secret_ref` is accepted.
    pub secret_ref_prefixes: Vec<String>,
    pub nfs_allowed_options: BTreeSet<String>,
    /// What the mount table may call a mounted NFS target.
    pub nfs_fstypes: Vec<String>,
}

/// TLS settings towards the broker; checked at load to be consistent with each other and
/// with the URL (set only for `amqps://`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerTls {
    /// PEM CA bundle; `None`: the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) and its key, presented when the broker asks.
    pub client_cert: Option<ClientCert>,
    /// No verification of the broker's certificate (an explicit, logged opt-out).
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A command prefix for mount/umount (`<bin> <conf> mount ...`), as OpenStack rootwrap
/// expects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootwrap {
    pub bin: PathBuf,
    pub conf: PathBuf,
}

/// The bound on healing: a helper that keeps dying is not replaced forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heal {
    /// Deaths healed within `window`; 0: healing is off.
    pub attempts: u32,
    pub window: Duration,
}

/// Each helper in a cgroup of its own ([`crate::exec::cgroup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperCgroup {
    pub root: crate::exec::cgroup::CgroupRoot,
    pub limits: crate::exec::cgroup::Limits,
}

/// Deadlines for every operation that can block (DESIGN §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub credentials: Duration,
    pub helper_mount: Duration,
    pub helper_stop_grace: Duration,
    pub nfs_mount: Duration,
    pub umount: Duration,
    /// Between two runtime resyncs (the level-triggered backstop of supervision).
    pub resync: Duration,
    /// How long a mount point may take to answer before it counts as dead.
    pub mount_probe: Duration,
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    /// `--config PATH`: wins over `DMS_CONFIG`; either one must exist.
    pub config_path: Option<PathBuf>,
    /// The environment (only `DMS_*` variables are read).
    pub env: &'a BTreeMap<String, String>,
    /// Read when neither `--config` nor `DMS_CONFIG` is given; may be absent.
    pub default_config_path: PathBuf,
}

impl<'a> Sources<'a> {
    pub fn new(config_path: Option<PathBuf>, env: &'a BTreeMap<String, String>) -> Self {
        Self { config_path, env, default_config_path: PathBuf::from(DEFAULT_CONFIG_PATH) }
    }
}

/// Where a value (or its absence) came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Env(String),
    /// `line` is `None` for problems with the file as a whole.
    File {
        path: PathBuf,
        line: Option<usize>,
    },
    Default,
    Unset,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::File { path, line: Some(line) } => write!(f, "{}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Default => f.write_str("built-in default"),
            Origin::Unset => f.write_str("not set"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key concerned; `None` for problems of the file itself.
    pub key: Option<String>,
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key} ({}): {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// Every problem found, in a stable order (file problems first, then keys in table order).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration ({} problem{}):\n  {}", .problems.len(),
        if .problems.len() == 1 { "" } else { "s" },
        .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl Config {
    /// Read and check the configuration from `sources`. Reads at most one file.
    pub fn load(sources: Sources<'_>) -> Result<Self, ConfigError> {
        load::load(sources)
    }

    /// [`Config::load`] with the process environment and `/etc/trilio-dms/server.conf`.
    pub fn from_process_env(cli_config: Option<PathBuf>) -> Result<Self, ConfigError> {
        let (env, mut problems) = process_env();
        match Self::load(Sources::new(cli_config, &env)) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError { problems }),
            Err(mut e) => {
                problems.append(&mut e.problems);
                Err(ConfigError { problems })
            }
        }
    }

    /// The queue this node consumes: `dms.<node_id>`.
    pub fn queue_name(&self) -> String {
        self.node_id.queue_name()
    }

    /// What requests may ask for, for [`crate::wire::parse`].
    pub fn wire_policy(&self) -> Policy {
        Policy {
            mount_base: self.mount_base_path.clone(),
            nfs_allowed_options: self.nfs_allowed_options.clone(),
            secret_ref_prefixes: self.secret_ref_prefixes.clone(),
        }
    }
}

/// This process's `DMS_*` variables (what [`Sources::env`] holds), and a problem for each
/// one that is not UTF-8 (left out of the map).
pub fn process_env() -> (BTreeMap<String, String>, Vec<Problem>) {
    let mut env = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with("DMS_")) else { continue };
        match value.into_string() {
            Ok(value) => {
                env.insert(name.to_owned(), value);
            }
            Err(_) => problems.push(Problem {
                key: None,
                origin: Origin::Env(name.to_owned()),
                message: "value is not valid UTF-8".into(),
            }),
        }
    }
    (env, problems)
}
