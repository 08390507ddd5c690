//! One delivery: decode, serve, ack, reply — with one tracing span and one log line.

use super::inbox::{Inbox, Ticket};
use crate::engine::{Ask, Engine, EngineError, Job, Served};
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::metrics;
use crate::wire::{self, ActionKind, Policy, Properties, Reply, Request};
use dms_journal::{Outcome, RequestKey, TargetId};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel};
use std::time::{Duration, Instant};
use tracing::field::Empty;
use tracing::Instrument;

/// Serve one delivery. `Err` only for a broken journal (the delivery is requeued).
pub(super) async fn handle<C: Credentials, P: Processes, M: Mounts>(
    engine: &Engine<C, P, M>,
    policy: &Policy,
    inbox: &Inbox,
    channel: &Channel,
    delivery: Delivery,
) -> Result<(), EngineError> {
    let props = properties(&delivery.properties);
    let started = Instant::now();
    let span = request_span();
    let request = match wire::parse(&delivery.data, &props, policy) {
        Ok(request) => request,
        Err(rejected) => {
            describe(&span, rejected.target.as_ref(), rejected.key.as_ref(), rejected.action);
            async {
                let reason = rejected.error_msg();
                let verb = rejected.action.map_or("Request", ActionKind::verb);
                let subject = rejected
                    .target
                    .as_ref()
                    .map(|t| format!(" for target {t}"))
                    .unwrap_or_default();
                tracing::warn!(
                    outcome = %"refused",
                    elapsed_ms = millis(started),
                    "{verb} failed{subject}: {reason} (refused before anything ran)"
                );
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
    let kind = request.action.kind();
    describe(&span, Some(&request.target), request.key.as_ref(), Some(kind));
    let done = Done { kind, started };
    async {
        tracing::debug!("delivered");
        if inbox.is_parked(request.key.as_ref()) {
            tracing::info!("already parked; the parked request answers it, once");
            ack(&delivery).await;
            return Ok(());
        }
        if inbox.resumed_redelivery(request.key.as_ref(), delivery.redelivered) {
            tracing::info!("a redelivery of a request resumed at this start; it was answered once");
            ack(&delivery).await;
            return Ok(());
        }
        let job = job_of(&request);
        let mut serving = std::pin::pin!(engine.serve(&job));
        // Answered in time (most requests): no inbox write.
        if let Ok(result) = tokio::time::timeout(inbox.park_after(), &mut serving).await {
            return held(channel, &delivery, &props, &request, done, result).await;
        }
        let ticket = match inbox.park(engine, &request, props.correlation_id.as_deref()).await {
            Ok(Some(ticket)) => ticket,
            Ok(None) => {
                return held(channel, &delivery, &props, &request, done, serving.await).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot park the request; it keeps its delivery");
                return held(channel, &delivery, &props, &request, done, serving.await).await;
            }
        };
        tracing::info!(
            "still waiting after {} ms: parked in the journal's inbox, delivery acked",
            millis(started)
        );
        ack(&delivery).await;
        crate::failpoint::hit("park", "acked");
        // A journal failure leaves the entry: the request is resumed at the next start.
        let served = serving.await?;
        let reply = done.record(&request.target, &served.outcome);
        inbox.answer(engine, ticket, &reply).await?;
        served.finish().await
    }
    .instrument(span)
    .await
}

/// The engine's job for a decoded request (the transport keeps `reply_to`).
fn job_of(request: &Request) -> Job {
    Job {
        key: request.key.clone(),
        target: request.target.clone(),
        ask: match &request.action {
            wire::Action::Mount(spec) => Ask::Mount(spec.clone()),
            wire::Action::Unmount { mount_path } => Ask::Unmount { mount_path: mount_path.clone() },
        },
        token: request.token.clone(),
    }
}

/// Serve a request the last process parked and did not answer (see [`Inbox::resume`]).
pub(super) async fn resumed<C: Credentials, P: Processes, M: Mounts>(
    engine: &Engine<C, P, M>,
    inbox: &Inbox,
    ticket: Ticket,
    job: Job,
) -> Result<(), EngineError> {
    let kind = match job.ask {
        Ask::Mount(_) => ActionKind::Mount,
        Ask::Unmount { .. } => ActionKind::Unmount,
    };
    let span = request_span();
    describe(&span, Some(&job.target), job.key.as_ref(), Some(kind));
    let done = Done { kind, started: Instant::now() };
    async {
        tracing::info!("resuming a request parked before the restart");
        let outcome = engine.handle(&job).await?;
        let reply = done.record(&job.target, &outcome);
        inbox.answer(engine, ticket, &reply).await
    }
    .instrument(span)
    .await
}

/// What is known when a request is over: for its log line and metrics.
#[derive(Debug, Clone, Copy)]
struct Done {
    kind: ActionKind,
    started: Instant,
}

impl Done {
    /// The one log line and the metrics of an outcome; its reply. Counted before the reply,
    /// so a requester that has its answer sees it counted.
    fn record(self, target: &TargetId, outcome: &Outcome) -> Reply {
        let reply = Reply::from_outcome(outcome);
        log_outcome(self.kind, target, outcome, &reply, self.started);
        let status = match outcome.is_success() {
            true => metrics::Outcome::Success,
            false => metrics::Outcome::Error,
        };
        let action = match self.kind {
            ActionKind::Mount => metrics::Action::Mount,
            ActionKind::Unmount => metrics::Action::Unmount,
        };
        metrics::global().request(action, status, self.started.elapsed());
        reply
    }
}

/// Finish a request that kept its delivery: reply and ack, or (the journal failed) requeue;
/// then the rest of its run (what follows the answer).
async fn held<C: Credentials, P: Processes, M: Mounts>(
    channel: &Channel,
    delivery: &Delivery,
    props: &Properties,
    request: &Request,
    done: Done,
    result: Result<Served<'_, C, P, M>, EngineError>,
) -> Result<(), EngineError> {
    match result {
        Ok(served) => {
            let reply = done.record(&request.target, &served.outcome);
            reply_and_ack(channel, delivery, request.reply_to.as_deref(), props, &reply).await;
            let took_us = done.started.elapsed().as_micros() as u64;
            tracing::debug!(took_us, "acked and replied {took_us} µs after the delivery");
            served.finish().await
        }
        Err(e) => {
            let requeue = BasicNackOptions { requeue: true, ..Default::default() };
            let _ = tokio::time::timeout(BROKER_DEADLINE, delivery.nack(requeue)).await;
            Err(e)
        }
    }
}

/// One span per request; its fields are the journal fields TARGET_ID, REQUEST_KEY, ACTION
/// and HELPER_PID (recorded by the engine once a helper is known).
fn request_span() -> tracing::Span {
    tracing::info_span!(
        "request",
        target_id = Empty,
        request_key = Empty,
        action = Empty,
        helper_pid = Empty
    )
}

/// Fill in the request span's fields as far as the request showed them.
fn describe(
    span: &tracing::Span,
    target: Option<&TargetId>,
    key: Option<&RequestKey>,
    action: Option<ActionKind>,
) {
    if let Some(target) = target {
        span.record("target_id", tracing::field::display(target));
    }
    if let Some(key) = key {
        span.record("request_key", tracing::field::display(key));
    }
    if let Some(action) = action {
        span.record("action", tracing::field::display(action.as_str()));
    }
}

/// The one line per outcome. A failure starts with `Mount failed` / `Unmount failed`, the
/// words the seed's runbooks grep for (`journalctl -u ... | grep -A 10 "Mount failed"`).
fn log_outcome(
    kind: ActionKind,
    target: &TargetId,
    outcome: &Outcome,
    reply: &Reply,
    started: Instant,
) {
    let (verb, elapsed_ms) = (kind.verb(), millis(started));
    let text = reply.error_msg.as_deref().or(reply.success_msg.as_deref()).unwrap_or_default();
    let name = outcome.name();
    if outcome.is_success() {
        tracing::info!(
            outcome = %name,
            elapsed_ms,
            "{verb} done for target {target}: {text} (after {elapsed_ms} ms)"
        );
    } else {
        tracing::error!(
            outcome = %name,
            elapsed_ms,
            "{verb} failed for target {target}: {text} (after {elapsed_ms} ms)"
        );
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn properties(p: &BasicProperties) -> Properties {
    let text = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    Properties {
        correlation_id: text(p.correlation_id()),
        message_id: text(p.message_id()),
        reply_to: text(p.reply_to()),
    }
}

/// How long an ack, a nack or a reply's publish and confirm may take. A broker node that
/// goes down under a request can leave lapin's futures pending until a heartbeat notices,
/// or (seen in a rolling restart of a cluster) for good, holding the request's target and
/// every redelivery of it. Past this a delivery is given up on: not acked, it comes back
/// and is answered from the journal; a reply not confirmed is the requester's retry's to
/// get, answered from the journal too.
const BROKER_DEADLINE: Duration = Duration::from_secs(10);

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
    if !ack(delivery).await {
        return;
    }
    crate::failpoint::hit("reply", "acked");
    let Some(reply_to) = reply_to else { return };
    let correlation_id = props.correlation_id.as_deref();
    publish(channel, Publication { reply_to, correlation_id, reply }).await;
}

/// False when the ack did not reach the broker: the delivery comes back then and is
/// answered from the journal (or, parked, by the parked request), not twice now.
async fn ack(delivery: &Delivery) -> bool {
    match tokio::time::timeout(BROKER_DEADLINE, delivery.ack(BasicAckOptions::default())).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot ack; the delivery will come back and be answered from the journal");
            false
        }
        Err(_) => {
            let secs = BROKER_DEADLINE.as_secs();
            tracing::warn!("the broker did not take the ack within {secs} s; the delivery will come back and be answered from the journal");
            false
        }
    }
}

/// A reply on its way to the requester's queue.
#[derive(Debug, Clone, Copy)]
pub(super) struct Publication<'a> {
    pub reply_to: &'a str,
    pub correlation_id: Option<&'a str>,
    pub reply: &'a Reply,
}

/// Publish a reply and wait for the broker's confirm. A lost reply is logged; the
/// requester's retry gets the journaled answer.
pub(super) async fn publish(channel: &Channel, p: Publication<'_>) {
    let mut out = BasicProperties::default().with_content_type("application/json".into());
    if let Some(id) = p.correlation_id {
        out = out.with_correlation_id(id.into());
    }
    let body = p.reply.to_json();
    let publish = async {
        let options = BasicPublishOptions::default();
        match channel
            .basic_publish("".into(), p.reply_to.into(), options, body.as_bytes(), out)
            .await
        {
            Ok(confirm) => confirm.await.map(|c| !c.is_nack()),
            Err(e) => Err(e),
        }
    };
    match tokio::time::timeout(BROKER_DEADLINE, publish).await {
        Ok(Ok(true)) => crate::failpoint::hit("reply", "sent"),
        Ok(Ok(false)) => {
            tracing::warn!("the broker refused the reply; the requester will time out")
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot publish the reply; the requester will time out")
        }
        Err(_) => tracing::warn!(
            "the broker did not confirm the reply within {} s; the requester's retry is answered from the journal",
            BROKER_DEADLINE.as_secs()
        ),
    }
}
