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
