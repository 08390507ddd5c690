//! Seeds for the `wire` target: the seed guide's request shapes (valid S3 and NFS mounts and
//! an unmount), one input per refusal the codec knows, and hostile bodies.

use crate::wire_target::{encode, PREFIX};
use dms::wire::{Properties, DEFAULT_MOUNT_BASE, MAX_BODY_LEN};
use serde_json::{json, Value};

fn props() -> Properties {
    Properties {
        correlation_id: Some("0b6c3f5e-7d2a-4a43-9c55-0d4c8b0a1e22".into()),
        message_id: None,
        reply_to: Some("amq.gen-reply".into()),
    }
}

fn s3() -> Value {
    json!({
        "context": {"user_id": "user-123", "tenant_id": "tenant-456"},
        "keystone_token": "gAAAAABk-token",
        "job": {"jobid": 12345, "progress": 0, "status": "running"},
        "host": "compute-01",
        "action": "mount",
        "backup_target": {
            "id": "target-123",
            "deleted": false,
            "type": "s3",
            "filesystem_export": null,
            "filesystem_export_mount_path": format!("{DEFAULT_MOUNT_BASE}/dGFyZ2V0LTEyMw=="),
            "status": "available",
            "secret_ref": format!("{PREFIX}0b6c3f5e-7d2a-4a43-9c55-0d4c8b0a1e22"),
            "nfs_mount_opts": null
        }
    })
}

fn nfs() -> Value {
    with(
        s3(),
        &[
            ("type", json!("nfs")),
            ("filesystem_export", json!("192.168.1.100:/export")),
            ("nfs_mount_opts", json!("rw,sync,hard,intr,nfsvers=4,timeo=600,retrans=2")),
        ],
    )
}

/// `v` with `backup_target` fields replaced (`Value::Null` still counts as a value).
fn with(mut v: Value, fields: &[(&str, Value)]) -> Value {
    if let Some(target) = v.get_mut("backup_target").and_then(Value::as_object_mut) {
        for (k, value) in fields {
            target.insert((*k).to_owned(), value.clone());
        }
    }
    v
}

fn without(mut v: Value, top: &str, field: Option<&str>) -> Value {
    let Some(obj) = v.as_object_mut() else { return v };
    match field {
        None => {
            obj.remove(top);
        }
        Some(f) => {
            if let Some(inner) = obj.get_mut(top).and_then(Value::as_object_mut) {
                inner.remove(f);
            }
        }
    }
    v
}

fn top(mut v: Value, key: &str, value: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.insert(key.to_owned(), value);
    }
    v
}

pub(super) fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let p = props();
    let body = |v: Value| v.to_string().into_bytes();
    let seed = |v: Value| encode(&p, false, &body(v));
    let base = DEFAULT_MOUNT_BASE;
    let mut out = vec![
        ("s3-mount", seed(s3())),
        ("s3-mount-prefix-policy", encode(&p, true, &body(s3()))),
        ("nfs-mount", seed(nfs())),
        ("unmount", seed(top(s3(), "action", json!("unmount")))),
        ("no-properties", encode(&Properties::default(), false, &body(s3()))),
        (
            "message-id-only",
            encode(
                &Properties { message_id: Some("m-1".into()), ..Properties::default() },
                false,
                &body(nfs()),
            ),
        ),
        (
            "bad-correlation-id",
            encode(
                &Properties { correlation_id: Some("a b".into()), ..props() },
                false,
                &body(s3()),
            ),
        ),
        ("unknown-action", seed(top(s3(), "action", json!("remount")))),
        ("action-number", seed(top(s3(), "action", json!(7)))),
        ("missing-action", seed(without(s3(), "action", None))),
        ("missing-backup-target", seed(without(s3(), "backup_target", None))),
        ("missing-type", seed(without(s3(), "backup_target", Some("type")))),
        ("missing-id", seed(without(s3(), "backup_target", Some("id")))),
        (
            "missing-mount-path",
            seed(without(s3(), "backup_target", Some("filesystem_export_mount_path"))),
        ),
        ("missing-secret-ref", seed(without(s3(), "backup_target", Some("secret_ref")))),
        ("missing-token", seed(without(s3(), "keystone_token", None))),
        ("missing-export", seed(without(nfs(), "backup_target", Some("filesystem_export")))),
        ("unsupported-type", seed(with(s3(), &[("type", json!("cifs"))]))),
        ("id-traversal", seed(with(s3(), &[("id", json!("../../etc/passwd"))]))),
        ("id-hidden", seed(with(s3(), &[("id", json!(".hidden"))]))),
        ("id-integer", seed(with(nfs(), &[("id", json!(42))]))),
        (
            "path-traversal",
            seed(with(
                s3(),
                &[("filesystem_export_mount_path", json!(format!("{base}/../../etc")))],
            )),
        ),
        ("path-outside", seed(with(s3(), &[("filesystem_export_mount_path", json!("/etc/x"))]))),
        (
            "path-nul",
            seed(with(s3(), &[("filesystem_export_mount_path", json!(format!("{base}/a\u{0}b")))])),
        ),
        ("nfs-suid", seed(with(nfs(), &[("nfs_mount_opts", json!("rw,suid"))]))),
        ("nfs-value-injection", seed(with(nfs(), &[("nfs_mount_opts", json!("vers=4=suid"))]))),
        ("nfs-export-option", seed(with(nfs(), &[("filesystem_export", json!("-oexec:/x"))]))),
        ("nfs-ipv6", seed(with(nfs(), &[("filesystem_export", json!("[fd00::5]:/e"))]))),
        ("secret-ref-file", seed(with(s3(), &[("secret_ref", json!("file:///etc/shadow"))]))),
        (
            "secret-ref-escaped-prefix",
            encode(
                &p,
                true,
                &body(with(s3(), &[("secret_ref", json!("http://barbican:9311/v1/secretsx"))])),
            ),
        ),
        ("token-crlf", seed(top(s3(), "keystone_token", json!("tok\r\nX-Evil: 1")))),
        ("backup-target-string", seed(top(s3(), "backup_target", json!("t")))),
    ];
    out.push(("invalid-json", encode(&p, false, b"{\"action\": ")));
    out.push(("not-utf8", encode(&p, false, b"{\"action\": \"mo\xffunt\"}")));
    out.push(("duplicate-key", encode(&p, false, br#"{"action": "unmount", "action": "mount"}"#)));
    out.push(("deep-nesting", encode(&p, false, &[b'['; 300])));
    out.push(("too-large", encode(&p, false, &vec![b' '; MAX_BODY_LEN + 1])));
    out.push(("empty", Vec::new()));
    out
}
