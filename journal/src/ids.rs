//! Validated identifiers.
//!
//! Every identifier that reaches the journal passed through one of these constructors, so the
//! rest of the system can treat them as safe: a [`TargetId`] can be joined to a directory
//! without escaping it, a [`RequestKey`] can be printed without smuggling control characters
//! into a terminal or a log line.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Why an identifier was refused. The text is meant for an error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("target id is empty")]
    EmptyTarget,
    #[error("target id is {len} bytes long; at most {max} are allowed")]
    TargetTooLong { len: usize, max: usize },
    #[error("target id must not start with '.'")]
    LeadingDot,
    #[error("target id contains {ch:?}; only A-Z a-z 0-9 . _ - are allowed")]
    BadTargetChar { ch: char },
    #[error("request key is empty")]
    EmptyRequestKey,
    #[error("request key is {len} bytes long; at most {max} are allowed")]
    RequestKeyTooLong { len: usize, max: usize },
    #[error("request key contains a control or whitespace character")]
    BadRequestKeyChar,
    #[error("not a uuid: {0}")]
    BadUuid(String),
}

/// The name of a backup target. A name, never a path (DESIGN §3.6): it becomes
/// `<pid_dir>/<id>.pid`, so it may hold only `[A-Za-z0-9._-]`, must not start with a dot
/// (no `.`, `..` or hidden files) and is bounded in length.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TargetId(String);

impl TargetId {
    pub const MAX_LEN: usize = 128;

    pub fn new(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() {
            return Err(IdError::EmptyTarget);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(IdError::TargetTooLong { len: raw.len(), max: Self::MAX_LEN });
        }
        if raw.starts_with('.') {
            return Err(IdError::LeadingDot);
        }
        if let Some(ch) =
            raw.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(IdError::BadTargetChar { ch });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TargetId {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, IdError> {
        Self::new(&raw)
    }
}

impl From<TargetId> for String {
    fn from(id: TargetId) -> String {
        id.0
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What identifies one request across redeliveries: the AMQP `correlation_id`, or the
/// `message_id` when there is none. Clients send uuid4s, but any printable token is accepted
/// so that a client with another scheme still gets exactly-once answers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestKey(String);

impl RequestKey {
    pub const MAX_LEN: usize = 255;

    pub fn new(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() {
            return Err(IdError::EmptyRequestKey);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(IdError::RequestKeyTooLong { len: raw.len(), max: Self::MAX_LEN });
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(IdError::BadRequestKeyChar);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestKey {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, IdError> {
        Self::new(&raw)
    }
}

impl From<RequestKey> for String {
    fn from(key: RequestKey) -> String {
        key.0
    }
}

impl fmt::Display for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One mount or unmount operation. Outcomes of effects carry it, so an outcome that arrives
/// for an operation that is no longer current is refused instead of applied to a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OperationId(pub Uuid);

impl OperationId {
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The kernel's `/proc/sys/kernel/random/boot_id`. A record from another boot describes a
/// machine that no longer exists: its PIDs and mounts mean nothing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BootId(pub Uuid);

impl BootId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        Uuid::parse_str(raw.trim())
            .map(Self)
            .map_err(|_| IdError::BadUuid(raw.trim().chars().take(64).collect()))
    }
}

impl fmt::Display for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Wall-clock time in milliseconds since the Unix epoch. Passed in, never read by the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn millis(self) -> u64 {
        self.0
    }

    pub fn saturating_sub_millis(self, ms: u64) -> Self {
        Self(self.0.saturating_sub(ms))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds, computed without a time crate.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
        let (y, mo, d) = civil_from_days(days as i64);
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Who a helper process is. A PID alone is not an identity: PIDs are reused, so the process
/// start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`) and the boot it
/// belongs to are part of it. The daemon signals a process only if all three match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HelperIdentity {
    pub pid: u32,
    pub start_ticks: u64,
    pub boot: BootId,
}

impl fmt::Display for HelperIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} (start {} ticks, boot {})", self.pid, self.start_ticks, self.boot)
    }
}

/// The nonce of one helper spawn: journaled (`SpawnIntended`) before the helper starts and
/// handed to the helper in its environment, so that after a crash between the spawn and
/// its `Spawned` record the daemon knows its own helper by what the journal says, not by
/// what the process runs (a wrapper that `exec`s another program, slow to mount, proves
/// nothing else yet). Only a process of the daemon's user can carry it: a process of
/// another user can read neither the journal nor a root process's environment.
///
/// Never printed: `Debug` shows no digits, `Display` does not exist, and the
/// human-readable serde form (`dms-journal --json`) is redacted; only the binary record
/// and the helper's environment hold the value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpawnNonce(Uuid);

impl SpawnNonce {
    /// The name of the environment variable that carries it to the helper.
    pub const ENV: &'static str = "DMS_HELPER_NONCE";

    /// 122 random bits from the OS (a v4 uuid).
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// A fixed nonce, for tests and fuzz seeds.
    pub const fn from_u128(n: u128) -> Self {
        Self(Uuid::from_u128(n))
    }

    /// The value set in the helper's environment: 32 lowercase hex digits.
    pub fn env_value(&self) -> String {
        self.0.simple().to_string()
    }

    /// The nonce a helper's environment value names, if it is one.
    pub fn from_env_value(raw: &str) -> Option<Self> {
        (raw.len() == 32).then(|| Uuid::try_parse(raw).ok().map(Self)).flatten()
    }
}

impl fmt::Debug for SpawnNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpawnNonce(..)")
    }
}

impl Serialize for SpawnNonce {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str("<redacted>")
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for SpawnNonce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Uuid::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_ids_are_names_not_paths() {
        for ok in ["t", "target-123", "a.b_c-D9", &"x".repeat(128)] {
            assert!(TargetId::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(TargetId::new(""), Err(IdError::EmptyTarget));
        assert_eq!(TargetId::new(".."), Err(IdError::LeadingDot));
        assert_eq!(TargetId::new(".hidden"), Err(IdError::LeadingDot));
        assert_eq!(TargetId::new("../etc"), Err(IdError::LeadingDot));
        assert_eq!(TargetId::new("a/b"), Err(IdError::BadTargetChar { ch: '/' }));
        assert_eq!(TargetId::new("a b"), Err(IdError::BadTargetChar { ch: ' ' }));
        assert_eq!(TargetId::new("a\0"), Err(IdError::BadTargetChar { ch: '\0' }));
        assert_eq!(TargetId::new("é"), Err(IdError::BadTargetChar { ch: 'é' }));
        assert!(matches!(TargetId::new(&"x".repeat(129)), Err(IdError::TargetTooLong { .. })));
    }

    #[test]
    fn deserializing_validates() {
        let bad: Result<TargetId, _> = serde_json::from_str("\"../../etc/passwd\"");
        assert!(bad.is_err());
        let good: TargetId = serde_json::from_str("\"t-1\"").expect("valid id");
        assert_eq!(good.as_str(), "t-1");
        assert!(serde_json::from_str::<RequestKey>("\"a\\nb\"").is_err());
    }

    #[test]
    fn request_keys_are_printable_tokens() {
        assert!(RequestKey::new("0b6c3f5e-7d2a-4a43-9c55-0d4c8b0a1e22").is_ok());
        assert_eq!(RequestKey::new(""), Err(IdError::EmptyRequestKey));
        assert_eq!(RequestKey::new("a b"), Err(IdError::BadRequestKeyChar));
        assert_eq!(RequestKey::new("a\x1b[2J"), Err(IdError::BadRequestKeyChar));
        assert!(RequestKey::new(&"k".repeat(256)).is_err());
    }

    #[test]
    fn timestamps_render_as_utc() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(1_795_000_000_123).to_string(), "2026-11-18T11:06:40.123Z");
        assert_eq!(Timestamp(951_782_400_000).to_string(), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn boot_ids_parse_the_kernel_format() {
        let b = BootId::parse("3f1b2c4d-1111-4222-8333-944455556666\n").expect("uuid");
        assert_eq!(b.to_string(), "3f1b2c4d-1111-4222-8333-944455556666");
        assert!(BootId::parse("nope").is_err());
    }

    #[test]
    fn spawn_nonces_round_trip_through_the_environment_and_never_print() {
        let nonce = SpawnNonce::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let value = nonce.env_value();
        assert_eq!(value, "0123456789abcdef0011223344556677");
        assert_eq!(SpawnNonce::from_env_value(&value), Some(nonce));
        for bad in ["", "0123", "0123456789abcdef001122334455667g", &format!("{value}0")] {
            assert_eq!(SpawnNonce::from_env_value(bad), None, "{bad:?}");
        }
        let hyphenated = "01234567-89ab-cdef-0011-223344556677";
        assert_eq!(SpawnNonce::from_env_value(hyphenated), None, "only the form we set");
        assert_eq!(format!("{nonce:?}"), "SpawnNonce(..)");
        assert_eq!(serde_json::to_string(&nonce).expect("json"), "\"<redacted>\"");
        assert_ne!(SpawnNonce::random(), SpawnNonce::random());
    }
}
