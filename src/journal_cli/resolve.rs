//! Where the journal is: `--path`, else the daemon's own configuration, looked up by the
//! daemon's loader ([`config::lookup_path`]), so the tool reads the journal the daemon
//! writes: `DMS_JOURNAL_PATH`, else `journal_path` in the `[server]` section of the config
//! file (`--config FILE`, else `$DMS_CONFIG`, else `/etc/trilio-dms/server.conf` if that
//! exists), else `/var/lib/dms/journal`. The daemon's admin socket (for online answers
//! while it holds the journal) is found the same way: `DMS_ADMIN_SOCKET`, else
//! `admin_socket`, else `/run/dms/admin.sock`. A file or value the daemon would refuse
//! (a repeated key, an empty or relative path) is refused here too, in the daemon's words.

use crate::config::{self, LookupError, PathKey, Problem, Sources};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the journal path came from; shown in error messages so an operator knows which
/// knob to turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    ConfigFile(PathBuf),
    BuiltIn,
    /// Answered through the admin socket without the client's view of the path: the
    /// daemon's configured journal.
    Daemon,
    /// Answered through the admin socket: the source the client found the path from, so
    /// the output reads as the offline run would.
    Reported(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("from --path"),
            Origin::Env => f.write_str("from DMS_JOURNAL_PATH"),
            Origin::ConfigFile(file) => write!(f, "from journal_path in {}", file.display()),
            Origin::BuiltIn => f.write_str("the built-in default"),
            Origin::Daemon => f.write_str("the running dms-server's own"),
            Origin::Reported(text) => f.write_str(text),
        }
    }
}

/// Where the admin socket path came from, for the same reason as [`Origin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketOrigin {
    Env,
    ConfigFile(PathBuf),
    BuiltIn,
}

impl fmt::Display for SocketOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketOrigin::Env => f.write_str("from DMS_ADMIN_SOCKET"),
            SocketOrigin::ConfigFile(file) => write!(f, "from admin_socket in {}", file.display()),
            SocketOrigin::BuiltIn => f.write_str("the built-in default"),
        }
    }
}

/// What the resolution may look at; the real process environment in `main`, fixed values
/// in tests.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub flag_path: Option<PathBuf>,
    pub flag_config: Option<PathBuf>,
    /// The `DMS_*` variables ([`config::process_env`]).
    pub env: BTreeMap<String, String>,
    /// `DMS_*` variables that are not UTF-8: the daemon refuses to start with them.
    pub env_problems: Vec<Problem>,
    pub default_config: PathBuf,
}

impl Inputs {
    pub fn from_env(flag_path: Option<PathBuf>, flag_config: Option<PathBuf>) -> Self {
        let (env, env_problems) = config::process_env();
        Self {
            flag_path,
            flag_config,
            env,
            env_problems,
            default_config: PathBuf::from(config::DEFAULT_CONFIG_PATH),
        }
    }

    /// `key` as the daemon would resolve it, and where it came from.
    fn lookup(&self, key: PathKey) -> Result<(PathBuf, config::Origin), LookupError> {
        if !self.env_problems.is_empty() {
            return Err(LookupError::Invalid { problems: self.env_problems.clone() });
        }
        let sources = Sources {
            config_path: self.flag_config.clone(),
            env: &self.env,
            default_config_path: self.default_config.clone(),
        };
        config::lookup_path(&sources, key)
    }
}

/// The journal path and where it came from.
pub fn resolve(inputs: &Inputs) -> Result<(PathBuf, Origin), LookupError> {
    if let Some(path) = &inputs.flag_path {
        return Ok((path.clone(), Origin::Flag));
    }
    let (path, origin) = inputs.lookup(PathKey::JournalPath)?;
    let origin = match origin {
        config::Origin::Env(_) => Origin::Env,
        config::Origin::File { path: file, .. } => Origin::ConfigFile(file),
        config::Origin::Default | config::Origin::Unset => Origin::BuiltIn,
    };
    Ok((path, origin))
}

/// The daemon's admin socket and where its path came from.
pub fn resolve_socket(inputs: &Inputs) -> Result<(PathBuf, SocketOrigin), LookupError> {
    let (path, origin) = inputs.lookup(PathKey::AdminSocket)?;
    let origin = match origin {
        config::Origin::Env(_) => SocketOrigin::Env,
        config::Origin::File { path: file, .. } => SocketOrigin::ConfigFile(file),
        config::Origin::Default | config::Origin::Unset => SocketOrigin::BuiltIn,
    };
    Ok((path, origin))
}

/// Whether `path` can be opened without creating a journal: sled would happily create one
/// in a missing or empty directory, which is never what an inspection wants.
pub fn check_existing(path: &Path) -> Result<(), Absent> {
    let denied_or = |other: Absent| {
        move |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Absent::Denied,
            _ => other,
        }
    };
    let meta = std::fs::metadata(path).map_err(denied_or(Absent::Missing))?;
    if !meta.is_dir() {
        return Err(Absent::NotADirectory);
    }
    let mut entries = std::fs::read_dir(path).map_err(denied_or(Absent::Unreadable))?;
    if entries.next().is_none() {
        return Err(Absent::Empty);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    Missing,
    NotADirectory,
    Unreadable,
    /// Not ours to read (a root-owned journal and a non-root user): the daemon may still
    /// answer through its admin socket.
    Denied,
    Empty,
}

impl fmt::Display for Absent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Absent::Missing => "it does not exist",
            Absent::NotADirectory => "it is not a directory",
            Absent::Unreadable => "it cannot be read",
            Absent::Denied => "permission denied",
            Absent::Empty => "it is an empty directory, not a journal",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn inputs(dir: &Path) -> Inputs {
        Inputs { default_config: dir.join("absent.conf"), ..Inputs::default() }
    }

    #[test]
    fn given_every_source_when_resolving_then_the_documented_order_wins() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("server.conf");
        std::fs::write(&conf, "[server]\njournal_path = /from/file\n").unwrap();
        let mut i = inputs(dir.path());
        assert_eq!(resolve(&i).unwrap(), (PathBuf::from("/var/lib/dms/journal"), Origin::BuiltIn));
        i.default_config = conf.clone();
        assert_eq!(
            resolve(&i).unwrap(),
            (PathBuf::from("/from/file"), Origin::ConfigFile(conf.clone()))
        );
        i.env.insert("DMS_JOURNAL_PATH".into(), "/from/env".into());
        assert_eq!(resolve(&i).unwrap(), (PathBuf::from("/from/env"), Origin::Env));
        i.flag_path = Some("/from/flag".into());
        assert_eq!(resolve(&i).unwrap(), (PathBuf::from("/from/flag"), Origin::Flag));
    }

    #[test]
    fn given_an_explicit_config_when_resolving_then_it_beats_dms_config_and_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.conf"), dir.path().join("b.conf"));
        std::fs::write(&a, "[server]\njournal_path = /a\n").unwrap();
        std::fs::write(&b, "[server]\njournal_path = /b\n").unwrap();
        let mut i = inputs(dir.path());
        i.env.insert("DMS_CONFIG".into(), b.to_string_lossy().into_owned());
        assert_eq!(resolve(&i).unwrap().0, PathBuf::from("/b"));
        i.flag_config = Some(a.clone());
        assert_eq!(resolve(&i).unwrap(), (PathBuf::from("/a"), Origin::ConfigFile(a)));
    }

    #[test]
    fn given_every_source_when_resolving_the_admin_socket_then_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("server.conf");
        std::fs::write(&conf, "[server]\nadmin_socket = /from/file.sock\n").unwrap();
        let mut i = inputs(dir.path());
        assert_eq!(
            resolve_socket(&i).unwrap(),
            (PathBuf::from("/run/dms/admin.sock"), SocketOrigin::BuiltIn)
        );
        i.flag_config = Some(conf.clone());
        assert_eq!(
            resolve_socket(&i).unwrap(),
            (PathBuf::from("/from/file.sock"), SocketOrigin::ConfigFile(conf.clone()))
        );
        i.env.insert("DMS_ADMIN_SOCKET".into(), "/from/env.sock".into());
        assert_eq!(
            resolve_socket(&i).unwrap(),
            (PathBuf::from("/from/env.sock"), SocketOrigin::Env)
        );
        assert_eq!(
            SocketOrigin::ConfigFile(conf.clone()).to_string(),
            format!("from admin_socket in {}", conf.display())
        );
    }

    #[test]
    fn given_a_config_without_the_key_when_resolving_then_the_built_in_default_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("server.conf");
        std::fs::write(&conf, "[server]\nnode_id = n\n").unwrap();
        let i = Inputs { flag_config: Some(conf), ..inputs(dir.path()) };
        assert_eq!(resolve(&i).unwrap().1, Origin::BuiltIn);
    }

    #[test]
    fn given_a_named_config_that_is_missing_when_resolving_then_it_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let i = Inputs { flag_config: Some(dir.path().join("nope.conf")), ..inputs(dir.path()) };
        let err = resolve(&i).unwrap_err();
        assert!(err.to_string().contains("nope.conf (--config)"), "{err}");
        // --path needs no configuration at all.
        let i = Inputs { flag_path: Some("/j".into()), ..i };
        assert_eq!(resolve(&i).unwrap(), (PathBuf::from("/j"), Origin::Flag));
    }

    #[test]
    fn given_a_variable_that_is_not_utf8_when_resolving_then_the_daemons_refusal_is_shown() {
        let dir = tempfile::tempdir().unwrap();
        let problem = Problem {
            key: None,
            origin: config::Origin::Env("DMS_JOURNAL_PATH".into()),
            message: "value is not valid UTF-8".into(),
        };
        let i = Inputs { env_problems: vec![problem], ..inputs(dir.path()) };
        let err = resolve(&i).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid configuration: environment variable DMS_JOURNAL_PATH: value is not valid UTF-8"
        );
    }

    #[test]
    fn given_missing_file_and_empty_directories_when_checked_then_they_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_existing(&dir.path().join("x")), Err(Absent::Missing));
        assert_eq!(check_existing(dir.path()), Err(Absent::Empty));
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert_eq!(check_existing(&file), Err(Absent::NotADirectory));
        assert_eq!(check_existing(dir.path()), Ok(()));
    }

    #[test]
    fn given_each_origin_when_displayed_then_it_names_the_knob() {
        assert_eq!(Origin::Flag.to_string(), "from --path");
        assert_eq!(Origin::Env.to_string(), "from DMS_JOURNAL_PATH");
        assert_eq!(
            Origin::ConfigFile("/etc/x.conf".into()).to_string(),
            "from journal_path in /etc/x.conf"
        );
        assert_eq!(Origin::BuiltIn.to_string(), "the built-in default");
        assert_eq!(SocketOrigin::Env.to_string(), "from DMS_ADMIN_SOCKET");
    }
}
