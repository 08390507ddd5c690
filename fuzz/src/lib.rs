//! Fuzz targets for `dms-journal` and the `dms` wire codec, as plain functions.
//!
//! The libFuzzer binaries in `fuzz_targets/` are one-line wrappers around [`decode_record`],
//! [`state_machine`] and [`wire`], so that `tests/replay_corpus.rs` can replay the committed corpus
//! (`corpus/<target>/*`) through exactly the same code with `cargo test` on stable Rust.
//! Each function panics when an invariant does not hold; see the modules for what they check.

pub mod codec_target;
pub mod model;
pub mod script;
pub mod seeds;
pub mod wire_target;

/// Arbitrary bytes through `decode_record` and `decode_snapshot` ([`codec_target`]).
pub fn decode_record(data: &[u8]) {
    codec_target::run(data);
}

/// Bytes as a script of mounts, unmounts, effect outcomes and reboots over 1–3 targets,
/// run against `decide` ([`model`], [`script`]).
pub fn state_machine(data: &[u8]) {
    model::run(data);
}

/// Bytes as an AMQP delivery (properties + body) through `dms::wire::parse`
/// ([`wire_target`]).
pub fn wire(data: &[u8]) {
    wire_target::run(data);
}

/// A fuzz target's body: panics when an invariant does not hold.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary and corpus directory.
pub const TARGETS: [(&str, Target); 3] =
    [("decode_record", decode_record), ("state_machine", state_machine), ("wire", wire)];
