//! `dms-journal`: inspect, verify and export a DMS journal. See `dms-journal --help`.
//!
//! The implementation lives in `src/cli/` (private to this binary, so the library stays free
//! of command-line concerns); this file only hands over to it.

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
