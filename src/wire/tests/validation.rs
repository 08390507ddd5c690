//! DESIGN §3.6: ids, paths, NFS options and exports, secret references, tokens, keys.

use super::*;
use crate::wire::Action;
use dms_journal::TargetKind;
use secrecy::{ExposeSecret, SecretString};

#[test]
fn given_valid_requests_when_parsed_then_specs_carry_the_checked_values() {
    let r = accepted(&s3_mount());
    assert_eq!(r.target.as_str(), "target-123");
    assert_eq!(r.key.as_ref().unwrap().as_str(), "0b6c3f5e-7d2a-4a43-9c55-0d4c8b0a1e22");
    assert_eq!(r.token.as_ref().unwrap().expose_secret(), TOKEN);
    let Action::Mount(spec) = &r.action else { panic!("{r:?}") };
    assert_eq!(spec.mount_path, format!("{BASE}/dGFyZ2V0LTEyMw=="));
    assert_eq!(
        spec.kind,
        TargetKind::S3 {
            secret_ref: "http://barbican:9311/v1/secrets/0b6c3f5e-7d2a-4a43-9c55-0d4c8b0a1e22"
                .into()
        }
    );

    let r = accepted(&nfs_mount());
    assert!(r.token.is_none(), "NFS mounts carry no token");
    let Action::Mount(spec) = &r.action else { panic!("{r:?}") };
    assert_eq!(
        spec.kind,
        TargetKind::Nfs {
            export: "192.168.1.100:/export".into(),
            options: "rw,sync,hard,intr,nfsvers=4,timeo=600,retrans=2,nosuid,nodev".into()
        }
    );

    let mut v = unmount();
    remove(&mut v, "/keystone_token");
    remove(&mut v, "/backup_target/secret_ref");
    let r = accepted(&v);
    assert_eq!(r.action, Action::Unmount { mount_path: format!("{BASE}/dGFyZ2V0LTEyMw==") });
}

#[test]
fn given_a_parsed_request_when_debug_printed_then_the_token_is_hidden() {
    let r = accepted(&s3_mount());
    let shown = format!("{r:?} {r:#?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("[REDACTED]"), "{shown}");
    let secret = SecretString::from("hunter2");
    assert!(!format!("{secret:?} {secret:#?}").contains("hunter2"));
}

#[test]
fn given_unsafe_target_ids_when_parsed_then_they_are_refused_with_the_reason() {
    let cases = [
        (json!("../../etc/passwd"), "Invalid backup_target id: target id must not start with '.'"),
        (json!("a/../../etc"), "Invalid backup_target id: target id contains '/'; only A-Z a-z 0-9 . _ - are allowed"),
        (json!(".hidden"), "Invalid backup_target id: target id must not start with '.'"),
        (json!(""), "Invalid backup_target id: target id is empty"),
        (json!("a\u{0}b"), "Invalid backup_target id: target id contains '\\0'; only A-Z a-z 0-9 . _ - are allowed"),
        (json!("x".repeat(129)), "Invalid backup_target id: target id is 129 bytes long; at most 128 are allowed"),
    ];
    for (id, expected) in cases {
        let mut v = s3_mount();
        set(&mut v, "/backup_target/id", id.clone());
        assert_eq!(refused(&v), expected, "{id}");
    }
    let mut v = s3_mount();
    set(&mut v, "/backup_target/id", json!(42));
    assert_eq!(accepted(&v).target.as_str(), "42", "integer ids are names too");
}

#[test]
fn given_non_canonical_or_outside_mount_paths_when_parsed_then_they_are_refused() {
    let inside = "must be inside the mount base /var/lib/trilio/triliovault-mounts";
    let cases = [
        ("relative/path", "must be an absolute path".to_owned()),
        (&*format!("{BASE}/../../../etc"), "must not contain '.' or '..' components".to_owned()),
        (&*format!("{BASE}/a/../b"), "must not contain '.' or '..' components".to_owned()),
        (&*format!("{BASE}/./a"), "must not contain '.' or '..' components".to_owned()),
        (&*format!("{BASE}//a"), "must be normalized (no '//' or trailing '/')".to_owned()),
        (&*format!("{BASE}/a/"), "must be normalized (no '//' or trailing '/')".to_owned()),
        (&*format!("{BASE}/"), "must be normalized (no '//' or trailing '/')".to_owned()),
        (BASE, inside.to_owned()),
        ("/var/lib/trilio/triliovault-mounts-evil/a", inside.to_owned()),
        ("/etc", inside.to_owned()),
        ("/", "must be normalized (no '//' or trailing '/')".to_owned()),
        (&*format!("{BASE}/a\u{0}b"), "contains a control character".to_owned()),
        (&*format!("{BASE}/a\nb"), "contains a control character".to_owned()),
        (
            &*format!("{BASE}/{}", "n".repeat(256)),
            "has a component longer than 255 bytes".to_owned(),
        ),
        (&*format!("{BASE}/{}", "n/".repeat(2100)), "longer than 4095 bytes".to_owned()),
    ];
    for (path, reason) in cases {
        let mut v = s3_mount();
        set(&mut v, "/backup_target/filesystem_export_mount_path", json!(path));
        let msg = refused(&v);
        assert!(msg.starts_with("Invalid filesystem_export_mount_path '"), "{msg}");
        assert!(msg.ends_with(&format!("': {reason}")), "{path:?}: {msg}");
    }
    for ok in
        [format!("{BASE}/a"), format!("{BASE}/a/b"), format!("{BASE}/-a"), format!("{BASE}/é ,x")]
    {
        let mut v = unmount();
        set(&mut v, "/backup_target/filesystem_export_mount_path", json!(ok));
        assert_eq!(accepted(&v).mount_path(), ok);
    }
}

#[test]
fn given_nfs_options_when_parsed_then_the_allow_list_and_enforced_options_apply() {
    let cases: &[(Value, Result<&str, &str>)] = &[
        (Value::Null, Ok("nosuid,nodev")),
        (json!(""), Ok("nosuid,nodev")),
        (json!("defaults"), Ok("nosuid,nodev")),
        (json!(" rw , hard,,rw,nosuid"), Ok("rw,hard,nosuid,nodev")),
        (json!("sec=krb5:krb5i,vers=4.1,nodev,nosuid"), Ok("sec=krb5:krb5i,vers=4.1,nodev,nosuid")),
        (json!("rw,suid"), Err("option 'suid' is not allowed (nosuid,nodev are enforced)")),
        (json!("dev"), Err("option 'dev' is not allowed (nosuid,nodev are enforced)")),
        (json!("exec"), Err("option 'exec' is not allowed (nosuid,nodev are enforced)")),
        (json!("bg"), Err("option 'bg' is not in the allow-list")),
        (json!("-o"), Err("option '-o' is not in the allow-list")),
        (json!("rw -o suid"), Err("option 'rw -o suid' is not in the allow-list")),
        (json!("context=system_u"), Err("option 'context' is not in the allow-list")),
        (json!("RW"), Err("option 'RW' is not in the allow-list")),
        (json!("rw\nsuid"), Err("option 'rw\\nsuid' is not in the allow-list")),
        (json!("vers="), Err("option 'vers' has an empty value")),
        (
            json!("vers=4=suid"),
            Err("the value of option 'vers' may hold only A-Z a-z 0-9 . _ : + -"),
        ),
        (
            json!("sec=sys suid"),
            Err("the value of option 'sec' may hold only A-Z a-z 0-9 . _ : + -"),
        ),
        (
            json!("port=1\u{0}"),
            Err("the value of option 'port' may hold only A-Z a-z 0-9 . _ : + -"),
        ),
        (
            json!(format!("port={}", "1".repeat(65))),
            Err("the value of option 'port' is longer than 64 bytes"),
        ),
        (json!("rw,".repeat(400)), Err("longer than 1024 bytes")),
    ];
    for (opts, expected) in cases {
        let mut v = nfs_mount();
        set(&mut v, "/backup_target/nfs_mount_opts", opts.clone());
        match expected {
            Ok(options) => {
                let Action::Mount(spec) = accepted(&v).action else { panic!() };
                let TargetKind::Nfs { options: got, .. } = spec.kind else { panic!() };
                assert_eq!(&got, options, "{opts}");
            }
            Err(reason) => {
                assert_eq!(refused(&v), format!("Invalid nfs_mount_opts: {reason}"), "{opts}")
            }
        }
    }
}

#[test]
fn given_nfs_exports_when_parsed_then_only_host_colon_path_is_accepted() {
    let cases = [
        ("-o", "must not start with '-'"),
        ("-oexec,suid=1:/x", "must not start with '-'"),
        ("host", "must have the form host:/path"),
        (":/export", "has an invalid host name"),
        ("ho st:/export", "contains whitespace or a control character"),
        ("host:/ex\u{0}port", "contains whitespace or a control character"),
        ("host:export", "the export path must be absolute"),
        ("host:/a,b", "the export path must not contain ','"),
        ("user@host:/x", "must not carry user credentials (host:/path)"),
        ("nfs://host/x", "must have the form host:/path, not a URL"),
        ("[::1:/x", "must have the form host:/path"),
        ("[zz]:/x", "has an invalid IPv6 address"),
    ];
    for (export, reason) in cases {
        let mut v = nfs_mount();
        set(&mut v, "/backup_target/filesystem_export", json!(export));
        let msg = refused(&v);
        assert!(msg.starts_with("Invalid filesystem_export '"), "{export}: {msg}");
        assert!(msg.ends_with(&format!("': {reason}")), "{export}: {msg}");
    }
    for export in ["nfs-1.example.com:/srv/backup", "10.0.0.5:/", "[fd00::5]:/exports/a"] {
        let mut v = nfs_mount();
        set(&mut v, "/backup_target/filesystem_export", json!(export));
        let Action::Mount(spec) = accepted(&v).action else { panic!() };
        assert!(matches!(spec.kind, TargetKind::Nfs { export: e, .. } if e == export));
    }
}

#[test]
fn given_secret_refs_when_parsed_then_only_plain_http_urls_under_the_prefixes_pass() {
    let cases = [
        ("file:///etc/shadow", "must be an http:// or https:// URL"),
        ("ftp://barbican/v1/secrets/x", "must be an http:// or https:// URL"),
        ("http://", "has no host"),
        ("http://:9311/v1", "has no host"),
        (
            "http://barbican:9311/v1/secrets/x/",
            "must have no empty, '.' or '..' path segments and no trailing '/'",
        ),
        (
            "http://barbican:9311/v1/../admin",
            "must have no empty, '.' or '..' path segments and no trailing '/'",
        ),
        ("http://barbican:9311/v1/%2e%2e/admin", "may hold only A-Z a-z 0-9 . _ ~ : / - [ ]"),
        ("http://evil@barbican/v1/secrets/x", "may hold only A-Z a-z 0-9 . _ ~ : / - [ ]"),
        ("http://barbican/v1/secrets/x?y", "may hold only A-Z a-z 0-9 . _ ~ : / - [ ]"),
        ("http://barbican/v1\\secrets", "may hold only A-Z a-z 0-9 . _ ~ : / - [ ]"),
        ("http://barbican/v1/secrets/x\r\nX-Evil: 1", "may hold only A-Z a-z 0-9 . _ ~ : / - [ ]"),
    ];
    for (secret_ref, reason) in cases {
        let mut v = s3_mount();
        set(&mut v, "/backup_target/secret_ref", json!(secret_ref));
        let msg = refused(&v);
        assert!(msg.ends_with(&format!("': {reason}")), "{secret_ref}: {msg}");
    }
    let policy = Policy {
        secret_ref_prefixes: vec!["https://kms:9311".into(), "http://b/v1/secrets/".into()],
        ..Policy::default()
    };
    for (secret_ref, ok) in [
        ("https://kms:9311/v1/secrets/x", true),
        ("https://kms:9311", true),
        ("http://b/v1/secrets/x", true),
        ("https://kms:93110/v1/secrets/x", false),
        ("https://kms:9311.evil.example/v1/secrets/x", false),
        ("http://kms:9311/v1/secrets/x", false),
        ("http://b/v1/secretsx", false),
    ] {
        let mut v = s3_mount();
        set(&mut v, "/backup_target/secret_ref", json!(secret_ref));
        let result = parse(v.to_string().as_bytes(), &props(), &policy);
        assert_eq!(result.is_ok(), ok, "{secret_ref}: {result:?}");
        if let Err(rejected) = result {
            assert!(rejected.error_msg().ends_with("is not under an allowed secret_ref prefix"));
        }
    }
}

#[test]
fn given_unusable_tokens_when_parsed_then_the_message_never_quotes_them() {
    let cases = [
        (
            format!("{TOKEN}\r\nX-Evil: 1"),
            "Invalid keystone_token: contains characters other than printable ASCII",
        ),
        (
            format!("{TOKEN} x"),
            "Invalid keystone_token: contains characters other than printable ASCII",
        ),
        (
            format!("{TOKEN}é"),
            "Invalid keystone_token: contains characters other than printable ASCII",
        ),
        (
            format!("{TOKEN}{}", "t".repeat(16 * 1024)),
            "Invalid keystone_token: longer than 16384 bytes",
        ),
    ];
    for (token, expected) in cases {
        let mut v = s3_mount();
        set(&mut v, "/keystone_token", json!(token));
        let rejected = parse_value(&v).unwrap_err();
        assert_eq!(rejected.error_msg(), expected);
        assert!(!format!("{rejected:?}").contains(TOKEN));
    }
}

#[test]
fn given_amqp_properties_when_parsed_then_the_request_key_is_chosen_and_checked() {
    let body = s3_mount().to_string();
    let key = |p: Properties| parse(body.as_bytes(), &p, &Policy::default()).map(|r| r.key);
    let p = |c: Option<&str>, m: Option<&str>| Properties {
        correlation_id: c.map(Into::into),
        message_id: m.map(Into::into),
        reply_to: None,
    };
    assert_eq!(key(p(Some("c"), Some("m"))).unwrap().unwrap().as_str(), "c");
    assert_eq!(key(p(None, Some("m"))).unwrap().unwrap().as_str(), "m");
    assert_eq!(key(p(Some(""), Some("m"))).unwrap().unwrap().as_str(), "m");
    assert_eq!(key(p(None, None)).unwrap(), None);
    let bad = parse(body.as_bytes(), &p(Some("a b"), Some("m")), &Policy::default()).unwrap_err();
    assert_eq!(
        bad.error_msg(),
        "Invalid correlation_id property: request key contains a control or whitespace character"
    );
    assert_eq!(bad.key, None);
    let bad = parse(body.as_bytes(), &p(None, Some(&"k".repeat(256))), &Policy::default());
    assert!(bad.unwrap_err().error_msg().starts_with("Invalid message_id property: "));
}

#[test]
fn given_an_empty_reply_to_when_parsed_then_there_is_nowhere_to_reply() {
    let props = Properties { reply_to: Some(String::new()), ..props() };
    let r = parse(s3_mount().to_string().as_bytes(), &props, &Policy::default()).unwrap();
    assert_eq!(r.reply_to, None);
}

#[test]
fn given_credentials_in_a_secret_ref_or_an_export_when_refused_then_the_message_masks_them() {
    let mut v = s3_mount();
    set(&mut v, "/backup_target/secret_ref", json!("https://admin:hunter2@kms:9311/v1/secrets/x"));
    let msg = refused(&v);
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains("'https://admin:***@kms:9311/v1/secrets/x'"), "{msg}");
    for (export, shown) in [
        ("backup:hunter2@nfs-1:/srv", "'***@nfs-1:/srv'"),
        ("nfs://backup:hunter2@nfs-1/srv", "'nfs://backup:***@nfs-1/srv'"),
        ("nfs-1:/srv/https://u:hunter2@x/y", "'nfs-1:/srv/https://u:***@x/y'"),
    ] {
        let mut v = nfs_mount();
        set(&mut v, "/backup_target/filesystem_export", json!(export));
        let msg = refused(&v);
        assert!(!msg.contains("hunter2"), "{export}: {msg}");
        assert!(msg.contains(shown), "{export}: {msg}");
    }
}

#[test]
fn given_texts_with_urls_when_redacted_then_only_user_info_is_masked() {
    use crate::wire::redact_userinfo as r;
    assert_eq!(r("amqp://u:p@h:5672/v"), "amqp://u:***@h:5672/v");
    assert_eq!(r("https://tok@h/x?y=1"), "https://***@h/x?y=1");
    assert_eq!(r("http://a:b@c@h/x"), "http://a:***@h/x", "the last @ ends the user info");
    assert_eq!(r("x https://h/a@b y"), "x https://h/a@b y", "an @ in the path is no user info");
    assert_eq!(r("a://u:p@h b://v:q@i"), "a://u:***@h b://v:***@i");
    assert_eq!(r("no url here: host:/x"), "no url here: host:/x");
    assert_eq!(r("://"), "://");
}
