//! Table-driven tests of the wire codec: one module per concern, shared request builders
//! here. Every table names the situation, so a failure says which rule broke.

#![allow(clippy::unwrap_used)]

mod errors;
mod props;
mod replies;
mod validation;

use super::{parse, Policy, Properties, Rejected, Request};
use serde_json::{json, Value};

const BASE: &str = "/var/lib/trilio/triliovault-mounts";
const TOKEN: &str = "gAAAAABk-SECRET-TOKEN-4f2a";

fn s3_mount() -> Value {
    json!({
        "context": {"user_id": "user-123", "tenant_id": "tenant-456"},
        "keystone_token": TOKEN,
        "job": {"jobid": 12345, "progress": 0, "status": "running", "completed_at": null},
        "host": "compute-01",
        "action": "mount",
        "backup_target": {
            "id": "target-123",
            "deleted": false,
            "type": "s3",
            "filesystem_export": null,
            "filesystem_export_mount_path": format!("{BASE}/dGFyZ2V0LTEyMw=="),
            "status": "available",
            "secret_ref": "http://barbican:9311/v1/secrets/0b6c3f5e-7d2a-4a43-9c55-0d4c8b0a1e22",
            "nfs_mount_opts": null
        }
    })
}

fn nfs_mount() -> Value {
    let mut v = s3_mount();
    set(&mut v, "/backup_target/type", json!("nfs"));
    set(&mut v, "/backup_target/secret_ref", Value::Null);
    set(&mut v, "/backup_target/filesystem_export", json!("192.168.1.100:/export"));
    set(
        &mut v,
        "/backup_target/nfs_mount_opts",
        json!("rw,sync,hard,intr,nfsvers=4,timeo=600,retrans=2"),
    );
    v
}

fn unmount() -> Value {
    let mut v = s3_mount();
    set(&mut v, "/action", json!("unmount"));
    v
}

/// Replace the value at a JSON pointer (its parent must exist).
fn set(v: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() { &mut *v } else { v.pointer_mut(parent).unwrap() };
    parent.as_object_mut().unwrap().insert(key.to_owned(), new);
}

/// Remove the value at a JSON pointer.
fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() { &mut *v } else { v.pointer_mut(parent).unwrap() };
    parent.as_object_mut().unwrap().remove(key);
}

fn props() -> Properties {
    Properties {
        correlation_id: Some("0b6c3f5e-7d2a-4a43-9c55-0d4c8b0a1e22".to_owned()),
        message_id: None,
        reply_to: Some("amq.gen-reply".to_owned()),
    }
}

fn parse_value(v: &Value) -> Result<Request, Rejected> {
    parse(v.to_string().as_bytes(), &props(), &Policy::default())
}

#[track_caller]
fn accepted(v: &Value) -> Request {
    match parse_value(v) {
        Ok(r) => r,
        Err(rejected) => panic!("refused: {}", rejected.error_msg()),
    }
}

#[track_caller]
fn refused_bytes(body: &[u8]) -> String {
    match parse(body, &props(), &Policy::default()) {
        Ok(r) => panic!("accepted: {r:?}"),
        Err(rejected) => rejected.error_msg(),
    }
}

#[track_caller]
fn refused(v: &Value) -> String {
    refused_bytes(v.to_string().as_bytes())
}
