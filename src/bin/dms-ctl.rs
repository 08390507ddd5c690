//! dms-ctl: operate a running dms-server (see `dms-ctl --help`; the code is in `src/ctl/`).

fn main() -> std::process::ExitCode {
    dms::ctl::main()
}
