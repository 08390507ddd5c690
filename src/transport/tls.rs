//! TLS towards the broker (`amqps://`): the daemon's own rustls configuration with ring as
//! its provider, the same stack Barbican's client uses (src/exec/credentials/tls.rs), handed
//! to lapin's rustls stream so that no second TLS library is linked.
//!
//! Trust: the operator's CA bundle (`rabbitmq_ca_file`; Kolla and TripleO issue their own),
//! else the system's store through the platform verifier, as reqwest does; `rabbitmq_insecure`
//! turns verification off (an explicit opt-out, logged by the caller). A client certificate
//! (`rabbitmq_cert_file` + `rabbitmq_key_file`) is presented when the broker asks for one.
//! The files are read once, at start: a file that cannot be used stops the daemon with its
//! path named, rather than failing every connection.

use crate::config::BrokerTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The PEM parser's message names what it expected, never the file's bytes.
    #[error("{what} {} is not usable PEM: {reason}", path.display())]
    Pem { what: &'static str, path: PathBuf, reason: String },
    #[error("CA file {} holds no certificate rustls accepts", path.display())]
    NoRoots { path: PathBuf },
    #[error("cannot set up TLS to the broker: {0}")]
    Setup(#[source] rustls::Error),
}

/// The client configuration for every `amqps://` host.
pub fn client_config(tls: &BrokerTls) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else if let Some(path) = &tls.ca_file {
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(certificates("CA file", path)?);
        if added == 0 {
            return Err(TlsError::NoRoots { path: path.clone() });
        }
        builder.with_root_certificates(roots)
    } else {
        let verifier =
            rustls_platform_verifier::Verifier::new(provider).map_err(TlsError::Setup)?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
    };
    let config = match &tls.client_cert {
        Some(c) => {
            let chain = certificates("client certificate", &c.cert_file)?;
            let key = private_key(&c.key_file)?;
            builder.with_client_auth_cert(chain, key).map_err(TlsError::Setup)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read(what: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path).map(Zeroizing::new).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let pem_error = |reason: String| TlsError::Pem { what, path: path.to_path_buf(), reason };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("client key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what: "client key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `rabbitmq_insecure = true`: any certificate is accepted; the handshake's signatures are
/// still checked (so the session keys belong to whoever holds the certificate shown).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
