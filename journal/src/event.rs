//! What the journal records: one [`Record`] per state transition of one target.
//!
//! Records describe what happened, never how to redo it with privileges: no keystone token
//! and no credential ever appears here (the types have no field that could hold one).

use crate::ids::{
    BootId, HelperIdentity, OperationId, RequestKey, SpawnNonce, TargetId, Timestamp,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How a target is mounted, with what the request said about it (validated by the daemon
/// before it reaches the journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetKind {
    /// A FUSE helper process per target. `secret_ref` is the Barbican reference, not the
    /// secret: it names where the credentials live.
    S3 { secret_ref: String },
    /// mount(8) with `options` already filtered through the allow-list.
    Nfs { export: String, options: String },
}

impl TargetKind {
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::S3 { .. } => "s3",
            TargetKind::Nfs { .. } => "nfs",
        }
    }

    pub fn has_helper(&self) -> bool {
        matches!(self, TargetKind::S3 { .. })
    }
}

/// A target as one mount request described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    pub kind: TargetKind,
    /// Absolute, normalized, inside the mount base (checked by the daemon).
    pub mount_path: String,
}

/// What must be undone before a target is clean again. Carried by the records that leave a
/// target dirty, so a replay knows exactly what the cleanup is about without guessing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {
    /// A helper that may still run. Signalled only if its full identity still matches.
    pub helper: Option<HelperIdentity>,
    /// The mount at the target's path may be present (possibly dead) and must be detached.
    pub mount: bool,
    /// The target's PID file may exist and must be removed.
    pub pid_file: bool,
}

impl Cleanup {
    pub fn is_empty(&self) -> bool {
        self.helper.is_none() && !self.mount && !self.pid_file
    }
}

impl fmt::Display for Cleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.helper {
            parts.push(format!("stop helper pid {}", h.pid));
        }
        if self.mount {
            parts.push("detach mount".to_owned());
        }
        if self.pid_file {
            parts.push("remove PID file".to_owned());
        }
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The deaths of a target's helpers that count against healing it: `count` within the
/// window that began at `since` (this one included), of at most `limit` that are healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deaths {
    pub count: u32,
    pub limit: u32,
    pub since: Timestamp,
}

/// Whether a failed operation left anything behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureClass {
    /// Nothing is left to undo: the target is back to unmounted.
    Final,
    /// Something may still be running or mounted and must be resolved before the target is
    /// used again. The target stays dirty until a `Cleaned` record or an unmount.
    Uncertain(Cleanup),
}

/// The answer a request got. Journaled so a redelivered request gets the same answer again.
/// `Failed.reason` is the exact `error_msg` the requester saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Mounted { kind: String, path: String },
    AlreadyMounted { path: String },
    Unmounted { path: String },
    NotMounted { path: String },
    Failed { reason: String },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        !matches!(self, Outcome::Failed { .. })
    }

    /// A short name for logs and journal fields (`OUTCOME=mounted`).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Mounted { .. } => "mounted",
            Outcome::AlreadyMounted { .. } => "already_mounted",
            Outcome::Unmounted { .. } => "unmounted",
            Outcome::NotMounted { .. } => "not_mounted",
            Outcome::Failed { .. } => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Mounted { kind, path } => write!(f, "{kind} mounted at {path}"),
            Outcome::AlreadyMounted { path } => write!(f, "already mounted at {path}"),
            Outcome::Unmounted { path } => write!(f, "unmounted from {path}"),
            Outcome::NotMounted { path } => write!(f, "not mounted at {path}"),
            Outcome::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// One state transition. The variant names are the vocabulary of `dms-journal` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    // --- mount chain: Requested → CredsFetched → Spawned → Verified (S3),
    //                  Requested → Verified (NFS: mount(8) has no credential or helper step)
    /// A mount was accepted; durable before credentials are fetched or mount(8) runs.
    Requested {
        spec: TargetSpec,
    },
    /// Credentials were fetched (and are held only in memory); licenses the spawn.
    CredsFetched,
    /// The helper runs with this identity; journaled before waiting for its mount.
    Spawned {
        helper: HelperIdentity,
    },
    /// The mount table shows the mount and it answers.
    Verified,

    // --- unmount chain: UnmountRequested → Detached (S3: the answer; the helper is stopped
    //     after it, as a cleanup) or UnmountRequested → Unmounted (NFS)
    UnmountRequested {
        mount_path: String,
    },
    /// Written by daemons before the S3 detach: the helper was stopped before the unmount.
    /// Still read (old journals), never written now.
    HelperStopped,
    Unmounted,

    /// The current operation failed; `reason` is the error the requester got.
    Failed {
        reason: String,
        class: FailureClass,
    },

    /// A request answered from the journaled state without side effects
    /// (already mounted, not mounted, or refused), recorded so it stays answered.
    Answered {
        outcome: Outcome,
    },

    // --- reconciler observations
    /// A mount found alive in reality is taken over (a hand-started helper with a PID file,
    /// or an interrupted mount that had in fact completed).
    Adopted {
        spec: TargetSpec,
        helper: Option<HelperIdentity>,
        reason: String,
    },
    /// The journal said mounted, reality disagrees (helper dead, mount gone, new boot).
    Lost {
        reason: String,
        cleanup: Cleanup,
    },
    /// An interrupted mount was rolled back; its request was never answered, so a
    /// redelivery starts it afresh.
    Abandoned {
        reason: String,
        cleanup: Cleanup,
    },
    /// Leftovers were removed (after a failure, a loss, or a stale PID file).
    Cleaned {
        what: String,
    },

    /// An S3 mount was detached from its path (`umount2(MNT_DETACH)`): the unmount's answer.
    /// The helper that served it and its PID file are `cleanup`, undone after the answer,
    /// so the requester never waits for a helper to exit. Last in the enum: the codec's
    /// variant numbers of every older record stay as they were.
    Detached {
        cleanup: Cleanup,
    },

    /// A helper is about to be spawned with `nonce` in its environment; durable before the
    /// spawn. After a crash before `Spawned`, the live process of the daemon's user whose
    /// environment carries this nonce is that helper: resumed, not disowned (a wrapper that
    /// `exec`s another program and is slow to mount proves nothing else in that window).
    /// Appended after `Detached`: older variants keep their codec numbers.
    SpawnIntended {
        nonce: SpawnNonce,
    },

    /// The helper of a mounted target died (`cause`: its exit status, or why its
    /// replacement failed) and the target is being healed: its dead mount detached, a new
    /// helper spawned with the same environment, its mount verified (`SpawnIntended`,
    /// `Spawned`, `Verified`, as for a mount). The target stays mounted for the requester.
    /// A death past the bound is `Lost` instead.
    HelperDied {
        helper: HelperIdentity,
        cause: String,
        deaths: Deaths,
    },
}

impl Event {
    /// The name shown by `dms-journal`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Requested { .. } => "Requested",
            Event::CredsFetched => "CredsFetched",
            Event::Spawned { .. } => "Spawned",
            Event::Verified => "Verified",
            Event::UnmountRequested { .. } => "UnmountRequested",
            Event::HelperStopped => "HelperStopped",
            Event::Unmounted => "Unmounted",
            Event::Failed { .. } => "Failed",
            Event::Answered { .. } => "Answered",
            Event::Adopted { .. } => "Adopted",
            Event::Lost { .. } => "Lost",
            Event::Abandoned { .. } => "Abandoned",
            Event::Cleaned { .. } => "Cleaned",
            Event::Detached { .. } => "Detached",
            Event::SpawnIntended { .. } => "SpawnIntended",
            Event::HelperDied { .. } => "HelperDied",
        }
    }

    /// Human-readable details for `dms-journal inspect --target`.
    pub fn details(&self) -> String {
        match self {
            Event::Requested { spec } => match &spec.kind {
                TargetKind::S3 { secret_ref } => {
                    format!("s3 at {} (secret_ref {secret_ref})", spec.mount_path)
                }
                TargetKind::Nfs { export, options } => {
                    format!("nfs {export} at {} (-o {options})", spec.mount_path)
                }
            },
            Event::CredsFetched | Event::Verified | Event::HelperStopped | Event::Unmounted => {
                String::new()
            }
            Event::Spawned { helper } => helper.to_string(),
            Event::UnmountRequested { mount_path } => format!("from {mount_path}"),
            Event::Failed { reason, class: FailureClass::Final } => format!("final: {reason}"),
            Event::Failed { reason, class: FailureClass::Uncertain(c) } => {
                format!("uncertain ({c}): {reason}")
            }
            Event::Answered { outcome } => outcome.to_string(),
            Event::Adopted { spec, helper, reason } => match helper {
                Some(h) => {
                    format!("{} at {} with helper {h}: {reason}", spec.kind.name(), spec.mount_path)
                }
                None => format!("{} at {}: {reason}", spec.kind.name(), spec.mount_path),
            },
            Event::Lost { reason, cleanup } | Event::Abandoned { reason, cleanup } => {
                format!("{reason} (cleanup: {cleanup})")
            }
            Event::Cleaned { what } => what.clone(),
            Event::Detached { cleanup } => format!("then: {cleanup}"),
            // The nonce is the helper's proof of origin: never shown.
            Event::SpawnIntended { .. } => "nonce set in the helper's environment".to_owned(),
            Event::HelperDied { helper, cause, deaths } => format!(
                "pid {} died ({cause}); death {} of {} healed since {}; healing",
                helper.pid, deaths.count, deaths.limit, deaths.since
            ),
        }
    }
}

/// One journal record: an event with the context every record must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub target: TargetId,
    pub at: Timestamp,
    pub boot: BootId,
    /// The request this record belongs to. `None` only for reconciler observations that no
    /// request caused (a hand-written PID file, a loss found at boot).
    pub request: Option<RequestKey>,
    /// The operation this record belongs to, if any.
    pub op: Option<OperationId>,
    pub event: Event,
}

/// When and on which boot a decision is taken; passed into the model, never read by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: Timestamp,
    pub boot: BootId,
}
