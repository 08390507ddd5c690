//! moto_server as the S3 endpoint (moto 5.2.5 from PyPI, in the test venv).
//!
//! moto accepts any credentials: it does not verify signatures, but it refuses anonymous
//! reads of objects written with a private ACL (what s3fs writes), so the helpers here
//! send a syntactically valid SigV4 `Authorization` header with a dummy signature.
//! Starts in ~1 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::http;
use super::proc::{dump_logs_if_panicking, record_pgids, GroupChild, Janitor};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The bucket every [`S3`] creates.
pub const DEFAULT_BUCKET: &str = "dms-test-bucket";

/// A running moto S3 server with one bucket; dropping it kills the server.
#[derive(Debug)]
pub struct S3 {
    port: u16,
    bucket: String,
    access_key_id: String,
    secret_access_key: String,
    server: Option<GroupChild>,
    janitor: Option<Janitor>,
    dir: Option<super::TestDir>,
    path: PathBuf,
    startup: Duration,
}

impl S3 {
    /// Starts moto_server on a free loopback port and creates [`DEFAULT_BUCKET`].
    pub fn start() -> S3 {
        let moto = super::venv_bin("moto_server");
        let dir = super::temp_dir("dms-s3-");
        let path = dir.path().to_path_buf();
        let janitor = Janitor::start(&path);
        let port = super::free_port();
        let t0 = Instant::now();
        let mut cmd = Command::new(moto);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(&path)
            .env("HOME", &path);
        let mut server = GroupChild::spawn("moto_server", cmd, &path.join("moto.log"));
        record_pgids(&path, &[server.pid()]);
        let url = format!("http://127.0.0.1:{port}/");
        let ready = super::wait_for("moto_server to answer", START_TIMEOUT, || {
            if let Err(e) = server.check_alive() {
                return Some(Err(e));
            }
            http::request("GET", &url, &[], b"").ok().map(|_| Ok(()))
        });
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => panic!(
                "moto_server did not start: {e}\nlog {}:\n{}",
                server.log().display(),
                super::log_tail(server.log(), 40)
            ),
        }
        let s3 = S3 {
            port,
            bucket: DEFAULT_BUCKET.to_string(),
            access_key_id: format!("AKIADMSTEST{port}"),
            secret_access_key: format!("dms-test-secret-{:x}", rand_u64()),
            server: Some(server),
            janitor: Some(janitor),
            dir: Some(dir),
            path,
            startup: t0.elapsed(),
        };
        s3.create_bucket(DEFAULT_BUCKET);
        s3
    }

    /// `http://127.0.0.1:<port>` (use path-style requests).
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Any value works with moto; these are unique per instance so leaks are traceable.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    pub fn log(&self) -> PathBuf {
        self.path.join("moto.log")
    }

    fn auth(&self) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0000",
            self.access_key_id
        )
    }

    fn call(&self, method: &str, path: &str, body: &[u8]) -> http::Response {
        let url = format!("{}{path}", self.endpoint_url());
        let auth = self.auth();
        http::request(
            method,
            &url,
            &[("Authorization", &auth), ("Content-Type", "application/octet-stream")],
            body,
        )
        .unwrap_or_else(|e| panic!("S3 {method} {path}: {e}"))
    }

    /// Creates a bucket (PUT /<name>).
    pub fn create_bucket(&self, name: &str) {
        let r = self.call("PUT", &format!("/{name}"), b"");
        assert_eq!(r.status, 200, "create bucket {name}: {}", r.text());
    }

    /// Keys in the default bucket (ListObjectsV2, first 1000).
    pub fn list_keys(&self) -> Vec<String> {
        self.list_keys_in(&self.bucket)
    }

    /// Keys in `bucket` (ListObjectsV2, first 1000).
    pub fn list_keys_in(&self, bucket: &str) -> Vec<String> {
        let r = self.call("GET", &format!("/{bucket}?list-type=2&max-keys=1000"), b"");
        assert_eq!(r.status, 200, "list {bucket}: {}", r.text());
        let xml = r.text();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| xml_unescape(k)))
            .collect()
    }

    /// An object's bytes from the default bucket, `None` if it does not exist.
    pub fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        let r = self.call("GET", &format!("/{}/{key}", self.bucket), b"");
        match r.status {
            200 => Some(r.body),
            404 => None,
            s => panic!("GET object {key}: status {s}: {}", r.text()),
        }
    }

    /// Writes an object into the default bucket.
    pub fn put_object(&self, key: &str, body: &[u8]) {
        let r = self.call("PUT", &format!("/{}/{key}", self.bucket), body);
        assert_eq!(r.status, 200, "PUT object {key}: {}", r.text());
    }

    /// The helper environment the DMS daemon gives `s3vaultfuse` for this endpoint
    /// (docs/design.md §2), with `vault_data_directory = mount_path`. Pass it with
    /// `Command::env_clear().envs(..)` (plus `PATH`).
    pub fn helper_env(&self, mount_path: &Path) -> Vec<(String, String)> {
        let v = |k: &str, val: &str| (k.to_string(), val.to_string());
        vec![
            v("vault_s3_bucket", &self.bucket),
            v("vault_s3_region_name", "us-west-2"),
            v("vault_s3_auth_version", "DEFAULT"),
            v("vault_s3_signature_version", "default"),
            v("vault_s3_ssl", "false"),
            v("vault_s3_ssl_verify", "true"),
            v("vault_storage_nfs_export", &self.bucket),
            v("bucket_object_lock", "false"),
            v("use_manifest_suffix", "false"),
            v("vault_s3_endpoint_url", &self.endpoint_url()),
            v("vault_s3_max_pool_connections", "500"),
            v("vault_data_directory_old", "/var/triliovault"),
            v("vault_data_directory", &mount_path.to_string_lossy()),
            v("AWS_ACCESS_KEY_ID", &self.access_key_id),
            v("AWS_SECRET_ACCESS_KEY", &self.secret_access_key),
        ]
    }

    /// The JSON credentials payload an operator stores in Barbican for this endpoint
    /// (docs/design.md §2).
    pub fn credentials_json(&self) -> serde_json::Value {
        serde_json::json!({
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "bucket": self.bucket,
            "region": "us-west-2",
            "endpoint_url": self.endpoint_url(),
            "auth_version": "DEFAULT",
            "signature_version": "default",
            "ssl": false,
            "ssl_verify": true,
            "ssl_cert": "",
            "max_pool_connections": 500,
            "nfs_export": self.bucket,
            "object_lock": false,
            "use_manifest_suffix": false,
            "log_config": "",
        })
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        dump_logs_if_panicking("moto_server", &[self.log()]);
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
        if let Some(mut j) = self.janitor.take() {
            j.dismiss();
        }
        if let Some(dir) = self.dir.take() {
            if super::keep_temp() {
                eprintln!("DMS_TEST_KEEP: keeping {}", dir.keep().display());
            }
        }
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A non-cryptographic random number (per-instance test values only).
pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
