//! Starting a helper without `fork`: `posix_spawn(3)` in a session of its own.
//!
//! `fork` copies the daemon's page tables, and every page the daemon writes afterwards
//! takes a copy-on-write fault with a TLB shootdown on every core; with 1,000 targets
//! journaled and tracked that was a quarter of the daemon's CPU time at scale (perf:
//! `do_wp_page`, `ptep_clear_flush`). std's `Command` would use `posix_spawn` (glibc's
//! runs the child on the parent's memory, `CLONE_VM | CLONE_VFORK`), but not with the
//! `pre_exec(setsid)` a helper needs: `POSIX_SPAWN_SETSID` says the same to glibc (2.26+).
//!
//! The working directory `/` needs `posix_spawn_file_actions_addchdir_np` (glibc 2.29).
//! It is looked up when it is used rather than linked, so the binary still loads on an
//! older glibc, where the spawn falls back to std's `fork` + `setsid` + `exec`.
//!
//! This is the daemon's one use of `libc` (everything else goes through `rustix`, see the
//! README's "System calls"): `posix_spawn(3)`, its attribute and file-action helpers and
//! `dlsym(3)` are C library functions, not system calls, so rustix has no wrapper for them.

use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{pidfd_open, pidfd_send_signal, waitid, Pid, PidfdFlags, Signal, WaitId};
use rustix::process::{WaitIdOptions, WaitIdStatus};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use zeroize::{Zeroize, Zeroizing};

/// A spawned child of the daemon: its PID and a pidfd that reaps it. Dropping it neither
/// kills nor reaps; whoever owns it must `wait` (the helper module's reaper does).
#[derive(Debug)]
pub struct Child {
    pid: u32,
    /// Non-blocking: it polls readable once the child has exited, and is registered with
    /// the runtime as such.
    pidfd: OwnedFd,
}

impl Child {
    /// `pid` must be a child of this process that is not reaped yet, so the PID is still
    /// its own when the pidfd is opened.
    fn from_pid(pid: u32) -> io::Result<Self> {
        let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            return Err(io::Error::other(format!("spawn returned pid {pid}")));
        };
        Ok(Child { pid, pidfd: pidfd_open(raw, PidfdFlags::NONBLOCK)? })
    }

    pub fn id(&self) -> u32 {
        self.pid
    }

    pub fn pidfd(&self) -> &OwnedFd {
        &self.pidfd
    }

    /// SIGKILL it (through the pidfd: the PID cannot belong to anyone else yet).
    pub fn kill(&self) {
        let _ = pidfd_send_signal(&self.pidfd, Signal::KILL);
    }

    /// Block until it exits, reap it and say how it ended, in std's words
    /// (`exit status: 0`, `signal: 15 (SIGTERM)`).
    pub fn wait(&self) -> String {
        wait(&self.pidfd)
    }

    /// Its pidfd alone, for a reaper that registers it with the runtime and then reaps
    /// with [`wait`]: one descriptor per child, not a copy beside the child's own.
    pub fn into_pidfd(self) -> OwnedFd {
        self.pidfd
    }
}

/// Block until the child behind `pidfd` exits, reap it and say how it ended (see
/// [`Child::wait`]); at once when it has exited already.
pub fn wait(pidfd: &OwnedFd) -> String {
    wait_ended(pidfd).to_string()
}

/// How a child ended, for whoever needs more than the words (the cause of a helper's death).
/// `Display` gives std's words, as [`wait`] returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled {
        signal: i32,
        core_dumped: bool,
    },
    /// The wait itself failed: why.
    Unknown(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let raw = match *self {
            Ended::Exited(code) => (code & 0xff) << 8,
            Ended::Signaled { signal, core_dumped } => {
                (signal & 0x7f) | i32::from(core_dumped) << 7
            }
            Ended::Unknown(ref reason) => return f.write_str(reason),
        };
        write!(f, "{}", ExitStatus::from_raw(raw))
    }
}

/// [`wait`], with the status as data.
pub fn wait_ended(pidfd: &OwnedFd) -> Ended {
    loop {
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Ended::Unknown(format!("cannot wait: {e}")),
        }
        match waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(status)) => return describe(&status),
            Ok(None) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Ended::Unknown(format!("cannot wait: {e}")),
        }
    }
}

fn describe(status: &WaitIdStatus) -> Ended {
    if let Some(code) = status.exit_status() {
        return Ended::Exited(code);
    }
    let signal = status.terminating_signal().unwrap_or(0);
    Ended::Signaled { signal, core_dumped: status.dumped() }
}

/// What to start: `program` with exactly `env`, stdin `/dev/null`, stdout and stderr
/// appended to `log`, working directory `/`, in a new session (so its own process group).
pub struct Spawn<'a> {
    pub program: &'a Path,
    pub env: Vec<(&'a str, &'a str)>,
    pub log: &'a File,
}

impl std::fmt::Debug for Spawn<'_> {
    /// Names only: the values hold keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawn")
            .field("program", &self.program)
            .field("env", &self.env.iter().map(|(n, _)| *n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Spawn<'_> {
    pub fn spawn(&self) -> io::Result<Child> {
        let pid = match addchdir() {
            Some(addchdir) => self.posix_spawn(addchdir)?,
            None => self.fork_exec()?,
        };
        Child::from_pid(pid)
    }

    fn fork_exec(&self) -> io::Result<u32> {
        let mut command = Command::new(self.program);
        command
            .env_clear()
            .envs(self.env.iter().copied())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(self.log.try_clone()?)
            .stderr(self.log.try_clone()?);
        new_session(&mut command);
        // The std handle is dropped unreaped; the pidfd reaps it.
        Ok(command.spawn()?.id())
    }

    #[allow(unsafe_code)]
    fn posix_spawn(&self, addchdir: AddChdir) -> io::Result<u32> {
        let nul = |what: &str| io::Error::other(format!("{what} holds a NUL byte"));
        let program = CString::new(self.program.as_os_str().as_bytes())
            .map_err(|_| nul("the helper path"))?;
        // The values hold the S3 keys: these copies are zeroed when dropped, on every path.
        let mut env: Zeroizing<Vec<CString>> = Zeroizing::new(Vec::with_capacity(self.env.len()));
        for (n, v) in &self.env {
            env.push(env_entry(n, v).ok_or_else(|| nul(n))?);
        }
        let mut envp: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr().cast_mut()).collect();
        envp.push(std::ptr::null_mut());
        let argv = [program.as_ptr().cast_mut(), std::ptr::null_mut()];
        let log = self.log.as_raw_fd();
        let attr = Attr::new()?;
        let actions = Actions::new()?;
        let mut pid: libc::pid_t = 0;
        // SAFETY: `attr` and `actions` are initialised (their constructors checked) and
        // live until the call returns; `argv` and `envp` are NUL-terminated arrays of
        // pointers into CStrings (`program`, `env`) that outlive the call; `log` is an
        // open descriptor for the whole call. posix_spawn copies what it needs.
        unsafe {
            check(libc::posix_spawn_file_actions_addopen(
                actions.0,
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            ))?;
            check(libc::posix_spawn_file_actions_adddup2(actions.0, log, 1))?;
            check(libc::posix_spawn_file_actions_adddup2(actions.0, log, 2))?;
            check(addchdir(actions.0, c"/".as_ptr()))?;
            check(libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                actions.0,
                attr.0,
                argv.as_ptr(),
                envp.as_ptr(),
            ))?;
        }
        u32::try_from(pid).map_err(|_| io::Error::other(format!("posix_spawn returned {pid}")))
    }
}

/// `name=value` as a C string, built in a buffer with room for the NUL so that no
/// reallocation leaves a copy of the value behind; `None` (and the buffer zeroed) if either
/// holds a NUL byte.
fn env_entry(name: &str, value: &str) -> Option<CString> {
    let mut entry = Vec::with_capacity(name.len() + value.len() + 2);
    entry.extend_from_slice(name.as_bytes());
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    match CString::new(entry) {
        Ok(entry) => Some(entry),
        Err(e) => {
            e.into_vec().zeroize();
            None
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

type AddChdir =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const libc::c_char) -> libc::c_int;

/// glibc's `posix_spawn_file_actions_addchdir_np`, if this glibc has it.
#[allow(unsafe_code)]
fn addchdir() -> Option<AddChdir> {
    static FOUND: std::sync::OnceLock<Option<AddChdir>> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let name: &CStr = c"posix_spawn_file_actions_addchdir_np";
        // SAFETY: dlsym with RTLD_DEFAULT (a null handle on glibc) and a NUL-terminated name
        // only looks the symbol up; a null result means it is absent.
        let symbol = unsafe { libc::dlsym(std::ptr::null_mut(), name.as_ptr()) };
        // SAFETY: the symbol, when present, is glibc's function of exactly this C signature.
        (!symbol.is_null())
            .then(|| unsafe { std::mem::transmute::<*mut libc::c_void, AddChdir>(symbol) })
    })
}

/// A `posix_spawnattr_t` asking for a new session, the default disposition of SIGPIPE
/// (Rust ignores it; an ignored signal would survive the exec) and no blocked signals.
/// Heap-allocated and held by raw pointer: glibc keeps pointers into it between calls.
struct Attr(*mut libc::posix_spawnattr_t);

impl Attr {
    #[allow(unsafe_code)]
    fn new() -> io::Result<Self> {
        // SAFETY: posix_spawnattr_t is plain data, so zeroed memory is a valid value for
        // init to overwrite; the pointer comes from Box::into_raw and is freed exactly once
        // (here if init fails, else in Drop after destroy).
        let attr = unsafe {
            let raw = Box::into_raw(Box::new(std::mem::zeroed::<libc::posix_spawnattr_t>()));
            if let Err(e) = check(libc::posix_spawnattr_init(raw)) {
                drop(Box::from_raw(raw));
                return Err(e);
            }
            Attr(raw)
        };
        // SAFETY: `attr.0` is initialised; the sigsets are local and initialised by
        // sigemptyset before use, and setsig* copy them.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            check(libc::posix_spawnattr_setsigmask(attr.0, &set))?;
            libc::sigaddset(&mut set, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(attr.0, &set))?;
            // libc types these flags inconsistently (c_short and c_int); all fit a short.
            let flags = libc::c_int::from(libc::POSIX_SPAWN_SETSID)
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(attr.0, flags as libc::c_short))?;
        }
        Ok(attr)
    }
}

impl Drop for Attr {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: initialised by `new`, destroyed once, then freed as the Box it came from.
        unsafe {
            libc::posix_spawnattr_destroy(self.0);
            drop(Box::from_raw(self.0));
        }
    }
}

/// A `posix_spawn_file_actions_t`, held like [`Attr`].
struct Actions(*mut libc::posix_spawn_file_actions_t);

impl Actions {
    #[allow(unsafe_code)]
    fn new() -> io::Result<Self> {
        // SAFETY: as for `Attr::new`.
        unsafe {
            let raw =
                Box::into_raw(Box::new(std::mem::zeroed::<libc::posix_spawn_file_actions_t>()));
            if let Err(e) = check(libc::posix_spawn_file_actions_init(raw)) {
                drop(Box::from_raw(raw));
                return Err(e);
            }
            Ok(Actions(raw))
        }
    }
}

impl Drop for Actions {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: initialised by `new`; destroy frees what the add* calls allocated, then
        // the Box is freed once.
        unsafe {
            libc::posix_spawn_file_actions_destroy(self.0);
            drop(Box::from_raw(self.0));
        }
    }
}

/// The fallback's session: `setsid` in the forked child, before exec.
#[allow(unsafe_code)]
fn new_session(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only setsid(2),
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
}

#[cfg(test)]
#[path = "spawn_tests.rs"]
mod tests;
