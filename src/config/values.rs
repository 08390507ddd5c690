//! Value types and parsers for configuration keys. Each parser returns the message of one
//! problem (the caller adds the key and where the value came from).

use dms_journal::TargetId;
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// This node's name. It becomes the queue name `dms.<node_id>` shared with clients, so it
/// follows the target-id rules: no surprises in `rabbitmqctl` output or in file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId(String);

impl NodeId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        TargetId::new(raw).map(|id| Self(id.as_str().to_owned())).map_err(|e| {
            // IdError speaks of "target id"; here it is the node's.
            e.to_string().replace("target id", "node id")
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn queue_name(&self) -> String {
        format!("dms.{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Python's level names are accepted too, since seed configs say `INFO`/`WARNING`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "error" | "critical" => Ok(Self::Error),
            "warn" | "warning" => Ok(Self::Warn),
            "info" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            "trace" => Ok(Self::Trace),
            _ => Err("must be one of error, warn, info, debug, trace".into()),
        }
    }

    /// The name `tracing`'s filters understand.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// Where log lines go and how they look (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Native journal entries when stderr is connected to the journal (systemd sets
    /// `JOURNAL_STREAM`), else [`LogFormat::Text`].
    Auto,
    /// One human-readable line per event on stderr; colour only on a terminal.
    Text,
    /// One JSON object per line on stderr, span and event fields side by side.
    Json,
    /// Native journal entries (the journal's socket), whatever stderr is.
    Journal,
}

impl LogFormat {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            "journal" | "journald" => Ok(Self::Journal),
            _ => Err("must be one of auto, text, json, journal".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Text => "text",
            Self::Json => "json",
            Self::Journal => "journal",
        }
    }
}

/// How the node's queue is declared (`queue_type`). It must match what the queue already
/// is: RabbitMQ refuses a declaration whose `x-queue-type` differs (PRECONDITION_FAILED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    /// No arguments, as the Python service and its clients declare it (DESIGN §2); a
    /// classic queue, mirrored or not by the broker's policy.
    Classic,
    /// `x-queue-type: quorum` (replicated by RabbitMQ itself; what Kolla enables).
    Quorum,
}

impl QueueType {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "classic" => Ok(Self::Classic),
            "quorum" => Ok(Self::Quorum),
            _ => Err("must be classic or quorum".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

/// An absolute path in canonical form: `//` and `.` are folded (operators write them
/// harmlessly), `..` is refused (it would make "inside the base" depend on symlinks).
pub(super) fn abs_path(raw: &str) -> Result<PathBuf, String> {
    if raw.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if !raw.starts_with('/') {
        return Err("must be an absolute path".into());
    }
    let mut out = String::new();
    for component in raw.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if component == ".." {
            return Err("must not contain '..'".into());
        }
        out.push('/');
        out.push_str(component);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(PathBuf::from(out))
}

/// The mount base: an absolute path that is not `/` itself.
pub(super) fn mount_base(raw: &str) -> Result<dms_journal::MountBase, String> {
    let path = abs_path(raw)?;
    if path.as_os_str() == "/" {
        return Err("must not be '/'".into());
    }
    // Folded by `abs_path`, so it is normalized; the check is the type's own.
    dms_journal::MountBase::new(&path.to_string_lossy()).map_err(|e| e.to_string())
}

/// A program to run: a bare name looked up in `PATH`, or an absolute path.
pub(super) fn program(raw: &str) -> Result<PathBuf, String> {
    if raw.contains('/') {
        return abs_path(raw).map_err(|_| "must be a program name or an absolute path".into());
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-');
    if raw.starts_with(['-', '.']) || !raw.chars().all(ok) {
        return Err("must be a program name or an absolute path".into());
    }
    Ok(PathBuf::from(raw))
}

/// Seconds, with up to millisecond precision (`0.5` is fine for tests), 0 < s ≤ 1 day.
/// `host:port` with a literal IP (no name lookups at start), or `off`.
pub(super) fn listen_address(raw: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if raw == "off" {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| "must be an IP:port (e.g. 127.0.0.1:9477) or off".into())
}

/// `0.0.0.0`, `::` or `::ffff:0.0.0.0`: bound, each means every address of the host.
pub(super) fn is_unspecified(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_unspecified()
}

pub(super) fn seconds(raw: &str) -> Result<Duration, String> {
    let (whole, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 3 || raw.ends_with('.') {
        return Err("must be a number of seconds (e.g. 30 or 0.5)".into());
    }
    let whole: u64 = whole.parse().map_err(|_| "is too large".to_owned())?;
    let millis: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
    let total = Duration::from_secs(whole) + Duration::from_millis(millis);
    if total.is_zero() || total > Duration::from_secs(86_400) {
        return Err("must be more than 0 and at most 86400 seconds".into());
    }
    Ok(total)
}

pub(super) fn boolean(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

pub(super) fn integer<T: TryFrom<u64>>(raw: &str, min: u64, max: u64) -> Result<T, String> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
}

/// An `http(s)://host...` URL with nothing an HTTP client would reinterpret.
pub(super) fn http_url(raw: &str) -> Result<String, String> {
    let rest = raw.strip_prefix("https://").or_else(|| raw.strip_prefix("http://"));
    match rest {
        _ if raw.chars().any(|c| c.is_control() || c.is_whitespace()) => {
            Err("must not contain whitespace or control characters".into())
        }
        Some(rest) if !rest.is_empty() && !rest.starts_with(['/', ':']) => Ok(raw.to_owned()),
        _ => Err("must be an http:// or https:// URL with a host".into()),
    }
}

/// A comma-separated list, items trimmed, empty items refused (a stray comma is a typo).
fn list(raw: &str) -> Result<Vec<&str>, String> {
    let items: Vec<&str> = raw.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err("has an empty item (stray comma?)".into());
    }
    Ok(items)
}

pub(super) fn url_prefixes(raw: &str) -> Result<Vec<String>, String> {
    list(raw)?
        .into_iter()
        .map(|item| {
            if item.contains(['?', '#', '@', '%', '\\']) {
                return Err(format!("prefix '{item}' must not contain ? # @ % or \\"));
            }
            http_url(item).map_err(|e| format!("prefix '{item}' {e}"))
        })
        .collect()
}

pub(super) fn nfs_option_names(raw: &str) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    for item in list(raw)? {
        if crate::wire::nfs::REFUSED_OPTIONS.contains(&item) {
            return Err(format!("'{item}' can never be allowed (nosuid,nodev are enforced)"));
        }
        if !item.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(format!("'{item}' is not an option name (a-z 0-9 _)"));
        }
        names.insert(item.to_owned());
    }
    Ok(names)
}

/// Filesystem type names as the mount table shows them (`nfs4`, `fuse.s3fs`, `tmpfs`).
pub(super) fn fstypes(raw: &str) -> Result<Vec<String>, String> {
    let items = list(raw)?;
    if items.is_empty() {
        return Err("must name at least one filesystem type".into());
    }
    items
        .into_iter()
        .map(|item| {
            if item.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            }) {
                Ok(item.to_owned())
            } else {
                Err(format!("'{item}' is not a filesystem type (a-z 0-9 . _ -)"))
            }
        })
        .collect()
}

/// Bytes, or a number with a `K`, `M`, `G` or `T` suffix (powers of 1024, any case), at
/// least 1 MiB: a smaller memory limit only makes a helper die at start.
pub(super) fn bytes(raw: &str) -> Result<u64, String> {
    let err = || "must be a number of bytes, optionally with K, M, G or T (e.g. 512M), at least 1M";
    let (digits, shift) = match raw.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&raw[..raw.len() - 1], 10),
        Some(b'M') => (&raw[..raw.len() - 1], 20),
        Some(b'G') => (&raw[..raw.len() - 1], 30),
        Some(b'T') => (&raw[..raw.len() - 1], 40),
        _ => (raw, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err().into());
    }
    let n: u64 = digits.parse().map_err(|_| err().to_owned())?;
    let total = n.checked_mul(1 << shift).ok_or_else(|| "is too large".to_owned())?;
    if total < 1 << 20 {
        return Err(err().into());
    }
    Ok(total)
}
