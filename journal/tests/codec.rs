//! The record format, pinned.
//!
//! * Golden bytes: a fixed set of records (every `Event`, `TargetKind`, `FailureClass` and
//!   `Outcome` variant) and snapshots (every `Phase`, `MountStep`, `UnmountStep` and `Action`)
//!   is encoded and compared with the files in `tests/golden/`. Any change to the bytes fails
//!   here: it needs a new `SCHEMA_VERSION` and a migration, not a silent rewrite. To change
//!   the golden files deliberately, run
//!   `DMS_BLESS=1 cargo test -p dms-journal --test codec golden` and commit the diff
//!   (see `tests/golden/README.md`). Without `DMS_BLESS=1` nothing is ever written.
//! * Damage: every single-bit flip, every truncation and every extension of a golden value
//!   is refused, by both decoders; values of the wrong kind are refused.
//! * Limits: an over-limit declared length, or a payload whose inner lengths lie, is refused
//!   without a large allocation (measured with a counting allocator).
//! * Properties: arbitrary bytes never panic a decoder; arbitrary records and snapshots
//!   round-trip; any single-byte change of an encoded record is refused.

#![allow(clippy::unwrap_used)]

#[path = "codec/damage.rs"]
mod damage;
#[path = "codec/golden.rs"]
mod golden;
#[path = "codec/limits.rs"]
mod limits;
mod strategies;
#[path = "codec/values.rs"]
mod values;

use damage::sealed;
use dms_journal::codec::{
    decode_record, decode_snapshot, encode_record, encode_snapshot, Kind, HEADER_LEN,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_record(&bytes);
        let _ = decode_snapshot(&bytes);
    }

    /// Arbitrary payloads inside a well-formed envelope reach bincode: still no panic, and
    /// whatever decodes re-encodes to a value that decodes to itself.
    #[test]
    fn arbitrary_payloads_never_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        snapshot in any::<bool>(),
    ) {
        if snapshot {
            if let Ok(state) = decode_snapshot(&sealed(Kind::Snapshot, &payload)) {
                let again = encode_snapshot(&state).unwrap();
                prop_assert_eq!(decode_snapshot(&again).unwrap(), state);
            }
        } else if let Ok(record) = decode_record(&sealed(Kind::Record, &payload)) {
            // Records have one encoding: the bytes that decoded are the bytes it encodes to.
            prop_assert_eq!(encode_record(&record).unwrap(), sealed(Kind::Record, &payload));
        }
    }

    #[test]
    fn records_round_trip(record in strategies::record()) {
        let bytes = encode_record(&record).unwrap();
        prop_assert_eq!(&bytes[8..12], &((bytes.len() - HEADER_LEN) as u32).to_le_bytes());
        prop_assert_eq!(decode_record(&bytes).unwrap(), record.clone());
        prop_assert_eq!(encode_record(&record).unwrap(), bytes, "encoding is deterministic");
    }

    #[test]
    fn snapshots_round_trip(state in strategies::target_state()) {
        let bytes = encode_snapshot(&state).unwrap();
        prop_assert_eq!(decode_snapshot(&bytes).unwrap(), state);
    }

    /// CRC-32 detects every burst of up to 32 bits, so any change of one byte is refused.
    #[test]
    fn any_changed_byte_of_a_record_is_refused(
        record in strategies::record(),
        position in any::<proptest::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut bytes = encode_record(&record).unwrap();
        let i = position.index(bytes.len());
        bytes[i] ^= xor;
        prop_assert!(decode_record(&bytes).is_err());
        prop_assert!(decode_snapshot(&bytes).is_err());
    }
}
