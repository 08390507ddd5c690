//! What the reconciler saw on the host for one target, as [`Command::Reconcile`] carries it
//! into [`decide`]: facts only. Which of them matter in which phase (is the helper ours,
//! is the mount a leftover, was the unmount answered) is decided in `decide`, as for every
//! other command, so one function writes every record.
//!
//! [`Command::Reconcile`]: super::Command::Reconcile
//! [`decide`]: super::decide

use crate::ids::HelperIdentity;

/// One target's part of a reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A target the journal knows a spec for: what is at its path.
    Target(TargetFacts),
    /// A PID file named after a target the journal holds as unmounted (or never saw).
    StrayPidFile(StrayPidFile),
}

/// What is at a tracked target's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetFacts {
    /// The host's boot id differs from the one of the target's last record: no helper and no
    /// FUSE mount of that boot survived, and a live mount there is someone else's.
    pub new_boot: bool,
    /// The mount at the path, if it is of the target's kind or dead (a dead mount at our path
    /// is useless to anyone and safe to detach). A live mount of another kind is not ours
    /// and is not reported here.
    pub mount: Option<MountSeen>,
    /// A live process proven to serve the path: the journaled helper if it is alive, else one
    /// proven a helper for the path (holding the mount's FUSE connection if there is a mount).
    /// Whether it may be the target's is for `decide`.
    pub helper: Option<HelperIdentity>,
    /// The live process whose environment carries the nonce of the target's journaled
    /// spawn intent (`SpawnIntended`, not yet followed by `Spawned`): the helper the daemon
    /// spawned just before a crash, whatever program it runs by now. Proof of origin, not of
    /// a mount: whether it serves the path is `mount`.
    pub intended: Option<HelperIdentity>,
    /// Some process runs with the journaled helper's PID (which, if not `helper`, means the PID
    /// was reused).
    pub journaled_pid_runs: bool,
    /// The target's PID file, if there is one.
    pub pid_file: Option<PidFileSeen>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountSeen {
    /// Answers a `stat` in time.
    Live,
    /// `ENOTCONN` or no answer in time.
    Dead,
}

/// A PID file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidFileSeen {
    Names(u32),
    /// Not one decimal PID.
    Unreadable,
}

impl PidFileSeen {
    pub fn pid(self) -> Option<u32> {
        match self {
            PidFileSeen::Names(pid) => Some(pid),
            PidFileSeen::Unreadable => None,
        }
    }
}

/// What a stray PID file names. Cases the reconciler leaves alone (a helper outside the
/// base, one without a live mount yet, one that does not serve the mount) are findings,
/// never commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrayPidFile {
    Unreadable,
    NotRunning {
        pid: u32,
    },
    /// A running process that is not a helper: the file goes, the process is never signalled.
    NotAHelper {
        pid: u32,
    },
    /// A helper started by hand: it holds the FUSE connection of the live mount at
    /// `mount_path`, inside the base.
    HandStarted {
        helper: HelperIdentity,
        mount_path: String,
    },
}
