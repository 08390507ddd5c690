//! `dms-ctl mount` / `unmount`: a real request over RabbitMQ, in the wire format of the
//! existing Python clients (DESIGN §2), so an operator or a smoke test exercises exactly the
//! path a backup job does.

use crate::config::{AmqpUrl, BrokerTls};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("cannot reach the broker: {0}")]
    Broker(lapin::Error),
    #[error("rabbitmq_url names no host")]
    NoHost,
    #[error(transparent)]
    Tls(#[from] crate::transport::TlsError),
    #[error("the broker refused the request (no publisher confirm)")]
    Refused,
    #[error("no reply within {0:?} (is dms-server consuming {1}?)")]
    Timeout(Duration, String),
    #[error("the reply is not JSON: {0}")]
    Garbled(String),
}

/// A backup target as requests describe it.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub kind: String,
    pub mount_path: String,
    pub secret_ref: Option<String>,
    pub export: Option<String>,
    pub nfs_options: Option<String>,
}

/// The request body: what the Python client sends. The token is passed in, never printed.
pub fn body(action: &str, target: &Target, token: Option<&str>) -> Value {
    let mut body = json!({
        "action": action,
        "backup_target": {
            "id": target.id,
            "type": target.kind,
            "filesystem_export_mount_path": target.mount_path,
            "filesystem_export": target.export,
            "nfs_mount_opts": target.nfs_options,
            "secret_ref": target.secret_ref,
        }
    });
    if let Some(token) = token {
        body["keystone_token"] = Value::String(token.to_owned());
    }
    body
}

/// Publish `body` to `dms.<node>` with a private reply queue and wait for the reply. The
/// broker's hosts are tried in the order written, over TLS as the daemon would.
pub async fn call(
    url: &AmqpUrl,
    tls: &BrokerTls,
    node: &str,
    body: &Value,
    timeout: Duration,
) -> Result<Value, RequestError> {
    let tls = match url.is_tls() {
        true => Some(crate::transport::client_config(tls)?),
        false => None,
    };
    let mut last = None;
    for host in url.hosts() {
        let properties = ConnectionProperties::default();
        match crate::transport::connect(host, 30, tls.as_ref(), properties).await {
            Ok(conn) => {
                let result = call_on(&conn, node, body, timeout).await;
                let _ = conn.close(200, "dms-ctl done".into()).await;
                return result;
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or(RequestError::NoHost, RequestError::Broker))
}

async fn call_on(
    conn: &Connection,
    node: &str,
    body: &Value,
    timeout: Duration,
) -> Result<Value, RequestError> {
    let channel = conn.create_channel().await.map_err(RequestError::Broker)?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(RequestError::Broker)?;
    let private = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let queue = channel
        .queue_declare("".into(), private, FieldTable::default())
        .await
        .map_err(RequestError::Broker)?;
    let reply_to = queue.name().as_str().to_owned();
    let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut replies = channel
        .basic_consume(reply_to.as_str().into(), "".into(), no_ack, FieldTable::default())
        .await
        .map_err(RequestError::Broker)?;
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
        .with_correlation_id(ShortString::from(correlation_id.as_str()))
        .with_reply_to(ShortString::from(reply_to.as_str()));
    let queue_name = format!("dms.{node}");
    let payload = body.to_string();
    let confirm = channel
        .basic_publish(
            "".into(),
            queue_name.as_str().into(),
            BasicPublishOptions::default(),
            payload.as_bytes(),
            props,
        )
        .await
        .map_err(RequestError::Broker)?
        .await
        .map_err(RequestError::Broker)?;
    if confirm.is_nack() {
        return Err(RequestError::Refused);
    }
    let wait = async {
        while let Some(delivery) = replies.next().await {
            let delivery = delivery.map_err(RequestError::Broker)?;
            let matches = delivery.properties.correlation_id().as_ref().map(|c| c.as_str())
                == Some(correlation_id.as_str());
            if matches {
                return serde_json::from_slice(&delivery.data)
                    .map_err(|e| RequestError::Garbled(e.to_string()));
            }
        }
        Err(RequestError::Timeout(timeout, queue_name.clone()))
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| RequestError::Timeout(timeout, queue_name.clone()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_an_s3_target_when_the_body_is_built_then_it_has_the_python_clients_shape() {
        let target = Target {
            id: "t-1".into(),
            kind: "s3".into(),
            mount_path: "/m/t-1".into(),
            secret_ref: Some("https://barbican/v1/secrets/x".into()),
            export: None,
            nfs_options: None,
        };
        assert_eq!(
            body("mount", &target, Some("tok")),
            json!({
                "action": "mount", "keystone_token": "tok",
                "backup_target": {
                    "id": "t-1", "type": "s3", "filesystem_export_mount_path": "/m/t-1",
                    "filesystem_export": null, "nfs_mount_opts": null,
                    "secret_ref": "https://barbican/v1/secrets/x"
                }
            })
        );
        assert!(body("unmount", &target, None).get("keystone_token").is_none());
    }
}
