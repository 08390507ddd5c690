//! The two rules about the host that every reader of it must apply the same way: which
//! paths lie inside the mount base ([`MountBase`]), and which filesystem type a target kind
//! mounts as ([`FsTypes`]). The wire validator, the mount-point executor, the mount-table
//! reader and the reconcile plan all ask these; none has its own spelling of them.

use crate::event::TargetKind;
use serde::{Deserialize, Serialize};

/// The directory every target's mount path lies strictly inside: absolute and normalized
/// (no `.`/`..` components, no doubled or trailing `/`), `/` itself included.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MountBase(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountBaseError {
    #[error("must be an absolute path")]
    Relative,
    #[error("must be normalized (no '.', '..' or empty components)")]
    NotNormalized,
    #[error("must not contain a NUL byte")]
    Nul,
}

impl MountBase {
    /// A trailing `/` is dropped (`/srv/` is `/srv`); anything else not normalized is
    /// refused, never repaired.
    pub fn new(raw: &str) -> Result<Self, MountBaseError> {
        if !raw.starts_with('/') {
            return Err(MountBaseError::Relative);
        }
        if raw.contains('\0') {
            return Err(MountBaseError::Nul);
        }
        let trimmed = match raw.trim_end_matches('/') {
            "" => "/",
            t => t,
        };
        if trimmed != "/" && trimmed[1..].split('/').any(|c| matches!(c, "" | "." | "..")) {
            return Err(MountBaseError::NotNormalized);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part of `path` below the base (`a/b` for `<base>/a/b`), if `path` lies strictly
    /// inside it. Textual: `path` must already be normalized (the wire validator and the
    /// kernel's mount table give normalized paths).
    pub fn below<'a>(&self, path: &'a str) -> Option<&'a str> {
        let prefix = self.0.trim_end_matches('/');
        path.strip_prefix(prefix)?.strip_prefix('/').filter(|rest| !rest.is_empty())
    }

    /// Whether `path` lies strictly inside the base (the base itself does not).
    pub fn contains(&self, path: &str) -> bool {
        self.below(path).is_some()
    }
}

impl std::fmt::Display for MountBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for MountBase {
    type Error = MountBaseError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::new(&raw)
    }
}

impl From<MountBase> for String {
    fn from(base: MountBase) -> String {
        base.0
    }
}

/// What a mount-table entry is, as far as targets are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    /// `fuse` or `fuse.<subtype>`: what an S3 target's helper mounts (never `fuseblk` or
    /// `fusectl`, which are not a FUSE server's mount).
    Fuse,
    /// One of the configured NFS types (`nfs_fstypes`).
    Nfs,
    /// Anything else: never a target's mount.
    Other,
}

impl TargetKind {
    /// The filesystem kind this target mounts as.
    pub fn fs_kind(&self) -> FsKind {
        match self {
            TargetKind::S3 { .. } => FsKind::Fuse,
            TargetKind::Nfs { .. } => FsKind::Nfs,
        }
    }
}

/// The one fstype rule: which mount-table types are FUSE and which are NFS. NFS types are
/// configured, so a stand-in mount program (tests mount `tmpfs`) is recognised as the NFS
/// mount it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsTypes {
    nfs: Vec<String>,
}

impl Default for FsTypes {
    fn default() -> Self {
        Self::new(["nfs", "nfs4"].map(str::to_owned).to_vec())
    }
}

impl FsTypes {
    pub fn new(nfs: Vec<String>) -> Self {
        Self { nfs }
    }

    pub fn kind_of(&self, fstype: &str) -> FsKind {
        if fstype == "fuse" || fstype.strip_prefix("fuse.").is_some_and(|sub| !sub.is_empty()) {
            FsKind::Fuse
        } else if self.nfs.iter().any(|n| n == fstype) {
            FsKind::Nfs
        } else {
            FsKind::Other
        }
    }

    /// Whether a mount of type `fstype` is what a target of `kind` mounts.
    pub fn matches(&self, kind: &TargetKind, fstype: &str) -> bool {
        self.kind_of(fstype) == kind.fs_kind()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_path_is_inside_the_base_only_strictly_below_it_at_a_slash() {
        let base = MountBase::new("/var/mnt/").unwrap();
        assert_eq!(base.as_str(), "/var/mnt");
        assert_eq!(base.below("/var/mnt/a/b"), Some("a/b"));
        for outside in ["/var/mnt", "/var/mnt/", "/var/mnt-evil/a", "/var", "/etc/x", ""] {
            assert!(!base.contains(outside), "{outside}");
        }
        let root = MountBase::new("/").unwrap();
        assert!(root.contains("/a") && !root.contains("/"));
    }

    #[test]
    fn a_base_that_is_relative_or_not_normalized_is_refused() {
        assert_eq!(MountBase::new("var/mnt"), Err(MountBaseError::Relative));
        for bad in ["/var//mnt", "/var/./mnt", "/var/../mnt", "/a/.."] {
            assert_eq!(MountBase::new(bad), Err(MountBaseError::NotNormalized), "{bad}");
        }
        assert_eq!(MountBase::new("/a\0b"), Err(MountBaseError::Nul));
    }

    #[test]
    fn fuse_and_configured_nfs_types_are_told_apart_from_look_alikes() {
        let types = FsTypes::new(vec!["nfs".into(), "tmpfs".into()]);
        assert_eq!(types.kind_of("fuse"), FsKind::Fuse);
        assert_eq!(types.kind_of("fuse.s3vaultfuse"), FsKind::Fuse);
        for other in ["fuseblk", "fusectl", "fuse.", "nfs4", "ext4", ""] {
            assert_eq!(types.kind_of(other), FsKind::Other, "{other}");
        }
        assert_eq!(types.kind_of("tmpfs"), FsKind::Nfs);
        let s3 = TargetKind::S3 { secret_ref: String::new() };
        assert!(types.matches(&s3, "fuse.x") && !types.matches(&s3, "tmpfs"));
        assert_eq!(FsTypes::default().kind_of("nfs4"), FsKind::Nfs);
    }
}
