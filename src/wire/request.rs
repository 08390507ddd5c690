//! A request body and its AMQP properties, checked in the order the Python service checked
//! them, so a client that sends a broken request gets the error it always got.
//!
//! Order (first failure wins): body size; JSON (`Invalid JSON format in request`);
//! `action` (missing: `Missing required field: 'action'`; unknown: `Unknown action: <a>`);
//! `backup_target`; then for a mount `type`, `id`, for an unmount `id`, `type` (the Python
//! `KeyError` order, which names the bare key: `'id'`, `'type'`); the mount path's presence;
//! the type's value; the AMQP request key; the id's and the mount path's validity; then for
//! S3 `secret_ref` and `keystone_token`, for NFS `filesystem_export` and `nfs_mount_opts`.

use super::json::{opt_str, parse_object, required_object, required_str};
use super::{echo, nfs, path, secret, Policy, WireError, MAX_BODY_LEN};
use dms_journal::{RequestKey, TargetId, TargetKind, TargetSpec};
use secrecy::SecretString;
use serde_json::{Map, Value};

/// The AMQP properties the codec reads, as the transport found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub correlation_id: Option<String>,
    pub message_id: Option<String>,
    pub reply_to: Option<String>,
}

/// A request that passed every check of DESIGN §3.6.
#[derive(Debug, Clone)]
pub struct Request {
    /// `correlation_id`, else `message_id`; `None` when the client sent neither.
    pub key: Option<RequestKey>,
    /// Where the reply goes; `None`: do the work, send nothing.
    pub reply_to: Option<String>,
    pub target: TargetId,
    pub action: Action,
    /// The keystone token: `Some` exactly for S3 mounts (the only requests that use it;
    /// elsewhere it is not even looked at).
    pub token: Option<SecretString>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Mount(TargetSpec),
    Unmount { mount_path: String },
}

/// What a request asks for, without its data: for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Mount,
    Unmount,
}

impl ActionKind {
    /// The wire's name (`"action": "mount"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Mount => "mount",
            ActionKind::Unmount => "unmount",
        }
    }

    /// How the seed's log lines start (`Mount failed`, `Unmount failed`).
    pub fn verb(self) -> &'static str {
        match self {
            ActionKind::Mount => "Mount",
            ActionKind::Unmount => "Unmount",
        }
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Mount(_) => ActionKind::Mount,
            Action::Unmount { .. } => ActionKind::Unmount,
        }
    }
}

impl Request {
    pub fn mount_path(&self) -> &str {
        match &self.action {
            Action::Mount(spec) => &spec.mount_path,
            Action::Unmount { mount_path } => mount_path,
        }
    }
}

/// A request refused by the codec: answer `error` to `reply_to` (if any) and ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// `None` also when the key itself was the problem.
    pub key: Option<RequestKey>,
    pub reply_to: Option<String>,
    /// The target, when the body named a valid one (for logs).
    pub target: Option<TargetId>,
    /// The action, when the body named a known one (for logs).
    pub action: Option<ActionKind>,
    /// Boxed: a refusal is the rare path, and `parse`'s `Result` stays small.
    pub error: Box<WireError>,
}

impl Rejected {
    /// The exact client-facing text.
    pub fn error_msg(&self) -> String {
        self.error.to_string()
    }

    pub fn reply(&self) -> super::Reply {
        super::Reply::error(self.error_msg())
    }
}

/// Check one delivery. Never panics, whatever the bytes.
pub fn parse(body: &[u8], props: &Properties, policy: &Policy) -> Result<Request, Rejected> {
    let reply_to = props.reply_to.clone().filter(|r| !r.is_empty());
    let key = request_key(props);
    let mut seen = Seen::default();
    match parse_body(body, policy, key.clone(), &mut seen) {
        Ok((key, target, action, token)) => Ok(Request { key, reply_to, target, action, token }),
        Err(error) => Err(Rejected {
            key: key.ok().flatten(),
            reply_to,
            target: seen.target,
            action: seen.action,
            error: Box::new(error),
        }),
    }
}

type Parsed = (Option<RequestKey>, TargetId, Action, Option<SecretString>);

/// What a refused request had already shown to be, for its log line.
#[derive(Default)]
struct Seen {
    target: Option<TargetId>,
    action: Option<ActionKind>,
}

fn parse_body(
    body: &[u8],
    policy: &Policy,
    key: Result<Option<RequestKey>, WireError>,
    seen: &mut Seen,
) -> Result<Parsed, WireError> {
    if body.len() > MAX_BODY_LEN {
        return Err(WireError::TooLarge { len: body.len(), max: MAX_BODY_LEN });
    }
    let request = parse_object(body)?;
    let mount = match request.get("action") {
        None | Some(Value::Null) => return Err(WireError::MissingField { field: "action" }),
        Some(Value::String(a)) if a == "mount" => true,
        Some(Value::String(a)) if a == "unmount" => false,
        Some(Value::String(a)) => return Err(WireError::UnknownAction { action: echo(a) }),
        Some(other) => return Err(WireError::UnknownAction { action: echo(&other.to_string()) }),
    };
    seen.action = Some(if mount { ActionKind::Mount } else { ActionKind::Unmount });
    let target = required_object(&request, "backup_target")?;
    let (kind, raw_id) = if mount {
        (required_str(target, "type")?, target_id_field(target)?)
    } else {
        let raw_id = target_id_field(target)?;
        (required_str(target, "type")?, raw_id)
    };
    let raw_path = opt_str(target, "filesystem_export_mount_path")?
        .filter(|p| !p.is_empty())
        .ok_or(WireError::MissingMountPath)?;
    if kind != "s3" && kind != "nfs" {
        return Err(WireError::UnsupportedType { kind: echo(kind) });
    }
    let key = key?;
    let id = TargetId::new(&raw_id).map_err(|source| WireError::BadTargetId { source })?;
    seen.target = Some(id.clone());
    let mount_path = path::mount_path(raw_path, &policy.mount_base)?;
    if !mount {
        return Ok((key, id, Action::Unmount { mount_path }, None));
    }
    let (kind, token) = if kind == "s3" {
        let raw_ref = opt_str(target, "secret_ref")?
            .filter(|r| !r.is_empty())
            .ok_or(WireError::MissingField { field: "secret_ref" })?;
        let raw_token = opt_str(&request, "keystone_token")?
            .ok_or(WireError::MissingField { field: "keystone_token" })?;
        let secret_ref = secret::secret_ref(raw_ref, &policy.secret_ref_prefixes)?;
        (TargetKind::S3 { secret_ref }, Some(secret::token(raw_token)?))
    } else {
        let export = opt_str(target, "filesystem_export")?
            .filter(|e| !e.is_empty())
            .ok_or(WireError::MissingExport)?;
        let export = nfs::export(export)?;
        let options =
            nfs::options(opt_str(target, "nfs_mount_opts")?, &policy.nfs_allowed_options)?;
        (TargetKind::Nfs { export, options }, None)
    };
    Ok((key, id, Action::Mount(TargetSpec { kind, mount_path }), token))
}

/// `backup_target.id` as text. Integers are accepted too (and validated like any id):
/// nothing in the Python service required a string.
fn target_id_field(target: &Map<String, Value>) -> Result<String, WireError> {
    match target.get("id") {
        None | Some(Value::Null) => Err(WireError::MissingField { field: "id" }),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
        Some(_) => Err(WireError::WrongType { field: "id", expected: "a string" }),
    }
}

/// What identifies the request across redeliveries (DESIGN §3.2). An empty property counts
/// as absent; a present but unusable one is refused rather than ignored, since ignoring it
/// would silently turn off exactly-once answers for that client.
fn request_key(props: &Properties) -> Result<Option<RequestKey>, WireError> {
    for (property, value) in
        [("correlation_id", &props.correlation_id), ("message_id", &props.message_id)]
    {
        if let Some(raw) = value.as_deref().filter(|v| !v.is_empty()) {
            return RequestKey::new(raw)
                .map(Some)
                .map_err(|source| WireError::BadRequestKey { property, source });
        }
    }
    Ok(None)
}
