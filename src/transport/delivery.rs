//! One delivery: decode, serve, ack, reply — with one tracing span and one log line.

use crate::engine::ports::{Credentials, Mounts, Processes};
use crate::engine::{Engine, EngineError};
use crate::metrics;
use crate::wire::{self, Policy, Properties, Reply};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel};
use std::time::Instant;
use tracing::Instrument;

/// Serve one delivery. `Err` only for a broken journal (the delivery is requeued).
pub(super) async fn handle<C: Credentials, P: Processes, M: Mounts>(
    engine: &Engine<C, P, M>,
    policy: &Policy,
    channel: &Channel,
    delivery: Delivery,
) -> Result<(), EngineError> {
    let props = properties(&delivery.properties);
    let started = Instant::now();
    let request = match wire::parse(&delivery.data, &props, policy) {
        Ok(request) => request,
        Err(rejected) => {
            let span =
                tracing::info_span!("request", key = ?rejected.key, target = ?rejected.target);
            async {
                tracing::warn!(error = %rejected.error_msg(), "request refused");
                // Counted before the reply, so a requester that has its answer sees it counted.
                metrics::global().request(
                    metrics::Action::Invalid,
                    metrics::Outcome::Error,
                    started.elapsed(),
                );
                reply_and_ack(
                    channel,
                    &delivery,
                    rejected.reply_to.as_deref(),
                    &props,
                    &rejected.reply(),
                )
                .await;
            }
            .instrument(span)
            .await;
            return Ok(());
        }
    };
    let metric = match &request.action {
        wire::Action::Mount(_) => metrics::Action::Mount,
        wire::Action::Unmount { .. } => metrics::Action::Unmount,
    };
    let action = metric.label();
    let key = request.key.as_ref().map(|k| k.to_string()).unwrap_or_default();
    let span = tracing::info_span!("request", key = %key, target = %request.target, action);
    async {
        match engine.handle(&request).await {
            Ok(outcome) => {
                let reply = Reply::from_outcome(&outcome);
                if outcome.is_success() {
                    tracing::info!(outcome = %outcome, elapsed_ms = started.elapsed().as_millis() as u64, "request served");
                } else {
                    tracing::warn!(outcome = %outcome, elapsed_ms = started.elapsed().as_millis() as u64, "request failed");
                }
                let status = match outcome.is_success() {
                    true => metrics::Outcome::Success,
                    false => metrics::Outcome::Error,
                };
                metrics::global().request(metric, status, started.elapsed());
                reply_and_ack(channel, &delivery, request.reply_to.as_deref(), &props, &reply).await;
                Ok(())
            }
            Err(e) => {
                let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                Err(e)
            }
        }
    }
    .instrument(span)
    .await
}

fn properties(p: &BasicProperties) -> Properties {
    let text = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    Properties {
        correlation_id: text(p.correlation_id()),
        message_id: text(p.message_id()),
        reply_to: text(p.reply_to()),
    }
}

/// Ack, then publish the reply (if there is anyone to reply to) and wait for the broker's
/// confirm. The order gives at most one reply per request: the outcome is journaled before
/// this runs, so a delivery that comes back (a crash or a lost connection before the ack)
/// was never answered and is answered now from the journal; once acked it never comes back.
/// The price is the window between ack and publish: a crash there loses the reply, and the
/// requester's retry gets the journaled answer.
async fn reply_and_ack(
    channel: &Channel,
    delivery: &Delivery,
    reply_to: Option<&str>,
    props: &Properties,
    reply: &Reply,
) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        // Not acked: it comes back and is answered from the journal then, not twice now.
        tracing::warn!(error = %e, "cannot ack; the request will be redelivered and answered from the journal");
        return;
    }
    crate::failpoint::hit("reply", "acked");
    let Some(reply_to) = reply_to else { return };
    let mut out = BasicProperties::default().with_content_type("application/json".into());
    if let Some(id) = &props.correlation_id {
        out = out.with_correlation_id(id.as_str().into());
    }
    let body = reply.to_json();
    let published = match channel
        .basic_publish(
            "".into(),
            reply_to.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            out,
        )
        .await
    {
        Ok(confirm) => confirm.await.map(|c| !c.is_nack()),
        Err(e) => Err(e),
    };
    match published {
        Ok(true) => crate::failpoint::hit("reply", "sent"),
        Ok(false) => tracing::warn!("the broker refused the reply; the requester will time out"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot publish the reply; the requester will time out")
        }
    }
}
