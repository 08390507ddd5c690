//! One path of the daemon's configuration, resolved by the daemon's own loader without
//! loading (or requiring) the rest: what `dms-journal` needs to find the journal the daemon
//! writes and the admin socket it listens on.
//!
//! The rules are [`Config::load`](super::Config::load)'s, because it is the same code: the
//! key's `DMS_*` variable, else the `[server]` section of the file (`--config`, else
//! `DMS_CONFIG`, else the default location if a file is there), else the built-in default;
//! an empty value is refused and the value must be an absolute path. A file the daemon
//! could not parse (a repeated key, a line that is not `key = value`, ...) is refused too,
//! since the daemon would not start on it. Two differences, both so that a tool still works
//! where the daemon would not start: the file is not read at all when the variable decides,
//! and problems of other keys (unknown, invalid, missing) are not this lookup's business.

use super::load::{ChosenBy, FileError, Loader};
use super::{keys, values, Origin, Problem, Sources};
use std::path::PathBuf;

/// The keys that hold a path a tool may look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKey {
    JournalPath,
    AdminSocket,
}

impl PathKey {
    pub fn name(self) -> &'static str {
        match self {
            PathKey::JournalPath => "journal_path",
            PathKey::AdminSocket => "admin_socket",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// A file that was named (or is at the default location) but cannot be read.
    #[error("cannot read the config file {} ({by}): {error}", path.display())]
    Unreadable { path: PathBuf, by: ChosenBy, error: FileError },
    /// What the daemon would refuse to start with, as it words it; one line.
    #[error("invalid configuration: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid { problems: Vec<Problem> },
}

/// `key`'s value and where it came from ([`Origin::Env`], [`Origin::File`] or
/// [`Origin::Default`]).
pub fn lookup_path(sources: &Sources<'_>, key: PathKey) -> Result<(PathBuf, Origin), LookupError> {
    let name = key.name();
    let Some(key) = keys::find(name) else {
        let problem = Problem {
            key: Some(name.to_owned()),
            origin: Origin::Unset,
            message: "unknown key".into(),
        };
        return Err(LookupError::Invalid { problems: vec![problem] });
    };
    let mut loader = Loader::new();
    match sources.env.get(key.env) {
        Some(value) => {
            loader.values.insert(key.name, (value.clone(), Origin::Env(key.env.to_owned())));
        }
        None => {
            loader.read_file(sources).map_err(|e| LookupError::Unreadable {
                path: e.path,
                by: e.by,
                error: e.error,
            })?;
        }
    }
    let value = loader.get(name, values::abs_path).flatten();
    // Problems of the file as a whole (its lines) and of this key; not of the other keys.
    let problems: Vec<Problem> = loader
        .problems
        .into_iter()
        .filter(|p| p.key.as_deref().is_none_or(|k| k == name))
        .collect();
    match value {
        Some(path) if problems.is_empty() => {
            let origin = loader.values.get(name).map_or(Origin::Default, |(_, o)| o.clone());
            Ok((path, origin))
        }
        _ => Err(LookupError::Invalid { problems }),
    }
}
