//! The reply body: `{"status": ..., "error_msg": ..., "success_msg": ...}`, always all three
//! keys, byte-compatible with the Python service's `json.dumps` output (`", "` and `": "`
//! separators, non-ASCII escaped as `\uXXXX`), so a client that compared raw bodies or
//! logged them keeps seeing the same text.
//!
//! Every outcome's text is worded here (a refused body's is the validator's, beside it):
//! the successes from the typed [`Outcome`] ([`Reply::from_outcome`]), the failures from
//! the typed [`Cause`] ([`Wire`], which the engine hands to `decide`: the journal keeps a
//! failure's text as worded when it was decided, so a redelivery is answered with the same
//! bytes even after a later version words that cause differently).

use dms_journal::{Cause, Outcome, Wording};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
        }
    }
}

/// One reply. `Deserialize` is for clients and tests; the daemon sends [`Reply::to_json`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub status: Status,
    pub error_msg: Option<String>,
    pub success_msg: Option<String>,
}

impl Reply {
    pub fn success(msg: impl Into<String>) -> Self {
        Self { status: Status::Success, error_msg: None, success_msg: Some(msg.into()) }
    }

    pub fn error(msg: impl Into<String>) -> Self {
        Self { status: Status::Error, error_msg: Some(msg.into()), success_msg: None }
    }

    /// The texts the Python clients know. `NotMounted` is a success, as it was in the
    /// Python service (and as `Outcome::is_success` says): the target is not mounted, which
    /// is what an unmount asks for.
    pub fn from_outcome(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Mounted { kind, path } => Self::success(format!(
                "{} target mounted successfully at {path}",
                kind.to_ascii_uppercase()
            )),
            Outcome::AlreadyMounted { path } => Self::success(format!("Already mounted at {path}")),
            Outcome::Unmounted { path } => {
                Self::success(format!("Target unmounted successfully from {path}"))
            }
            Outcome::NotMounted { path } => Self::success(format!("Target not mounted at {path}")),
            Outcome::Failed { reason } => Self::error(reason.clone()),
        }
    }

    /// The body bytes, exactly as Python's `json.dumps(response)` wrote them.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"status\": ");
        push_str(&mut out, self.status.as_str());
        out.push_str(", \"error_msg\": ");
        push_opt(&mut out, self.error_msg.as_deref());
        out.push_str(", \"success_msg\": ");
        push_opt(&mut out, self.success_msg.as_deref());
        out.push('}');
        out
    }
}

/// The daemon's wording of failures (the reply's `error_msg`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Wire;

impl Wording for Wire {
    fn failure(&self, cause: &Cause) -> String {
        match cause {
            Cause::Credentials(e) => format!("Failed to fetch credentials: {e}"),
            Cause::HelperStart(e) => format!("Failed to start helper: {e}"),
            Cause::MountVerification(e) => format!("Mount verification failed: {e}"),
            Cause::NfsMount(e) => format!("NFS mount failed: {e}"),
            Cause::NfsOutage(outage) => format!("NFS mount failed: {outage}"),
            Cause::Unmount(e) => format!("Unmount failed: {e}"),
            Cause::MountedElsewhere { target, path } => {
                format!("Target {target} is already mounted at {path}; unmount it first")
            }
            Cause::NeedsCleanup { target, cleanup } => format!(
                "Target {target} needs cleanup after a failed operation ({cleanup}); send an \
                 unmount or wait for the reconciler"
            ),
            Cause::Nests { path, nesting } => {
                format!("Mount path {path} {nesting}; targets never nest")
            }
            Cause::Refused(rejection) => rejection.to_string(),
            Cause::Internal(illegal) => format!("internal error: {illegal}; nothing was done"),
            Cause::NoAnswer => "the request ended without an answer".to_owned(),
        }
    }
}

/// A failed outcome, worded by [`Wire`]: the engine's own refusals, which no decision
/// journals.
pub fn failed(cause: &Cause) -> Outcome {
    Outcome::Failed { reason: Wire.failure(cause) }
}

fn push_opt(out: &mut String, value: Option<&str>) {
    match value {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

/// A JSON string literal with Python's `ensure_ascii=True` escaping.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}
