//! Sources → [`Config`]: file first, environment over it, then every key parsed, with each
//! failure collected rather than returned, so one run reports all of them.

use super::broker_url::AmqpUrl;
use super::keys::{self, Fallback, Key, CONFIG_ENV};
use super::values::{self, LogFormat, LogLevel, NodeId, QueueType};
use super::{
    ini, Config, ConfigError, Heal, HelperCgroup, Origin, Problem, Rootwrap, Sources, Timeouts,
};
use crate::wire::nfs::DEFAULT_ALLOWED_OPTIONS;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub(super) struct Loader {
    pub(super) values: BTreeMap<&'static str, (String, Origin)>,
    pub(super) problems: Vec<Problem>,
}

pub(super) fn load(sources: Sources<'_>) -> Result<Config, ConfigError> {
    let mut loader = Loader::new();
    let config_file = match loader.read_file(&sources) {
        Ok(file) => file,
        Err(e) => {
            loader.problems.push(e.problem());
            None
        }
    };
    for key in keys::KEYS {
        if let Some(value) = sources.env.get(key.env) {
            loader.values.insert(key.name, (value.clone(), Origin::Env(key.env.to_owned())));
        }
    }
    let config = loader.build(config_file);
    match config {
        Some(config) if loader.problems.is_empty() => Ok(config),
        _ => {
            if loader.problems.is_empty() {
                // Unreachable by construction: every `None` above recorded a problem.
                loader.problems.push(Problem {
                    key: None,
                    origin: Origin::Unset,
                    message: "configuration incomplete".into(),
                });
            }
            Err(ConfigError { problems: loader.problems })
        }
    }
}

/// What named the file that was read: `--config`, `DMS_CONFIG` or neither (the default
/// location, which may be absent). Shown by tools that word their own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChosenBy {
    Flag,
    Env,
    DefaultLocation,
}

impl fmt::Display for ChosenBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChosenBy::Flag => "--config",
            ChosenBy::Env => CONFIG_ENV,
            ChosenBy::DefaultLocation => "default location",
        })
    }
}

/// The selected file could not be used as a whole.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("it is not valid UTF-8")]
    NotUtf8,
}

/// A file that was selected but could not be read, and why.
#[derive(Debug)]
pub(super) struct Unreadable {
    pub path: PathBuf,
    pub by: ChosenBy,
    pub error: FileError,
}

impl Unreadable {
    /// The daemon's wording: one problem of the file as a whole.
    fn problem(&self) -> Problem {
        let message = match &self.error {
            FileError::Io(e) => format!("cannot be read: {e}"),
            FileError::NotUtf8 => "is not valid UTF-8".into(),
        };
        Problem { key: None, origin: Origin::File { path: self.path.clone(), line: None }, message }
    }
}

impl Loader {
    pub(super) fn new() -> Self {
        Loader { values: BTreeMap::new(), problems: Vec::new() }
    }

    /// Reads the selected file into `values` (its lines' problems into `problems`); returns
    /// its path if it was read, nothing if the default location holds no file.
    pub(super) fn read_file(
        &mut self,
        sources: &Sources<'_>,
    ) -> Result<Option<PathBuf>, Unreadable> {
        let from_env = sources.env.get(CONFIG_ENV).filter(|p| !p.is_empty()).map(PathBuf::from);
        let (path, by) = match (&sources.config_path, from_env) {
            (Some(path), _) => (path.clone(), ChosenBy::Flag),
            (None, Some(path)) => (path, ChosenBy::Env),
            (None, None) => (sources.default_config_path.clone(), ChosenBy::DefaultLocation),
        };
        let text = match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => return Err(Unreadable { path, by, error: FileError::NotUtf8 }),
            },
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && by == ChosenBy::DefaultLocation =>
            {
                return Ok(None)
            }
            Err(e) => return Err(Unreadable { path, by, error: FileError::Io(e) }),
        };
        let parsed = ini::parse(&text);
        let at = |line| Origin::File { path: path.clone(), line: Some(line) };
        for (line, message) in parsed.errors {
            self.problems.push(Problem { key: None, origin: at(line), message });
        }
        for (name, entry) in parsed.entries {
            match keys::find(&name) {
                Some(key) => {
                    self.values.insert(key.name, (entry.value, at(entry.line)));
                }
                None => self.problems.push(Problem {
                    key: Some(name.clone()),
                    origin: at(entry.line),
                    message: unknown_key_message(&name),
                }),
            }
        }
        Ok(Some(path))
    }

    pub(super) fn problem(&mut self, key: &Key, origin: Origin, message: String) {
        self.problems.push(Problem { key: Some(key.name.to_owned()), origin, message });
    }

    /// `Some(Some(v))`: set and valid, or defaulted; `Some(None)`: optional and unset (or
    /// set empty, which switches it off); `None`: a problem was recorded.
    pub(super) fn get<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        let key = keys::find(name)?;
        let (raw, origin) = match self.values.get(key.name) {
            Some((raw, origin)) => (raw.clone(), origin.clone()),
            None => match key.fallback {
                Fallback::Default(default) => (default.to_owned(), Origin::Default),
                Fallback::Required => {
                    let msg = format!("is required: set {} or `{}` in [server]", key.env, key.name);
                    self.problem(key, Origin::Unset, msg);
                    return None;
                }
                Fallback::Optional | Fallback::Builtin(_) => return Some(None),
            },
        };
        if raw.is_empty() {
            return match key.fallback {
                Fallback::Optional => Some(None),
                Fallback::Required => {
                    self.problem(key, origin, "is required but empty".into());
                    None
                }
                Fallback::Default(_) | Fallback::Builtin(_) => {
                    self.problem(key, origin, "is empty; unset it to get the default".into());
                    None
                }
            };
        }
        match parse(&raw) {
            Ok(value) => Some(Some(value)),
            Err(message) => {
                self.problem(key, origin, message);
                None
            }
        }
    }

    /// A key with a default or required: always a value when no problem was recorded.
    pub(super) fn value<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.get(name, parse).flatten()
    }

    pub(super) fn origin(&self, name: &str) -> Origin {
        self.values.get(name).map_or(Origin::Unset, |(_, origin)| origin.clone())
    }

    fn build(&mut self, config_file: Option<PathBuf>) -> Option<Config> {
        // Every key is parsed before any `?`, so all problems are collected.
        let rabbitmq_url = self.value("rabbitmq_url", AmqpUrl::parse);
        let node_id = self.value("node_id", NodeId::parse);
        let auth_url = self.get("auth_url", values::http_url);
        let mount_base_path = self.value("mount_base_path", values::mount_base);
        let log_level = self.value("log_level", LogLevel::parse);
        let log_format = self.value("log_format", LogFormat::parse);
        let s3vaultfuse_bin = self.value("s3vaultfuse_bin", values::abs_path);
        let pid_dir = self.value("pid_dir", values::abs_path);
        let admin_socket = self.value("admin_socket", values::abs_path);
        let metrics_listen = self.value("metrics_listen", values::listen_address);
        let metrics_allow_any_address = self.value("metrics_allow_any_address", values::boolean);
        let journal_path = self.value("journal_path", values::abs_path);
        let mount_program = self.value("mount_program", values::program);
        let umount_program = self.value("umount_program", values::program);
        let rootwrap_bin = self.get("rootwrap_bin", values::abs_path);
        let rootwrap_conf = self.get("rootwrap_conf", values::abs_path);
        let helper_log_dir = self.value("helper_log_dir", values::abs_path);
        let journal_retention_days =
            self.value("journal_retention_days", |s| values::integer::<u32>(s, 1, 3650));
        let helper_cgroup_root =
            self.value("helper_cgroup_root", crate::exec::cgroup::CgroupRoot::parse);
        let helper_memory_max = self.get("helper_memory_max", values::bytes);
        let helper_tasks_max =
            self.get("helper_tasks_max", |s| values::integer::<u64>(s, 1, 4_194_304));
        let credentials = self.value("credentials_timeout", values::seconds);
        let helper_mount = self.value("helper_mount_timeout", values::seconds);
        let helper_stop_grace = self.value("helper_stop_grace", values::seconds);
        let heal_attempts = self.value("heal_attempts", |s| values::integer::<u32>(s, 0, 100));
        let heal_window = self.value("heal_window", values::seconds);
        let nfs_mount = self.value("nfs_mount_timeout", values::seconds);
        let umount = self.value("umount_timeout", values::seconds);
        let resync = self.value("resync_interval", values::seconds);
        let mount_probe = self.value("mount_probe_timeout", values::seconds);
        let max_concurrent_targets =
            self.value("max_concurrent_targets", |s| values::integer::<usize>(s, 1, 1024));
        let nfs_ops_per_server =
            self.value("nfs_ops_per_server", |s| values::integer::<usize>(s, 1, 64));
        let nfs_breaker_backoff = self.value("nfs_breaker_backoff", values::seconds);
        let prefetch = self.value("prefetch", |s| values::integer::<u16>(s, 1, 65535));
        let queue_type = self.value("queue_type", QueueType::parse);
        let rabbitmq_tls = self.broker_tls(rabbitmq_url.as_ref());
        let park_after = self.value("park_after", values::seconds);
        let barbican_ca_file = self.get("barbican_ca_file", values::abs_path);
        let barbican_insecure = self.value("barbican_insecure", values::boolean);
        let secret_ref_prefixes = self.get("secret_ref_prefixes", values::url_prefixes);
        let nfs_allowed_options = self.get("nfs_allowed_options", values::nfs_option_names);
        let nfs_fstypes = self.value("nfs_fstypes", values::fstypes);

        let rootwrap = match (rootwrap_bin.clone()?, rootwrap_conf.clone()?) {
            (Some(bin), Some(conf)) => Some(Rootwrap { bin, conf }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                let (set, unset) = if rootwrap_bin.flatten().is_some() {
                    ("rootwrap_bin", "rootwrap_conf")
                } else {
                    ("rootwrap_conf", "rootwrap_bin")
                };
                let origin = self.origin(set);
                let key = keys::find(set)?;
                self.problem(
                    key,
                    origin,
                    format!("is set but {unset} is not; set both or neither"),
                );
                return None;
            }
        };
        // The endpoint has no TLS and no authentication: every address of the host (the
        // network's too) only when the operator says so.
        if let (Some(Some(addr)), Some(false)) = (metrics_listen, metrics_allow_any_address) {
            if values::is_unspecified(addr.ip()) {
                let origin = self.origin("metrics_listen");
                let key = keys::find("metrics_listen")?;
                self.problem(
                    key,
                    origin,
                    format!(
                        "{} listens on every address of this host, reachable from the network; \
                         use 127.0.0.1 or a specific local address, or set \
                         metrics_allow_any_address = true",
                        addr.ip()
                    ),
                );
                return None;
            }
        }
        let barbican_ca_file = barbican_ca_file?;
        if barbican_insecure? && barbican_ca_file.is_some() {
            let origin = self.origin("barbican_ca_file");
            let key = keys::find("barbican_ca_file")?;
            self.problem(key, origin, "has no effect with barbican_insecure = true".into());
            return None;
        }
        Some(Config {
            config_file,
            rabbitmq_url: rabbitmq_url?,
            node_id: node_id?,
            auth_url: auth_url?,
            mount_base_path: mount_base_path?,
            log_level: log_level?,
            log_format: log_format?,
            s3vaultfuse_bin: s3vaultfuse_bin?,
            pid_dir: pid_dir?,
            admin_socket: admin_socket?,
            metrics_listen: metrics_listen?,
            metrics_allow_any_address: metrics_allow_any_address?,
            journal_path: journal_path?,
            mount_program: mount_program?,
            umount_program: umount_program?,
            rootwrap,
            helper_log_dir: helper_log_dir?,
            helper_cgroup: HelperCgroup {
                root: helper_cgroup_root?,
                limits: crate::exec::cgroup::Limits {
                    memory_max: helper_memory_max?,
                    tasks_max: helper_tasks_max?,
                },
            },
            journal_retention: std::time::Duration::from_secs(
                u64::from(journal_retention_days?) * 86_400,
            ),
            timeouts: Timeouts {
                credentials: credentials?,
                helper_mount: helper_mount?,
                helper_stop_grace: helper_stop_grace?,
                nfs_mount: nfs_mount?,
                umount: umount?,
                resync: resync?,
                mount_probe: mount_probe?,
            },
            max_concurrent_targets: max_concurrent_targets?,
            nfs_ops_per_server: nfs_ops_per_server?,
            nfs_breaker_backoff: nfs_breaker_backoff?,
            heal: Heal { attempts: heal_attempts?, window: heal_window? },
            prefetch: prefetch?,
            queue_type: queue_type?,
            rabbitmq_tls: rabbitmq_tls?,
            park_after: park_after?,
            barbican_ca_file,
            barbican_insecure: barbican_insecure?,
            secret_ref_prefixes: secret_ref_prefixes?.unwrap_or_default(),
            nfs_fstypes: nfs_fstypes?,
            nfs_allowed_options: nfs_allowed_options?.unwrap_or_else(|| {
                DEFAULT_ALLOWED_OPTIONS.iter().map(|s| (*s).to_owned()).collect()
            }),
        })
    }
}

/// A typo such as `mount_base` should point at `mount_base_path`.
fn unknown_key_message(name: &str) -> String {
    let similar = keys::KEYS.iter().find(|k| {
        k.name.starts_with(name) || name.starts_with(k.name) || k.env.eq_ignore_ascii_case(name)
    });
    match similar {
        Some(k) => format!("unknown key (did you mean `{}`?)", k.name),
        None => "unknown key".into(),
    }
}
