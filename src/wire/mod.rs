//! The wire codec: request bodies in, validated requests or client-facing refusals out,
//! replies back (DESIGN §2, §3.6).
//!
//! Pure on purpose: no broker, no runtime, no I/O. Everything a hostile or broken client can
//! send reaches the daemon through [`parse`], so this is the part that is fuzzed
//! (`fuzz/fuzz_targets/wire.rs`) and the only place where request text is trusted to become
//! paths, names and mount options. The transport adapter maps AMQP properties to
//! [`Properties`] and publishes [`Reply::to_json`].
//!
//! Texts the existing Python clients know are kept verbatim (see [`WireError`] and
//! [`Reply::from_outcome`]); refusals the Python service never made (it did not validate)
//! use the same `Invalid <field> ...` shape.

mod json;
pub mod nfs;
mod path;
mod reply;
mod request;
mod secret;

#[cfg(test)]
mod tests;

pub use reply::{failed, Reply, Status, Wire};
pub use request::{parse, Action, ActionKind, Properties, Rejected, Request};

use dms_journal::{IdError, MountBase};
use std::collections::BTreeSet;

/// Bodies above this are refused before any parsing: a real request is well under 4 KiB, and
/// a bound keeps one message from costing the daemon unbounded memory.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// The seed's default mount base; also the default of `mount_base_path`.
pub const DEFAULT_MOUNT_BASE: &str = "/var/lib/trilio/triliovault-mounts";

/// Why a request was refused. `Display` is the exact `error_msg` the requester gets, so the
/// variants that exist in the Python service keep its wording byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("Request too large: {len} bytes (limit {max})")]
    TooLarge { len: usize, max: usize },
    /// `detail` is for the log only (position and kind, never request content).
    #[error("Invalid JSON format in request")]
    InvalidJson { detail: String },
    #[error("Missing required field: '{field}'")]
    MissingField { field: &'static str },
    #[error("Invalid field '{field}': expected {expected}")]
    WrongType { field: &'static str, expected: &'static str },
    #[error("Unknown action: {action}")]
    UnknownAction { action: String },
    #[error("Unsupported target type: {kind}")]
    UnsupportedType { kind: String },
    #[error("Missing filesystem_export_mount_path in backup_target")]
    MissingMountPath,
    #[error("Missing filesystem_export for NFS mount")]
    MissingExport,
    #[error("Invalid backup_target id: {source}")]
    BadTargetId { source: IdError },
    #[error("Invalid {property} property: {source}")]
    BadRequestKey { property: &'static str, source: IdError },
    #[error("Invalid filesystem_export_mount_path '{path}': {reason}")]
    BadMountPath { path: String, reason: String },
    #[error("Invalid filesystem_export '{export}': {reason}")]
    BadExport { export: String, reason: &'static str },
    #[error("Invalid nfs_mount_opts: {reason}")]
    BadNfsOptions { reason: String },
    #[error("Invalid secret_ref '{secret_ref}': {reason}")]
    BadSecretRef { secret_ref: String, reason: &'static str },
    /// Never carries any part of the token.
    #[error("Invalid keystone_token: {reason}")]
    BadToken { reason: &'static str },
}

/// What the operator allows requests to ask for; built from the configuration
/// (`Config::wire_policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Never `/` (the configuration refuses it); "inside" is [`MountBase`]'s one rule.
    pub mount_base: MountBase,
    /// Names of the NFS mount options a request may use (`nosuid,nodev` are always added).
    pub nfs_allowed_options: BTreeSet<String>,
    /// When non-empty, every `secret_ref` must start with one of these (at a `/` boundary).
    pub secret_ref_prefixes: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            mount_base: MountBase::new(DEFAULT_MOUNT_BASE)
                .unwrap_or_else(|e| unreachable!("the default mount base: {e}")),
            nfs_allowed_options: nfs::DEFAULT_ALLOWED_OPTIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            secret_ref_prefixes: Vec::new(),
        }
    }
}

/// Request text as it may appear inside an error message or a log line: credentials in
/// URLs masked ([`redact_userinfo`]), printable ASCII only (everything else escaped, so no
/// terminal escapes or bidi tricks) and bounded.
pub(crate) fn echo(raw: &str) -> String {
    const MAX_CHARS: usize = 64;
    let raw = redact_userinfo(raw);
    let mut out = String::new();
    for (i, c) in raw.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str("...");
            break;
        }
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// `text` with the user info of every URL in it masked: `scheme://user:password@host` shows
/// as `scheme://user:***@host`, `scheme://token@host` as `scheme://***@host` (a lone name
/// there is often a credential too). A requester that puts credentials into a
/// `secret_ref` or an export gets them back masked, and the log and journal never hold them.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the path, query or fragment, or where the URL ends.
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '\'')
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                match authority[..userinfo_end].split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str("***"),
                }
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}
