//! Steady mount/unmount traffic that rides out broker faults, and the checks a test makes
//! on it afterwards. Each client mounts and unmounts a target of its own until told to
//! stop, through a [`SturdyClient`]: like an oslo.messaging client it moves to the next
//! node of its list when its connection fails, and it resends a request that got no answer
//! (same correlation id, so the daemon's journal sees the same request) after
//! [`RESEND_AFTER`] or a lost connection. The ledger records, per correlation id, what was
//! sent and every reply; [`check_ledger`] then asserts every request was answered, only
//! ever with the one answer it should get.
#![allow(dead_code, clippy::unwrap_used)]

use super::{mounted_msg, s3_mount, unmount, unmounted_msg, uuid};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request not answered within this is sent again (the daemon answers a repeat from
/// its journal).
pub const RESEND_AFTER: Duration = Duration::from_secs(10);
/// A request not answered within this counts as unanswered (the test then fails).
pub const ANSWER_BOUND: Duration = Duration::from_secs(120);
/// Bound of one connection attempt to one node.
const CONNECT_BOUND: Duration = Duration::from_secs(5);

/// What one request went through, from the client's side.
#[derive(Debug, Clone)]
pub struct Seen {
    pub target: String,
    /// The one reply this request may get.
    pub expected: Value,
    pub sent: usize,
    pub first_sent: Instant,
    pub replies: Vec<Value>,
    pub answered: Option<Instant>,
}

pub type Ledger = Arc<Mutex<BTreeMap<String, Seen>>>;

/// One AMQP connection of a client: a channel in confirm mode and a private reply queue.
struct Session {
    conn: Connection,
    channel: Channel,
    replies: Consumer,
    reply_queue: String,
}

impl Session {
    async fn open(url: &str) -> Result<Session, lapin::Error> {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let private =
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let q = channel.queue_declare("".into(), private, FieldTable::default()).await?;
        let reply_queue = q.name().as_str().to_owned();
        let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let replies = channel
            .basic_consume(reply_queue.as_str().into(), "".into(), no_ack, FieldTable::default())
            .await?;
        Ok(Session { conn, channel, replies, reply_queue })
    }

    /// Publishes a persistent request as the Python client does; `Ok(false)`: nacked.
    async fn publish(&self, queue: &str, body: &[u8], key: &str) -> Result<bool, lapin::Error> {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_correlation_id(ShortString::from(key))
            .with_reply_to(ShortString::from(self.reply_queue.as_str()));
        let opts = BasicPublishOptions::default();
        let confirm =
            self.channel.basic_publish("".into(), queue.into(), opts, body, props).await?;
        Ok(!confirm.await?.is_nack())
    }

    /// Closes a session that failed (bounded: its peer may be gone).
    async fn discard(self) {
        let _ =
            tokio::time::timeout(CONNECT_BOUND, self.conn.close(200, "reconnecting".into())).await;
    }
}

/// A wire-format client over a list of broker URLs (see the module docs).
pub struct SturdyClient {
    urls: Vec<String>,
    next: usize,
    session: Option<Session>,
    /// How many connections it opened after its first.
    pub reconnects: usize,
    connected_once: bool,
}

impl SturdyClient {
    /// Starts with `urls[first % len]`.
    pub fn new(urls: Vec<String>, first: usize) -> SturdyClient {
        assert!(!urls.is_empty());
        SturdyClient {
            next: first % urls.len(),
            urls,
            session: None,
            reconnects: 0,
            connected_once: false,
        }
    }

    /// A live session, connecting to the nodes in turn until `deadline`.
    async fn session(&mut self, deadline: Instant) -> Option<&mut Session> {
        if self.session.as_ref().is_some_and(|s| !s.conn.status().connected()) {
            self.session = None;
        }
        while self.session.is_none() && Instant::now() < deadline {
            let url = &self.urls[self.next];
            self.next = (self.next + 1) % self.urls.len();
            match tokio::time::timeout(CONNECT_BOUND, Session::open(url)).await {
                Ok(Ok(s)) => {
                    self.reconnects += usize::from(self.connected_once);
                    self.connected_once = true;
                    self.session = Some(s);
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        self.session.as_mut()
    }

    /// Sends `body` to `queue` until a reply to it comes (`None`: not within
    /// [`ANSWER_BOUND`]). Every reply is recorded in `ledger`, late ones to this client's
    /// earlier requests too.
    pub async fn call(
        &mut self,
        queue: &str,
        target: &str,
        body: &Value,
        expected: Value,
        ledger: &Ledger,
    ) -> Option<Value> {
        let key = uuid();
        let first_sent = Instant::now();
        let seen = Seen {
            target: target.into(),
            expected,
            sent: 0,
            first_sent,
            replies: Vec::new(),
            answered: None,
        };
        ledger.lock().unwrap().insert(key.clone(), seen);
        let give_up = first_sent + ANSWER_BOUND;
        let body = body.to_string();
        while Instant::now() < give_up {
            if self.session(give_up).await.is_none() {
                break;
            }
            let mut session = self.session.take().unwrap();
            ledger.lock().unwrap().get_mut(&key).unwrap().sent += 1;
            if !matches!(session.publish(queue, body.as_bytes(), &key).await, Ok(true)) {
                session.discard().await;
                continue;
            }
            let resend = tokio::time::Instant::now() + RESEND_AFTER;
            loop {
                match tokio::time::timeout_at(resend, session.replies.next()).await {
                    Err(_) => {
                        self.session = Some(session);
                        break;
                    }
                    Ok(Some(Ok(delivery))) => {
                        let props = &delivery.properties;
                        let corr = props.correlation_id().as_ref().map(|s| s.as_str().to_owned());
                        let reply: Value = serde_json::from_slice(&delivery.data).unwrap();
                        let corr = corr.unwrap_or_default();
                        let mut ledger = ledger.lock().unwrap();
                        let seen =
                            ledger.get_mut(&corr).expect("a reply to a request this test sent");
                        seen.replies.push(reply.clone());
                        seen.answered.get_or_insert_with(Instant::now);
                        if corr == key {
                            self.session = Some(session);
                            return Some(reply);
                        }
                    }
                    Ok(_) => {
                        session.discard().await;
                        break;
                    }
                }
            }
        }
        None
    }

    /// Replies to resent requests that come late, for `wait`; then closes.
    pub async fn finish(mut self, wait: Duration, ledger: &Ledger) {
        let Some(mut session) = self.session.take() else { return };
        while let Ok(Some(Ok(d))) = tokio::time::timeout(wait, session.replies.next()).await {
            let corr = d
                .properties
                .correlation_id()
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            let reply: Value = serde_json::from_slice(&d.data).unwrap();
            ledger
                .lock()
                .unwrap()
                .get_mut(&corr)
                .expect("a reply to a request this test sent")
                .replies
                .push(reply);
        }
        let _ = session.conn.close(200, "bye".into()).await;
    }
}

/// What every client of a traffic run shares.
#[derive(Clone)]
pub struct Load {
    /// The broker URLs the clients use (client `n` starts with `urls[n % len]`).
    pub urls: Vec<String>,
    pub node: String,
    pub base: String,
    pub secret_ref: String,
    pub token: String,
    pub ledger: Ledger,
    pub stop: Arc<AtomicBool>,
    /// How long a client waits after each mount-and-unmount cycle before the next (zero:
    /// back to back). A pause keeps requests flowing through a fault window at a fraction
    /// of the CPU (every request costs the daemon, Barbican and a helper's start).
    pub pause: Duration,
}

/// Client `n`: mounts and unmounts target `<prefix>-<n>` (pausing `load.pause` after each
/// cycle) until `load.stop`, then ends
/// unmounted (unless a request went unanswered, which [`check_ledger`] reports). Returns
/// how many times it reconnected.
pub async fn client_loop(load: Load, prefix: String, n: usize) -> usize {
    let mut client = SturdyClient::new(load.urls.clone(), n);
    let target = format!("{prefix}-{n}");
    let path = format!("{}/{target}", load.base);
    let queue = format!("dms.{}", load.node);
    let mount = s3_mount(&target, &path, &load.secret_ref, &load.token);
    let unmount = unmount(&target, &path, "s3");
    while !load.stop.load(Ordering::Relaxed) {
        let mounted = client.call(&queue, &target, &mount, mounted_msg(&path), &load.ledger).await;
        if mounted.is_none() {
            break;
        }
        let unmounted =
            client.call(&queue, &target, &unmount, unmounted_msg(&path), &load.ledger).await;
        if unmounted.is_none() {
            break;
        }
        if !load.pause.is_zero() && !load.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(load.pause).await;
        }
    }
    let reconnects = client.reconnects;
    client.finish(Duration::from_secs(2), &load.ledger).await;
    reconnects
}

/// What [`check_ledger`] found, for the test's log.
#[derive(Debug)]
pub struct Summary {
    pub requests: usize,
    pub replies: usize,
    pub resends: usize,
    /// Replies beyond one per send: a classic mirror promoted while a delivery's ack was on
    /// its way hands the delivery out again, and the journal answers it again, the same.
    pub repeated: usize,
    /// The longest time from a request's first send to its first reply.
    pub worst: Duration,
    /// Requests first sent inside `window` (see [`check_ledger`]).
    pub in_window: usize,
    /// Requests first sent after `window`.
    pub after_window: usize,
}

/// Every request was answered, and every reply is the one it should get (so never two
/// different outcomes). A reply may come twice for one send (see [`Summary::repeated`]). `window`: counts the requests
/// first sent in it (the fault's) and after it, which the caller asserts are not zero.
pub fn check_ledger(ledger: &Ledger, window: (Instant, Instant), log: &str) -> Summary {
    let ledger = ledger.lock().unwrap();
    let mut s = Summary {
        requests: ledger.len(),
        replies: 0,
        resends: 0,
        repeated: 0,
        worst: Duration::ZERO,
        in_window: 0,
        after_window: 0,
    };
    for (key, seen) in ledger.iter() {
        assert!(!seen.replies.is_empty(), "request {key} was never answered: {seen:?}\n{log}");
        s.repeated += seen.replies.len().saturating_sub(seen.sent);
        for reply in &seen.replies {
            assert_eq!(reply, &seen.expected, "{key}: a different answer: {seen:?}\n{log}");
        }
        s.replies += seen.replies.len();
        s.resends += seen.sent - 1;
        s.worst = s.worst.max(seen.answered.unwrap() - seen.first_sent);
        s.in_window += usize::from(seen.first_sent >= window.0 && seen.first_sent <= window.1);
        s.after_window += usize::from(seen.first_sent > window.1);
    }
    s
}
