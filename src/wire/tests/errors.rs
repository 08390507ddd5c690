//! Every client-facing error text, and the order in which fields are checked.

use super::*;
use crate::wire::{WireError, MAX_BODY_LEN};

#[test]
fn given_broken_bodies_when_parsed_then_the_python_json_error_is_answered() {
    let cases: &[(&str, &[u8])] = &[
        ("empty body", b""),
        ("syntax error", b"{\"action\": "),
        ("trailing bytes", b"{\"action\": \"mount\"} x"),
        ("not UTF-8", b"{\"action\": \"mo\xffunt\"}"),
        ("array", b"[]"),
        ("string", b"\"mount\""),
        ("null", b"null"),
        ("duplicate top-level key", b"{\"action\": \"unmount\", \"action\": \"mount\"}"),
        (
            "duplicate nested key",
            br#"{"action": "mount", "backup_target": {"id": "a", "id": "b"}}"#,
        ),
        ("deep nesting", &[b'['; 10_000]),
    ];
    for (name, body) in cases {
        assert_eq!(refused_bytes(body), "Invalid JSON format in request", "{name}");
    }
}

#[test]
fn given_a_duplicate_key_when_parsed_then_the_log_detail_names_it() {
    let body = br#"{"action": "mount", "action": "mount"}"#;
    let err = parse(body, &props(), &Policy::default()).unwrap_err();
    match *err.error {
        WireError::InvalidJson { detail } => {
            assert!(detail.contains("duplicate key 'action'"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn given_a_huge_body_when_parsed_then_it_is_refused_before_parsing() {
    let mut v = s3_mount();
    set(&mut v, "/context", json!("x".repeat(MAX_BODY_LEN)));
    assert_eq!(
        refused(&v),
        format!("Request too large: {} bytes (limit 65536)", v.to_string().len())
    );
    // Exactly at the limit is still parsed (and here refused for its JSON, not its size).
    assert_eq!(refused_bytes(&vec![b' '; MAX_BODY_LEN]), "Invalid JSON format in request");
}

#[test]
fn given_a_bad_action_when_parsed_then_the_python_texts_are_answered() {
    let cases = [
        (json!("remount"), "Unknown action: remount"),
        (json!(""), "Unknown action: "),
        (json!("MOUNT"), "Unknown action: MOUNT"),
        (json!(5), "Unknown action: 5"),
        (json!(["mount"]), "Unknown action: [\"mount\"]"),
        (json!("a\u{1b}[2J"), "Unknown action: a\\u{1b}[2J"),
        (json!("x".repeat(100)), &*format!("Unknown action: {}...", "x".repeat(64))),
    ];
    for (action, expected) in cases {
        let mut v = s3_mount();
        set(&mut v, "/action", action.clone());
        assert_eq!(refused(&v), expected, "{action}");
    }
}

#[test]
fn given_missing_fields_when_parsed_then_each_is_named_in_check_order() {
    // (request, pointers removed, expected text). Removing several fields shows which one
    // is checked first.
    let all = ["/backup_target/type", "/backup_target/id"];
    let cases: Vec<(Value, Vec<&str>, &str)> = vec![
        (s3_mount(), vec!["/action"], "Missing required field: 'action'"),
        (s3_mount(), vec!["/backup_target"], "Missing required field: 'backup_target'"),
        (s3_mount(), vec!["/backup_target/type"], "Missing required field: 'type'"),
        (s3_mount(), vec!["/backup_target/id"], "Missing required field: 'id'"),
        (s3_mount(), all.to_vec(), "Missing required field: 'type'"),
        (unmount(), all.to_vec(), "Missing required field: 'id'"),
        (unmount(), vec!["/backup_target/type"], "Missing required field: 'type'"),
        (
            s3_mount(),
            vec!["/backup_target/filesystem_export_mount_path"],
            "Missing filesystem_export_mount_path in backup_target",
        ),
        (
            unmount(),
            vec!["/backup_target/filesystem_export_mount_path"],
            "Missing filesystem_export_mount_path in backup_target",
        ),
        (s3_mount(), vec!["/backup_target/secret_ref"], "Missing required field: 'secret_ref'"),
        (s3_mount(), vec!["/keystone_token"], "Missing required field: 'keystone_token'"),
        (
            s3_mount(),
            vec!["/keystone_token", "/backup_target/secret_ref"],
            "Missing required field: 'secret_ref'",
        ),
        (
            nfs_mount(),
            vec!["/backup_target/filesystem_export"],
            "Missing filesystem_export for NFS mount",
        ),
    ];
    for (mut v, pointers, expected) in cases {
        for p in &pointers {
            remove(&mut v, p);
        }
        assert_eq!(refused(&v), expected, "without {pointers:?}");
    }
}

#[test]
fn given_null_or_empty_fields_when_parsed_then_they_count_as_missing() {
    let cases = [
        (s3_mount(), "/action", Value::Null, "Missing required field: 'action'"),
        (s3_mount(), "/backup_target", Value::Null, "Missing required field: 'backup_target'"),
        (s3_mount(), "/backup_target/id", Value::Null, "Missing required field: 'id'"),
        (
            s3_mount(),
            "/backup_target/filesystem_export_mount_path",
            json!(""),
            "Missing filesystem_export_mount_path in backup_target",
        ),
        (
            s3_mount(),
            "/backup_target/secret_ref",
            json!(""),
            "Missing required field: 'secret_ref'",
        ),
        (s3_mount(), "/keystone_token", json!(""), "Missing required field: 'keystone_token'"),
        (s3_mount(), "/keystone_token", Value::Null, "Missing required field: 'keystone_token'"),
        (
            nfs_mount(),
            "/backup_target/filesystem_export",
            json!(""),
            "Missing filesystem_export for NFS mount",
        ),
    ];
    for (mut v, pointer, value, expected) in cases {
        set(&mut v, pointer, value);
        assert_eq!(refused(&v), expected, "{pointer}");
    }
}

#[test]
fn given_fields_of_the_wrong_type_when_parsed_then_the_field_is_named() {
    let cases = [
        (
            "/backup_target",
            json!("target-123"),
            "Invalid field 'backup_target': expected an object",
        ),
        ("/backup_target", json!([]), "Invalid field 'backup_target': expected an object"),
        ("/backup_target/type", json!(3), "Invalid field 'type': expected a string"),
        ("/backup_target/id", json!(true), "Invalid field 'id': expected a string"),
        ("/backup_target/id", json!(-1), "Invalid field 'id': expected a string"),
        ("/backup_target/id", json!({"id": "x"}), "Invalid field 'id': expected a string"),
        (
            "/backup_target/filesystem_export_mount_path",
            json!(["/a"]),
            "Invalid field 'filesystem_export_mount_path': expected a string",
        ),
        ("/backup_target/secret_ref", json!(1), "Invalid field 'secret_ref': expected a string"),
        ("/keystone_token", json!({"t": 1}), "Invalid field 'keystone_token': expected a string"),
    ];
    for (pointer, value, expected) in cases {
        let mut v = s3_mount();
        set(&mut v, pointer, value);
        assert_eq!(refused(&v), expected, "{pointer}");
    }
    let mut v = nfs_mount();
    set(&mut v, "/backup_target/nfs_mount_opts", json!(["rw"]));
    assert_eq!(refused(&v), "Invalid field 'nfs_mount_opts': expected a string");
}

#[test]
fn given_an_unknown_type_when_parsed_then_it_is_unsupported_after_the_path_check() {
    for (action, kind) in [("mount", "cifs"), ("unmount", "cifs"), ("mount", ""), ("mount", "S3")] {
        let mut v = s3_mount();
        set(&mut v, "/action", json!(action));
        set(&mut v, "/backup_target/type", json!(kind));
        assert_eq!(refused(&v), format!("Unsupported target type: {kind}"), "{action} {kind}");
        remove(&mut v, "/backup_target/filesystem_export_mount_path");
        assert_eq!(refused(&v), "Missing filesystem_export_mount_path in backup_target");
    }
}

#[test]
fn given_a_refusal_when_answered_then_key_reply_to_and_target_are_kept() {
    let mut v = s3_mount();
    remove(&mut v, "/keystone_token");
    let rejected = parse_value(&v).unwrap_err();
    assert_eq!(rejected.key.as_ref().unwrap().as_str(), "0b6c3f5e-7d2a-4a43-9c55-0d4c8b0a1e22");
    assert_eq!(rejected.reply_to.as_deref(), Some("amq.gen-reply"));
    assert_eq!(rejected.target.as_ref().unwrap().as_str(), "target-123");
    assert_eq!(
        rejected.reply().to_json(),
        r#"{"status": "error", "error_msg": "Missing required field: 'keystone_token'", "success_msg": null}"#
    );
}
