//! Barbican over real TLS: a rustls server on loopback with a certificate that `openssl`
//! issues from a throwaway CA, and the daemon's client with ring as its provider. Proves
//! the handshake, the operator's CA file, and that an unknown issuer is refused.
#![allow(clippy::unwrap_used)]

use super::install_crypto_provider;
use crate::exec::credentials::{Barbican, BarbicanConfig, CredentialsError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretString;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PAYLOAD: &str =
    r#"{"aws_access_key_id":"AKIAFAKE","aws_secret_access_key":"sekrit","bucket":"b1"}"#;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect(
        "openssl(1) runs (scripts/lib/deps.sh installs it): it issues the test certificates",
    );
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed (`leaf.pem`, `leaf.key`).
fn issue_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = [&ec[..], &["-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]].concat();
    openssl(dir, &[&["req"], &ca[..], &["-subj", "/CN=dms-test-ca"]].concat());
    let csr = [&ec[..], &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]];
    openssl(dir, &[&["req"], &csr.concat()[..]].concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// Serves every request with the payload over TLS; counts the requests that got through
/// the handshake. The thread ends with the process (the listener is never closed).
fn serve(dir: &Path) -> (String, Arc<AtomicUsize>) {
    let certs = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { continue };
            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(&config)) else { continue };
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            if !head.ends_with(b"\r\n\r\n") {
                continue; // the client gave up during the handshake
            }
            count.fetch_add(1, Ordering::SeqCst);
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAYLOAD}",
                PAYLOAD.len()
            );
            let _ = tls.write_all(reply.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (base, served)
}

fn barbican(ca_file: Option<&Path>, insecure: bool) -> Barbican {
    Barbican::new(BarbicanConfig {
        timeout: Duration::from_secs(5),
        attempts: 1,
        ca_file: ca_file.map(Path::to_path_buf),
        insecure,
        ..BarbicanConfig::default()
    })
    .unwrap()
}

async fn fetch(client: &Barbican, base: &str) -> Result<String, CredentialsError> {
    let token = SecretString::from("gAAAAAB-token-value");
    let credentials = client.fetch(&format!("{base}/v1/secrets/abc"), &token).await?;
    Ok(credentials.bucket)
}

#[test]
fn a_client_builds_after_the_provider_is_installed_twice() {
    install_crypto_provider();
    install_crypto_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    assert!(reqwest::Client::builder().build().is_ok());
}

#[tokio::test]
async fn given_barbican_over_tls_when_its_ca_is_the_operators_then_fetched_else_refused() {
    let dir = tempfile::tempdir().unwrap();
    issue_certificates(dir.path());
    let (base, served) = serve(dir.path());

    let trusted = barbican(Some(&dir.path().join("ca.pem")), false);
    assert_eq!(fetch(&trusted, &base).await.unwrap(), "b1");
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // Without the CA file the issuer is unknown: no request reaches the server.
    let err = fetch(&barbican(None, false), &base).await.unwrap_err();
    assert!(matches!(err, CredentialsError::Unreachable { .. }), "{err:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1, "a request got through an untrusted handshake");

    // The operator's explicit opt-out accepts it.
    assert_eq!(fetch(&barbican(None, true), &base).await.unwrap(), "b1");
    assert_eq!(served.load(Ordering::SeqCst), 2);
}
