//! The on-disk record format. The only module that calls bincode.
//!
//! Every value the store writes is an envelope:
//!
//! ```text
//! offset size field
//!      0    4 magic      b"DMSJ"
//!      4    2 version    u16 LE (SCHEMA_VERSION)
//!      6    1 kind       1 = record, 2 = snapshot
//!      7    1 reserved   0
//!      8    4 length     u32 LE, payload bytes
//!     12    4 crc32      u32 LE, CRC-32 (IEEE) of bytes 0..12 and of the payload
//!     16    n payload    bincode 1.x (fixed-int, little-endian) of Record or TargetState
//! ```
//!
//! Decoding checks everything before bincode sees a byte, and bincode itself runs with a
//! size limit, so arbitrary input yields an error, never a panic or a huge allocation.
//! Golden-bytes tests pin the format: changing any type in `event`, `ids` or `state` in a
//! way that changes the bytes fails them, and needs a new `SCHEMA_VERSION` plus a migration.

use crate::event::Record;
use crate::state::TargetState;
use bincode::Options;

pub const MAGIC: [u8; 4] = *b"DMSJ";
pub const SCHEMA_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 16;
/// A record is small (a path, a reason, a secret_ref); anything bigger is refused.
pub const MAX_RECORD_PAYLOAD: usize = 64 * 1024;
/// A snapshot holds a target's decided requests within the retention window.
pub const MAX_SNAPSHOT_PAYLOAD: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Record = 1,
    Snapshot = 2,
}

impl Kind {
    fn limit(self) -> usize {
        match self {
            Kind::Record => MAX_RECORD_PAYLOAD,
            Kind::Snapshot => MAX_SNAPSHOT_PAYLOAD,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("value is {len} bytes, shorter than the {HEADER_LEN}-byte envelope header")]
    Truncated { len: usize },
    #[error("bad magic {found:02x?} (expected \"DMSJ\")")]
    BadMagic { found: [u8; 4] },
    #[error("schema version {found} is not supported (this build reads {SCHEMA_VERSION})")]
    UnsupportedVersion { found: u16 },
    #[error("envelope kind {found} where {expected:?} was expected")]
    WrongKind { found: u8, expected: Kind },
    #[error("reserved header byte is {found:#04x}, not 0")]
    Reserved { found: u8 },
    #[error("payload length {declared} exceeds the limit of {limit} bytes")]
    TooLarge { declared: usize, limit: usize },
    #[error("payload is {actual} bytes but the header declares {declared} (torn write?)")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("CRC mismatch: stored {stored:08x}, computed {computed:08x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("payload does not decode: {0}")]
    Payload(String),
    #[error("snapshot payload is not the journal's own encoding of it (its request map is unsorted or names a key twice)")]
    NotCanonical,
}

fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(limit as u64)
}

pub fn encode_record(record: &Record) -> Result<Vec<u8>, CodecError> {
    encode(Kind::Record, record)
}

pub fn decode_record(bytes: &[u8]) -> Result<Record, CodecError> {
    decode(Kind::Record, bytes)
}

pub fn encode_snapshot(state: &TargetState) -> Result<Vec<u8>, CodecError> {
    encode(Kind::Snapshot, state)
}

/// Only the one encoding [`encode_snapshot`] writes is accepted: the request map sorted,
/// each key once. A map with a key twice would otherwise decode with all but the last entry
/// dropped silently (found by fuzzing `decode_record`), so anything else is damage.
pub fn decode_snapshot(bytes: &[u8]) -> Result<TargetState, CodecError> {
    let state: TargetState = decode(Kind::Snapshot, bytes)?;
    let again = encode_snapshot(&state)?;
    if again.get(HEADER_LEN..) != bytes.get(HEADER_LEN..) {
        return Err(CodecError::NotCanonical);
    }
    Ok(state)
}

fn encode<T: serde::Serialize>(kind: Kind, value: &T) -> Result<Vec<u8>, CodecError> {
    let payload =
        options(kind.limit()).serialize(value).map_err(|e| CodecError::Payload(e.to_string()))?;
    if payload.len() > kind.limit() {
        return Err(CodecError::TooLarge { declared: payload.len(), limit: kind.limit() });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc(&out[..12], &payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn decode<T: serde::de::DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::Truncated { len: bytes.len() });
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    let magic = [header[0], header[1], header[2], header[3]];
    if magic != MAGIC {
        return Err(CodecError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != SCHEMA_VERSION {
        return Err(CodecError::UnsupportedVersion { found: version });
    }
    if header[6] != kind as u8 {
        return Err(CodecError::WrongKind { found: header[6], expected: kind });
    }
    if header[7] != 0 {
        return Err(CodecError::Reserved { found: header[7] });
    }
    let declared = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if declared > kind.limit() {
        return Err(CodecError::TooLarge { declared, limit: kind.limit() });
    }
    if declared != payload.len() {
        return Err(CodecError::LengthMismatch { declared, actual: payload.len() });
    }
    let stored = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    let computed = crc(&header[..12], payload);
    if stored != computed {
        return Err(CodecError::BadCrc { stored, computed });
    }
    options(kind.limit()).deserialize(payload).map_err(|e| CodecError::Payload(e.to_string()))
}

fn crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}
