//! A private RabbitMQ node with a TLS listener, for the daemon's `amqps://` tests.
//!
//! A throwaway CA is made with `openssl(1)` in the node's own directory (so the janitor
//! removes it with the node): a server certificate for `127.0.0.1`/`localhost` and a client
//! certificate, both issued by it, and a second, unrelated CA that trusts nothing here. The
//! node keeps its plain AMQP listener (test clients publish there) and adds
//! `listeners.ssl.default` with `verify_peer` and `fail_if_no_peer_cert = true`: a
//! connection is served only when the daemon trusts the node's CA *and* shows the client
//! certificate. One node per test process, like [`Broker::shared`]; always private (the
//! suite's shared node has no TLS listener).

use super::Broker;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The TLS node and the files a client needs.
#[derive(Debug)]
pub struct TlsBroker {
    pub broker: Broker,
    pub tls_port: u16,
    /// The CA that issued the node's certificate (PEM).
    pub ca: PathBuf,
    /// A CA that issued nothing the node shows.
    pub other_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsBroker {
    pub fn shared() -> &'static TlsBroker {
        static SHARED: OnceLock<TlsBroker> = OnceLock::new();
        SHARED.get_or_init(TlsBroker::start)
    }

    fn start() -> TlsBroker {
        let tls_port = super::free_port();
        let broker = Broker::start_configured(false, |dir| {
            issue(dir);
            let file = |name: &str| dir.join(name).display().to_string();
            format!(
                "listeners.ssl.default = {tls_port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n",
                file("ca.pem"),
                file("server.pem"),
                file("server.key"),
            )
        });
        let dir = broker.dir().to_path_buf();
        TlsBroker {
            broker,
            tls_port,
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }

    /// `amqps://guest:guest@127.0.0.1:<tls port>/%2f`.
    pub fn amqps_url(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.tls_port)
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect(
        "openssl(1) runs (scripts/lib/deps.sh installs it): it issues the test certificates",
    );
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.pem`), a server certificate (`server.pem`/`server.key`) and a client one
/// (`client.pem`/`client.key`) it issued, and an unrelated CA (`other-ca.pem`). EC P-256
/// keys, two days of validity; RabbitMQ (Erlang's ssl) reads PKCS#8 keys.
fn issue(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for (ca, cn) in [("ca", "dms-test-ca"), ("other-ca", "dms-test-other-ca")] {
        let (key, pem, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN={cn}"));
        let args = [&["req"], &ec[..], &["-x509", "-keyout", &key, "-out", &pem]].concat();
        openssl(dir, &[&args[..], &["-days", "2", "-subj", &subj]].concat());
    }
    let leaves = [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ];
    for (name, ext) in leaves {
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let subj = format!("/CN=dms-test-{name}");
        let req = [&["req"], &ec[..], &["-keyout", &key, "-out", &csr, "-subj", &subj]].concat();
        openssl(dir, &req);
        let ext_file = format!("{name}.ext");
        std::fs::write(dir.join(&ext_file), format!("basicConstraints=CA:FALSE\n{ext}"))
            .expect("write the extensions file");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext_file,
            ],
        );
    }
}
