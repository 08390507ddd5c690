//! Under cargo-fuzz (`cfg(fuzzing)`): the libFuzzer target. Otherwise (stable `cargo
//! build`, the test suite): a program that runs each file it is given once, to reproduce a
//! crash without nightly, and that builds without compiling libFuzzer.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dms_fuzz::decode_record(data));

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
    dms_fuzz::run_files(dms_fuzz::decode_record)
}
