//! The broker's TLS keys (`rabbitmq_ca_file`, `rabbitmq_cert_file`, `rabbitmq_key_file`,
//! `rabbitmq_insecure`), checked together: the files themselves are read when the transport
//! starts, but a combination that cannot be meant is a configuration problem here.

use super::broker_url::AmqpUrl;
use super::load::Loader;
use super::{keys, values, BrokerTls, ClientCert};

impl Loader {
    /// The broker's TLS keys, consistent with each other and with the URL: they only mean
    /// something for `amqps://`, and a key that silently does nothing hides a mistake.
    pub(super) fn broker_tls(&mut self, url: Option<&AmqpUrl>) -> Option<BrokerTls> {
        let ca_file = self.get("rabbitmq_ca_file", values::abs_path);
        let cert_file = self.get("rabbitmq_cert_file", values::abs_path);
        let key_file = self.get("rabbitmq_key_file", values::abs_path);
        let insecure = self.value("rabbitmq_insecure", values::boolean);
        let (ca_file, cert_file, key_file, insecure) = (ca_file?, cert_file?, key_file?, insecure?);
        let client_cert = match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Some(ClientCert { cert_file, key_file }),
            (None, None) => None,
            (Some(_), None) => {
                return self.refuse(
                    "rabbitmq_cert_file",
                    "is set but rabbitmq_key_file is not; set both or neither",
                );
            }
            (None, Some(_)) => {
                return self.refuse(
                    "rabbitmq_key_file",
                    "is set but rabbitmq_cert_file is not; set both or neither",
                );
            }
        };
        if insecure && ca_file.is_some() {
            return self.refuse("rabbitmq_ca_file", "has no effect with rabbitmq_insecure = true");
        }
        let tls = BrokerTls { ca_file, client_cert, insecure };
        if url.is_some_and(|u| !u.is_tls()) {
            let set = [
                ("rabbitmq_ca_file", tls.ca_file.is_some()),
                ("rabbitmq_cert_file", tls.client_cert.is_some()),
                ("rabbitmq_insecure", tls.insecure),
            ];
            if let Some((name, _)) = set.into_iter().find(|(_, set)| *set) {
                return self.refuse(name, "has no effect: rabbitmq_url is not amqps://");
            }
        }
        Some(tls)
    }

    /// Record a problem of key `name` (where its value came from included); always `None`.
    fn refuse<T>(&mut self, name: &str, message: &str) -> Option<T> {
        let origin = self.origin(name);
        let key = keys::find(name)?;
        self.problem(key, origin, message.to_owned());
        None
    }
}
