//! Parking: a request that waits gives its AMQP delivery back.
//!
//! The broker lends the daemon `prefetch` deliveries at a time. A request waiting for a
//! busy or hung target would keep its delivery for the whole wait, and a client retrying
//! against one hung target fills them all: healthy targets then get no answer at all. So a
//! keyed request not answered within `park_after` (0.5 s by default) is parked: written to the journal's
//! inbox (durably), its delivery acked, and answered from the same task when its turn
//! comes, on whatever channel is current then. The inbox survives a crash: at start-up
//! every entry is resumed (see `dms_journal::store::inbox` for the order of removal and
//! reply that keeps at most one reply per request).
//!
//! A parked request's keystone token is never in the inbox (nor anywhere on disk): it is
//! kept in the kernel keyring ([`crate::exec::keyring`]), so a request resumed after a
//! process crash still has it; after a reboot it has none, and one that still has to fetch
//! credentials fails and asks to be sent again.
//!
//! Unkeyed requests are never parked: with no key, a resumed one could not be told apart
//! from its own earlier outcome, so they keep their delivery (a redelivery is the only way
//! to answer them after a crash).

use super::delivery::{publish, Publication};
use crate::engine::{Ask, Engine, EngineError, Job};
use crate::exec::keyring::TokenKeep;
use crate::exec::ports::{Credentials, Mounts, Processes};
use crate::wire::{Action, Reply, Request};
use dms_journal::store::{InboxEntry, Journal, ParkId, Parked, ParkedAction};
use dms_journal::RequestKey;
use lapin::Channel;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// At most this many requests are parked at once; beyond it a waiting request keeps its
/// delivery (the broker's prefetch is the bound then), so a flood cannot grow the journal
/// without limit.
const MAX_PARKED: usize = 4096;

/// The parked requests of this process, and the channel their replies go out on.
pub(super) struct Inbox {
    parked: Mutex<Keys>,
    /// Keys of the entries resumed at this start. A process killed after its inbox write was
    /// durable but before its ack left both the entry and the delivery: the broker
    /// redelivers that same send, and the resumed request has answered it (or will).
    resumed: Mutex<HashSet<RequestKey>>,
    channel: watch::Receiver<Option<Channel>>,
    /// How long a request may hold its delivery before it is parked: by default long enough
    /// that a request answered at once (most are) costs no inbox write, short enough that a
    /// backlog frees the prefetch window within a second.
    park_after: Duration,
    tokens: Tokens,
}

/// Where parked requests' tokens are kept, and the journal whose inbox ids name them.
pub(super) struct Tokens {
    pub(super) keep: Arc<dyn TokenKeep>,
    /// [`Journal::id`]: inbox ids are this journal's.
    pub(super) journal: String,
}

impl Tokens {
    fn keep(&self, key: &RequestKey, token: &secrecy::SecretString, request: &Request) {
        if let Err(error) = self.keep.keep(&self.journal, key.as_str(), token) {
            tracing::warn!(
                target_id = %request.target, %error,
                "parked without its keystone token kept: if the daemon restarts before it is \
                 served, it fails and the client must send it again"
            );
        }
    }

    /// The request is answered (or was not parked after all): its token is not needed.
    fn forget(&self, key: &RequestKey) {
        self.keep.forget(&self.journal, key.as_str());
    }

    /// The kept token of a resumed request that had one.
    fn find(&self, parked: &Parked) -> Option<secrecy::SecretString> {
        let found = self.keep.find(&self.journal, parked.key.as_str());
        let reason = match found {
            Ok(Some(token)) => return Some(token),
            Ok(None) => "it is not in the kernel keyring (a reboot, or it expired)".to_owned(),
            Err(error) => error.to_string(),
        };
        tracing::warn!(
            target_id = %parked.target,
            request_key = %parked.key,
            "resuming a parked request without its keystone token ({reason}): if it still has \
             to fetch credentials, it fails and the client must send it again"
        );
        None
    }
}

/// The keys of the parked requests, and their count as status and metrics read it.
struct Keys {
    keys: HashSet<RequestKey>,
    count: Arc<AtomicUsize>,
}

impl Keys {
    fn insert(&mut self, key: RequestKey) -> bool {
        let new = self.keys.insert(key);
        self.count.store(self.keys.len(), Ordering::Relaxed);
        new
    }

    fn remove(&mut self, key: &RequestKey) {
        self.keys.remove(key);
        self.count.store(self.keys.len(), Ordering::Relaxed);
    }
}

/// A parked request's handle: remove it from the inbox just before its reply goes out.
#[derive(Debug)]
pub(super) struct Ticket {
    id: ParkId,
    key: RequestKey,
    reply_to: Option<String>,
    correlation_id: Option<String>,
}

impl Inbox {
    pub(super) fn new(
        channel: watch::Receiver<Option<Channel>>,
        count: Arc<AtomicUsize>,
        park_after: Duration,
        tokens: Tokens,
    ) -> Self {
        let parked = Mutex::new(Keys { keys: HashSet::new(), count });
        Self { parked, resumed: Mutex::new(HashSet::new()), channel, park_after, tokens }
    }

    pub(super) fn park_after(&self) -> Duration {
        self.park_after
    }

    /// A delivery for a request that is parked already (a client resending it, or the
    /// redelivery of one whose ack was lost): the parked one answers it, once.
    pub(super) fn is_parked(&self, key: Option<&RequestKey>) -> bool {
        key.is_some_and(|key| lock(&self.parked).keys.contains(key))
    }

    /// A redelivery of a request this start resumed from the inbox: the same send as the
    /// parked one (its ack was lost with the process that parked it), answered by the
    /// resumed request, so not again. A client's new send of the key is no redelivery and is
    /// answered (from the journal).
    pub(super) fn resumed_redelivery(&self, key: Option<&RequestKey>, redelivered: bool) -> bool {
        redelivered && key.is_some_and(|key| lock(&self.resumed).contains(key))
    }

    /// Write `request` to the inbox durably. `None` when it is not parked (no key, or the
    /// inbox is full): it keeps its delivery.
    pub(super) async fn park<C, P, M>(
        &self,
        engine: &Engine<C, P, M>,
        request: &Request,
        correlation_id: Option<&str>,
    ) -> Result<Option<Ticket>, EngineError>
    where
        C: Credentials,
        P: Processes,
        M: Mounts,
    {
        let Some(key) = request.key.clone() else { return Ok(None) };
        {
            let mut parked = lock(&self.parked);
            if parked.keys.len() >= MAX_PARKED || !parked.insert(key.clone()) {
                return Ok(None);
            }
        }
        let entry = Parked {
            key: key.clone(),
            target: request.target.clone(),
            action: match &request.action {
                Action::Mount(spec) => ParkedAction::Mount(spec.clone()),
                Action::Unmount { mount_path } => {
                    ParkedAction::Unmount { mount_path: mount_path.clone() }
                }
            },
            reply_to: request.reply_to.clone(),
            correlation_id: correlation_id.map(str::to_owned),
            had_token: request.token.is_some(),
            parked_at: engine.clock().now,
        };
        let (reply_to, correlation_id) = (entry.reply_to.clone(), entry.correlation_id.clone());
        // Kept before the entry is durable: a crash in between leaves a token without its
        // request (forgotten at the next start), never a parked request without its token.
        if let Some(token) = &request.token {
            self.tokens.keep(&key, token, request);
        }
        let journal = Arc::clone(engine.journal());
        let parked = tokio::task::spawn_blocking(move || journal.park(&entry)).await;
        match parked {
            Ok(Ok(id)) => Ok(Some(Ticket { id, key, reply_to, correlation_id })),
            Ok(Err(e)) => {
                self.tokens.forget(&key);
                lock(&self.parked).remove(&key);
                Err(e.into())
            }
            Err(_) => {
                self.tokens.forget(&key);
                lock(&self.parked).remove(&key);
                Err(EngineError::Closed)
            }
        }
    }

    /// Answer a parked request: wait for a broker session, remove the entry durably, then
    /// publish. An entry that cannot be removed stays (it is answered from the journal at
    /// the next start) and its reply is not sent now: never two replies.
    pub(super) async fn answer<C, P, M>(
        &self,
        engine: &Engine<C, P, M>,
        ticket: Ticket,
        reply: &Reply,
    ) -> Result<(), EngineError>
    where
        C: Credentials,
        P: Processes,
        M: Mounts,
    {
        let mut current = self.channel.clone();
        let channel = match current.wait_for(Option::is_some).await {
            Ok(channel) => channel.clone(),
            // The transport is gone (shutting down): the entry stays for the next start.
            Err(_) => return Err(EngineError::Closed),
        };
        unpark(engine.journal(), ticket.id).await?;
        self.tokens.forget(&ticket.key);
        lock(&self.parked).remove(&ticket.key);
        crate::failpoint::hit("reply", "unparked");
        if let (Some(channel), Some(reply_to)) = (channel, ticket.reply_to.as_deref()) {
            let correlation_id = ticket.correlation_id.as_deref();
            publish(&channel, Publication { reply_to, correlation_id, reply }).await;
        }
        Ok(())
    }

    /// The inbox as the last process left it: requests to serve again, each already
    /// marked parked so a resend waits for it instead of running twice. Unreadable entries
    /// are reported and removed (their requests cannot be answered).
    pub(super) async fn resume(
        &self,
        journal: &Arc<Journal>,
    ) -> Result<Vec<(Ticket, Job)>, EngineError> {
        let reader = Arc::clone(journal);
        let entries = tokio::task::spawn_blocking(move || reader.inbox())
            .await
            .map_err(|_| EngineError::Closed)??;
        let mut out = Vec::new();
        let parked: Vec<&str> = entries
            .iter()
            .filter_map(|e| match e {
                InboxEntry::Parked(_, parked) => Some(parked.key.as_str()),
                _ => None,
            })
            .collect();
        self.tokens.keep.forget_all_but(&self.tokens.journal, &parked);
        for entry in entries {
            match entry {
                InboxEntry::Parked(id, parked) => {
                    lock(&self.parked).insert(parked.key.clone());
                    lock(&self.resumed).insert(parked.key.clone());
                    let token = parked.had_token.then(|| self.tokens.find(&parked)).flatten();
                    let ticket = Ticket {
                        id,
                        key: parked.key.clone(),
                        reply_to: parked.reply_to.clone(),
                        correlation_id: parked.correlation_id.clone(),
                    };
                    out.push((ticket, job_of(parked, token)));
                }
                InboxEntry::Unreadable(id, error) => {
                    tracing::error!(
                        inbox_id = id.0,
                        "a parked request cannot be read ({error}); it is removed unanswered"
                    );
                    unpark(journal, id).await?;
                }
                InboxEntry::ForeignKey(raw) => {
                    tracing::error!(
                        key = %String::from_utf8_lossy(&raw),
                        "the inbox holds a key that names no parked request; it is removed"
                    );
                    let journal = Arc::clone(journal);
                    tokio::task::spawn_blocking(move || journal.discard_inbox_key(&raw))
                        .await
                        .map_err(|_| EngineError::Closed)??;
                }
            }
        }
        Ok(out)
    }
}

/// A parked request as the engine serves it (its reply goes by the ticket), with the token
/// kept for it, if any: without one, a resumed S3 mount that still has to fetch
/// credentials fails with that reason.
fn job_of(parked: Parked, token: Option<secrecy::SecretString>) -> Job {
    Job {
        key: Some(parked.key),
        target: parked.target,
        ask: match parked.action {
            ParkedAction::Mount(spec) => Ask::Mount(spec),
            ParkedAction::Unmount { mount_path } => Ask::Unmount { mount_path },
        },
        token,
    }
}

async fn unpark(journal: &Arc<Journal>, id: ParkId) -> Result<(), EngineError> {
    let journal = Arc::clone(journal);
    tokio::task::spawn_blocking(move || journal.unpark(id))
        .await
        .map_err(|_| EngineError::Closed)??;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
