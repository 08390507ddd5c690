//! `dms-journal`: inspect, verify and export a DMS journal. See `dms-journal --help`.
//!
//! The implementation is the library's `cli` module, because the daemon runs the same code
//! to answer these commands through its admin socket; this file only hands over to it.

fn main() -> std::process::ExitCode {
    dms_journal::cli::main()
}
