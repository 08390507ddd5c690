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
mod inbox;

use crate::engine::{Engine, EngineError};
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::wire::Policy;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use zeroize::Zeroizing;

#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// `amqp://...` with the broker password; `heartbeat` is added when the URL does not
    /// set it.
    pub url: SecretString,
    pub queue: String,
    pub prefetch: u16,
    /// How long a keyed request keeps its delivery before it is parked (see [`inbox`]).
    pub park_after: Duration,
    pub heartbeat_secs: u16,
    /// How long in-flight requests may take to finish when intake stops.
    pub drain: Duration,
    /// True while a broker session consumes (for the admin socket's status and health).
    pub connected: Arc<AtomicBool>,
    /// How many requests are parked right now (status and metrics).
    pub parked: Arc<AtomicUsize>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("stopping intake: {0}")]
    Engine(#[from] EngineError),
}

/// Serve requests until `shutdown` turns true (then stop intake, let in-flight requests
/// finish within the drain bound, and return) or the journal fails.
pub async fn serve<C: Credentials, P: Processes, M: Mounts>(
    engine: Arc<Engine<C, P, M>>,
    policy: Arc<Policy>,
    config: TransportConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), TransportError> {
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<EngineError>(1);
    let mut in_flight = JoinSet::new();
    let (current_channel, channel_rx) = watch::channel(None);
    let inbox =
        Arc::new(inbox::Inbox::new(channel_rx, Arc::clone(&config.parked), config.park_after));
    for (ticket, job) in inbox.resume(engine.journal()).await? {
        let (engine, inbox, fatal) = (Arc::clone(&engine), Arc::clone(&inbox), fatal_tx.clone());
        in_flight.spawn(async move {
            if let Err(e) = delivery::resumed(&engine, &inbox, ticket, job).await {
                let _ = fatal.try_send(e);
            }
        });
    }
    let mut backoff = reconnect_backoff();
    // Since when the broker has been out of reach, and how many attempts failed since.
    let mut outage: Option<Outage> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let session = tokio::select! {
            s = open(&config) => s,
            _ = shutdown.changed() => break,
        };
        let (connection, channel, mut consumer) = match session {
            Ok(s) => {
                match outage.take() {
                    None => tracing::info!(
                        queue = %config.queue,
                        "connected to the broker; consuming {}", config.queue
                    ),
                    Some(o) => tracing::info!(
                        queue = %config.queue,
                        attempts = o.attempts,
                        down_ms = o.since.elapsed().as_millis() as u64,
                        "broker connection recovered after {} failed attempts ({:.1} s); consuming {}",
                        o.attempts, o.since.elapsed().as_secs_f64(), config.queue
                    ),
                }
                config.connected.store(true, Ordering::Relaxed);
                current_channel.send_replace(Some(s.1.clone()));
                backoff = reconnect_backoff();
                s
            }
            Err(e) => {
                // Built without a limit of tries, so it never runs out; the cap if it did.
                let wait = backoff.next().unwrap_or(RECONNECT_CAP);
                let o = outage.get_or_insert_with(Outage::now);
                o.attempts += 1;
                tracing::warn!(
                    attempt = o.attempts,
                    retry_in_ms = wait.as_millis() as u64,
                    "cannot reach the broker (attempt {}): {e}; retrying in {:.1} s",
                    o.attempts,
                    wait.as_secs_f64()
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = shutdown.changed() => break,
                }
            }
        };
        loop {
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
                    Some(Err(e)) => {
                        tracing::warn!("broker connection lost: {e}; reconnecting");
                        outage = Some(Outage::now());
                        break;
                    }
                    None => {
                        tracing::warn!("broker connection lost: the consumer was closed; reconnecting");
                        outage = Some(Outage::now());
                        break;
                    }
                },
                Some(e) = fatal_rx.recv() => {
                    tracing::error!(error = %e, "journal failure: intake stopped");
                    config.connected.store(false, Ordering::Relaxed);
                    current_channel.send_replace(None);
                    let _ = connection.close(320, "journal failure".into()).await;
                    return Err(e.into());
                }
                _ = shutdown.changed() => {
                    config.connected.store(false, Ordering::Relaxed);
                    drain(&mut in_flight, config.drain).await;
                    let _ = connection.close(200, "dms-server stopping".into()).await;
                    return Ok(());
                }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        config.connected.store(false, Ordering::Relaxed);
        current_channel.send_replace(None);
        let _ = connection.close(200, "reconnecting".into()).await;
    }
    drain(&mut in_flight, config.drain).await;
    Ok(())
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

async fn open(
    config: &TransportConfig,
) -> Result<(Connection, Channel, lapin::Consumer), lapin::Error> {
    // The URI with the password: exposed only here, its copy zeroed once lapin parsed it.
    let url = Zeroizing::new(with_defaults(config.url.expose_secret(), config.heartbeat_secs));
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    channel.basic_qos(config.prefetch, BasicQosOptions::default()).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        exclusive: false,
        auto_delete: false,
        ..Default::default()
    };
    channel.queue_declare(config.queue.as_str().into(), durable, FieldTable::default()).await?;
    let consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((connection, channel, consumer))
}

/// The frame size the daemon asks for: requests and replies are a few hundred bytes (a
/// larger message is split into frames). lapin zero-fills a receive and a send buffer of 32
/// frames each once the connection is tuned, so RabbitMQ's 128 KiB default costs 8 MiB of
/// resident memory; 16 KiB costs 1 MiB.
const FRAME_MAX: u32 = 16 * 1024;

/// The broker URL with the daemon's connection settings added where the operator's URL does
/// not set them: the heartbeat, and [`FRAME_MAX`].
fn with_defaults(url: &str, heartbeat_secs: u16) -> String {
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

/// The broker has been out of reach since `since`; `attempts` reconnections failed.
#[derive(Debug)]
struct Outage {
    since: std::time::Instant,
    attempts: u32,
}

impl Outage {
    fn now() -> Self {
        Self { since: std::time::Instant::now(), attempts: 0 }
    }
}

/// Capped exponential backoff with jitter, so that many nodes reconnecting to a restarted
/// broker do not arrive in lockstep: the n-th wait is drawn from [d, 2d) with d = 100 ms ·
/// 2^(n-1), d capped at 7.5 s, so every wait lies within [100 ms, 15 s). backon's
/// exponential backoff adds up to one more d as jitter, hence the halved bounds.
fn reconnect_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(RECONNECT_MIN / 2)
        .with_max_delay(RECONNECT_CAP / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The first wait's ceiling and every wait's ceiling.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_CAP: Duration = Duration::from_secs(15);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn given_failures_when_backing_off_then_waits_grow_to_the_cap_with_jitter_and_reset() {
        let mut b = reconnect_backoff();
        let waits: Vec<Duration> = (0..12).map(|_| b.next().unwrap()).collect();
        assert!(waits[0] >= RECONNECT_MIN / 2 && waits[0] < RECONNECT_MIN, "{waits:?}");
        assert!(waits[3] >= Duration::from_millis(800) && waits[3] < Duration::from_millis(1600));
        assert!(waits.iter().all(|w| *w < RECONNECT_CAP), "{waits:?}");
        assert!(waits[11] >= RECONNECT_CAP / 2, "{waits:?}");
        // Jittered: twelve draws are not all exactly the lower bound of their step.
        assert!(waits
            .iter()
            .enumerate()
            .any(|(i, w)| *w != (RECONNECT_MIN / 2 * (1 << i)).min(RECONNECT_CAP / 2)));
        let mut fresh = reconnect_backoff();
        assert!(fresh.next().unwrap() < RECONNECT_MIN);
    }

    #[test]
    fn given_urls_when_adding_the_connection_settings_then_existing_settings_win() {
        assert_eq!(
            with_defaults("amqp://h:5672/%2f", 30),
            "amqp://h:5672/%2f?heartbeat=30&frame_max=16384"
        );
        assert_eq!(
            with_defaults("amqp://h/?frame_max=8192", 30),
            "amqp://h/?frame_max=8192&heartbeat=30"
        );
        assert_eq!(
            with_defaults("amqp://h/?heartbeat=5", 30),
            "amqp://h/?heartbeat=5&frame_max=16384"
        );
        // A password that merely contains the words is not a setting.
        assert_eq!(
            with_defaults("amqp://u:heartbeat=1@h/", 30),
            "amqp://u:heartbeat=1@h/?heartbeat=30&frame_max=16384"
        );
        let parsed: lapin::uri::AMQPUri = with_defaults("amqp://h/", 30).parse().unwrap();
        assert_eq!(parsed.query.frame_max, Some(FRAME_MAX));
    }
}
