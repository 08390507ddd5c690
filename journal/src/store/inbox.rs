//! The inbox: requests that wait for their target's turn, made durable so their AMQP
//! deliveries can be acked meanwhile.
//!
//! A delivery held while its request waits keeps one of the broker's prefetch slots; a
//! client retrying against one hung target would fill them all and starve every other
//! target. So a request that is not answered quickly is written here (`w <id u64 BE>` in
//! the one tree, flushed before the ack) and its delivery acked; it is answered when its
//! turn comes, its entry removed (durably) just before the reply is published. A crash in
//! between resumes every entry at the next start: a request whose outcome is journaled is
//! answered from the journal, the others run then. Removing before publishing keeps at
//! most one reply per request; the window between the two loses a reply, exactly like the
//! one between ack and publish of a delivery answered in time.
//!
//! No secret is written: an entry says whether its request carried a keystone token, and a
//! resumed S3 mount without one is answered with that reason instead of running.

use super::Journal;
use crate::event::TargetSpec;
use crate::ids::{RequestKey, TargetId, Timestamp};
use crate::store::StoreError;
use serde::{Deserialize, Serialize};

const INBOX: u8 = b'w';

/// One parked request, as much of it as is needed to serve and answer it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    pub key: RequestKey,
    pub target: TargetId,
    pub action: ParkedAction,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    /// The request carried a keystone token (kept in memory only).
    pub had_token: bool,
    pub parked_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParkedAction {
    Mount(TargetSpec),
    Unmount { mount_path: String },
}

/// Where a parked request is stored; removing it is [`Journal::unpark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParkId(pub u64);

/// An entry found at start-up: parked requests in the order they were parked, and entries
/// that no longer decode (a damaged database), named so they can be reported and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxEntry {
    Parked(ParkId, Parked),
    Unreadable(ParkId, String),
    /// A key in the inbox's family that is no park id (not ours to interpret): its raw
    /// bytes, so [`Journal::discard_inbox_key`] can remove it.
    ForeignKey(Vec<u8>),
}

impl Journal {
    /// Write `parked` durably. Only after this returns may its delivery be acked.
    pub fn park(&self, parked: &Parked) -> Result<ParkId, StoreError> {
        let id = self.db.generate_id().map_err(|source| self.write_error("inbox id", source))?;
        let value = serde_json::to_vec(parked).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            what: "inbox entry".into(),
            error: e.to_string(),
        })?;
        self.db.insert(key(ParkId(id)), value).map_err(|e| self.write_error("inbox entry", e))?;
        // The journal's own group commit: shared with concurrent appenders' fsyncs.
        self.flush()?;
        Ok(ParkId(id))
    }

    /// Remove a parked request durably: once this returns it is never resumed.
    pub fn unpark(&self, id: ParkId) -> Result<(), StoreError> {
        self.db.remove(key(id)).map_err(|e| self.write_error("inbox entry", e))?;
        self.flush()
    }

    /// Remove a [`InboxEntry::ForeignKey`] durably (only keys of the inbox's family).
    pub fn discard_inbox_key(&self, raw: &[u8]) -> Result<(), StoreError> {
        if raw.first() != Some(&INBOX) {
            return Ok(());
        }
        self.db.remove(raw).map_err(|e| self.write_error("inbox entry", e))?;
        self.flush()
    }

    /// Every entry of the inbox, oldest first.
    pub fn inbox(&self) -> Result<Vec<InboxEntry>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.scan_prefix([INBOX]) {
            let (k, value) = entry.map_err(|source| StoreError::Read {
                path: self.path.clone(),
                what: "inbox".into(),
                source,
            })?;
            let id = (k.len() == 9)
                .then(|| k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes))
                .flatten();
            let Some(id) = id.map(ParkId) else {
                out.push(InboxEntry::ForeignKey(k.to_vec()));
                continue;
            };
            out.push(match serde_json::from_slice(&value) {
                Ok(parked) => InboxEntry::Parked(id, parked),
                Err(e) => InboxEntry::Unreadable(id, e.to_string()),
            });
        }
        Ok(out)
    }
}

fn key(id: ParkId) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(INBOX);
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event::TargetKind;

    fn parked(n: u32) -> Parked {
        Parked {
            key: RequestKey::new(&format!("req-{n}")).unwrap(),
            target: TargetId::new(&format!("t{n}")).unwrap(),
            action: ParkedAction::Mount(TargetSpec {
                kind: TargetKind::Nfs { export: "filer:/x".into(), options: "vers=4.1".into() },
                mount_path: format!("/var/lib/dms/mnt/t{n}"),
            }),
            reply_to: Some("amq.gen-1".into()),
            correlation_id: Some(format!("req-{n}")),
            had_token: false,
            parked_at: Timestamp(1_000 + u64::from(n)),
        }
    }

    #[test]
    fn given_parked_requests_when_reopened_then_listed_in_order_until_unparked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let ids = {
            let (journal, _) = Journal::open(&path).unwrap();
            let ids: Vec<ParkId> = (1..=3).map(|n| journal.park(&parked(n)).unwrap()).collect();
            journal.unpark(ids[1]).unwrap();
            ids
        };
        let (journal, replay) = Journal::open(&path).unwrap();
        assert!(replay.problems.is_empty(), "the inbox is not history: {:?}", replay.problems);
        assert_eq!(
            journal.inbox().unwrap(),
            [InboxEntry::Parked(ids[0], parked(1)), InboxEntry::Parked(ids[2], parked(3))]
        );
        assert!(journal.park(&parked(4)).unwrap() > ids[2], "ids only grow across opens");
    }

    #[test]
    fn given_a_damaged_entry_when_listing_then_it_is_named_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(&dir.path().join("journal")).unwrap();
        let good = journal.park(&parked(1)).unwrap();
        journal.db.insert(key(ParkId(good.0 + 1)), b"{not json".to_vec()).unwrap();
        let listed = journal.inbox().unwrap();
        assert_eq!(listed[0], InboxEntry::Parked(good, parked(1)));
        assert!(matches!(&listed[1], InboxEntry::Unreadable(id, _) if id.0 == good.0 + 1));
        journal.unpark(ParkId(good.0 + 1)).unwrap();
        assert_eq!(journal.inbox().unwrap().len(), 1);

        // A key of the family that is no park id is listed raw, and removable as such.
        let foreign = [&[INBOX][..], b"odd"].concat();
        journal.db.insert(foreign.as_slice(), b"x".to_vec()).unwrap();
        assert_eq!(journal.inbox().unwrap()[1], InboxEntry::ForeignKey(foreign.clone()));
        journal.discard_inbox_key(&foreign).unwrap();
        journal.discard_inbox_key(b"not the inbox").unwrap();
        assert_eq!(journal.inbox().unwrap(), [InboxEntry::Parked(good, parked(1))]);
    }
}
