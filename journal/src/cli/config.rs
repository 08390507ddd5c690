//! Where the journal is: `--path`, else the daemon's own configuration.
//!
//! The daemon reads `journal_path` the way it reads every key (DESIGN §4): the environment
//! (`DMS_JOURNAL_PATH`) overrides the `[server]` section of its INI file, which is
//! `--config FILE`, else `$DMS_CONFIG`, else `/etc/trilio-dms/server.conf` if that exists.
//! Without any of these the journal is at `/var/lib/dms/journal`. The INI reader here is
//! deliberately tiny: sections, `key = value` (or `key: value`, as Python's configparser
//! accepts), whole-line `#` / `;` comments, keys case-insensitive. Only `[server]` counts:
//! like the daemon's reader, no fallback to `[DEFAULT]` (with one, a `journal_path` there
//! would send `dms-journal` to another journal than the daemon writes; a test in the daemon
//! crate checks that both resolve the same journal and socket).
//!
//! The daemon's admin socket (for online answers while it holds the journal) is found the
//! same way: `DMS_ADMIN_SOCKET`, else `admin_socket` in that file, else `/run/dms/admin.sock`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub const ENV_JOURNAL_PATH: &str = "DMS_JOURNAL_PATH";
pub const ENV_CONFIG: &str = "DMS_CONFIG";
pub const DEFAULT_CONFIG: &str = "/etc/trilio-dms/server.conf";
pub const DEFAULT_JOURNAL_PATH: &str = "/var/lib/dms/journal";
pub const ENV_ADMIN_SOCKET: &str = "DMS_ADMIN_SOCKET";
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/dms/admin.sock";
const SECTION: &str = "server";
const KEY: &str = "journal_path";
const SOCKET_KEY: &str = "admin_socket";

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
            Origin::Env => write!(f, "from {ENV_JOURNAL_PATH}"),
            Origin::ConfigFile(file) => write!(f, "from {KEY} in {}", file.display()),
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
            SocketOrigin::Env => write!(f, "from {ENV_ADMIN_SOCKET}"),
            SocketOrigin::ConfigFile(file) => write!(f, "from {SOCKET_KEY} in {}", file.display()),
            SocketOrigin::BuiltIn => f.write_str("the built-in default"),
        }
    }
}

/// A config file that was named explicitly (`--config`, `$DMS_CONFIG`) but cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the config file {} ({origin}): {error}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub origin: &'static str,
    pub error: std::io::Error,
}

/// What the resolution may look at; the real process environment in `main`, fixed values
/// in tests.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub flag_path: Option<PathBuf>,
    pub flag_config: Option<PathBuf>,
    pub env_journal_path: Option<String>,
    pub env_config: Option<String>,
    pub env_admin_socket: Option<String>,
    pub default_config: PathBuf,
}

impl Inputs {
    pub fn from_env(flag_path: Option<PathBuf>, flag_config: Option<PathBuf>) -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        Self {
            flag_path,
            flag_config,
            env_journal_path: var(ENV_JOURNAL_PATH),
            env_config: var(ENV_CONFIG),
            env_admin_socket: var(ENV_ADMIN_SOCKET),
            default_config: PathBuf::from(DEFAULT_CONFIG),
        }
    }
}

/// The journal path and where it came from.
pub fn resolve(inputs: &Inputs) -> Result<(PathBuf, Origin), ConfigError> {
    if let Some(path) = &inputs.flag_path {
        return Ok((path.clone(), Origin::Flag));
    }
    if let Some(path) = &inputs.env_journal_path {
        return Ok((PathBuf::from(path), Origin::Env));
    }
    if let Some((file, ini)) = config_file(inputs)? {
        if let Some(path) = ini.get(SECTION, KEY) {
            if !path.is_empty() {
                return Ok((PathBuf::from(path), Origin::ConfigFile(file)));
            }
        }
    }
    Ok((PathBuf::from(DEFAULT_JOURNAL_PATH), Origin::BuiltIn))
}

/// The daemon's admin socket and where its path came from.
pub fn resolve_socket(inputs: &Inputs) -> Result<(PathBuf, SocketOrigin), ConfigError> {
    if let Some(path) = &inputs.env_admin_socket {
        return Ok((PathBuf::from(path), SocketOrigin::Env));
    }
    if let Some((file, ini)) = config_file(inputs)? {
        if let Some(path) = ini.get(SECTION, SOCKET_KEY) {
            if !path.is_empty() {
                return Ok((PathBuf::from(path), SocketOrigin::ConfigFile(file)));
            }
        }
    }
    Ok((PathBuf::from(DEFAULT_ADMIN_SOCKET), SocketOrigin::BuiltIn))
}

/// The config file in use, parsed: `--config`, else `$DMS_CONFIG`, else the default location
/// if a file is there. A file that was named but cannot be read is an error.
fn config_file(inputs: &Inputs) -> Result<Option<(PathBuf, Ini)>, ConfigError> {
    let file = match (&inputs.flag_config, &inputs.env_config) {
        (Some(file), _) => Some((file.clone(), "--config")),
        (None, Some(file)) => Some((PathBuf::from(file), ENV_CONFIG)),
        (None, None) if inputs.default_config.is_file() => {
            Some((inputs.default_config.clone(), "default location"))
        }
        (None, None) => None,
    };
    let Some((file, origin)) = file else { return Ok(None) };
    let text = std::fs::read_to_string(&file).map_err(|error| ConfigError {
        path: file.clone(),
        origin,
        error,
    })?;
    Ok(Some((file, Ini::parse(&text))))
}

/// A parsed INI file: section → key (lower-cased) → value. Later duplicates win.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ini {
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Ini {
    /// Lenient by design: a line that is neither a section, a key nor a comment is skipped,
    /// as are keys before the first section header.
    pub fn parse(text: &str) -> Self {
        let mut ini = Ini::default();
        let mut current: Option<String> = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim().to_owned();
                ini.sections.entry(name.clone()).or_default();
                current = Some(name);
                continue;
            }
            let Some(section) = &current else { continue };
            let Some(at) = line.find(['=', ':']) else { continue };
            let key = line[..at].trim().to_ascii_lowercase();
            if key.is_empty() {
                continue;
            }
            let value = line[at + 1..].trim().to_owned();
            ini.sections.entry(section.clone()).or_default().insert(key, value);
        }
        ini
    }

    /// `key` in `section` (never in another section: the daemon reads `[server]` alone).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.sections.get(section).and_then(|keys| keys.get(&key)).map(String::as_str)
    }
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

    const SEED: &str = "\
# DMS server configuration
[server]
rabbitmq_url = amqp://dms_user:dms_password@rabbitmq-host:5672
node_id = compute-01
; a comment
Journal_Path = /srv/dms/journal

[other]
journal_path = /nowhere
";

    fn inputs(dir: &Path) -> Inputs {
        Inputs { default_config: dir.join("absent.conf"), ..Inputs::default() }
    }

    #[test]
    fn given_the_seed_config_when_parsed_then_server_keys_are_found() {
        let ini = Ini::parse(SEED);
        assert_eq!(ini.get("server", "journal_path"), Some("/srv/dms/journal"));
        assert_eq!(ini.get("server", "NODE_ID"), Some("compute-01"));
        assert_eq!(
            ini.get("server", "rabbitmq_url"),
            Some("amqp://dms_user:dms_password@rabbitmq-host:5672")
        );
        assert_eq!(ini.get("other", "journal_path"), Some("/nowhere"));
        assert_eq!(ini.get("server", "missing"), None);
        assert_eq!(ini.get("absent", "journal_path"), None);
    }

    #[test]
    fn given_comments_colons_and_junk_when_parsed_then_only_keys_in_sections_count() {
        let ini = Ini::parse(
            "orphan = before any section\n[server]\n# journal_path = /commented\n\
             journal_path: /colon\njunk line\n  spaced   =   padded value  \n",
        );
        assert_eq!(ini.get("server", "journal_path"), Some("/colon"));
        assert_eq!(ini.get("server", "spaced"), Some("padded value"));
        assert_eq!(ini.get("server", "orphan"), None);
        assert_eq!(ini.get("server", "junk line"), None);
    }

    #[test]
    fn given_a_default_section_when_a_key_is_missing_then_it_does_not_fall_back() {
        let ini = Ini::parse("[DEFAULT]\njournal_path = /d\n[server]\nnode_id = n\n");
        assert_eq!(ini.get("server", "journal_path"), None);
        let ini = Ini::parse("[DEFAULT]\njournal_path = /d\n[server]\njournal_path = /s\n");
        assert_eq!(ini.get("server", "journal_path"), Some("/s"));
    }

    #[test]
    fn given_every_source_when_resolving_then_the_documented_order_wins() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("server.conf");
        std::fs::write(&conf, "[server]\njournal_path = /from/file\n").unwrap();
        let mut i = inputs(dir.path());
        assert_eq!(resolve(&i).unwrap(), (PathBuf::from(DEFAULT_JOURNAL_PATH), Origin::BuiltIn));
        i.default_config = conf.clone();
        assert_eq!(
            resolve(&i).unwrap(),
            (PathBuf::from("/from/file"), Origin::ConfigFile(conf.clone()))
        );
        i.env_journal_path = Some("/from/env".into());
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
        i.env_config = Some(b.to_string_lossy().into_owned());
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
            (PathBuf::from(DEFAULT_ADMIN_SOCKET), SocketOrigin::BuiltIn)
        );
        i.flag_config = Some(conf.clone());
        assert_eq!(
            resolve_socket(&i).unwrap(),
            (PathBuf::from("/from/file.sock"), SocketOrigin::ConfigFile(conf.clone()))
        );
        i.env_admin_socket = Some("/from/env.sock".into());
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
        std::fs::write(&conf, "[server]\nnode_id = n\njournal_path =\n").unwrap();
        let i = Inputs { flag_config: Some(conf), ..inputs(dir.path()) };
        assert_eq!(resolve(&i).unwrap().1, Origin::BuiltIn);
    }

    #[test]
    fn given_a_named_config_that_is_missing_when_resolving_then_it_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let i = Inputs { flag_config: Some(dir.path().join("nope.conf")), ..inputs(dir.path()) };
        let err = resolve(&i).unwrap_err();
        assert!(err.to_string().contains("nope.conf (--config)"), "{err}");
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
    }
}
