//! sd_notify(3) for `Type=notify`: readiness after the boot reconcile, a status line for
//! `systemctl status`, watchdog keep-alives and the stop notice.
//!
//! The messages are the `sd-notify` crate's [`NotifyState`]s (pure Rust, no libsystemd):
//! the protocol's vocabulary and its `KEY=VALUE` spelling come from there. The crate's own
//! `notify()` and `watchdog_enabled()` are not used, for four reasons the tests pin down:
//! `notify()` reads `$NOTIFY_SOCKET` at every call (a notifier cannot be built from explicit
//! values, so it could only be tested by changing the environment of a multi-threaded test
//! process), its socket blocks when the manager's queue is full (a stalled service manager
//! would stall a runtime worker and the stop), and it does not take abstract socket names
//! (`@name`); `watchdog_enabled()` accepts `WATCHDOG_USEC=0` (a zero period, which
//! `tokio::time::interval` refuses with a panic) and ignores a malformed `WATCHDOG_PID`.
//! So the datagram goes out here, on a non-blocking std `UnixDatagram`, one per
//! notification. systemd identifies the sender by the kernel-attached credentials, so
//! nothing here needs to say who we are.
//!
//! Everything is best effort: a daemon that cannot notify still mounts. A failed send is
//! returned for the caller to log; it never stops the daemon.

use sd_notify::NotifyState;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// `systemctl status` shows one line; longer texts are cut (at a character boundary).
pub const STATUS_MAX: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {socket:?} is neither an absolute path nor an abstract name (@name)")]
    UnsupportedAddress { socket: String },
    #[error("NOTIFY_SOCKET {socket:?} is not a usable socket address: {source}")]
    BadAddress { socket: String, source: io::Error },
    #[error("cannot create a datagram socket to notify {socket}: {source}")]
    Socket { socket: String, source: io::Error },
    #[error("cannot send {what} to the service manager at {socket}: {source}")]
    Send { what: String, socket: String, source: io::Error },
    #[error("the service manager at {socket} took {sent} of {len} bytes of {what}")]
    ShortSend { what: String, socket: String, sent: usize, len: usize },
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for error messages.
    name: String,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// None when not started by systemd (no or empty `NOTIFY_SOCKET`), and also when the
    /// socket is unusable: that is logged here, because a daemon that cannot be supervised
    /// must still serve. Does not modify the environment (the daemon's children get an
    /// explicit environment anyway, so they never see `NOTIFY_SOCKET`).
    pub fn from_env() -> Option<Notifier> {
        let socket = std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty())?;
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        match Notifier::new(&socket, usec.as_deref(), pid.as_deref()) {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                tracing::warn!(error = %e, "systemd notification disabled");
                None
            }
        }
    }

    /// From explicit values (the environment's, or a test's). Bad watchdog values do not
    /// fail construction, they only disable the watchdog (as `sd_watchdog_enabled(3)`
    /// reports an error and its callers treat that as "no watchdog"): refusing to notify at
    /// all would also lose `READY=1` and make systemd time the start out. They are logged.
    pub fn new(
        socket: &str,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Result<Notifier, NotifyError> {
        let addr = parse_address(socket)?;
        let sock = UnixDatagram::unbound()
            .map_err(|source| NotifyError::Socket { socket: socket.to_owned(), source })?;
        // Non-blocking: a stalled service manager (or a test that does not read) fills the
        // queue, and a blocked send would stall a runtime worker. A full queue is a failed
        // send, which is what best effort means.
        sock.set_nonblocking(true)
            .map_err(|source| NotifyError::Socket { socket: socket.to_owned(), source })?;
        let watchdog = match watchdog_interval(watchdog_usec, watchdog_pid, std::process::id()) {
            Ok(interval) => interval,
            Err(problem) => {
                tracing::warn!(%problem, "systemd watchdog disabled");
                None
            }
        };
        Ok(Notifier { socket: sock, addr, name: socket.to_owned(), watchdog })
    }

    /// Sent once, when requests are about to be taken: systemd orders dependent units
    /// after this, so it must not come before the journal and the host agree.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        let status = sanitize_status(status);
        self.send("READY=1", &[NotifyState::Ready, NotifyState::Status(&status)])
    }

    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.send("STATUS", &[NotifyState::Status(&sanitize_status(status))])
    }

    /// Lets systemd tell a clean stop (mounts left running on purpose) from a crash.
    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        let status = sanitize_status(status);
        self.send("STOPPING=1", &[NotifyState::Stopping, NotifyState::Status(&status)])
    }

    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=1", &[NotifyState::Watchdog])
    }

    /// Asks for more start (or stop) time, for a boot reconcile that is still making
    /// progress on a node with many targets: systemd would otherwise kill the daemon at
    /// `TimeoutStartSec` in the middle of it.
    /// At most `u32::MAX` µs (71 minutes), what the protocol's value holds here.
    pub fn extend_timeout(&self, by: Duration) -> Result<(), NotifyError> {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send("EXTEND_TIMEOUT_USEC", &[NotifyState::ExtendTimeoutUsec(usec)])
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (the margin systemd
    /// recommends), only when `WATCHDOG_PID` is unset or names this process: otherwise the
    /// variables were set for another process (we inherited them from the one systemd
    /// watches), and pinging for it would hide that process hanging. Never zero, so it can
    /// drive `tokio::time::interval`.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// The socket this notifier sends to, as `$NOTIFY_SOCKET` named it.
    pub fn socket_name(&self) -> &str {
        &self.name
    }

    /// One datagram, the states one per line.
    fn send(&self, what: &str, states: &[NotifyState]) -> Result<(), NotifyError> {
        let message = states.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        let err =
            |source| NotifyError::Send { what: what.to_owned(), socket: self.name.clone(), source };
        let sent = self.socket.send_to_addr(message.as_bytes(), &self.addr).map_err(err)?;
        if sent != message.len() {
            return Err(NotifyError::ShortSend {
                what: what.to_owned(),
                socket: self.name.clone(),
                sent,
                len: message.len(),
            });
        }
        Ok(())
    }
}

/// `@name` is an abstract socket (the leading `@` stands for the NUL byte), anything else
/// must be an absolute path, as sd_notify(3) requires. (`vsock:` addresses exist for VMs
/// and are not supported: this daemon runs on the host it mounts on.)
fn parse_address(socket: &str) -> Result<SocketAddr, NotifyError> {
    let bad = |source| NotifyError::BadAddress { socket: socket.to_owned(), source };
    if let Some(name) = socket.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes()).map_err(bad)
    } else if socket.starts_with('/') {
        SocketAddr::from_pathname(socket).map_err(bad)
    } else {
        Err(NotifyError::UnsupportedAddress { socket: socket.to_owned() })
    }
}

/// The rules of sd_watchdog_enabled(3), with the problem spelt out for the log.
fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let usec: u64 = usec
        .parse()
        .ok()
        .filter(|u| *u > 0)
        .ok_or_else(|| format!("WATCHDOG_USEC {usec:?} is not a positive number"))?;
    if let Some(pid) = pid.map(str::trim).filter(|s| !s.is_empty()) {
        let pid: u32 = pid
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("WATCHDOG_PID {pid:?} is not a PID"))?;
        if pid != own_pid {
            // Meant for another process; not a problem, just not ours.
            return Ok(None);
        }
    }
    Ok(Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1))))
}

/// One line, bounded: a newline would start a new `KEY=VALUE` assignment (a status text
/// taken from an error message could otherwise send e.g. `READY=1` or `MAINPID=`), and
/// other control characters garble `systemctl status`.
pub fn sanitize_status(status: &str) -> String {
    let mut out: String = status.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if out.len() > STATUS_MAX {
        let mut cut = STATUS_MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out.trim().to_owned()
}

#[cfg(test)]
#[path = "systemd_tests.rs"]
mod tests;
