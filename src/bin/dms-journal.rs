//! `dms-journal`: inspect, verify and export a DMS journal. See `dms-journal --help`.
//!
//! The implementation is the `journal_cli` module of the daemon's library, because the
//! daemon runs the same code to answer these commands through its admin socket, and the
//! tool finds the journal and the socket with the daemon's configuration loader; this file
//! only hands over to it.

fn main() -> std::process::ExitCode {
    dms::journal_cli::main()
}
