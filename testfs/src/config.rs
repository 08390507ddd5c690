//! What the helper learns from its environment: the mount path, the credential check and
//! the fault switch. The daemon starts helpers with an explicit environment (DESIGN §2), so
//! everything here is read from variables, never from arguments.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Mount path, as the daemon passes it to `s3vaultfuse`.
pub const MOUNT_PATH_VAR: &str = "vault_data_directory";
/// Fault switch; see [`Fault`].
pub const FAULT_VAR: &str = "DMS_TESTFS_FAULT";
/// Comma-separated list that replaces [`DEFAULT_REQUIRED`]; an empty value requires nothing.
pub const REQUIRE_VAR: &str = "DMS_TESTFS_REQUIRE_ENV";
/// Variables a helper must have unless [`REQUIRE_VAR`] says otherwise.
pub const DEFAULT_REQUIRED: &[&str] =
    &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "vault_s3_bucket"];

/// A misbehaviour the helper can be told to show, to exercise the daemon's supervision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Exit at once with status 0 and mount nothing (s3fs exits 0 when mounting fails).
    ExitAtOnce,
    /// Stay alive without ever mounting; SIGTERM/SIGINT still end it with status 0.
    NeverMount,
    /// Mount, then never answer a filesystem request (a hung FUSE server).
    Hang,
    /// Mount, then after this long exit with status 1 without unmounting (a dead mount).
    DieAfter(Duration),
    /// Wait this long before mounting.
    MountDelay(Duration),
    /// Mount, then after this long allocate and touch memory without end (512 MiB at most,
    /// then exit with status 3): the OOM killer of a memory-limited cgroup ends it.
    OomAfter(Duration),
}

impl Fault {
    /// Parses the value of [`FAULT_VAR`].
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::BadFault(value.to_owned());
        let value = value.trim();
        match value.split_once('=') {
            None => match value {
                "exit-at-once" => Ok(Fault::ExitAtOnce),
                "never-mount" => Ok(Fault::NeverMount),
                "hang" => Ok(Fault::Hang),
                _ => Err(bad()),
            },
            Some(("die-after", secs)) => {
                let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
                Duration::try_from_secs_f64(secs).map(Fault::DieAfter).map_err(|_| bad())
            }
            Some(("oom-after", secs)) => {
                let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
                Duration::try_from_secs_f64(secs).map(Fault::OomAfter).map_err(|_| bad())
            }
            Some(("mount-delay", ms)) => {
                let ms: u64 = ms.trim().parse().map_err(|_| bad())?;
                Ok(Fault::MountDelay(Duration::from_millis(ms)))
            }
            Some(_) => Err(bad()),
        }
    }
}

/// Everything the helper needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mount_path: PathBuf,
    pub fault: Option<Fault>,
}

/// Why the helper refuses to start (exit status 2). Never carries a variable's value for
/// credentials: only names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Missing(Vec<String>),
    BadFault(String),
    RelativeMountPath,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing(names) => write!(
                f,
                "missing required environment variable(s): {} \
                 (a helper must never be started without S3 credentials and a mount path)",
                names.join(", ")
            ),
            ConfigError::BadFault(v) => write!(
                f,
                "unknown {FAULT_VAR} value {v:?} (expected exit-at-once, never-mount, hang, \
                 die-after=<secs>, oom-after=<secs> or mount-delay=<ms>)"
            ),
            ConfigError::RelativeMountPath => {
                write!(f, "{MOUNT_PATH_VAR} must be an absolute path")
            }
        }
    }
}

impl Config {
    /// Builds the configuration from environment variables. Empty values count as missing,
    /// as the daemon leaves empty values out of the helper environment.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let present = |name: &str| env.get(name).is_some_and(|v| !v.is_empty());
        let required: Vec<String> = match env.get(REQUIRE_VAR) {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            None => DEFAULT_REQUIRED.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut missing: Vec<String> = Vec::new();
        if !present(MOUNT_PATH_VAR) {
            missing.push(MOUNT_PATH_VAR.to_owned());
        }
        missing.extend(required.into_iter().filter(|n| !present(n)));
        if !missing.is_empty() {
            return Err(ConfigError::Missing(missing));
        }
        let mount_path = PathBuf::from(env.get(MOUNT_PATH_VAR).cloned().unwrap_or_default());
        if !mount_path.is_absolute() {
            return Err(ConfigError::RelativeMountPath);
        }
        let fault = match env.get(FAULT_VAR).map(|v| v.trim()) {
            None | Some("") => None,
            Some(v) => Some(Fault::parse(v)?),
        };
        Ok(Config { mount_path, fault })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const FULL: &[(&str, &str)] = &[
        ("vault_data_directory", "/mnt/x"),
        ("AWS_ACCESS_KEY_ID", "id"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret"),
        ("vault_s3_bucket", "b"),
    ];

    #[test]
    fn parses_every_fault() {
        assert_eq!(Fault::parse("exit-at-once"), Ok(Fault::ExitAtOnce));
        assert_eq!(Fault::parse("never-mount"), Ok(Fault::NeverMount));
        assert_eq!(Fault::parse("hang"), Ok(Fault::Hang));
        assert_eq!(Fault::parse("die-after=2"), Ok(Fault::DieAfter(Duration::from_secs(2))));
        assert_eq!(Fault::parse("die-after=0.5"), Ok(Fault::DieAfter(Duration::from_millis(500))));
        assert_eq!(
            Fault::parse("mount-delay=250"),
            Ok(Fault::MountDelay(Duration::from_millis(250)))
        );
        assert_eq!(Fault::parse("oom-after=1"), Ok(Fault::OomAfter(Duration::from_secs(1))));
        for bad in ["", "hang=1", "die-after=-1", "die-after=x", "mount-delay=1.5", "boom"] {
            assert!(Fault::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn full_env_is_accepted() {
        let cfg = Config::from_env(&env(FULL)).expect("valid");
        assert_eq!(cfg.mount_path, PathBuf::from("/mnt/x"));
        assert_eq!(cfg.fault, None);
    }

    #[test]
    fn missing_or_empty_keys_are_named_but_values_never_shown() {
        let mut e = env(FULL);
        e.remove("AWS_ACCESS_KEY_ID");
        e.insert("vault_s3_bucket".into(), String::new());
        let err = Config::from_env(&e).expect_err("must refuse");
        assert_eq!(
            err,
            ConfigError::Missing(vec!["AWS_ACCESS_KEY_ID".into(), "vault_s3_bucket".into()])
        );
        assert!(!err.to_string().contains("very-secret"));
    }

    #[test]
    fn require_list_overrides_default() {
        let e = env(&[("vault_data_directory", "/m"), (REQUIRE_VAR, "")]);
        assert!(Config::from_env(&e).is_ok());
        let e = env(&[("vault_data_directory", "/m"), (REQUIRE_VAR, " FOO ,BAR")]);
        assert_eq!(
            Config::from_env(&e),
            Err(ConfigError::Missing(vec!["FOO".into(), "BAR".into()]))
        );
    }

    #[test]
    fn mount_path_is_required_and_absolute() {
        let e = env(&[(REQUIRE_VAR, "")]);
        assert_eq!(Config::from_env(&e), Err(ConfigError::Missing(vec![MOUNT_PATH_VAR.into()])));
        let e = env(&[(REQUIRE_VAR, ""), (MOUNT_PATH_VAR, "rel/dir")]);
        assert_eq!(Config::from_env(&e), Err(ConfigError::RelativeMountPath));
    }
}
