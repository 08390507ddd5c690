//! The byte format of a `state_machine` input: a script of operations over 1–3 targets.
//!
//! Hand-rolled rather than `arbitrary`-derived so that it is documented and stable: the seed
//! corpus is written by [`Script::to_bytes`] and must keep meaning the same thing.
//!
//! ```text
//! byte 0          number of targets - 1 (mod 3)
//! then, per op    one opcode byte (mod 10) and that op's argument bytes (below)
//! ```
//!
//! Every byte is read modulo the size of what it selects, and a missing byte reads as 0, so
//! every input is a valid script. At most [`MAX_OPS`] ops are read.

/// Request keys the ops draw from (a small pool, so that repeats happen).
pub const KEYS: [&str; 4] = ["req-a", "req-b", "req-c", "req-d"];
/// Mount paths the ops draw from.
/// The fourth lies inside the first: a mount of it while the first is tracked must be refused.
pub const PATHS: [&str; 4] =
    ["/var/lib/dms/mnt/a", "/var/lib/dms/mnt/b", "/var/lib/dms/mnt/c", "/var/lib/dms/mnt/a/in"];
/// Spec kinds: 0 and 1 are S3 with two secret refs, 2 is NFS.
pub const KINDS: u8 = 3;
pub const MAX_TARGETS: u8 = 3;
pub const MAX_OPS: usize = 400;

/// Which operation id an effect outcome names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpRef {
    /// The target's current operation (a fresh id if it has none).
    Current,
    /// An earlier operation of the same target (a stale outcome).
    Previous,
    /// An id no operation ever had.
    Fresh,
}

/// How a mount check ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ok,
    /// A clean refusal: nothing can be mounted.
    Refused,
    /// A timeout: a mount may have been left behind.
    MaybeMounted,
}

/// One step. `target` indexes the script's targets; `key` indexes [`KEYS`] (`None`: the
/// request has no key), `path` indexes [`PATHS`], `kind` selects a spec kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Mount {
        target: u8,
        key: Option<u8>,
        path: u8,
        kind: u8,
    },
    Unmount {
        target: u8,
        key: Option<u8>,
        path: u8,
    },
    CredsFetched {
        target: u8,
        op: OpRef,
        ok: bool,
    },
    HelperSpawned {
        target: u8,
        op: OpRef,
        ok: bool,
        pid: u8,
    },
    MountChecked {
        target: u8,
        op: OpRef,
        check: Check,
    },
    Detached {
        target: u8,
        op: OpRef,
        ok: bool,
    },
    UnmountDone {
        target: u8,
        op: OpRef,
        ok: bool,
    },
    CleanupDone {
        target: u8,
        ok: bool,
    },
    /// Restart: every record goes through the codec and the state is rebuilt by replay.
    Reboot,
    /// Take a snapshot of every target (what compaction would keep).
    Checkpoint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// 1..=3.
    pub targets: u8,
    pub ops: Vec<Op>,
}

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }

    fn ok(&mut self) -> bool {
        self.byte().is_multiple_of(2)
    }

    fn key(&mut self) -> Option<u8> {
        match self.below(KEYS.len() as u8 + 1) {
            0 => None,
            k => Some(k - 1),
        }
    }

    fn op_ref(&mut self) -> OpRef {
        match self.below(4) {
            0 | 1 => OpRef::Current,
            2 => OpRef::Previous,
            _ => OpRef::Fresh,
        }
    }
}

impl Script {
    pub fn parse(data: &[u8]) -> Script {
        let mut r = Reader { data };
        let targets = r.below(MAX_TARGETS) + 1;
        let mut ops = Vec::new();
        while !r.data.is_empty() && ops.len() < MAX_OPS {
            let op = match r.below(10) {
                0 => Op::Mount {
                    target: r.below(targets),
                    key: r.key(),
                    path: r.below(PATHS.len() as u8),
                    kind: r.below(KINDS),
                },
                1 => Op::Unmount {
                    target: r.below(targets),
                    key: r.key(),
                    path: r.below(PATHS.len() as u8),
                },
                2 => Op::CredsFetched { target: r.below(targets), op: r.op_ref(), ok: r.ok() },
                3 => Op::HelperSpawned {
                    target: r.below(targets),
                    op: r.op_ref(),
                    ok: r.ok(),
                    pid: r.byte(),
                },
                4 => Op::MountChecked {
                    target: r.below(targets),
                    op: r.op_ref(),
                    check: match r.below(3) {
                        0 => Check::Ok,
                        1 => Check::Refused,
                        _ => Check::MaybeMounted,
                    },
                },
                5 => Op::Detached { target: r.below(targets), op: r.op_ref(), ok: r.ok() },
                6 => Op::UnmountDone { target: r.below(targets), op: r.op_ref(), ok: r.ok() },
                7 => Op::CleanupDone { target: r.below(targets), ok: r.ok() },
                8 => Op::Reboot,
                _ => Op::Checkpoint,
            };
            ops.push(op);
        }
        Script { targets, ops }
    }

    /// The bytes [`Script::parse`] reads back as `self` (for scripts whose fields are in
    /// range; out-of-range fields are written as given and wrap when read).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.targets.saturating_sub(1)];
        let ok = |b: bool| u8::from(!b);
        let key = |k: Option<u8>| k.map_or(0, |k| k + 1);
        let op_ref = |r: OpRef| match r {
            OpRef::Current => 0,
            OpRef::Previous => 2,
            OpRef::Fresh => 3,
        };
        for op in &self.ops {
            match *op {
                Op::Mount { target, key: k, path, kind } => {
                    out.extend([0, target, key(k), path, kind])
                }
                Op::Unmount { target, key: k, path } => out.extend([1, target, key(k), path]),
                Op::CredsFetched { target, op, ok: o } => {
                    out.extend([2, target, op_ref(op), ok(o)])
                }
                Op::HelperSpawned { target, op, ok: o, pid } => {
                    out.extend([3, target, op_ref(op), ok(o), pid])
                }
                Op::MountChecked { target, op, check } => {
                    let c = match check {
                        Check::Ok => 0,
                        Check::Refused => 1,
                        Check::MaybeMounted => 2,
                    };
                    out.extend([4, target, op_ref(op), c])
                }
                Op::Detached { target, op, ok: o } => out.extend([5, target, op_ref(op), ok(o)]),
                Op::UnmountDone { target, op, ok: o } => out.extend([6, target, op_ref(op), ok(o)]),
                Op::CleanupDone { target, ok: o } => out.extend([7, target, ok(o)]),
                Op::Reboot => out.push(8),
                Op::Checkpoint => out.push(9),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_parses_and_bytes_read_back() {
        let data: Vec<u8> =
            (0..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in [0, 1, 2, 7, 100, 2000] {
            let script = Script::parse(&data[..len]);
            assert!((1..=MAX_TARGETS).contains(&script.targets));
            assert!(script.ops.len() <= MAX_OPS);
            assert_eq!(Script::parse(&script.to_bytes()), script);
        }
        assert_eq!(Script::parse(&[]), Script { targets: 1, ops: vec![] });
    }

    #[test]
    fn missing_argument_bytes_read_as_zero() {
        assert_eq!(
            Script::parse(&[2, 0]).ops,
            vec![Op::Mount { target: 0, key: None, path: 0, kind: 0 }]
        );
    }
}
