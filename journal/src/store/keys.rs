//! Key layout of the one sled tree. Everything lives in one tree so that a `Batch` (one
//! append: records plus their request-index entries) is atomic.
//!
//! ```text
//! r <target> 0x00 <seq u64 BE>  → record envelope          (history, seq order per target)
//! k <request key>               → target id bytes          (request index)
//! s <target>                    → <seq u64 BE> <envelope>  (snapshot covering seq ≤ that)
//! q <target> 0x00 <seq> <r|s>   → the bytes as they were   (set aside: damaged, or after
//!                                                           damage; see `Journal::append`)
//! m seal                        → the seal                 (see `seal`: written with every
//!                                                           batch)
//! a <unix ms BE>                → text                     (a loss accepted by an operator)
//! w <id u64 BE>                 → JSON                     (a parked request: `inbox`)
//! ```
//!
//! Target ids are `[A-Za-z0-9._-]`, so 0x00 cannot occur inside one and sorts before every
//! byte that can: a prefix scan of `r<target>0x00` yields exactly that target's records, in
//! seq order, and targets never interleave in a scan of `r`. Big-endian seqs sort
//! numerically as bytes.

use super::Seq;
use crate::ids::{RequestKey, TargetId};

pub(super) const RECORD: u8 = b'r';
pub(super) const REQUEST: u8 = b'k';
pub(super) const SNAPSHOT: u8 = b's';
pub(super) const SET_ASIDE: u8 = b'q';
const SEP: u8 = 0;
const SEQ_LEN: usize = 8;

pub(super) fn record(target: &TargetId, seq: Seq) -> Vec<u8> {
    let mut key = record_prefix(target);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn record_prefix(target: &TargetId) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + target.as_str().len() + SEQ_LEN);
    key.push(RECORD);
    key.extend_from_slice(target.as_str().as_bytes());
    key.push(SEP);
    key
}

/// The first key past all of `target`'s records.
pub(super) fn record_prefix_end(target: &TargetId) -> Vec<u8> {
    let mut key = record_prefix(target);
    if let Some(sep) = key.last_mut() {
        *sep = SEP + 1;
    }
    key
}

pub(super) fn request(key: &RequestKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.as_str().len());
    out.push(REQUEST);
    out.extend_from_slice(key.as_str().as_bytes());
    out
}

pub(super) fn snapshot(target: &TargetId) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + target.as_str().len());
    key.push(SNAPSHOT);
    key.extend_from_slice(target.as_str().as_bytes());
    key
}

/// A key in the `r` space that does not parse. Only a damaged or hand-edited database has
/// one; the text is for a [`super::Problem`], so the target part is shown lossily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BadKey {
    pub target: String,
    pub error: String,
}

/// Where a damaged value (and whatever followed it) is kept once set aside; `what` is
/// [`RECORD`] or [`SNAPSHOT`], telling how to decode it.
pub(super) fn set_aside(target: &TargetId, seq: Seq, what: u8) -> Vec<u8> {
    let mut key = record(target, seq);
    key[0] = SET_ASIDE;
    key.push(what);
    key
}

/// `(target, seq, what)` of a set-aside key.
pub(super) fn parse_set_aside(key: &[u8]) -> Result<(TargetId, Seq, u8), BadKey> {
    let Some((&what, head)) = key.split_last() else {
        return Err(BadKey { target: String::new(), error: "empty key".to_owned() });
    };
    parse_target_seq(head.get(1..).unwrap_or_default()).map(|(target, seq)| (target, seq, what))
}

/// `(target, seq)` of a record key.
pub(super) fn parse_record(key: &[u8]) -> Result<(TargetId, Seq), BadKey> {
    parse_target_seq(key.get(1..).unwrap_or_default())
}

/// `<target> 0x00 <seq BE>`.
fn parse_target_seq(body: &[u8]) -> Result<(TargetId, Seq), BadKey> {
    let bad = |error: String| BadKey { target: lossy(body.split(|b| *b == SEP).next()), error };
    if body.len() < SEQ_LEN + 1 {
        return Err(bad(format!("key of {} bytes is too short", body.len() + 1)));
    }
    let (head, seq) = body.split_at(body.len() - SEQ_LEN);
    let Some((&SEP, target)) = head.split_last() else {
        return Err(bad("key lacks the separator before its seq".to_owned()));
    };
    let seq = seq_from(seq).ok_or_else(|| bad("key has no seq".to_owned()))?;
    Ok((parse_target(target).map_err(bad)?, seq))
}

/// The target of a snapshot key.
pub(super) fn parse_snapshot(key: &[u8]) -> Result<TargetId, BadKey> {
    let body = key.strip_prefix(&[SNAPSHOT]).unwrap_or(key);
    parse_target(body).map_err(|error| BadKey { target: lossy(Some(body)), error })
}

/// The target an index entry points to.
pub(super) fn parse_index_value(value: &[u8]) -> Result<TargetId, String> {
    parse_target(value)
}

fn parse_target(bytes: &[u8]) -> Result<TargetId, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "target id is not UTF-8".to_owned())?;
    TargetId::new(text).map_err(|e| e.to_string())
}

fn lossy(bytes: Option<&[u8]>) -> String {
    let text = String::from_utf8_lossy(bytes.unwrap_or_default());
    text.chars().map(|c| if c.is_control() { '?' } else { c }).take(TargetId::MAX_LEN).collect()
}

fn seq_from(bytes: &[u8]) -> Option<Seq> {
    <[u8; SEQ_LEN]>::try_from(bytes).ok().map(Seq::from_be_bytes)
}

/// A snapshot value: the seq it covers, then the envelope. The seq sits outside the
/// envelope so it can be read (to skip covered records) even when the envelope is damaged.
pub(super) fn snapshot_value(seq: Seq, envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEQ_LEN + envelope.len());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(envelope);
    out
}

/// `(covered seq, envelope)`; a value too short to hold a seq covers nothing.
pub(super) fn split_snapshot_value(value: &[u8]) -> (Seq, &[u8]) {
    match value.split_first_chunk::<SEQ_LEN>() {
        Some((seq, envelope)) => (Seq::from_be_bytes(*seq), envelope),
        None => (0, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str) -> TargetId {
        TargetId::new(id).expect("valid target id")
    }

    #[test]
    fn record_keys_round_trip_and_sort_by_target_then_seq() {
        let keys =
            [record(&t("a"), 2), record(&t("a"), 256), record(&t("a-b"), 1), record(&t("ab"), 0)];
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, keys, "targets must not interleave and seqs sort numerically");
        assert_eq!(parse_record(&keys[1]), Ok((t("a"), 256)));
        assert!(keys[2].starts_with(&record_prefix(&t("a-b"))));
        assert!(!keys[2].starts_with(&record_prefix(&t("a"))));
    }

    #[test]
    fn malformed_record_keys_are_refused_not_panicked_on() {
        for key in [&b""[..], b"r", b"rabc", b"ra\x01\0\0\0\0\0\0\0\x01", b"r\0\0\0\0\0\0\0\0\x01"]
        {
            assert!(parse_record(key).is_err(), "{key:?}");
        }
        let bad = parse_record(b"ra/b\0\0\0\0\0\0\0\0\x01").expect_err("slash is not allowed");
        assert_eq!(bad.target, "a/b");
        assert_eq!(parse_set_aside(&set_aside(&t("a"), 9, RECORD)), Ok((t("a"), 9, RECORD)));
        assert!(parse_set_aside(b"").is_err() && parse_set_aside(b"q").is_err());
    }

    #[test]
    fn snapshot_values_keep_their_seq_outside_the_envelope() {
        let value = snapshot_value(7, b"DMSJ...");
        assert_eq!(split_snapshot_value(&value), (7, &b"DMSJ..."[..]));
        assert_eq!(split_snapshot_value(b"short"), (0, &b"short"[..]));
        assert_eq!(parse_snapshot(&snapshot(&t("x.y"))), Ok(t("x.y")));
        assert!(parse_snapshot(b"s..").is_err());
    }
}
