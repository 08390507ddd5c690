//! The TLS crypto provider for every HTTPS client of the process (Barbican's, and the test
//! and benchmark clients beside it). reqwest is built without a provider of its own
//! (`rustls-no-provider`), so one must be the process default before any client is built:
//! ring, which builds in about a fifth of aws-lc's time and is rustls' other first-class
//! provider. Verification is unchanged (the platform verifier, plus the operator's CA file).

/// Makes ring the process's default rustls provider. Idempotent: when a provider is already
/// installed (by an earlier call, or by an embedding program), that one stays.
pub fn install_crypto_provider() {
    // Err only says that some provider is the default already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
