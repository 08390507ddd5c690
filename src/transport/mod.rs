//! The RabbitMQ adapter: the wire contract of DESIGN §2 on top of lapin.
//!
//! - Queue `dms.<node_id>` on the default exchange: durable, not exclusive, not auto-delete,
//!   no arguments (other arguments fail against queues clients already declared).
//! - Bounded prefetch; heartbeats; a lost connection is retried with capped, jittered
//!   backoff while the daemon (and every mount) keeps running.
//! - A delivery is acked only once its request is durable: after its outcome is journaled
//!   (then answered right after the ack: at most one reply per request), or, for a keyed
//!   request still waiting after `park_after` (0.5 s by default), after it is parked in the journal's
//!   inbox ([`inbox`]: answered when its turn comes, resumed after a restart). A request
//!   that dies with its connection before the ack is redelivered and answered from the
//!   journal. A journal that cannot be written stops intake: the delivery is requeued and
//!   [`serve`] returns the error.

mod delivery;
mod hosts;
mod inbox;
mod report;
mod session;
mod tls;

pub use hosts::{Next, Rotation};
pub use session::connect;
pub use tls::{client_config, TlsError};

use crate::config::{AmqpUrl, BrokerTls, QueueType};
use crate::engine::{Engine, EngineError};
use crate::exec::keyring::TokenKeep;
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::wire::Policy;
use futures_lite::StreamExt;
use report::Reporter;
use session::{Session, Settings};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The broker host of the session under way (`host:port`, no credentials), for `dms-ctl
/// status`; `None` while there is none.
pub type BrokerHost = Arc<Mutex<Option<String>>>;

#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Every broker host with its credentials; `heartbeat` and `frame_max` are added to a
    /// host's URL when it does not set them.
    pub url: AmqpUrl,
    /// For `amqps://`: whom to trust, which client certificate to show.
    pub tls: BrokerTls,
    pub queue: String,
    pub queue_type: QueueType,
    /// The `connection_name` client property (`dms-server <node_id> pid <N>`).
    pub connection_name: String,
    pub prefetch: u16,
    /// How long a keyed request keeps its delivery before it is parked (see [`inbox`]).
    pub park_after: Duration,
    pub heartbeat_secs: u16,
    /// How long in-flight requests may take to finish when intake stops.
    pub drain: Duration,
    /// True while a broker session consumes (for the admin socket's status and health).
    pub connected: Arc<AtomicBool>,
    /// Which host that session is on.
    pub host: BrokerHost,
    /// How many requests are parked right now (status and metrics).
    pub parked: Arc<AtomicUsize>,
    /// Where a parked request's keystone token waits across a restart.
    pub tokens: Arc<dyn TokenKeep>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("stopping intake: {0}")]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Serve requests until `shutdown` turns true (then stop intake, let in-flight requests
/// finish within the drain bound, and return) or the journal fails.
pub async fn serve<C: Credentials, P: Processes, M: Mounts>(
    engine: Arc<Engine<C, P, M>>,
    policy: Arc<Policy>,
    config: TransportConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), TransportError> {
    let tls = match config.url.is_tls() {
        true => {
            if config.tls.insecure {
                tracing::warn!(
                    "rabbitmq_insecure = true: the broker's TLS certificate is NOT verified"
                );
            }
            Some(client_config(&config.tls)?)
        }
        false => None,
    };
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<EngineError>(1);
    let mut in_flight = JoinSet::new();
    let (current_channel, channel_rx) = watch::channel(None);
    let inbox = Arc::new(inbox::Inbox::new(
        channel_rx,
        Arc::clone(&config.parked),
        config.park_after,
        inbox::Tokens { keep: Arc::clone(&config.tokens), journal: engine.journal().id() },
    ));
    // A target's parked requests are served in the order they were parked, as they would
    // have been without the restart (one task per target; targets side by side): resumed
    // as tasks of their own, they raced for the target's turn, and a mount, an unmount and
    // a mount of one target could come out as mount, mount, unmount.
    let mut by_target = std::collections::BTreeMap::<_, Vec<_>>::new();
    for (ticket, job) in inbox.resume(engine.journal()).await? {
        by_target.entry(job.target.clone()).or_default().push((ticket, job));
    }
    for queue in by_target.into_values() {
        let (engine, inbox, fatal) = (Arc::clone(&engine), Arc::clone(&inbox), fatal_tx.clone());
        in_flight.spawn(async move {
            for (ticket, job) in queue {
                if let Err(e) = delivery::resumed(&engine, &inbox, ticket, job).await {
                    let _ = fatal.try_send(e);
                    return;
                }
            }
        });
    }
    let hosts = config.url.hosts();
    let settings = Settings {
        queue: &config.queue,
        queue_type: config.queue_type,
        prefetch: config.prefetch,
        heartbeat_secs: config.heartbeat_secs,
        connection_name: &config.connection_name,
        tls: tls.as_ref(),
    };
    let mut rotation = Rotation::new(hosts.len(), hosts::seed());
    let mut report = Reporter::new(&config.queue);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let host = &hosts[rotation.current()];
        let opened = tokio::select! {
            s = session::open(host, &settings) => s,
            _ = shutdown.changed() => break,
        };
        let Session { connection, channel, mut consumer } = match opened {
            Ok(s) => {
                rotation.connected();
                report.connected(host.endpoint());
                config.connected.store(true, Ordering::Relaxed);
                set_host(&config.host, Some(host.endpoint()));
                current_channel.send_replace(Some(s.channel.clone()));
                s
            }
            Err(e) => {
                let next = rotation.failed();
                let wait =
                    report.failed(&e, host.endpoint(), next, hosts[rotation.current()].endpoint());
                match wait {
                    None => continue,
                    Some(wait) => tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = shutdown.changed() => break,
                    },
                }
            }
        };
        let mut events = std::pin::pin!(connection.events_listener());
        let ended: String = loop {
            tokio::select! {
                next = consumer.next() => match next {
                    Some(Ok(d)) => {
                        let (engine, policy, inbox, channel, fatal) = (Arc::clone(&engine), Arc::clone(&policy), Arc::clone(&inbox), channel.clone(), fatal_tx.clone());
                        in_flight.spawn(async move {
                            if let Err(e) = delivery::handle(&engine, &policy, &inbox, &channel, d).await {
                                let _ = fatal.try_send(e);
                            }
                        });
                    }
                    Some(Err(e)) => break e.to_string(),
                    // The channel is still open: the broker cancelled the consumer (queue
                    // deleted, mirror promoted). Consume again on the same channel, so the
                    // deliveries in flight can still be acked where they came from.
                    None if channel.status().connected() => {
                        match session::consume(&channel, &config.queue, config.queue_type).await {
                            Ok(c) => {
                                consumer = c;
                                report.consumer_cancelled(host.endpoint());
                            }
                            Err(e) => break format!("the broker cancelled the consumer and consuming again failed: {e}"),
                        }
                    }
                    None => break "the consumer was closed".into(),
                },
                Some(event) = events.next() => report.event(event, host.endpoint()),
                Some(e) = fatal_rx.recv() => {
                    tracing::error!(error = %e, "journal failure: intake stopped");
                    config.connected.store(false, Ordering::Relaxed);
                    set_host(&config.host, None);
                    current_channel.send_replace(None);
                    let _ = connection.close(320, "journal failure".into()).await;
                    return Err(e.into());
                }
                _ = shutdown.changed() => {
                    config.connected.store(false, Ordering::Relaxed);
                    set_host(&config.host, None);
                    drain(&mut in_flight, config.drain).await;
                    let _ = connection.close(200, "dms-server stopping".into()).await;
                    return Ok(());
                }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        };
        config.connected.store(false, Ordering::Relaxed);
        set_host(&config.host, None);
        current_channel.send_replace(None);
        rotation.lost();
        report.lost(&ended, host.endpoint(), hosts[rotation.current()].endpoint());
        let _ = connection.close(200, "reconnecting".into()).await;
    }
    drain(&mut in_flight, config.drain).await;
    Ok(())
}

fn set_host(host: &BrokerHost, endpoint: Option<&str>) {
    if let Ok(mut h) = host.lock() {
        *h = endpoint.map(str::to_owned);
    }
}

async fn drain(in_flight: &mut JoinSet<()>, bound: Duration) {
    let all = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(bound, all).await.is_err() {
        tracing::warn!(
            left = in_flight.len(),
            "in-flight requests still running at shutdown; they will be redelivered"
        );
    }
}
