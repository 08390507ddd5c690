//! The test Barbican works for real, read exactly as the daemon will read it
//! (docs/design.md §2): `GET <secret_ref>` with `X-Auth-Token` gives metadata
//! whose `content_types.default` names the payload type, then `GET <secret_ref>/payload`
//! with that `Accept` gives the JSON credentials. Also the error cases later tests need:
//! 404 (unknown ref), 403 (other project), 401 (bad token), injected 500 and timeouts.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use support::barbican::{closed_port_url, INVALID_TOKEN};
use support::{Barbican, Fault, S3};

const TOKEN: &str = "gAAAAAB-keystone-token-of-project-a";

fn client() -> reqwest::Client {
    dms::exec::credentials::install_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// What the daemon does: metadata, then the payload with the advertised content type.
async fn fetch_credentials(
    c: &reqwest::Client,
    secret_ref: &str,
    token: &str,
) -> Result<serde_json::Value, u16> {
    let meta = c
        .get(secret_ref)
        .header("X-Auth-Token", token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    if !meta.status().is_success() {
        return Err(meta.status().as_u16());
    }
    let meta: serde_json::Value = meta.json().await.unwrap();
    let content_type = meta["content_types"]["default"].as_str().unwrap().to_string();
    let payload = c
        .get(format!("{secret_ref}/payload"))
        .header("X-Auth-Token", token)
        .header("Accept", &content_type)
        .send()
        .await
        .unwrap();
    if !payload.status().is_success() {
        return Err(payload.status().as_u16());
    }
    Ok(serde_json::from_slice(&payload.bytes().await.unwrap()).unwrap())
}

async fn start() -> Barbican {
    tokio::task::spawn_blocking(Barbican::start).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_roundtrip_and_error_statuses() {
    let barbican = start().await;
    println!("barbican started in {:?}", barbican.startup_time());
    let s3 = tokio::task::spawn_blocking(S3::start).await.unwrap();
    let creds = s3.credentials_json();
    let secret_ref = barbican.store_secret(TOKEN, &creds.to_string());
    assert!(secret_ref.starts_with(&format!("{}/v1/secrets/", barbican.url())));

    let c = client();
    // Metadata says text/plain (JSON credentials are stored as text/plain).
    let meta: serde_json::Value = c
        .get(&secret_ref)
        .header("X-Auth-Token", TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["content_types"]["default"], "text/plain");
    assert_eq!(meta["status"], "ACTIVE");

    let got = fetch_credentials(&c, &secret_ref, TOKEN).await.unwrap();
    assert_eq!(got, creds, "payload must come back exactly as stored");
    for field in [
        "aws_access_key_id",
        "aws_secret_access_key",
        "bucket",
        "region",
        "endpoint_url",
        "auth_version",
        "signature_version",
        "ssl",
        "ssl_verify",
        "ssl_cert",
        "max_pool_connections",
        "nfs_export",
        "object_lock",
        "use_manifest_suffix",
        "log_config",
    ] {
        assert!(got.get(field).is_some(), "missing field {field}");
    }
    let log = barbican.requests();
    assert!(log.iter().any(|l| l.ends_with("/payload accept=text/plain token=yes")), "{log:?}");
    assert!(log.iter().all(|l| !l.contains(TOKEN)), "token leaked into the log");

    // 404: unknown secret ref.
    let err = fetch_credentials(&c, &barbican.unknown_secret_ref(), TOKEN).await;
    assert_eq!(err, Err(404));
    // 403: the secret belongs to another project.
    let err = fetch_credentials(&c, &secret_ref, "token-of-project-b").await;
    assert_eq!(err, Err(403));
    // 401: a token keystone would reject, and no token at all.
    let err = fetch_credentials(&c, &secret_ref, INVALID_TOKEN).await;
    assert_eq!(err, Err(401));
    let status = c.get(&secret_ref).send().await.unwrap().status();
    assert_eq!(status.as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_500_timeout_and_refused() {
    let barbican = start().await;
    let secret_ref = barbican.store_secret(TOKEN, r#"{"bucket":"b"}"#);
    let c = client();

    barbican.set_fault(&Fault::status(500));
    assert_eq!(fetch_credentials(&c, &secret_ref, TOKEN).await, Err(500));

    // Only the payload call fails: metadata succeeds first.
    barbican.set_fault(&Fault::status(503).only_for("/payload"));
    assert_eq!(fetch_credentials(&c, &secret_ref, TOKEN).await, Err(503));

    // A hanging Barbican: the client's deadline fires.
    barbican.set_fault(&Fault::delay(Duration::from_secs(5)));
    dms::exec::credentials::install_crypto_provider();
    let short = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    let err = short.get(&secret_ref).header("X-Auth-Token", TOKEN).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");

    barbican.clear_fault();
    let got = fetch_credentials(&c, &secret_ref, TOKEN).await.unwrap();
    assert_eq!(got["bucket"], "b");

    // Nobody listening: connection refused.
    let err = c.get(format!("{}/v1/secrets/x", closed_port_url())).send().await.unwrap_err();
    assert!(err.is_connect(), "{err}");
    tokio::task::spawn_blocking(move || drop(barbican)).await.unwrap();
}
