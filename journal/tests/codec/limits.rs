//! Size limits, measured: refusing an over-limit or lying length allocates nothing large.

use crate::damage::{envelope, sealed};
use crate::values::*;
use dms_journal::codec::{
    decode_record, decode_snapshot, encode_snapshot, CodecError, Kind, HEADER_LEN,
    MAX_RECORD_PAYLOAD, MAX_SNAPSHOT_PAYLOAD, SCHEMA_VERSION,
};
use dms_journal::TargetState;

// ---------------------------------------------------------------------------------------
// Limits, measured: a counting allocator records the largest single allocation made by the
// current thread while measuring is on.
// ---------------------------------------------------------------------------------------

mod alloc_meter {
    #![allow(unsafe_code)]
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Meter;

    thread_local! {
        static MEASURING: Cell<bool> = const { Cell::new(false) };
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        // `try_with`: the thread-locals may already be gone while a thread exits.
        let _ = MEASURING.try_with(|m| {
            if m.get() {
                let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
            }
        });
    }

    // SAFETY: forwards every call to the system allocator unchanged.
    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc_zeroed(layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            System.realloc(ptr, layout, new_size)
        }
    }

    /// Run `f`, returning its result and the largest single allocation it made.
    pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|l| l.set(0));
        MEASURING.with(|m| m.set(true));
        let out = f();
        MEASURING.with(|m| m.set(false));
        (out, LARGEST.with(Cell::get))
    }
}

#[global_allocator]
static METER: alloc_meter::Meter = alloc_meter::Meter;

/// Well under any limit: decoding a small lie must not cost more than this at once.
const SMALL: usize = 64 * 1024;

#[test]
fn the_meter_measures() {
    let (v, largest) = alloc_meter::largest_allocation(|| vec![0u8; 3 * SMALL]);
    assert_eq!(v.len(), 3 * SMALL);
    assert!(largest >= 3 * SMALL, "meter saw {largest}");
}

#[test]
fn over_limit_declared_length_is_refused_without_allocating() {
    for (kind, limit) in
        [(Kind::Record, MAX_RECORD_PAYLOAD), (Kind::Snapshot, MAX_SNAPSHOT_PAYLOAD)]
    {
        for declared in [limit as u32 + 1, u32::MAX] {
            let bytes = envelope(SCHEMA_VERSION, kind as u8, declared, b"tiny");
            let (result, largest) = alloc_meter::largest_allocation(|| match kind {
                Kind::Record => decode_record(&bytes).map(|_| ()),
                Kind::Snapshot => decode_snapshot(&bytes).map(|_| ()),
            });
            assert_eq!(result, Err(CodecError::TooLarge { declared: declared as usize, limit }));
            assert!(largest < SMALL, "{kind:?}: allocated {largest} bytes to refuse");
        }
    }
}

#[test]
fn lying_inner_lengths_are_refused_without_allocating() {
    // The first field of both payloads is the target id: a u64 length, then bytes.
    for claimed in [60 * 1024 * 1024u64, u64::MAX / 2, u64::MAX] {
        let mut payload = claimed.to_le_bytes().to_vec();
        payload.extend_from_slice(b"target-1 and not much else");
        for kind in [Kind::Record, Kind::Snapshot] {
            let bytes = sealed(kind, &payload);
            let (result, largest) = alloc_meter::largest_allocation(|| match kind {
                Kind::Record => decode_record(&bytes).map(|_| ()),
                Kind::Snapshot => decode_snapshot(&bytes).map(|_| ()),
            });
            assert!(
                matches!(result, Err(CodecError::Payload(_))),
                "{kind:?} {claimed}: {result:?}"
            );
            assert!(largest < SMALL, "{kind:?} {claimed}: allocated {largest} bytes to refuse");
        }
    }
    // A snapshot claiming a huge map of requests after a valid prefix.
    let state = TargetState::new(tid("t"));
    let good = encode_snapshot(&state).unwrap();
    let payload = &good[HEADER_LEN..];
    // Layout of a fresh state: target (8 + 1), phase tag (4), spec None (1), helper None (1),
    // op None (1), then the requests map length (8).
    let at = 8 + 1 + 4 + 1 + 1 + 1;
    assert_eq!(&payload[at..at + 8], &0u64.to_le_bytes());
    let mut lying = payload.to_vec();
    lying[at..at + 8].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
    let bytes = sealed(Kind::Snapshot, &lying);
    let (result, largest) = alloc_meter::largest_allocation(|| decode_snapshot(&bytes));
    assert!(matches!(result, Err(CodecError::Payload(_))), "{result:?}");
    assert!(largest < SMALL, "allocated {largest} bytes to refuse");
}
