//! `dms-server --check-config` as an operator runs it: an address that exposes the metrics
//! endpoint to the network is refused (exit 78, as every configuration error) unless the
//! operator opts in, and the refusal names the key and the way out.
#![allow(clippy::unwrap_used)]

use std::process::Command;

/// `dms-server --check-config` with exactly `env`: (exit code, stdout, stderr). The
/// configuration file is empty, so `env` is all there is.
fn check_config(env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dms-server"))
        .env_clear()
        .arg("--config")
        .arg(file.path())
        .envs(env.iter().copied())
        .arg("--check-config")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn check_config_refuses_metrics_on_every_address_unless_allowed_and_keeps_local_ones() {
    let base = [("DMS_RABBITMQ_URL", "amqp://h:5672"), ("DMS_NODE_ID", "compute-01")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        check_config(&env)
    };
    for any in ["0.0.0.0:9477", "[::]:9477"] {
        let (code, out, err) = with(&[("DMS_METRICS_LISTEN", any)]);
        assert_eq!(code, Some(78), "{any}: {out}{err}");
        assert!(
            err.contains("DMS_METRICS_LISTEN") && err.contains("metrics_allow_any_address = true"),
            "{any}: {err}"
        );
        let (code, out, err) =
            with(&[("DMS_METRICS_LISTEN", any), ("DMS_METRICS_ALLOW_ANY_ADDRESS", "true")]);
        assert_eq!(code, Some(0), "{any}: {out}{err}");
    }
    for local in ["127.0.0.1:9477", "[::1]:9477", "192.0.2.7:9477", "off"] {
        let (code, out, err) = with(&[("DMS_METRICS_LISTEN", local)]);
        assert_eq!(code, Some(0), "{local}: {out}{err}");
    }
}
