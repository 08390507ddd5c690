//! The S3 credentials a Barbican secret holds, and the helper environment built from them.
//!
//! The payload is JSON written by the backup system (DESIGN §2); values arrive as strings,
//! booleans or numbers depending on who wrote them, and bucket/region/endpoint may use the
//! `vault_s3_*` names. The keys are [`SecretString`]s (zeroed on drop) from the moment they are parsed: held in
//! memory only, passed to the helper through its environment, never logged or journaled.

use crate::exec::helper::HelperEnv;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::fmt;
use zeroize::Zeroize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the secret payload is not a JSON object")]
    NotAnObject,
    #[error("the secret payload has no usable {field}")]
    Missing { field: &'static str },
}

/// Credentials for one S3 target. `Debug` shows which fields are set, never the keys.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    pub bucket: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub auth_version: Option<String>,
    pub signature_version: Option<String>,
    pub ssl: Option<String>,
    pub ssl_verify: Option<String>,
    pub ssl_cert: Option<String>,
    pub max_pool_connections: Option<String>,
    pub nfs_export: Option<String>,
    pub object_lock: Option<String>,
    pub use_manifest_suffix: Option<String>,
    pub log_config: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// Parse a payload. An S3 mount with no usable keys is an error, never a helper started
    /// without them.
    pub fn parse(payload: &[u8]) -> Result<Self, PayloadError> {
        let mut value: Value =
            serde_json::from_slice(payload).map_err(|_| PayloadError::NotAnObject)?;
        let parsed = Self::from_value(&value);
        scrub(&mut value);
        parsed
    }

    fn from_value(value: &Value) -> Result<Self, PayloadError> {
        let obj = value.as_object().ok_or(PayloadError::NotAnObject)?;
        let required =
            |names: &[&str], field| text(obj, names).ok_or(PayloadError::Missing { field });
        Ok(Self {
            access_key_id: SecretString::from(required(
                &["aws_access_key_id"],
                "aws_access_key_id",
            )?),
            secret_access_key: SecretString::from(required(
                &["aws_secret_access_key"],
                "aws_secret_access_key",
            )?),
            bucket: required(&["bucket", "vault_s3_bucket"], "bucket")?,
            region: text(obj, &["region", "vault_s3_region_name"]),
            endpoint_url: text(obj, &["endpoint_url", "vault_s3_endpoint_url"]),
            auth_version: text(obj, &["auth_version"]),
            signature_version: text(obj, &["signature_version"]),
            ssl: text(obj, &["ssl"]),
            ssl_verify: text(obj, &["ssl_verify"]),
            ssl_cert: text(obj, &["ssl_cert"]),
            max_pool_connections: text(obj, &["max_pool_connections"]),
            nfs_export: text(obj, &["nfs_export"]),
            object_lock: text(obj, &["object_lock"]),
            use_manifest_suffix: text(obj, &["use_manifest_suffix"]),
            log_config: text(obj, &["log_config"]),
        })
    }

    /// The helper's whole environment (DESIGN §2, the seed's list and defaults). Empty
    /// values are left out by [`HelperEnv::set`].
    pub fn helper_env(&self, mount_path: &str) -> HelperEnv {
        let or =
            |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.to_owned());
        let mut env = HelperEnv::default();
        env.set("vault_s3_bucket", self.bucket.clone());
        env.set("vault_s3_region_name", or(&self.region, "us-west-2"));
        env.set("vault_s3_auth_version", or(&self.auth_version, "DEFAULT"));
        env.set("vault_s3_signature_version", or(&self.signature_version, "default"));
        env.set("vault_s3_ssl", or(&self.ssl, "true"));
        env.set("vault_s3_ssl_verify", or(&self.ssl_verify, "true"));
        env.set("vault_storage_nfs_export", or(&self.nfs_export, &self.bucket));
        env.set("bucket_object_lock", or(&self.object_lock, "false"));
        env.set("use_manifest_suffix", or(&self.use_manifest_suffix, "false"));
        env.set("vault_s3_ssl_cert", or(&self.ssl_cert, ""));
        env.set("vault_s3_endpoint_url", or(&self.endpoint_url, ""));
        env.set("vault_s3_max_pool_connections", or(&self.max_pool_connections, "500"));
        env.set("vault_data_directory_old", "/var/triliovault");
        env.set("vault_data_directory", mount_path);
        env.set("log_config_append", or(&self.log_config, ""));
        env.set("AWS_ACCESS_KEY_ID", self.access_key_id.expose_secret());
        env.set("AWS_SECRET_ACCESS_KEY", self.secret_access_key.expose_secret());
        env
    }
}

/// Every name [`S3Credentials::helper_env`] may set: what a helper's environment is made
/// of, and all that is read back from a running helper's (a wrapper's additions and the
/// daemon's own markers are left out).
pub const HELPER_ENV_NAMES: [&str; 17] = [
    "vault_s3_bucket",
    "vault_s3_region_name",
    "vault_s3_auth_version",
    "vault_s3_signature_version",
    "vault_s3_ssl",
    "vault_s3_ssl_verify",
    "vault_storage_nfs_export",
    "bucket_object_lock",
    "use_manifest_suffix",
    "vault_s3_ssl_cert",
    "vault_s3_endpoint_url",
    "vault_s3_max_pool_connections",
    "vault_data_directory_old",
    "vault_data_directory",
    "log_config_append",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];

/// The environment a running helper was started with, from its `/proc/<pid>/environ`
/// (`NAME=value\0...`): the [`HELPER_ENV_NAMES`] it holds. `None` without the keys: such a
/// helper could not be replaced by one that reaches the bucket.
pub fn helper_env_from_environ(environ: &[u8]) -> Option<HelperEnv> {
    let mut env = HelperEnv::default();
    for entry in environ.split(|&b| b == 0) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else { continue };
        let (Ok(name), Ok(value)) =
            (std::str::from_utf8(&entry[..eq]), std::str::from_utf8(&entry[eq + 1..]))
        else {
            continue;
        };
        if HELPER_ENV_NAMES.contains(&name) {
            env.set(name, value);
        }
    }
    let keys = env.get("AWS_ACCESS_KEY_ID").is_some() && env.get("AWS_SECRET_ACCESS_KEY").is_some();
    keys.then_some(env)
}

/// Zeroes every string of the parsed payload before it is freed: the keys were copied into
/// [`SecretString`]s, and the JSON tree's own copies must not linger in freed memory.
fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The first of `names` present as a non-empty scalar, as text (`true`, `500`, ...).
fn text(obj: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| match obj.get(*name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FULL: &str = r#"{"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI",
        "bucket": "trilio-qa", "region": "eu-central-1", "endpoint_url": "http://127.0.0.1:9000",
        "auth_version": "DEFAULT", "signature_version": "s3v4", "ssl": false, "ssl_verify": "false",
        "ssl_cert": "", "max_pool_connections": 64, "nfs_export": null, "object_lock": true,
        "use_manifest_suffix": false, "log_config": "/etc/triliovault-object-store/logging.conf"}"#;

    #[test]
    fn given_a_full_payload_when_turned_into_the_helper_env_then_the_seed_names_and_values_are_used(
    ) {
        let creds = S3Credentials::parse(FULL.as_bytes()).unwrap();
        let env = creds.helper_env("/var/lib/trilio/triliovault-mounts/t1");
        for (name, value) in [
            ("vault_s3_bucket", "trilio-qa"),
            ("vault_s3_region_name", "eu-central-1"),
            ("vault_s3_signature_version", "s3v4"),
            ("vault_s3_ssl", "false"),
            ("vault_s3_ssl_verify", "false"),
            ("vault_storage_nfs_export", "trilio-qa"),
            ("bucket_object_lock", "true"),
            ("vault_s3_endpoint_url", "http://127.0.0.1:9000"),
            ("vault_s3_max_pool_connections", "64"),
            ("vault_data_directory_old", "/var/triliovault"),
            ("vault_data_directory", "/var/lib/trilio/triliovault-mounts/t1"),
            ("log_config_append", "/etc/triliovault-object-store/logging.conf"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
        ] {
            assert_eq!(env.get(name), Some(value), "{name}");
        }
        assert_eq!(env.get("vault_s3_ssl_cert"), None, "empty values are left out");
    }

    #[test]
    fn given_a_minimal_payload_with_vault_names_when_parsed_then_the_defaults_apply() {
        let creds = S3Credentials::parse(
            br#"{"aws_access_key_id":"a","aws_secret_access_key":"b","vault_s3_bucket":"bk","vault_s3_region_name":"r1"}"#,
        )
        .unwrap();
        let env = creds.helper_env("/m");
        assert_eq!(env.get("vault_s3_bucket"), Some("bk"));
        assert_eq!(env.get("vault_s3_region_name"), Some("r1"));
        assert_eq!(env.get("vault_s3_auth_version"), Some("DEFAULT"));
        assert_eq!(env.get("vault_s3_ssl"), Some("true"));
        assert_eq!(env.get("vault_s3_max_pool_connections"), Some("500"));
        assert_eq!(env.get("vault_storage_nfs_export"), Some("bk"));
        assert_eq!(env.get("vault_s3_endpoint_url"), None);
    }

    #[test]
    fn given_payloads_without_keys_or_not_json_when_parsed_then_refused_without_echoing_secrets() {
        let no_secret = br#"{"aws_access_key_id":"AKIAEXAMPLE","bucket":"b"}"#;
        assert_eq!(
            S3Credentials::parse(no_secret).unwrap_err(),
            PayloadError::Missing { field: "aws_secret_access_key" }
        );
        let blank = br#"{"aws_access_key_id":" ","aws_secret_access_key":"x","bucket":"b"}"#;
        assert_eq!(
            S3Credentials::parse(blank).unwrap_err(),
            PayloadError::Missing { field: "aws_access_key_id" }
        );
        assert_eq!(S3Credentials::parse(b"[1]").unwrap_err(), PayloadError::NotAnObject);
        assert_eq!(S3Credentials::parse(b"wJalrXUtnFEMI").unwrap_err(), PayloadError::NotAnObject);
        let creds = S3Credentials::parse(FULL.as_bytes()).unwrap();
        let shown = format!("{creds:?}");
        assert!(!shown.contains("wJalrXUtnFEMI") && !shown.contains("AKIAEXAMPLE"), "{shown}");
    }

    #[test]
    fn given_a_parsed_payload_when_scrubbed_then_every_string_of_the_tree_is_emptied() {
        let mut value: Value = serde_json::from_str(
            r#"{"aws_secret_access_key":"wJalrXUtnFEMI","nested":{"list":["AKIAEXAMPLE",1,null]}}"#,
        )
        .unwrap();
        scrub(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"aws_secret_access_key":"","nested":{"list":["",1,null]}})
        );
    }

    #[test]
    fn given_a_running_helpers_environ_when_read_back_then_it_is_the_environment_it_was_given() {
        let creds = S3Credentials::parse(FULL.as_bytes()).unwrap();
        let given = creds.helper_env("/var/lib/trilio/triliovault-mounts/t1");
        // Every name the helper gets is one that is read back.
        let listed = format!("{given:?}");
        let names: Vec<&str> =
            HELPER_ENV_NAMES.iter().copied().filter(|n| given.get(n).is_some()).collect();
        assert_eq!(listed.matches("=***").count(), names.len(), "{listed}");
        let mut environ = b"PATH=/usr/bin\0DMS_HELPER_NONCE=00ff\0DMS_HELPER_TARGET=t1\0".to_vec();
        for name in &names {
            environ.extend(format!("{name}={}\0", given.get(name).unwrap()).as_bytes());
        }
        environ.extend(b"not-an-entry\0\xff\xfe=x\0");
        let read = helper_env_from_environ(&environ).unwrap();
        for name in HELPER_ENV_NAMES {
            assert_eq!(read.get(name), given.get(name), "{name}");
        }
        for other in ["PATH", "DMS_HELPER_NONCE", "DMS_HELPER_TARGET"] {
            assert_eq!(read.get(other), None, "{other} is not the helper's own");
        }
        let without_keys = b"vault_s3_bucket=b\0vault_data_directory=/m\0";
        assert!(helper_env_from_environ(without_keys).is_none(), "no keys: not replaceable");
    }
}
