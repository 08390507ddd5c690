//! Properties over arbitrary input: the codec never panics, and what it accepts is safe.

use super::*;
use crate::wire::Action;
use proptest::prelude::*;
use secrecy::ExposeSecret;

fn check_accepted(r: &Request, body: &[u8]) {
    let policy = Policy::default();
    let inside = r.mount_path().strip_prefix(&format!("{}/", policy.mount_base)).unwrap();
    assert!(!inside.is_empty() && !inside.split('/').any(|c| matches!(c, "" | "." | "..")));
    assert!(dms_journal::TargetId::new(r.target.as_str()).is_ok());
    if let Some(token) = &r.token {
        assert!(!format!("{r:?}").contains(token.expose_secret()), "{body:?}");
    }
    if let Action::Mount(spec) = &r.action {
        if let dms_journal::TargetKind::Nfs { options, export } = &spec.kind {
            assert!(
                options.split(',').any(|o| o == "nosuid")
                    && options.split(',').any(|o| o == "nodev")
            );
            assert!(!export.starts_with('-'));
        }
    }
}

/// Requests shaped like real ones, with every string field drawn from a nasty alphabet.
fn nasty() -> impl Strategy<Value = String> {
    prop::string::string_regex("[a-z/.:,=\\-\\x00\\n é]{0,24}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn given_arbitrary_bytes_when_parsed_then_nothing_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(r) = parse(&body, &props(), &Policy::default()) {
            check_accepted(&r, &body);
        }
    }

    #[test]
    fn given_request_shaped_json_when_parsed_then_accepted_requests_are_safe(
        action in prop::sample::select(vec!["mount", "unmount", "x"]),
        kind in prop::sample::select(vec!["s3", "nfs", "cifs"]),
        id in nasty(),
        path in nasty(),
        export in nasty(),
        opts in nasty(),
        secret_ref in nasty(),
        token in nasty(),
    ) {
        let v = json!({
            "action": action,
            "keystone_token": token,
            "backup_target": {
                "id": id, "type": kind,
                "filesystem_export_mount_path": format!("{BASE}{path}"),
                "filesystem_export": export, "nfs_mount_opts": opts,
                "secret_ref": format!("http://{secret_ref}"),
            }
        });
        let body = v.to_string();
        match parse(body.as_bytes(), &props(), &Policy::default()) {
            Ok(r) => check_accepted(&r, body.as_bytes()),
            Err(rejected) => prop_assert!(!rejected.error_msg().is_empty()),
        }
    }
}
