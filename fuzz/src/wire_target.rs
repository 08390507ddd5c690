//! The `wire` target: arbitrary bytes as an AMQP delivery (properties + body) through
//! `dms::wire::parse`.
//!
//! Input format: byte 0 holds flags (bit 0: `correlation_id`, bit 1: `message_id`, bit 2:
//! `reply_to` present; bit 3: a policy with a `secret_ref` prefix allow-list). Each present
//! property follows as one length byte and that many bytes (decoded lossily as UTF-8). The
//! rest is the body. A short input simply has fewer properties.
//!
//! * `parse` never panics, whatever the bytes.
//! * An accepted request's mount path is canonical and strictly inside the mount base, its
//!   target id is valid, an S3 mount carries a token and an http(s) `secret_ref` (under
//!   the prefix when one is configured), an NFS mount's export cannot be read as an option
//!   and its options hold `nosuid` and `nodev` and only allow-listed names.
//! * `Debug` of an accepted request never shows the token.
//! * Every answer (refusal text included) serializes to the three-key reply JSON.

use dms::journal::{TargetId, TargetKind};
use dms::wire::{parse, Action, Policy, Properties, Reply, Request};
use secrecy::ExposeSecret;

/// The prefix configured when flag bit 3 is set.
pub const PREFIX: &str = "http://barbican:9311/v1/secrets/";

pub fn run(data: &[u8]) {
    let (props, with_prefix, body) = decode(data);
    let mut policy = Policy::default();
    if with_prefix {
        policy.secret_ref_prefixes = vec![PREFIX.to_owned()];
    }
    match parse(body, &props, &policy) {
        Ok(request) => check_request(&request, &policy),
        Err(rejected) => {
            assert!(!rejected.error_msg().is_empty(), "empty refusal text");
            check_reply(&rejected.reply());
        }
    }
}

/// Properties, policy flag and body of an input.
pub fn decode(data: &[u8]) -> (Properties, bool, &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return (Properties::default(), false, data);
    };
    let mut take = |bit: u8| -> Option<String> {
        if flags & (1 << bit) == 0 {
            return None;
        }
        let (&len, tail) = rest.split_first()?;
        let len = usize::from(len).min(tail.len());
        let (value, tail) = tail.split_at(len);
        rest = tail;
        Some(String::from_utf8_lossy(value).into_owned())
    };
    let correlation_id = take(0);
    let message_id = take(1);
    let reply_to = take(2);
    (Properties { correlation_id, message_id, reply_to }, flags & 0b1000 != 0, rest)
}

/// The input bytes for `props`, policy flag and `body` (for seeds); inverse of [`decode`]
/// for properties of at most 255 bytes.
pub fn encode(props: &Properties, with_prefix: bool, body: &[u8]) -> Vec<u8> {
    let fields = [&props.correlation_id, &props.message_id, &props.reply_to];
    let mut flags = if with_prefix { 0b1000 } else { 0 };
    let mut out = vec![0];
    for (bit, field) in fields.iter().enumerate() {
        if let Some(value) = field {
            flags |= 1 << bit;
            let bytes = &value.as_bytes()[..value.len().min(255)];
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        }
    }
    out[0] = flags;
    out.extend_from_slice(body);
    out
}

pub fn check_request(request: &Request, policy: &Policy) {
    let path = request.mount_path();
    let below = path
        .strip_prefix(policy.mount_base.as_str())
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or_else(|| panic!("mount path {path:?} is not inside {}", policy.mount_base));
    assert!(
        !below.split('/').any(|c| matches!(c, "" | "." | "..")),
        "mount path {path:?} is not canonical"
    );
    assert!(!path.chars().any(char::is_control), "control character in {path:?}");
    assert!(TargetId::new(request.target.as_str()).is_ok(), "invalid id {:?}", request.target);

    if let Action::Mount(spec) = &request.action {
        match &spec.kind {
            TargetKind::S3 { secret_ref } => {
                assert!(request.token.is_some(), "S3 mount without a token");
                assert!(
                    secret_ref.starts_with("http://") || secret_ref.starts_with("https://"),
                    "secret_ref {secret_ref:?}"
                );
                if !policy.secret_ref_prefixes.is_empty() {
                    assert!(secret_ref.starts_with(PREFIX), "secret_ref {secret_ref:?} escaped");
                }
            }
            TargetKind::Nfs { export, options } => {
                assert!(!export.starts_with('-'), "export {export:?} reads as an option");
                assert!(!export.chars().any(char::is_whitespace), "export {export:?}");
                let names: Vec<&str> =
                    options.split(',').map(|o| o.split('=').next().unwrap_or(o)).collect();
                assert!(
                    names.contains(&"nosuid") && names.contains(&"nodev"),
                    "nosuid/nodev missing in {options:?}"
                );
                for name in names {
                    assert!(policy.nfs_allowed_options.contains(name), "{name:?} in {options:?}");
                }
            }
        }
    }

    if let Some(token) = &request.token {
        let without = Request { token: None, ..request.clone() };
        // A token that happens to equal another field (an id, a path) is visible through
        // that field; only a token that appears nowhere else must stay invisible.
        if !format!("{without:?}").contains(token.expose_secret()) {
            let shown = format!("{request:?} {request:#?}");
            assert!(!shown.contains(token.expose_secret()), "Debug shows the token: {shown}");
        }
    }
}

pub fn check_reply(reply: &Reply) {
    let json = reply.to_json();
    let value: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("reply {json:?} is not JSON: {e}"));
    let keys: Vec<&String> = value.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["error_msg", "status", "success_msg"], "reply keys of {json}");
    let back: Reply = serde_json::from_value(value).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(&back, reply, "reply round trip");
}

#[cfg(test)]
mod tests {
    use super::*;
    use dms::journal::TargetSpec;

    #[test]
    fn given_an_encoded_input_when_decoded_then_properties_and_body_come_back() {
        let props = Properties {
            correlation_id: Some("c-1".into()),
            message_id: None,
            reply_to: Some("amq.gen".into()),
        };
        let bytes = encode(&props, true, b"{}");
        assert_eq!(decode(&bytes), (props, true, &b"{}"[..]));
        assert_eq!(
            decode(&[0b111, 200]).0,
            Properties { correlation_id: Some(String::new()), ..Default::default() }
        );
    }

    fn request(kind: TargetKind, mount_path: &str) -> Request {
        Request {
            key: None,
            reply_to: None,
            target: TargetId::new("t").unwrap(),
            action: Action::Mount(TargetSpec { kind, mount_path: mount_path.into() }),
            token: None,
        }
    }

    #[test]
    #[should_panic(expected = "is not inside")]
    fn given_a_path_outside_the_base_when_checked_then_the_harness_notices() {
        let base = Policy::default().mount_base;
        let r = request(
            TargetKind::Nfs { export: "h:/x".into(), options: "nosuid,nodev".into() },
            &format!("{base}-x/a"),
        );
        check_request(&r, &Policy::default());
    }

    #[test]
    #[should_panic(expected = "nosuid/nodev missing in \"rw,nodev\"")]
    fn given_options_without_nosuid_when_checked_then_the_harness_notices() {
        let base = Policy::default().mount_base;
        let r = request(
            TargetKind::Nfs { export: "h:/x".into(), options: "rw,nodev".into() },
            &format!("{base}/a"),
        );
        check_request(&r, &Policy::default());
    }

    #[test]
    #[should_panic(expected = "S3 mount without a token")]
    fn given_an_s3_mount_without_token_when_checked_then_the_harness_notices() {
        let base = Policy::default().mount_base;
        let r = request(TargetKind::S3 { secret_ref: "http://b/x".into() }, &format!("{base}/a"));
        check_request(&r, &Policy::default());
    }
}
