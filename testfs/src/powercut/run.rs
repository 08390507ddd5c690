//! The life of `dms-powercutfs`: check the arguments, load the backing directory, mount,
//! serve, and at the end write one of the two images back and unmount.
//!
//! The main thread waits on one channel: signals and the end of the FUSE session. Signals
//! are blocked in every thread and taken with sigwait(2) by a dedicated thread, so no
//! signal handler (and no `unsafe`) is needed. That thread stops the model itself, before
//! anything else happens: a power cut is an instant, and the durable image as of that
//! instant is what survives (every later operation fails with `EIO`).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use nix::sys::signal::{SigSet, Signal};

use super::backing;
use super::fuse::{lock, PowercutFs};
use super::image::Image;
use super::model::{Model, Stop};
use crate::mount;

/// The mount source and FUSE subtype: the mount shows as `fuse.dms-powercutfs`.
pub const FS_NAME: &str = "dms-powercutfs";
/// Bad arguments or a backing directory it cannot serve.
const EXIT_REFUSED: u8 = 2;
const USAGE: &str = "usage: dms-powercutfs BACKING_DIR MOUNT_POINT (existing absolute directories)";

fn log(msg: &str) {
    eprintln!("{FS_NAME}[{}]: {msg}", std::process::id());
}

/// Something the main thread must react to.
#[derive(Debug)]
enum Event {
    Signal(Signal),
    /// The FUSE session loop returned: someone unmounted, or the device failed.
    SessionEnded(io::Result<()>),
}

/// Runs the server with the arguments after the program name; returns the exit status.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let (backing, mountpoint) = match parse_args(args) {
        Ok(dirs) => dirs,
        Err(msg) => {
            log(&format!("refusing to start: {msg}\n{USAGE}"));
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let image = match Image::load(&backing) {
        Ok(image) => image,
        Err(e) => {
            log(&format!("refusing to start: {e}"));
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let model = Arc::new(Mutex::new(Model::from_image(image)));
    let (tx, rx) = mpsc::channel();
    if let Err(e) = watch_signals(tx.clone(), Arc::clone(&model)) {
        log(&format!("cannot watch signals: {e}"));
        return ExitCode::FAILURE;
    }
    let session = match mount::mount(&mountpoint, FS_NAME, PowercutFs::new(Arc::clone(&model))) {
        Ok(session) => session,
        Err(e) => {
            log(&format!("cannot mount at {}: {e}", mountpoint.display()));
            return ExitCode::FAILURE;
        }
    };
    log(&format!("mounted at {}", mountpoint.display()));
    let spawned = thread::Builder::new().name("fuse".into()).spawn(move || {
        let _ = tx.send(Event::SessionEnded(session.run()));
    });
    if let Err(e) = spawned {
        log(&format!("cannot start the FUSE thread: {e}"));
        let _ = mount::unmount(&mountpoint);
        return ExitCode::FAILURE;
    }

    let (why, event) = match rx.recv() {
        Ok(Event::Signal(Signal::SIGUSR1)) => (Stop::PowerCut, "SIGUSR1".to_owned()),
        Ok(Event::Signal(sig)) => (Stop::Clean, sig.to_string()),
        Ok(Event::SessionEnded(Ok(()))) => (Stop::Clean, "unmounted by someone else".into()),
        Ok(Event::SessionEnded(Err(e))) => (Stop::Clean, format!("FUSE session failed: {e}")),
        Err(_) => (Stop::Clean, "event channel closed".into()),
    };
    stop(&model, why, &event, &backing, &mountpoint)
}

/// Stops the model (unless a signal already did: the first stop wins), unmounts, and
/// writes the surviving image to the backing directory.
fn stop(model: &Mutex<Model>, why: Stop, event: &str, backing: &Path, mnt: &Path) -> ExitCode {
    let (what, image, survivors) = {
        let mut model = lock(model);
        match model.stop(why) {
            Stop::PowerCut => {
                let (image, survivors) = model.durable_image();
                ("power cut", image, Some(survivors))
            }
            Stop::Clean => ("clean stop", model.live_image(), None),
        }
    };
    let mut ok = true;
    let unmounted = match mount::unmount(mnt) {
        Ok(how) => format!("{how:?}"),
        Err(e) => {
            ok = false;
            format!("failed: {e}")
        }
    };
    let image_name = if survivors.is_some() { "durable" } else { "live" };
    let written = match backing::write(backing, &image) {
        Ok(()) => format!("wrote the {image_name} image to {}", backing.display()),
        Err(e) => {
            ok = false;
            format!("FAILED to write the {image_name} image to {}: {e}", backing.display())
        }
    };
    let counts = image.counts();
    let summary = match survivors {
        Some(s) => {
            let dup = match s.dirs_dropped {
                0 => String::new(),
                n => format!(", {n} duplicate directory names"),
            };
            format!(
                "kept {counts}; dropped {} files, {} bytes not synced{dup}",
                s.files_dropped, s.bytes_dropped
            )
        }
        None => format!("kept {counts}"),
    };
    log(&format!(
        "{what}: {summary}; {written}; unmounted {} ({unmounted}); cause: {event}",
        mnt.display()
    ));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Blocks SIGTERM, SIGINT and SIGUSR1 in the calling thread and starts the thread that
/// takes them: it stops the model at once, then tells the main thread. Call it before any
/// other thread exists: threads inherit the mask.
fn watch_signals(tx: Sender<Event>, model: Arc<Mutex<Model>>) -> io::Result<()> {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGUSR1] {
        set.add(sig);
    }
    set.thread_block().map_err(io::Error::from)?;
    thread::Builder::new().name("signals".into()).spawn(move || loop {
        match set.wait() {
            Ok(sig) => {
                let why = if sig == Signal::SIGUSR1 { Stop::PowerCut } else { Stop::Clean };
                lock(&model).stop(why);
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

/// `BACKING_DIR MOUNT_POINT`: existing absolute directories, neither inside the other
/// (the image written back must not contain the mount, nor the mount hide the backing).
fn parse_args(args: Vec<OsString>) -> Result<(PathBuf, PathBuf), String> {
    let [backing, mnt]: [OsString; 2] = args
        .try_into()
        .map_err(|a: Vec<OsString>| format!("expected 2 arguments, got {}", a.len()))?;
    let check = |arg: OsString, what: &str| -> Result<PathBuf, String> {
        let path = PathBuf::from(arg);
        if !path.is_absolute() {
            return Err(format!("{what} {} is not an absolute path", path.display()));
        }
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                fs::canonicalize(&path).map_err(|e| format!("{what} {}: {e}", path.display()))
            }
            Ok(_) => Err(format!("{what} {} is not a directory", path.display())),
            Err(e) => Err(format!("{what} {}: {e}", path.display())),
        }
    };
    let backing = check(backing, "BACKING_DIR")?;
    let mnt = check(mnt, "MOUNT_POINT")?;
    if backing.starts_with(&mnt) || mnt.starts_with(&backing) {
        return Err(format!(
            "BACKING_DIR {} and MOUNT_POINT {} must not be one inside the other",
            backing.display(),
            mnt.display()
        ));
    }
    Ok((backing, mnt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&Path]) -> Vec<OsString> {
        list.iter().map(|p| p.as_os_str().to_owned()).collect()
    }

    #[test]
    fn arguments_are_two_separate_existing_absolute_directories() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::create_dir(&a).expect("mkdir");
        fs::create_dir(&b).expect("mkdir");
        fs::write(tmp.path().join("f"), b"").expect("write");
        assert!(parse_args(args(&[&a, &b])).is_ok());
        assert!(parse_args(args(&[&a])).is_err());
        assert!(parse_args(args(&[&a, &b, &b])).is_err());
        assert!(parse_args(args(&[Path::new("rel"), &b])).is_err());
        assert!(parse_args(args(&[&a, &tmp.path().join("missing")])).is_err());
        assert!(parse_args(args(&[&a, &tmp.path().join("f")])).is_err());
        let err = parse_args(args(&[tmp.path(), &b])).expect_err("nested");
        assert!(err.contains("one inside the other"), "{err}");
        assert!(parse_args(args(&[&a, &a])).is_err());
    }
}
