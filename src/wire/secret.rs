//! The keystone token and the Barbican reference it is sent to.
//!
//! The token is the one secret a request carries (DESIGN §3.7): it exists as a
//! [`SecretString`] (the `secrecy` crate) from the moment it leaves the JSON, so a `{:?}` of
//! a request, a log field or a journal record cannot contain it by accident (its `Debug`
//! prints `[REDACTED]`, it has no `Display` and no `Serialize`), `expose_secret()` is the one
//! way in, so every use is greppable, and its memory is zeroed when it is dropped. Where it is sent matters as much: `secret_ref` is
//! checked strictly (and against the operator's prefix allow-list) because the daemon hands
//! the token to whatever server it names.

use super::{echo, WireError};
use secrecy::SecretString;

/// Keystone tokens are 180–260 byte Fernet strings; PKI tokens were a few KiB.
const MAX_TOKEN_LEN: usize = 16 * 1024;
const MAX_SECRET_REF_LEN: usize = 2048;

/// The token as a header value can carry it: visible ASCII only (a CR/LF would split the
/// HTTP header). The message never contains any part of it.
pub(super) fn token(raw: &str) -> Result<SecretString, WireError> {
    if raw.is_empty() {
        return Err(WireError::MissingField { field: "keystone_token" });
    }
    if raw.len() > MAX_TOKEN_LEN {
        return Err(WireError::BadToken { reason: "longer than 16384 bytes" });
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::BadToken {
            reason: "contains characters other than printable ASCII",
        });
    }
    Ok(SecretString::from(raw))
}

/// `raw` if it is a plain `http(s)://host[:port]/path` URL that `<raw>/payload` extends
/// predictably, and (when `prefixes` is non-empty) starts with one of them at a `/`
/// boundary. Refused: anything an HTTP client would rewrite before sending (`%`
/// escapes, `.`/`..` segments, `\`), and user info, query or fragment (`@ ? #`).
pub(super) fn secret_ref(raw: &str, prefixes: &[String]) -> Result<String, WireError> {
    let refuse = |reason: &'static str| WireError::BadSecretRef { secret_ref: echo(raw), reason };
    if raw.len() > MAX_SECRET_REF_LEN {
        return Err(refuse("longer than 2048 bytes"));
    }
    let ok_char = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | ':' | '/' | '-' | '[' | ']')
    };
    if !raw.chars().all(ok_char) {
        return Err(refuse("may hold only A-Z a-z 0-9 . _ ~ : / - [ ]"));
    }
    let Some(rest) = raw.strip_prefix("https://").or_else(|| raw.strip_prefix("http://")) else {
        return Err(refuse("must be an http:// or https:// URL"));
    };
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (rest, None),
    };
    if authority.is_empty() || authority.starts_with(':') {
        return Err(refuse("has no host"));
    }
    if path.is_some_and(|p| p.split('/').any(|seg| matches!(seg, "" | "." | ".."))) {
        return Err(refuse("must have no empty, '.' or '..' path segments and no trailing '/'"));
    }
    if !prefixes.is_empty() && !prefixes.iter().any(|p| has_prefix(raw, p)) {
        return Err(refuse("is not under an allowed secret_ref prefix"));
    }
    Ok(raw.to_owned())
}

/// `prefix` covers `url` only up to a path boundary: `https://kms:9311` must not admit
/// `https://kms:93110` or `https://kms:9311.evil.example`.
fn has_prefix(url: &str, prefix: &str) -> bool {
    match url.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}
