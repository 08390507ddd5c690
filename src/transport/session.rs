//! One broker session: connect to one host (plain or TLS), open the channel, declare the
//! node's queue as configured, consume it. What can go wrong is sorted into the cases the
//! serve loop treats differently ([`OpenError`]): a queue declared with another type than
//! it has (the operator must change `queue_type`), a queue whose home node is down (another
//! host may serve it), a TLS certificate not trusted, and everything else.

use crate::config::{HostUrl, QueueType};
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// A session's handles.
pub(super) struct Session {
    pub connection: Connection,
    pub channel: Channel,
    pub consumer: lapin::Consumer,
}

/// What a session needs besides the host.
pub(super) struct Settings<'a> {
    pub queue: &'a str,
    pub queue_type: QueueType,
    pub prefetch: u16,
    pub heartbeat_secs: u16,
    /// `dms-server <node_id> pid <N>`: what `rabbitmqctl list_connections name` shows.
    pub connection_name: &'a str,
    /// The TLS client for `amqps://` hosts; `None` for `amqp://`.
    pub tls: Option<&'a Arc<rustls::ClientConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    #[error("queue {queue} exists as a {existing} queue but this daemon declares it {declared} \
             (queue_type = {declared}): set queue_type = {existing} in \
             /etc/trilio-dms/server.conf or DMS_QUEUE_TYPE={existing} (broker: {message})",
            declared = declared.as_str())]
    QueueTypeMismatch { queue: String, existing: String, declared: QueueType, message: String },
    #[error(
        "queue {queue} is unavailable on this host, its home node is down (broker: {message})"
    )]
    HomeNodeDown { queue: String, message: String },
    #[error("TLS with the broker failed: {source}{}", tls_hint(source))]
    Tls {
        #[source]
        source: rustls::Error,
    },
    #[error("the broker did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("{0}")]
    Broker(#[source] lapin::Error),
}

/// Connecting, the handshake, the declaration and the consume must all be done by then: a
/// host that swallows packets must not hold the daemon away from the healthy ones.
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn open(host: &HostUrl, s: &Settings<'_>) -> Result<Session, OpenError> {
    match tokio::time::timeout(OPEN_TIMEOUT, open_now(host, s)).await {
        Ok(opened) => opened,
        Err(_) => Err(OpenError::Timeout(OPEN_TIMEOUT)),
    }
}

async fn open_now(host: &HostUrl, s: &Settings<'_>) -> Result<Session, OpenError> {
    let properties = ConnectionProperties::default().with_connection_name(s.connection_name.into());
    let connection =
        connect(host, s.heartbeat_secs, s.tls, properties).await.map_err(
            |e| match tls_failure(&e) {
                Some(source) => OpenError::Tls { source },
                None => OpenError::Broker(e),
            },
        )?;
    match consume_on(&connection, s).await {
        Ok((channel, consumer)) => Ok(Session { connection, channel, consumer }),
        Err(e) => {
            let _ = connection.close(200, "dms-server: declare failed".into()).await;
            Err(e)
        }
    }
}

async fn consume_on(
    connection: &Connection,
    s: &Settings<'_>,
) -> Result<(Channel, lapin::Consumer), OpenError> {
    let channel = connection.create_channel().await.map_err(OpenError::Broker)?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(OpenError::Broker)?;
    channel.basic_qos(s.prefetch, BasicQosOptions::default()).await.map_err(OpenError::Broker)?;
    let consumer = consume(&channel, s.queue, s.queue_type).await?;
    Ok((channel, consumer))
}

/// Declare the queue and consume it on `channel` (again, after the broker cancelled the
/// consumer: a deleted queue is declared anew, a failed-over one is found where it is now).
pub(super) async fn consume(
    channel: &Channel,
    queue: &str,
    queue_type: QueueType,
) -> Result<lapin::Consumer, OpenError> {
    let durable = QueueDeclareOptions {
        durable: true,
        exclusive: false,
        auto_delete: false,
        ..Default::default()
    };
    let classify = |e| classify(e, queue, queue_type);
    channel.queue_declare(queue.into(), durable, arguments(queue_type)).await.map_err(classify)?;
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(classify)
}

/// The declaration's arguments: none for a classic queue (the wire contract: clients declare
/// it so, and a declaration with other arguments fails against theirs).
pub(super) fn arguments(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    if queue_type == QueueType::Quorum {
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
    args
}

fn classify(e: lapin::Error, queue: &str, declared: QueueType) -> OpenError {
    let ErrorKind::ProtocolError(amqp) = e.kind() else { return OpenError::Broker(e) };
    let message = amqp.get_message().to_string();
    match amqp.kind() {
        AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
            match existing_queue_type(&message) {
                Some(existing) => OpenError::QueueTypeMismatch {
                    queue: queue.to_owned(),
                    existing,
                    declared,
                    message,
                },
                None => OpenError::Broker(e),
            }
        }
        AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) if message.contains("home node") => {
            OpenError::HomeNodeDown { queue: queue.to_owned(), message }
        }
        _ => OpenError::Broker(e),
    }
}

/// The type the queue has, from RabbitMQ's refusal: `inequivalent arg 'x-queue-type' for
/// queue 'q' in vhost '/': received none but current is the value 'quorum' of type
/// 'longstr'` (or `... but current is none`: a classic queue). `None` when the refusal is
/// about something else.
pub(super) fn existing_queue_type(message: &str) -> Option<String> {
    if !message.contains("inequivalent arg 'x-queue-type'") {
        return None;
    }
    let current = message.split("but current is ").nth(1)?;
    if current.starts_with("none") {
        return Some("classic".into());
    }
    let value = current.strip_prefix("the value '")?;
    value.split('\'').next().filter(|v| !v.is_empty()).map(str::to_owned)
}

/// What the operator can do about a TLS failure.
fn tls_hint(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(_) => {
            " (the handshake stopped there: nothing was sent); rabbitmq_ca_file must name the \
             CA that issued the broker's certificate"
        }
        rustls::Error::AlertReceived(_) => {
            "; the broker refused this client: if it requires a client certificate, set \
             rabbitmq_cert_file and rabbitmq_key_file to one its CA issued"
        }
        _ => "",
    }
}

/// The rustls refusal inside a failed connect, if the TLS handshake is what failed.
fn tls_failure(e: &lapin::Error) -> Option<rustls::Error> {
    let ErrorKind::IOError(io) = e.kind() else { return None };
    io.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

/// Connect to one host: plain AMQP, or TLS with the daemon's own rustls configuration.
pub async fn connect(
    host: &HostUrl,
    heartbeat_secs: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
    properties: ConnectionProperties,
) -> Result<Connection, lapin::Error> {
    // The URI with the password: exposed only here, its copy zeroed once lapin parsed it.
    let url = Zeroizing::new(with_defaults(host.expose(), heartbeat_secs));
    let uri: AMQPUri = url.parse().map_err(|_| {
        // The configuration checked every host's URL; its text (with the password) is
        // not repeated.
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the broker URL does not parse")
    })?;
    let Some(config) = tls else { return Connection::connect_uri(uri, properties).await };
    let connector = lapin::tcp::RustlsConnector::from(Arc::clone(config));
    let runtime = lapin::runtime::default_runtime()?;
    let handshake = async move |uri: AMQPUri, runtime| {
        let (name, port) = (uri.authority.host.clone(), uri.authority.port);
        let addrs: Vec<std::net::SocketAddr> =
            tokio::net::lookup_host((name.as_str(), port)).await?.collect();
        let stream = lapin::tcp::AsyncTcpStream::connect(&runtime, addrs).await?;
        Ok(stream.into_rustls(&connector, &name).await?)
    };
    Connection::connector(uri, runtime, handshake, properties).await
}

/// The frame size the daemon asks for: requests and replies are a few hundred bytes (a
/// larger message is split into frames). lapin zero-fills a receive and a send buffer of 32
/// frames each once the connection is tuned, so RabbitMQ's 128 KiB default costs 8 MiB of
/// resident memory; 16 KiB costs 1 MiB.
pub(super) const FRAME_MAX: u32 = 16 * 1024;

/// The broker URL with the daemon's connection settings added where the operator's URL does
/// not set them: the heartbeat, and [`FRAME_MAX`].
pub(super) fn with_defaults(url: &str, heartbeat_secs: u16) -> String {
    let mut url = url.to_owned();
    for (key, value) in [("heartbeat", u32::from(heartbeat_secs)), ("frame_max", FRAME_MAX)] {
        let query = url.split_once('?').map(|(_, query)| query);
        let set = query.is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some(key)));
        if !set {
            url.push(if query.is_some() { '&' } else { '?' });
            url.push_str(&format!("{key}={value}"));
        }
    }
    url
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
