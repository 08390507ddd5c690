//! NFS exports and mount options from requests.
//!
//! No shell is ever involved (mount(8) gets an argv), so the dangers are what mount(8) and
//! the kernel themselves accept: an export that starts with `-` is read as an option, an
//! option string can switch on `suid`/`dev`, and a `,` or `=` smuggled inside a value splits
//! into further options. Options therefore come from an allow-list of names, values from a
//! small character set, and `nosuid,nodev` are always added.

use super::{echo, WireError};
use std::collections::BTreeSet;

/// The default allow-list (`nfs_allowed_options`): protocol, timing, caching, locking and
/// access-mode options. Left out on purpose: `bg` (mount(8) reports success before the
/// mount exists, which would defeat verification), `fsc` (needs cachefilesd), `addr`/
/// `clientaddr`/`mounthost` (mount.nfs derives them), `user`/`owner`/`remount`/`bind` and
/// the SELinux `context` family (values contain commas).
pub const DEFAULT_ALLOWED_OPTIONS: &[&str] = &[
    "ac",
    "acdirmax",
    "acdirmin",
    "acregmax",
    "acregmin",
    "actimeo",
    "async",
    "cto",
    "fg",
    "hard",
    "intr",
    "local_lock",
    "lock",
    "lookupcache",
    "minorversion",
    "mountport",
    "mountproto",
    "mountvers",
    "nconnect",
    "noac",
    "noatime",
    "nocto",
    "nodev",
    "nodiratime",
    "noexec",
    "nointr",
    "nolock",
    "nordirplus",
    "noresvport",
    "nosharecache",
    "nosuid",
    "nfsvers",
    "port",
    "proto",
    "rdirplus",
    "relatime",
    "resvport",
    "retrans",
    "retry",
    "ro",
    "rsize",
    "rw",
    "sec",
    "sharecache",
    "soft",
    "softerr",
    "sync",
    "tcp",
    "timeo",
    "udp",
    "vers",
    "wsize",
];

/// Options refused even if an operator allow-lists them: they undo what is enforced.
pub const REFUSED_OPTIONS: &[&str] = &["suid", "dev", "exec"];

/// Always part of the options passed to mount(8).
pub const ENFORCED_OPTIONS: &[&str] = &["nosuid", "nodev"];

/// What the Python clients send when they mean "nothing special"; accepted and dropped
/// (it would imply `suid,dev,exec`, which the enforced options override anyway).
const DEFAULTS: &str = "defaults";

const MAX_OPTIONS_LEN: usize = 1024;
const MAX_VALUE_LEN: usize = 64;
const MAX_EXPORT_LEN: usize = 1024;

/// The `-o` argument for `raw` (`None`/empty: only the enforced options): the requested
/// options in their order, without repeats, then whichever enforced option is missing.
pub(super) fn options(raw: Option<&str>, allowed: &BTreeSet<String>) -> Result<String, WireError> {
    let raw = raw.unwrap_or("");
    let refuse = |reason: String| WireError::BadNfsOptions { reason };
    if raw.len() > MAX_OPTIONS_LEN {
        return Err(refuse(format!("longer than {MAX_OPTIONS_LEN} bytes")));
    }
    let mut out: Vec<&str> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (item, None),
        };
        if REFUSED_OPTIONS.contains(&name) {
            return Err(refuse(format!(
                "option '{name}' is not allowed (nosuid,nodev are enforced)"
            )));
        }
        if name == DEFAULTS && value.is_none() {
            continue;
        }
        if !allowed.contains(name) {
            return Err(refuse(format!("option '{}' is not in the allow-list", echo(name))));
        }
        if let Some(value) = value {
            check_value(name, value).map_err(refuse)?;
        }
        if !out.contains(&item) {
            out.push(item);
        }
    }
    for enforced in ENFORCED_OPTIONS {
        if !out.contains(enforced) {
            out.push(enforced);
        }
    }
    Ok(out.join(","))
}

fn check_value(name: &str, value: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '+' | '-');
    if value.is_empty() {
        Err(format!("option '{name}' has an empty value"))
    } else if value.len() > MAX_VALUE_LEN {
        Err(format!("the value of option '{name}' is longer than {MAX_VALUE_LEN} bytes"))
    } else if !value.chars().all(ok_char) {
        Err(format!("the value of option '{name}' may hold only A-Z a-z 0-9 . _ : + -"))
    } else {
        Ok(())
    }
}

/// `raw` if it is `host:/path` with a plain host name, an IPv4 address or a bracketed IPv6
/// address, and nothing mount(8) could read as an option.
pub(super) fn export(raw: &str) -> Result<String, WireError> {
    let refuse = |reason: &'static str| WireError::BadExport { export: echo(raw), reason };
    // `user:password@host:/path` is no export syntax, but a requester may try it: the
    // credentials must not come back in the reply or reach the log.
    let head = raw.split('/').next().unwrap_or_default();
    if let Some(at) = head.rfind('@') {
        let masked = format!("***{}", &raw[at..]);
        return Err(WireError::BadExport {
            export: echo(&masked),
            reason: "must not carry user credentials (host:/path)",
        });
    }
    if raw.contains("://") {
        return Err(refuse("must have the form host:/path, not a URL"));
    }
    if raw.len() > MAX_EXPORT_LEN {
        return Err(refuse("longer than 1024 bytes"));
    }
    if raw.starts_with('-') {
        return Err(refuse("must not start with '-'"));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(refuse("contains whitespace or a control character"));
    }
    let (host, path) = if let Some(bracketed) = raw.strip_prefix('[') {
        let Some((host, path)) = bracketed.split_once("]:") else {
            return Err(refuse("must have the form host:/path"));
        };
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        {
            return Err(refuse("has an invalid IPv6 address"));
        }
        (host, path)
    } else {
        let Some((host, path)) = raw.split_once(':') else {
            return Err(refuse("must have the form host:/path"));
        };
        if host.is_empty()
            || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(refuse("has an invalid host name"));
        }
        (host, path)
    };
    debug_assert!(!host.is_empty());
    if !path.starts_with('/') {
        return Err(refuse("the export path must be absolute"));
    }
    if path.contains(',') {
        return Err(refuse("the export path must not contain ','"));
    }
    Ok(raw.to_owned())
}
