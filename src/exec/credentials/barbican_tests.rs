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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let log = Arc::clone(&log);
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
                let attempt = {
                    let mut log = log.lock().unwrap();
                    log.push((path.clone(), header("x-auth-token"), header("accept")));
                    log.iter().filter(|(p, _, _)| *p == path).count()
                };
                let (status, body, delay) = respond(&path, attempt);
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
    client().fetch(&format!("{base}/v1/secrets/abc"), &Secret::new(TOKEN.into())).await
}

#[tokio::test]
async fn given_a_secret_when_fetched_then_metadata_then_payload_with_the_token_and_content_type() {
    let (base, seen) = server(ok).await;
    let creds = fetch(&base).await.unwrap();
    assert_eq!(creds.bucket, "b1");
    assert_eq!(creds.access_key_id.expose(), "AKIAFAKE");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("/v1/secrets/abc".to_owned(), TOKEN.to_owned(), "application/json".to_owned()),
            ("/v1/secrets/abc/payload".to_owned(), TOKEN.to_owned(), "text/plain".to_owned()),
        ]
    );
}

#[tokio::test]
async fn given_refusals_when_fetched_then_clear_messages_and_no_retry() {
    let (base, seen) = server(|_, _| (401, "{}".into(), Duration::ZERO)).await;
    assert_eq!(fetch(&base).await.unwrap_err(), CredentialsError::Unauthorized);
    assert_eq!(seen.lock().unwrap().len(), 1, "a 401 is an answer, not retried");
    let (base, _) = server(|_, _| (403, "{}".into(), Duration::ZERO)).await;
    assert_eq!(fetch(&base).await.unwrap_err(), CredentialsError::Forbidden);
    let (base, _) = server(|_, _| (404, "{}".into(), Duration::ZERO)).await;
    let err = fetch(&base).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("secret not found in Barbican (404 Not Found): {base}/v1/secrets/abc")
    );
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
    let (base, _) = server(|_, _| (200, "{}".into(), Duration::ZERO)).await;
    assert!(matches!(fetch(&base).await.unwrap_err(), CredentialsError::Metadata(_)));
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
