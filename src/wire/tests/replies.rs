//! Reply bodies, byte for byte, and the outcome texts the Python clients know.

use crate::wire::{Reply, Status};
use dms_journal::Outcome;

fn path() -> String {
    "/var/lib/trilio/triliovault-mounts/xxx".to_owned()
}

#[test]
fn given_each_outcome_when_replied_then_the_python_texts_and_bytes_are_sent() {
    let cases = [
        (
            Outcome::Mounted { kind: "s3".into(), path: path() },
            r#"{"status": "success", "error_msg": null, "success_msg": "S3 target mounted successfully at /var/lib/trilio/triliovault-mounts/xxx"}"#,
        ),
        (
            Outcome::Mounted { kind: "nfs".into(), path: path() },
            r#"{"status": "success", "error_msg": null, "success_msg": "NFS target mounted successfully at /var/lib/trilio/triliovault-mounts/xxx"}"#,
        ),
        (
            Outcome::AlreadyMounted { path: path() },
            r#"{"status": "success", "error_msg": null, "success_msg": "Already mounted at /var/lib/trilio/triliovault-mounts/xxx"}"#,
        ),
        (
            Outcome::Unmounted { path: path() },
            r#"{"status": "success", "error_msg": null, "success_msg": "Target unmounted successfully from /var/lib/trilio/triliovault-mounts/xxx"}"#,
        ),
        (
            Outcome::NotMounted { path: path() },
            r#"{"status": "success", "error_msg": null, "success_msg": "Target not mounted at /var/lib/trilio/triliovault-mounts/xxx"}"#,
        ),
        (
            Outcome::Failed { reason: "NFS mount failed: mount.nfs: access denied".into() },
            r#"{"status": "error", "error_msg": "NFS mount failed: mount.nfs: access denied", "success_msg": null}"#,
        ),
    ];
    for (outcome, expected) in cases {
        let reply = Reply::from_outcome(&outcome);
        assert_eq!(reply.to_json(), expected, "{outcome:?}");
        assert_eq!(reply.status == Status::Success, outcome.is_success(), "{outcome:?}");
        let back: Reply = serde_json::from_str(&reply.to_json()).unwrap();
        assert_eq!(back, reply, "the bytes parse back to the same reply");
    }
}

#[test]
fn given_special_characters_when_serialized_then_they_are_escaped_like_python_json_dumps() {
    // Expected bytes from Python 3: json.dumps({"status": "error",
    //   "error_msg": "a\"b\\c\n\t\x01é€😀", "success_msg": None})
    let reply = Reply::error("a\"b\\c\n\t\u{1}é€😀");
    assert_eq!(
        reply.to_json(),
        r#"{"status": "error", "error_msg": "a\"b\\c\n\t\u0001\u00e9\u20ac\ud83d\ude00", "success_msg": null}"#
    );
    let back: Reply = serde_json::from_str(&reply.to_json()).unwrap();
    assert_eq!(back, reply);
}

#[test]
fn given_a_reply_when_serialized_with_serde_then_all_three_keys_are_present() {
    let value = serde_json::to_value(Reply::success("ok")).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"status": "success", "error_msg": null, "success_msg": "ok"})
    );
}

#[test]
fn given_each_cause_when_worded_then_the_requester_reads_the_known_text() {
    use crate::wire::Wire;
    use dms_journal::{Cause, Cleanup, Nesting, Outage, Relation, TargetId, Timestamp, Wording};
    let target = |name: &str| TargetId::new(name).unwrap();
    let nesting = Nesting { other: target("b"), other_path: path(), relation: Relation::Inside };
    let cleanup = Cleanup { helper: None, mount: true, pid_file: true };
    let cases = [
        (Cause::Credentials("403".into()), "Failed to fetch credentials: 403".to_owned()),
        (Cause::HelperStart("ENOENT".into()), "Failed to start helper: ENOENT".into()),
        (
            Cause::MountVerification("timed out".into()),
            "Mount verification failed: timed out".into(),
        ),
        (Cause::NfsMount("exit 32".into()), "NFS mount failed: exit 32".into()),
        (Cause::Unmount("EBUSY".into()), "Unmount failed: EBUSY".into()),
        (
            Cause::MountedElsewhere { target: target("a"), path: path() },
            format!("Target a is already mounted at {}; unmount it first", path()),
        ),
        (
            Cause::NeedsCleanup { target: target("a"), cleanup },
            "Target a needs cleanup after a failed operation (detach mount, remove PID file); \
             send an unmount or wait for the reconciler"
                .into(),
        ),
        (
            Cause::Nests { path: format!("{}/inner", path()), nesting },
            format!(
                "Mount path {0}/inner lies inside the mount path of target b ({0}); targets \
                 never nest",
                path()
            ),
        ),
        (Cause::Internal("bad".into()), "internal error: bad; nothing was done".into()),
        (Cause::NoAnswer, "the request ended without an answer".into()),
    ];
    let outage = Outage {
        server: "10.0.0.5".into(),
        cause: "mount(8) did not finish within 20s".into(),
        since: Timestamp(1_000),
        until: Timestamp(31_000),
    };
    let worded = Wire.failure(&Cause::NfsOutage(outage.clone()));
    assert_eq!(worded, format!("NFS mount failed: {outage}"));
    assert!(worded.starts_with("NFS mount failed: NFS server 10.0.0.5 is not answering"));
    assert!(worded.contains("did not finish within 20s"), "says why: {worded}");
    for (cause, expected) in cases {
        assert_eq!(Wire.failure(&cause), expected, "{cause:?}");
        let reply = Reply::from_outcome(&crate::wire::failed(&cause));
        assert_eq!(reply.error_msg.as_deref(), Some(expected.as_str()), "{cause:?}");
    }
}
