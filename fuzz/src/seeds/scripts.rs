//! Hand-written `state_machine` scripts: every path of the machine, with a name each.

use crate::script::{Check, Op, OpRef, Script};

const A: Option<u8> = Some(0);
const B: Option<u8> = Some(1);
const C: Option<u8> = Some(2);
const D: Option<u8> = Some(3);
const S3: u8 = 0;
const S3_OTHER: u8 = 1;
const NFS: u8 = 2;
const CUR: OpRef = OpRef::Current;

fn mount(target: u8, key: Option<u8>, path: u8, kind: u8) -> Op {
    Op::Mount { target, key, path, kind }
}
fn unmount(target: u8, key: Option<u8>, path: u8) -> Op {
    Op::Unmount { target, key, path }
}
fn creds(target: u8, ok: bool) -> Op {
    Op::CredsFetched { target, op: CUR, ok }
}
fn spawn(target: u8, ok: bool) -> Op {
    Op::HelperSpawned { target, op: CUR, ok, pid: 40 + target }
}
fn check(target: u8, check: Check) -> Op {
    Op::MountChecked { target, op: CUR, check }
}
fn detached(target: u8, ok: bool) -> Op {
    Op::Detached { target, op: CUR, ok }
}
fn unmounted(target: u8, ok: bool) -> Op {
    Op::UnmountDone { target, op: CUR, ok }
}
fn cleaned(target: u8, ok: bool) -> Op {
    Op::CleanupDone { target, ok }
}
/// A whole successful S3 mount of `target` at `path`.
fn s3_mount(target: u8, key: Option<u8>, path: u8) -> Vec<Op> {
    vec![
        mount(target, key, path, S3),
        creds(target, true),
        spawn(target, true),
        check(target, Check::Ok),
    ]
}
/// A whole successful S3 unmount.
fn s3_unmount(target: u8, key: Option<u8>, path: u8) -> Vec<Op> {
    vec![unmount(target, key, path), detached(target, true), cleaned(target, true)]
}

fn script(targets: u8, parts: Vec<Vec<Op>>) -> Script {
    Script { targets, ops: parts.concat() }
}

pub fn scripts() -> Vec<(&'static str, Script)> {
    use Check::{MaybeMounted, Ok as Good, Refused};
    use Op::{Checkpoint, Reboot};
    vec![
        (
            "s3-mount-unmount",
            script(
                1,
                vec![
                    s3_mount(0, A, 0),
                    vec![
                        mount(0, A, 0, S3),
                        mount(0, B, 0, S3),
                        mount(0, C, 1, S3),
                        unmount(0, D, 1),
                    ],
                    s3_unmount(0, None, 0),
                    vec![Reboot, mount(0, B, 2, S3)],
                ],
            ),
        ),
        (
            "nfs-mount-unmount",
            script(
                1,
                vec![vec![
                    mount(0, A, 0, NFS),
                    check(0, Good),
                    Checkpoint,
                    unmount(0, B, 0),
                    unmounted(0, true),
                    Reboot,
                    mount(0, A, 1, NFS),
                    unmount(0, B, 2),
                ]],
            ),
        ),
        (
            "s3-creds-fail",
            script(
                1,
                vec![
                    vec![mount(0, A, 0, S3), creds(0, false), mount(0, A, 0, S3)],
                    s3_mount(0, B, 0),
                ],
            ),
        ),
        (
            "s3-spawn-fail",
            script(
                1,
                vec![vec![
                    mount(0, A, 1, S3_OTHER),
                    creds(0, true),
                    spawn(0, false),
                    Reboot,
                    mount(0, A, 1, S3),
                ]],
            ),
        ),
        (
            "s3-verify-fail-cleanup",
            script(
                1,
                vec![
                    vec![
                        mount(0, A, 0, S3),
                        creds(0, true),
                        spawn(0, true),
                        check(0, Refused),
                        mount(0, B, 0, S3),
                    ],
                    vec![cleaned(0, false), Reboot, cleaned(0, true), cleaned(0, true)],
                    s3_mount(0, C, 0),
                ],
            ),
        ),
        (
            "s3-verify-fail-unmount",
            script(
                1,
                vec![
                    vec![
                        mount(0, A, 2, S3),
                        creds(0, true),
                        spawn(0, true),
                        check(0, MaybeMounted),
                    ],
                    vec![
                        unmount(0, B, 1),
                        unmount(0, C, 2),
                        detached(0, true),
                        cleaned(0, true),
                        mount(0, D, 2, NFS),
                    ],
                ],
            ),
        ),
        (
            "nfs-maybe-mounted",
            script(
                1,
                vec![vec![
                    mount(0, A, 0, NFS),
                    check(0, MaybeMounted),
                    mount(0, B, 0, NFS),
                    unmount(0, C, 0),
                    unmounted(0, true),
                    mount(0, B, 0, NFS),
                ]],
            ),
        ),
        (
            "nfs-refused",
            script(
                1,
                vec![vec![
                    mount(0, A, 0, NFS),
                    check(0, Refused),
                    mount(0, A, 0, NFS),
                    mount(0, B, 0, NFS),
                    check(0, Good),
                ]],
            ),
        ),
        (
            "stale-outcomes",
            script(
                1,
                vec![vec![
                    mount(0, A, 0, S3),
                    Op::CredsFetched { target: 0, op: OpRef::Fresh, ok: true },
                    creds(0, false),
                    mount(0, B, 0, S3),
                    Op::CredsFetched { target: 0, op: OpRef::Previous, ok: true },
                    creds(0, true),
                    Op::HelperSpawned { target: 0, op: OpRef::Previous, ok: true, pid: 9 },
                    spawn(0, true),
                    Op::MountChecked { target: 0, op: OpRef::Fresh, check: Good },
                    check(0, Good),
                    unmount(0, C, 0),
                    Op::Detached { target: 0, op: OpRef::Previous, ok: true },
                    detached(0, true),
                    Op::UnmountDone { target: 0, op: OpRef::Fresh, ok: true },
                    cleaned(0, true),
                ]],
            ),
        ),
        (
            "busy",
            script(
                1,
                vec![vec![
                    mount(0, A, 0, S3),
                    mount(0, B, 0, S3),
                    unmount(0, C, 0),
                    mount(0, A, 0, S3),
                    creds(0, true),
                    unmount(0, C, 0),
                    spawn(0, true),
                    check(0, Good),
                    mount(0, B, 0, S3),
                ]],
            ),
        ),
        (
            "unexpected-outcomes",
            script(
                1,
                vec![vec![
                    creds(0, true),
                    cleaned(0, true),
                    detached(0, true),
                    cleaned(0, true),
                    mount(0, A, 0, NFS),
                    creds(0, true),
                    spawn(0, true),
                    detached(0, true),
                    cleaned(0, true),
                    cleaned(0, true),
                    check(0, Good),
                    check(0, Good),
                    creds(0, true),
                    unmount(0, B, 0),
                    creds(0, true),
                    check(0, Good),
                ]],
            ),
        ),
        (
            "s3-unmount-failures",
            script(
                1,
                vec![
                    s3_mount(0, A, 0),
                    vec![
                        unmount(0, B, 0),
                        detached(0, false),
                        mount(0, C, 0, S3),
                        unmount(0, D, 0),
                        detached(0, true),
                        cleaned(0, false),
                    ],
                    vec![
                        unmount(0, D, 0),
                        cleaned(0, true),
                        unmount(0, None, 0),
                        Checkpoint,
                        mount(0, None, 0, S3),
                        Reboot,
                    ],
                ],
            ),
        ),
        (
            "nfs-unmount-fails",
            script(
                1,
                vec![vec![
                    mount(0, A, 1, NFS),
                    check(0, Good),
                    unmount(0, B, 1),
                    unmounted(0, false),
                    unmount(0, C, 1),
                    unmounted(0, true),
                    Reboot,
                ]],
            ),
        ),
        (
            "three-targets-interleaved",
            script(
                3,
                vec![vec![
                    mount(0, A, 0, S3),
                    mount(1, B, 1, NFS),
                    mount(2, C, 2, S3_OTHER),
                    creds(0, true),
                    check(1, Good),
                    creds(2, true),
                    Checkpoint,
                    spawn(0, true),
                    spawn(2, false),
                    unmount(1, D, 1),
                    Reboot,
                    check(0, Good),
                    unmounted(1, true),
                    mount(2, C, 2, S3),
                    mount(2, D, 2, S3),
                    creds(2, true),
                    Checkpoint,
                    spawn(2, true),
                    check(2, MaybeMounted),
                    unmount(0, A, 0),
                    detached(0, true),
                    Reboot,
                    cleaned(0, true),
                    cleaned(2, true),
                    Reboot,
                ]],
            ),
        ),
        (
            "reboot-in-flight",
            script(
                1,
                vec![vec![
                    mount(0, A, 0, S3),
                    Reboot,
                    creds(0, true),
                    Reboot,
                    spawn(0, true),
                    Reboot,
                    check(0, Good),
                    Reboot,
                    unmount(0, B, 0),
                    Reboot,
                    detached(0, true),
                    Reboot,
                    cleaned(0, true),
                    Reboot,
                ]],
            ),
        ),
        (
            "checkpoints",
            script(
                2,
                vec![
                    vec![Checkpoint, Reboot],
                    s3_mount(0, A, 0),
                    vec![
                        Checkpoint,
                        mount(1, B, 1, NFS),
                        Reboot,
                        check(1, Good),
                        Checkpoint,
                        Checkpoint,
                    ],
                    s3_unmount(0, C, 0),
                    vec![Reboot, unmount(1, D, 1), Checkpoint, unmounted(1, true), Reboot],
                ],
            ),
        ),
        (
            "no-request-keys",
            script(
                1,
                vec![
                    s3_mount(0, None, 0),
                    vec![mount(0, None, 0, S3), mount(0, None, 1, NFS)],
                    s3_unmount(0, None, 0),
                    vec![unmount(0, None, 0)],
                ],
            ),
        ),
        (
            "remount-cycles",
            script(
                1,
                vec![
                    s3_mount(0, A, 0),
                    s3_unmount(0, B, 0),
                    s3_mount(0, C, 1),
                    s3_unmount(0, D, 1),
                    vec![
                        mount(0, A, 2, NFS),
                        mount(0, B, 2, NFS),
                        mount(0, C, 0, NFS),
                        mount(0, D, 0, NFS),
                    ],
                    vec![mount(0, None, 2, NFS), check(0, Good), Reboot, unmount(0, A, 2)],
                ],
            ),
        ),
        (
            "unmount-unknown-target",
            script(2, vec![vec![unmount(1, A, 0), unmount(1, A, 0), unmount(0, None, 2), Reboot]]),
        ),
        (
            "dirty-wrong-path",
            script(
                1,
                vec![vec![
                    mount(0, A, 0, NFS),
                    check(0, MaybeMounted),
                    unmount(0, B, 1),
                    unmount(0, None, 2),
                    mount(0, C, 1, S3),
                    unmount(0, D, 0),
                    unmounted(0, true),
                ]],
            ),
        ),
        (
            "keys-across-targets",
            script(
                2,
                vec![
                    s3_mount(0, A, 0),
                    vec![mount(1, A, 1, NFS), check(1, Good), unmount(1, A, 1), unmount(0, A, 0)],
                    s3_unmount(0, B, 0),
                ],
            ),
        ),
        (
            "helper-identities",
            script(
                2,
                vec![vec![
                    mount(0, A, 0, S3),
                    creds(0, true),
                    Op::HelperSpawned { target: 0, op: CUR, ok: true, pid: 255 },
                    check(0, Refused),
                    mount(1, B, 1, S3_OTHER),
                    creds(1, true),
                    Op::HelperSpawned { target: 1, op: CUR, ok: true, pid: 0 },
                    check(1, MaybeMounted),
                    unmount(0, C, 0),
                    detached(0, true),
                    cleaned(0, true),
                    cleaned(1, true),
                    Reboot,
                ]],
            ),
        ),
        (
            // Path 3 lies inside path 0: refused while target 0 holds it, then allowed.
            "nesting",
            script(
                2,
                vec![
                    s3_mount(0, A, 0),
                    vec![mount(1, B, 3, S3), mount(1, C, 0, NFS)],
                    s3_unmount(0, D, 0),
                    s3_mount(1, B, 3),
                ],
            ),
        ),
    ]
}
