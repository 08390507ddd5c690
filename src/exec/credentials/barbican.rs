//! Fetching S3 credentials from OpenStack Barbican (DESIGN §2), with `X-Auth-Token`:
//! `GET <secret_ref>/payload` with `Accept: */*`, which Barbican answers in the secret's
//! own content type: one round trip. Only when Barbican refuses that (a Barbican that does
//! not take `*/*`, a secret without a payload) does the client take the documented two:
//! `GET <secret_ref>` for the metadata (its `content_types.default` names the payload
//! type), then the payload with that `Accept`, and it remembers the type for that secret
//! so the next fetch is one GET again. Every refusal maps to the same reply as before.
//!
//! Only transient failures are retried (a 5xx, a 429, a timeout, a refused connection);
//! 401/403/404 are answers, reported at once with a message the operator can act on. TLS is
//! verified unless the operator explicitly opts out; an extra CA file may be trusted.

use super::payload::{PayloadError, S3Credentials};
use reqwest::header::HeaderValue;
use reqwest::{Certificate, Client, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use zeroize::Zeroizing;

/// The reason after "Failed to fetch credentials: " in the reply. For 401, 403 and 404 these
/// are the Python service's words: its clients pass them to their callers verbatim, and
/// operators grep for them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("Failed to fetch secret from Barbican: Invalid or expired Keystone token. Token authentication failed.")]
    Unauthorized,
    #[error("Failed to fetch secret from Barbican: Access denied to secret. Check token permissions and project scope.")]
    Forbidden,
    #[error("Failed to fetch secret from Barbican: Secret not found at {secret_ref}. Verify the secret_ref URL.")]
    NotFound { secret_ref: String },
    #[error("Barbican answered {status} after {attempts} attempt(s)")]
    Status { status: u16, attempts: u32 },
    #[error("Barbican did not answer within {timeout:?} (after {attempts} attempt(s))")]
    Timeout { timeout: Duration, attempts: u32 },
    #[error("cannot reach Barbican after {attempts} attempt(s): {reason}")]
    Unreachable { reason: String, attempts: u32 },
    #[error("Barbican secret metadata is unusable: {0}")]
    Metadata(String),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("cannot set up the Barbican client: {0}")]
    Setup(String),
    /// Unreachable: the wire codec admits only visible ASCII tokens, which every header
    /// value can carry. Says nothing of the token itself.
    #[error("the keystone token cannot be sent as an HTTP header")]
    TokenHeader,
}

#[derive(Debug, Clone)]
pub struct BarbicanConfig {
    /// Per request.
    pub timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
    pub ca_file: Option<PathBuf>,
    /// Explicit operator opt-out of certificate verification.
    pub insecure: bool,
}

impl Default for BarbicanConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_millis(200),
            ca_file: None,
            insecure: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Barbican {
    http: Client,
    config: BarbicanConfig,
    /// Payload types learned from metadata, by secret, for a Barbican that refused `*/*`.
    learned: Arc<Mutex<HashMap<String, String>>>,
}

/// What the first GET asks for: "whatever the secret is stored as" (Barbican maps `*/*` to
/// the secret's own content type).
const ANY_TYPE: &str = "*/*";

/// Bound on remembered payload types (one short string per secret); past it the map starts
/// over, which costs one metadata GET per secret.
const MAX_LEARNED: usize = 4096;

/// One attempt's failure: whether trying again could help.
enum Attempt {
    Final(CredentialsError),
    Transient(Transient),
}

enum Transient {
    Status(u16),
    Timeout,
    Unreachable(String),
}

impl Barbican {
    pub fn new(config: BarbicanConfig) -> Result<Self, CredentialsError> {
        super::tls::install_crypto_provider();
        let mut builder = Client::builder().timeout(config.timeout).connect_timeout(config.timeout);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                CredentialsError::Setup(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                CredentialsError::Setup(format!("CA file {} is not PEM: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        if config.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| CredentialsError::Setup(e.to_string()))?;
        Ok(Self { http, config, learned: Arc::default() })
    }

    pub async fn fetch(
        &self,
        secret_ref: &str,
        token: &SecretString,
    ) -> Result<S3Credentials, CredentialsError> {
        let secret_ref = secret_ref.trim_end_matches('/');
        let payload_url = format!("{secret_ref}/payload");
        let learned = lock(&self.learned).get(secret_ref).cloned();
        let accept = learned.as_deref().unwrap_or(ANY_TYPE);
        match self.get(&payload_url, token, accept).await {
            Ok(payload) => return Ok(S3Credentials::parse(&payload)?),
            // Refused as asked, or no such payload: the two documented GETs find out which,
            // and answer as they always did (a missing secret, a secret without payload).
            Err(CredentialsError::NotFound { .. }) => {}
            Err(CredentialsError::Status { status, .. }) if is_refusal(status) => {}
            // The token's answer, or Barbican unwell: the metadata would say the same.
            Err(e) => return Err(e),
        }
        let metadata = self.get(secret_ref, token, "application/json").await?;
        let content_type = content_type(&metadata)?;
        let payload = self.get(&payload_url, token, &content_type).await?;
        let mut learned = lock(&self.learned);
        if learned.len() >= MAX_LEARNED {
            learned.clear();
        }
        learned.insert(secret_ref.to_owned(), content_type);
        Ok(S3Credentials::parse(&payload)?)
    }

    /// GET with retries of transient failures.
    async fn get(
        &self,
        url: &str,
        token: &SecretString,
        accept: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CredentialsError> {
        let attempts = self.config.attempts.max(1);
        let mut last = Transient::Unreachable("no attempt made".into());
        for attempt in 1..=attempts {
            match self.get_once(url, token, accept).await {
                Ok(body) => return Ok(body),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Transient(t)) => last = t,
            }
            if attempt < attempts {
                tokio::time::sleep(self.config.backoff * 2u32.pow(attempt - 1)).await;
            }
        }
        Err(match last {
            Transient::Status(status) => CredentialsError::Status { status, attempts },
            Transient::Timeout => {
                CredentialsError::Timeout { timeout: self.config.timeout, attempts }
            }
            Transient::Unreachable(reason) => CredentialsError::Unreachable { reason, attempts },
        })
    }

    async fn get_once(
        &self,
        url: &str,
        token: &SecretString,
        accept: &str,
    ) -> Result<Zeroizing<Vec<u8>>, Attempt> {
        let sent = self
            .http
            .get(url)
            .header("X-Auth-Token", auth_header(token).map_err(Attempt::Final)?)
            .header("Accept", accept)
            .send()
            .await;
        let response = sent.map_err(|e| Attempt::Transient(transport(&e)))?;
        let status = response.status();
        match status {
            s if s.is_success() => response
                .bytes()
                .await
                .map(|b| Zeroizing::new(b.to_vec()))
                .map_err(|e| Attempt::Transient(transport(&e))),
            StatusCode::UNAUTHORIZED => Err(Attempt::Final(CredentialsError::Unauthorized)),
            StatusCode::FORBIDDEN => Err(Attempt::Final(CredentialsError::Forbidden)),
            StatusCode::NOT_FOUND => {
                Err(Attempt::Final(CredentialsError::NotFound { secret_ref: secret_ref_of(url) }))
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                Err(Attempt::Transient(Transient::Status(s.as_u16())))
            }
            s => Err(Attempt::Final(CredentialsError::Status { status: s.as_u16(), attempts: 1 })),
        }
    }
}

/// The error text of a transport failure, without reqwest's URL decoration (the URL is
/// already in the context) and without any header.
fn transport(e: &reqwest::Error) -> Transient {
    if e.is_timeout() {
        return Transient::Timeout;
    }
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        reason = inner.to_string();
        source = inner.source();
    }
    Transient::Unreachable(reason)
}

/// A 4xx that is about the request, not the token or the load (406 Not Acceptable, 415,
/// 400, ...): worth asking the metadata.
/// The token as the `X-Auth-Token` value, marked sensitive so that reqwest and hyper never
/// show it in a `Debug` of the request (and HTTP/2 never indexes it).
fn auth_header(token: &SecretString) -> Result<HeaderValue, CredentialsError> {
    let mut value =
        HeaderValue::from_str(token.expose_secret()).map_err(|_| CredentialsError::TokenHeader)?;
    value.set_sensitive(true);
    Ok(value)
}

fn is_refusal(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 429)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn secret_ref_of(url: &str) -> String {
    url.strip_suffix("/payload").unwrap_or(url).to_owned()
}

fn content_type(metadata: &[u8]) -> Result<String, CredentialsError> {
    let value: serde_json::Value = serde_json::from_slice(metadata)
        .map_err(|_| CredentialsError::Metadata("not JSON".into()))?;
    match value.pointer("/content_types/default").and_then(|v| v.as_str()) {
        Some(ct) if !ct.is_empty() && ct.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => {
            Ok(ct.to_owned())
        }
        Some(_) => {
            Err(CredentialsError::Metadata("content_types.default is not a media type".into()))
        }
        None => Err(CredentialsError::Metadata(
            "the secret has no payload (no content_types.default)".into(),
        )),
    }
}

#[cfg(test)]
#[path = "barbican_tests.rs"]
mod tests;
