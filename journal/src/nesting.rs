//! Targets never nest: a mount path inside, containing or equal to another tracked
//! target's path is refused before anything runs.
//!
//! A nested target is created inside the outer one's filesystem (in its bucket, for S3),
//! and unmounting the outer one takes the inner mount with it while the journal still says
//! it is mounted. Whether a new mount would nest is a fact about the other targets, which
//! the engine gathers ([`JournalState::nesting`]) and hands to `decide` with the mount
//! command, where the refusal is decided.

use crate::ids::TargetId;
use crate::state::{JournalState, Phase};
use std::fmt;

/// How a requested mount path relates to another target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The same path.
    Same,
    /// The requested path lies inside the other target's.
    Inside,
    /// The requested path contains the other target's.
    Contains,
}

/// Another tracked target whose mount path nests with the requested one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nesting {
    pub other: TargetId,
    pub other_path: String,
    pub relation: Relation,
}

impl fmt::Display for Nesting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.relation {
            Relation::Same => "is the mount path of",
            Relation::Inside => "lies inside the mount path of",
            Relation::Contains => "contains the mount path of",
        };
        write!(f, "{how} target {} ({})", self.other, self.other_path)
    }
}

/// How `path` relates to `other`, if they nest. Both are absolute and normalized (the wire
/// codec refuses `.`, `..` and doubled slashes), so comparing components is exact.
pub fn relation(path: &str, other: &str) -> Option<Relation> {
    let (a, b) = (path.trim_end_matches('/'), other.trim_end_matches('/'));
    let below = |long: &str, short: &str| {
        long.len() > short.len()
            && long.starts_with(short)
            && (short.is_empty() || long.as_bytes()[short.len()] == b'/')
    };
    match (a == b, below(a, b), below(b, a)) {
        (true, _, _) => Some(Relation::Same),
        (false, true, _) => Some(Relation::Inside),
        (false, false, true) => Some(Relation::Contains),
        (false, false, false) => None,
    }
}

impl JournalState {
    /// The first tracked target other than `target` (not unmounted: mounted, in flight or
    /// dirty, so possibly holding a mount) whose path nests with `path`.
    pub fn nesting(&self, target: &TargetId, path: &str) -> Option<Nesting> {
        self.targets.values().filter(|t| &t.target != target).find_map(|t| {
            let tracked = match t.phase {
                Phase::Unmounted => false,
                Phase::Mounting(_)
                | Phase::Mounted
                | Phase::Unmounting(_)
                | Phase::Dirty(_)
                | Phase::Healing(_) => true,
            };
            let other_path = t.mount_path().filter(|_| tracked)?;
            relation(path, other_path).map(|relation| Nesting {
                other: t.target.clone(),
                other_path: other_path.to_owned(),
                relation,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_paths_when_related_then_only_whole_components_nest() {
        assert_eq!(relation("/b/t1", "/b/t1"), Some(Relation::Same));
        assert_eq!(relation("/b/t1/", "/b/t1"), Some(Relation::Same));
        assert_eq!(relation("/b/t1/inner", "/b/t1"), Some(Relation::Inside));
        assert_eq!(relation("/b", "/b/t1"), Some(Relation::Contains));
        assert_eq!(relation("/b/t10", "/b/t1"), None, "a shared prefix is not nesting");
        assert_eq!(relation("/b/t1", "/b/t10"), None);
        assert_eq!(relation("/b/t2", "/b/t1"), None);
    }
}
