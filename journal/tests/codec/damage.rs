//! Damaged and malformed values: every one is refused with an error.

use crate::values::*;
use dms_journal::codec::{
    decode_record, decode_snapshot, encode_record, encode_snapshot, CodecError, Kind, HEADER_LEN,
    MAGIC, MAX_RECORD_PAYLOAD, SCHEMA_VERSION,
};
use dms_journal::Event;

// ---------------------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------------------

/// Neither decoder accepts `bytes`.
pub fn assert_refused(bytes: &[u8], what: &str) {
    assert!(decode_record(bytes).is_err(), "decode_record accepted {what}");
    assert!(decode_snapshot(bytes).is_err(), "decode_snapshot accepted {what}");
}

#[test]
pub fn golden_values_round_trip() {
    for (name, record) in golden_records() {
        let bytes = encode_record(&record).unwrap();
        assert_eq!(decode_record(&bytes).unwrap(), record, "{name}");
    }
    for (name, state) in golden_snapshots() {
        let bytes = encode_snapshot(&state).unwrap();
        assert_eq!(decode_snapshot(&bytes).unwrap(), state, "{name}");
    }
}

#[test]
pub fn every_single_bit_flip_is_refused() {
    for (name, bytes) in golden_set() {
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_refused(&flipped, &format!("{name} with bit {bit} flipped"));
        }
    }
}

#[test]
pub fn every_truncation_and_extension_is_refused() {
    for (name, bytes) in golden_set() {
        for len in 0..bytes.len() {
            assert_refused(&bytes[..len], &format!("{name} truncated to {len} bytes"));
        }
        for extra in [&[0u8][..], &[0, 0, 0, 0], b"DMSJ"] {
            let longer = [&bytes[..], extra].concat();
            assert!(
                matches!(decode_as(name, &longer), Err(CodecError::LengthMismatch { .. })),
                "{name} with {} bytes appended",
                extra.len()
            );
            assert_refused(&longer, &format!("{name} with {} bytes appended", extra.len()));
        }
    }
}

/// Decode `bytes` with the decoder that matches the golden value `name`.
pub fn decode_as(name: &str, bytes: &[u8]) -> Result<(), CodecError> {
    if name.starts_with("record") {
        decode_record(bytes).map(drop)
    } else {
        decode_snapshot(bytes).map(drop)
    }
}

#[test]
pub fn short_inputs_are_truncated_errors() {
    for len in 0..HEADER_LEN {
        assert_eq!(decode_record(&vec![0; len]), Err(CodecError::Truncated { len }));
    }
}

#[test]
pub fn wrong_kind_is_refused() {
    let (_, record) = &golden_records()[0];
    let bytes = encode_record(record).unwrap();
    assert_eq!(
        decode_snapshot(&bytes),
        Err(CodecError::WrongKind { found: 1, expected: Kind::Snapshot })
    );
    let bytes = encode_snapshot(&golden_snapshots()[3].1).unwrap();
    assert_eq!(
        decode_record(&bytes),
        Err(CodecError::WrongKind { found: 2, expected: Kind::Record })
    );
}

/// A header with the given fields and a correct CRC over `payload`.
pub fn envelope(version: u16, kind: u8, declared: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&declared.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[..12]);
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A well-formed envelope (right length and CRC) around an arbitrary payload: what a bug in
/// a writer, rather than a torn write, would leave.
pub fn sealed(kind: Kind, payload: &[u8]) -> Vec<u8> {
    envelope(SCHEMA_VERSION, kind as u8, payload.len() as u32, payload)
}

#[test]
pub fn header_errors_are_specific() {
    let good = encode_record(&golden_records()[2].1).unwrap();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert_eq!(decode_record(&bad_magic), Err(CodecError::BadMagic { found: *b"XMSJ" }));

    let payload = &good[HEADER_LEN..];
    let v2 = envelope(SCHEMA_VERSION + 1, 1, payload.len() as u32, payload);
    assert_eq!(
        decode_record(&v2),
        Err(CodecError::UnsupportedVersion { found: SCHEMA_VERSION + 1 })
    );
    assert_eq!(
        decode_record(&envelope(SCHEMA_VERSION, 3, payload.len() as u32, payload)),
        Err(CodecError::WrongKind { found: 3, expected: Kind::Record })
    );
    let short = envelope(SCHEMA_VERSION, 1, payload.len() as u32 + 1, payload);
    assert_eq!(
        decode_record(&short),
        Err(CodecError::LengthMismatch { declared: payload.len() + 1, actual: payload.len() })
    );
    let mut bad_crc = good.clone();
    bad_crc[12] ^= 0xff;
    assert!(matches!(decode_record(&bad_crc), Err(CodecError::BadCrc { .. })));
}

#[test]
pub fn payloads_that_do_not_decode_are_refused() {
    let good = encode_record(&golden_records()[0].1).unwrap();
    let payload = &good[HEADER_LEN..];
    // Trailing bytes inside a well-formed envelope.
    let trailing = sealed(Kind::Record, &[payload, &[0]].concat());
    assert!(matches!(decode_record(&trailing), Err(CodecError::Payload(_))));
    // A cut payload, resealed.
    let cut = sealed(Kind::Record, &payload[..payload.len() - 1]);
    assert!(matches!(decode_record(&cut), Err(CodecError::Payload(_))));
    // The target id is validated on decode: "target-1" becomes "../get-1".
    let mut escape = payload.to_vec();
    escape[8..11].copy_from_slice(b"../");
    assert_eq!(&payload[8..16], b"target-1", "payload layout: u64 length, then the id");
    assert!(matches!(decode_record(&sealed(Kind::Record, &escape)), Err(CodecError::Payload(_))));
    // Invalid UTF-8 in a string.
    let mut not_utf8 = payload.to_vec();
    not_utf8[10] = 0xff;
    assert!(matches!(decode_record(&sealed(Kind::Record, &not_utf8)), Err(CodecError::Payload(_))));
    // An unknown Event variant: a unit variant is encoded last, as its u32 index.
    let verified = encode_record(&golden_records()[4].1).unwrap();
    let mut tag = verified[HEADER_LEN..].to_vec();
    let n = tag.len();
    assert_eq!(&tag[n - 4..], &3u32.to_le_bytes(), "Verified is variant 3, encoded last");
    tag[n - 4..].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(decode_record(&sealed(Kind::Record, &tag)), Err(CodecError::Payload(_))));
    // A bool that is neither 0 nor 1 (the last byte of Lost is `cleanup.pid_file`).
    let lost = encode_record(&golden_records()[17].1).unwrap();
    let mut bool2 = lost[HEADER_LEN..].to_vec();
    *bool2.last_mut().unwrap() = 2;
    assert!(matches!(decode_record(&sealed(Kind::Record, &bool2)), Err(CodecError::Payload(_))));
}

#[test]
pub fn encoding_refuses_oversized_records() {
    let huge = rec(Event::Cleaned { what: "x".repeat(MAX_RECORD_PAYLOAD) });
    assert!(encode_record(&huge).is_err());
    let fits = rec(Event::Cleaned { what: "x".repeat(MAX_RECORD_PAYLOAD - 200) });
    assert_eq!(decode_record(&encode_record(&fits).unwrap()).unwrap(), fits);
}

/// A snapshot payload whose request map names a key twice, or lists keys out of order: a
/// well-sealed envelope the journal's encoder never writes (bincode would keep the last of
/// two equal keys and drop the other silently; the fuzzer found it).
#[test]
pub fn snapshot_request_maps_not_in_the_one_encoding_are_refused() {
    let mut state = dms_journal::TargetState::new(tid("t"));
    for name in ["req-a", "req-b"] {
        let outcome = dms_journal::Outcome::Failed { reason: "x".into() };
        state.requests.insert(key(name), decided(outcome, 1));
    }
    let payload = encode_snapshot(&state).unwrap()[HEADER_LEN..].to_vec();
    let respell = |from: &[u8], to: &[u8]| {
        let at = payload.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = payload.clone();
        out[at..at + to.len()].copy_from_slice(to);
        sealed(Kind::Snapshot, &out)
    };
    assert_eq!(decode_snapshot(&sealed(Kind::Snapshot, &payload)).unwrap(), state);
    for (what, bytes) in [
        ("a key twice", respell(b"req-b", b"req-a")),
        ("keys unsorted", respell(b"req-a", b"req-c")),
    ] {
        assert_eq!(decode_snapshot(&bytes), Err(CodecError::NotCanonical), "{what}");
    }
}
