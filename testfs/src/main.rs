//! `dms-testfs`: an in-memory FUSE filesystem that stands in for `s3vaultfuse` in DMS tests
//! and benchmarks. Started with no arguments and an explicit environment, exactly like the
//! real helper: it mounts at `$vault_data_directory`, serves until SIGTERM/SIGINT, then
//! unmounts and exits 0. `DMS_TESTFS_FAULT` makes it misbehave on purpose (see
//! [`config::Fault`]).

mod config;
mod fs;
mod mount;

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Instant;

use config::{Config, Fault};
use nix::sys::signal::{SigSet, Signal};

/// The mount source and FUSE subtype: the mount shows as `fuse.dms-testfs`.
const FS_NAME: &str = "dms-testfs";
/// Refused to start: bad or missing environment.
const EXIT_CONFIG: u8 = 2;

fn log(msg: &str) {
    eprintln!("dms-testfs[{}]: {msg}", std::process::id());
}

fn main() -> ExitCode {
    // Only UTF-8 variables matter here; others are ignored rather than fatal.
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let cfg = match Config::from_env(&env) {
        Ok(cfg) => cfg,
        Err(e) => {
            log(&format!("refusing to start: {e}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cfg.fault == Some(Fault::ExitAtOnce) {
        log("fault exit-at-once: exiting with status 0 without mounting");
        return ExitCode::SUCCESS;
    }
    let (tx, rx) = mpsc::channel();
    if let Err(e) = watch_signals(tx.clone()) {
        log(&format!("cannot watch signals: {e}"));
        return ExitCode::FAILURE;
    }
    run(&cfg, tx, &rx)
}

// The main thread waits on one channel: termination signals and the end of the FUSE
// session. Signals are blocked in every thread and taken with sigwait(2) by a dedicated
// thread, so no signal handler (and no `unsafe`) is needed.

/// Something the main thread must react to.
#[derive(Debug)]
enum Event {
    /// SIGTERM or SIGINT arrived.
    Signal(Signal),
    /// The FUSE session loop returned: the mount was taken away (e.g. umount by someone
    /// else) or the device failed.
    SessionEnded(io::Result<()>),
}

/// Blocks SIGTERM and SIGINT in the calling thread and starts a thread that forwards them
/// as [`Event::Signal`]. Call it before any other thread exists: threads inherit the mask,
/// and a signal delivered to a thread that does not block it would kill the process.
fn watch_signals(tx: Sender<Event>) -> io::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().map_err(io::Error::from)?;
    thread::Builder::new().name("signals".into()).spawn(move || loop {
        match set.wait() {
            Ok(sig) => {
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    })?;
    Ok(())
}

/// Waits for the next event, or `None` when `deadline` passes first.
fn next_event(rx: &Receiver<Event>, deadline: Option<Instant>) -> Option<Event> {
    match deadline {
        None => rx.recv().ok(),
        Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())).ok(),
    }
}

fn run(cfg: &Config, tx: Sender<Event>, rx: &Receiver<Event>) -> ExitCode {
    let path = cfg.mount_path.as_path();
    match cfg.fault {
        Some(Fault::NeverMount) => {
            log(&format!("fault never-mount: not mounting {}", path.display()));
            return match next_event(rx, None) {
                Some(ev) => {
                    log(&format!("{ev:?}: exiting without having mounted"));
                    ExitCode::SUCCESS
                }
                None => ExitCode::FAILURE,
            };
        }
        Some(Fault::MountDelay(delay)) => {
            log(&format!("fault mount-delay: waiting {delay:?} before mounting"));
            if let Some(ev) = next_event(rx, Some(Instant::now() + delay)) {
                log(&format!("{ev:?} before mounting: exiting"));
                return ExitCode::SUCCESS;
            }
        }
        _ => {}
    }

    let (uid, gid) = mount::owner();
    let session = match mount::mount(path, FS_NAME, fs::MemFs::new(uid, gid)) {
        Ok(session) => session,
        Err(e) => {
            log(&format!("cannot mount at {}: {e}", path.display()));
            return ExitCode::FAILURE;
        }
    };
    log(&format!("mounted at {}", path.display()));

    // In `hang` mode the session is held but never run: the kernel queues every request
    // and nobody ever reads or answers it.
    let _held = if cfg.fault == Some(Fault::Hang) {
        log("fault hang: no filesystem request will ever be answered");
        Some(session)
    } else {
        let spawned = thread::Builder::new().name("fuse".into()).spawn(move || {
            let _ = tx.send(Event::SessionEnded(session.run()));
        });
        if let Err(e) = spawned {
            log(&format!("cannot start the FUSE thread: {e}"));
            let _ = mount::unmount(path);
            return ExitCode::FAILURE;
        }
        None
    };

    let die_at = match cfg.fault {
        Some(Fault::DieAfter(after) | Fault::OomAfter(after)) => Some(Instant::now() + after),
        _ => None,
    };
    match next_event(rx, die_at) {
        None if matches!(cfg.fault, Some(Fault::OomAfter(_))) => eat_memory(),
        None => {
            log("fault die-after: exiting with status 1 without unmounting");
            std::process::exit(1);
        }
        Some(Event::SessionEnded(result)) => {
            match result {
                Ok(()) => log(&format!("unmounted from {} (by someone else)", path.display())),
                Err(e) => log(&format!("FUSE session failed: {e}")),
            }
            // Like s3fs: an external umount ends the helper, successfully.
            let _ = mount::unmount(path);
            ExitCode::SUCCESS
        }
        Some(Event::Signal(sig)) => shut_down(path, &format!("{sig}")),
    }
}

/// Allocate and touch 1 MiB at a time until killed; 512 MiB at most (then exit 3), so a
/// helper without a memory limit does not take the machine's memory.
fn eat_memory() -> ExitCode {
    log("fault oom-after: allocating memory until killed");
    let mut held: Vec<Vec<u8>> = Vec::new();
    while held.len() < 512 {
        held.push(std::hint::black_box(vec![0xa5; 1 << 20]));
    }
    log("fault oom-after: 512 MiB allocated and still alive: no memory limit stopped it");
    std::process::exit(3);
}

fn shut_down(path: &Path, why: &str) -> ExitCode {
    log(&format!("{why}: unmounting {}", path.display()));
    match mount::unmount(path) {
        Ok(how) => {
            log(&format!("unmounted {} ({how:?})", path.display()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            log(&format!("unmount of {} failed: {e}", path.display()));
            ExitCode::FAILURE
        }
    }
}
