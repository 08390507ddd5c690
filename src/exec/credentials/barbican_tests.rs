//! Fault injection against a scripted HTTP server on loopback; the real Barbican is
//! exercised by the integration tests.
#![allow(clippy::unwrap_used)]

use super::*;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PAYLOAD: &str =
    r#"{"aws_access_key_id":"AKIAFAKE","aws_secret_access_key":"sekrit","bucket":"b1"}"#;
const TOKEN: &str = "gAAAAAB-token-value";

/// What the server saw: (path, x-auth-token, accept).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// Answers each request with `respond(path, attempt_number)` = (status, body, delay).
async fn server(respond: fn(&str, usize) -> (u16, String, Duration)) -> (String, Seen) {
    server_fn(move |path, attempt, _| respond(path, attempt)).await
}

/// A server whose answer depends on the `Accept` header: (path, accept) → (status, body).
async fn server_with_accept(respond: fn(&str, &str) -> (u16, String)) -> (String, Seen) {
    server_fn(move |path, _, accept| {
        let (status, body) = respond(path, accept);
        (status, body, Duration::ZERO)
    })
    .await
}

type Respond = dyn Fn(&str, usize, &str) -> (u16, String, Duration) + Send + Sync;

async fn server_fn(
    respond: impl Fn(&str, usize, &str) -> (u16, String, Duration) + Send + Sync + 'static,
) -> (String, Seen) {
    let respond: Arc<Respond> = Arc::new(respond);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (log, respond) = (Arc::clone(&log), Arc::clone(&respond));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        })
                        .map(|(_, v)| v.trim().to_owned())
                        .unwrap_or_default()
                };
                let accept = header("accept");
                let attempt = {
                    let mut log = log.lock().unwrap();
                    log.push((path.clone(), header("x-auth-token"), accept.clone()));
                    log.iter().filter(|(p, _, _)| *p == path).count()
                };
                let (status, body, delay) = respond(&path, attempt, &accept);
                tokio::time::sleep(delay).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (base, seen)
}

fn client() -> Barbican {
    Barbican::new(BarbicanConfig {
        timeout: Duration::from_millis(500),
        attempts: 3,
        backoff: Duration::from_millis(10),
        ..BarbicanConfig::default()
    })
    .unwrap()
}

fn metadata() -> String {
    r#"{"status":"ACTIVE","content_types":{"default":"text/plain"}}"#.to_owned()
}

fn ok(path: &str, _: usize) -> (u16, String, Duration) {
    if path.ends_with("/payload") {
        (200, PAYLOAD.into(), Duration::ZERO)
    } else {
        (200, metadata(), Duration::ZERO)
    }
}

async fn fetch(base: &str) -> Result<S3Credentials, CredentialsError> {
    client().fetch(&format!("{base}/v1/secrets/abc"), &SecretString::from(TOKEN)).await
}

#[tokio::test]
async fn given_a_secret_when_fetched_then_one_payload_get_with_the_token_and_any_type() {
    let (base, seen) = server(ok).await;
    let creds = fetch(&base).await.unwrap();
    assert_eq!(creds.bucket, "b1");
    assert_eq!(creds.access_key_id.expose_secret(), "AKIAFAKE");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, [("/v1/secrets/abc/payload".to_owned(), TOKEN.to_owned(), "*/*".to_owned())]);
}

#[tokio::test]
async fn given_a_barbican_refusing_any_type_when_fetched_then_metadata_decides_and_is_remembered() {
    let (base, seen) =
        server_with_accept(|path, accept| match (path.ends_with("/payload"), accept) {
            (true, "text/plain") => (200, PAYLOAD.into()),
            (true, _) => (406, r#"{"code":406}"#.into()),
            (false, _) => (200, metadata()),
        })
        .await;
    let barbican = client();
    let secret = format!("{base}/v1/secrets/abc");
    let token = SecretString::from(TOKEN);
    assert_eq!(barbican.fetch(&secret, &token).await.unwrap().bucket, "b1");
    let accepts: Vec<(String, String)> =
        seen.lock().unwrap().iter().map(|(p, _, a)| (p.clone(), a.clone())).collect();
    let pair = |p: &str, a: &str| (p.to_owned(), a.to_owned());
    assert_eq!(
        accepts,
        [
            pair("/v1/secrets/abc/payload", "*/*"),
            pair("/v1/secrets/abc", "application/json"),
            pair("/v1/secrets/abc/payload", "text/plain"),
        ]
    );
    // The type is learned: the next fetch of this secret is one GET again.
    seen.lock().unwrap().clear();
    assert_eq!(barbican.fetch(&secret, &token).await.unwrap().bucket, "b1");
    let again: Vec<String> = seen.lock().unwrap().iter().map(|(_, _, a)| a.clone()).collect();
    assert_eq!(again, ["text/plain"]);
}

#[tokio::test]
async fn given_refusals_when_fetched_then_clear_messages_and_no_retry() {
    let (base, seen) = server(|_, _| (401, "{}".into(), Duration::ZERO)).await;
    let err = fetch(&base).await.unwrap_err();
    assert_eq!(err, CredentialsError::Unauthorized);
    assert_eq!(err.to_string(), "Failed to fetch secret from Barbican: Invalid or expired Keystone token. Token authentication failed.");
    assert_eq!(seen.lock().unwrap().len(), 1, "a 401 is an answer, not retried");
    let (base, _) = server(|_, _| (403, "{}".into(), Duration::ZERO)).await;
    let err = fetch(&base).await.unwrap_err();
    assert_eq!(err, CredentialsError::Forbidden);
    assert_eq!(err.to_string(), "Failed to fetch secret from Barbican: Access denied to secret. Check token permissions and project scope.");
    let (base, seen) = server(|_, _| (404, "{}".into(), Duration::ZERO)).await;
    let err = fetch(&base).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Failed to fetch secret from Barbican: Secret not found at {base}/v1/secrets/abc. \
             Verify the secret_ref URL."
        )
    );
    assert_eq!(seen.lock().unwrap().len(), 2, "a missing payload asks the metadata why");
}

#[tokio::test]
async fn given_server_errors_when_fetched_then_retried_and_reported_with_the_attempts() {
    let (base, seen) = server(|_, _| (500, "boom".into(), Duration::ZERO)).await;
    let err = fetch(&base).await.unwrap_err();
    assert_eq!(err, CredentialsError::Status { status: 500, attempts: 3 });
    assert_eq!(seen.lock().unwrap().len(), 3);
    // A transient failure that clears up is invisible to the caller.
    let (base, _) =
        server(
            |path, attempt| {
                if attempt == 1 {
                    (503, String::new(), Duration::ZERO)
                } else {
                    ok(path, attempt)
                }
            },
        )
        .await;
    assert_eq!(fetch(&base).await.unwrap().bucket, "b1");
}

#[tokio::test]
async fn given_a_server_that_never_answers_in_time_when_fetched_then_a_timeout() {
    let (base, _) = server(|_, _| (200, metadata(), Duration::from_secs(5))).await;
    let started = std::time::Instant::now();
    let err = fetch(&base).await.unwrap_err();
    assert!(matches!(err, CredentialsError::Timeout { attempts: 3, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn given_nobody_listening_when_fetched_then_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = fetch(&base).await.unwrap_err();
    assert!(matches!(err, CredentialsError::Unreachable { attempts: 3, .. }), "{err}");
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn given_bad_metadata_or_payload_when_fetched_then_refused() {
    let (base, _) = server(|path, _| match path.ends_with("/payload") {
        true => (404, "{}".into(), Duration::ZERO),
        false => (200, "{}".into(), Duration::ZERO),
    })
    .await;
    let err = fetch(&base).await.unwrap_err();
    assert_eq!(err.to_string(), "Barbican secret metadata is unusable: the secret has no payload (no content_types.default)");
    let (base, _) = server(|path, _| {
        if path.ends_with("/payload") {
            (200, r#"{"bucket":"b"}"#.into(), Duration::ZERO)
        } else {
            (200, metadata(), Duration::ZERO)
        }
    })
    .await;
    let err = fetch(&base).await.unwrap_err();
    assert_eq!(err.to_string(), "the secret payload has no usable aws_access_key_id");
}

#[test]
fn given_a_missing_ca_file_when_building_then_a_setup_error() {
    let err = Barbican::new(BarbicanConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..BarbicanConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn the_token_header_is_marked_sensitive_and_never_shown() {
    let value = auth_header(&SecretString::from(TOKEN)).unwrap();
    assert!(value.is_sensitive());
    assert_eq!(value.as_bytes(), TOKEN.as_bytes());
    assert!(!format!("{value:?}").contains(TOKEN), "{value:?}");
}
