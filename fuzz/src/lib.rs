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

/// The fuzz binaries' `main` outside cargo-fuzz: `target` once on each file named in the
/// arguments, as libFuzzer runs inputs given as files (a panic is the crash, with its
/// message and exit status 101). Usage errors exit 2.
pub fn run_files(target: Target) -> std::process::ExitCode {
    let files: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if files.is_empty() {
        eprintln!("usage: TARGET FILE... (runs each file once; fuzzing needs `cargo fuzz run`)");
        return std::process::ExitCode::from(2);
    }
    for file in &files {
        match std::fs::read(file) {
            Ok(data) => {
                println!("Running: {}", file.display());
                target(&data);
                println!("Executed {} in one run", file.display());
            }
            Err(e) => {
                eprintln!("cannot read {}: {e}", file.display());
                return std::process::ExitCode::from(2);
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
