#![allow(clippy::unwrap_used)]

use super::*;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// A stand-in for the service manager's socket, bound in a temporary directory.
fn manager(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (sock, path.display().to_string())
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn each_notification_is_exactly_one_datagram_in_the_sd_notify_format() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = manager(dir.path());
    let n = Notifier::new(&path, None, None).unwrap();
    n.ready("ready: 3 targets tracked, 2 mounted").unwrap();
    n.status("serving: 3 targets tracked, 1 mounted").unwrap();
    n.watchdog().unwrap();
    n.extend_timeout(Duration::from_secs(90)).unwrap();
    n.stopping("stopping: finishing in-flight requests").unwrap();
    assert_eq!(recv(&sock), "READY=1\nSTATUS=ready: 3 targets tracked, 2 mounted");
    assert_eq!(recv(&sock), "STATUS=serving: 3 targets tracked, 1 mounted");
    assert_eq!(recv(&sock), "WATCHDOG=1");
    assert_eq!(recv(&sock), "EXTEND_TIMEOUT_USEC=90000000");
    assert_eq!(recv(&sock), "STOPPING=1\nSTATUS=stopping: finishing in-flight requests");
    assert_eq!(n.socket_name(), path);
}

#[test]
fn an_abstract_socket_is_named_with_a_leading_at_sign() {
    let name = format!("dms-notify-test-{}-{}", std::process::id(), uuid::Uuid::new_v4());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = Notifier::new(&format!("@{name}"), None, None).unwrap();
    n.watchdog().unwrap();
    assert_eq!(recv(&sock), "WATCHDOG=1");
}

#[test]
fn unusable_socket_names_are_refused_with_the_name() {
    for bad in ["relative/notify.sock", "vsock:2:1234", "notify"] {
        let e = Notifier::new(bad, None, None).unwrap_err();
        assert!(matches!(e, NotifyError::UnsupportedAddress { .. }), "{bad}: {e:?}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    let too_long = format!("/{}", "x".repeat(200));
    let e = Notifier::new(&too_long, None, None).unwrap_err();
    assert!(matches!(e, NotifyError::BadAddress { .. }), "{e:?}");
}

#[test]
fn a_send_to_a_missing_socket_is_an_error_naming_the_socket_and_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody-listens.sock").display().to_string();
    let n = Notifier::new(&path, None, None).unwrap();
    let e = n.ready("ready").unwrap_err();
    assert!(matches!(e, NotifyError::Send { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&path) && text.contains("READY=1"), "{text}");
}

#[test]
fn a_full_queue_fails_the_send_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = manager(dir.path());
    let n = Notifier::new(&path, None, None).unwrap();
    let big = "x".repeat(STATUS_MAX);
    // Nobody reads: the receive queue fills after a bounded number of datagrams.
    let failed = (0..100_000).find_map(|_| n.status(&big).err());
    let e = failed.expect("the send never failed although nothing was read");
    match e {
        NotifyError::Send { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::WouldBlock, "{source}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn watchdog_interval_is_half_of_watchdog_usec_when_it_is_for_this_process() {
    let own = std::process::id();
    let me = own.to_string();
    let half = |usec, pid| watchdog_interval(usec, pid, own).unwrap();
    assert_eq!(half(Some("30000000"), None), Some(Duration::from_secs(15)));
    assert_eq!(half(Some("2000000"), Some(me.as_str())), Some(Duration::from_secs(1)));
    assert_eq!(half(Some(" 2000000 "), Some("")), Some(Duration::from_secs(1)));
    // Tiny values still give a usable (non-zero) period.
    assert_eq!(half(Some("1"), None), Some(Duration::from_millis(1)));
    // No watchdog configured.
    assert_eq!(half(None, None), None);
    assert_eq!(half(Some(""), Some(me.as_str())), None);
    // Meant for another process.
    let other = (own + 1).to_string();
    assert_eq!(half(Some("2000000"), Some(other.as_str())), None);
}

#[test]
fn bad_watchdog_values_disable_the_watchdog_but_not_the_notifier() {
    let own = std::process::id();
    for (usec, pid) in [
        (Some("0"), None),
        (Some("-5"), None),
        (Some("soon"), None),
        (Some("18446744073709551616"), None),
        (Some("2000000"), Some("zero")),
        (Some("2000000"), Some("0")),
    ] {
        let problem = watchdog_interval(usec, pid, own).unwrap_err();
        assert!(problem.contains("WATCHDOG_"), "{problem}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = manager(dir.path());
    let n = Notifier::new(&path, Some("soon"), None).unwrap();
    assert_eq!(n.watchdog_interval(), None);
    n.ready("ready").unwrap();
    assert_eq!(recv(&sock), "READY=1\nSTATUS=ready");

    let n = Notifier::new(&path, Some("4000000"), Some(&own.to_string())).unwrap();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
    let n = Notifier::new(&path, Some("4000000"), Some("1")).unwrap();
    assert_eq!(n.watchdog_interval(), None, "PID 1 is not us");
}

#[test]
fn status_texts_are_one_bounded_line_so_they_cannot_inject_assignments() {
    assert_eq!(
        sanitize_status("mount failed:\nREADY=1\r\nMAINPID=1"),
        "mount failed: READY=1  MAINPID=1"
    );
    assert_eq!(sanitize_status("\ttabs\0and\x1bnul "), "tabs and nul");
    assert_eq!(sanitize_status("ready: 2 mounted"), "ready: 2 mounted");
    let long = "é".repeat(STATUS_MAX);
    let cut = sanitize_status(&long);
    assert!(cut.len() <= STATUS_MAX && cut.chars().all(|c| c == 'é'), "{}", cut.len());

    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = manager(dir.path());
    let n = Notifier::new(&path, None, None).unwrap();
    n.status("a\nWATCHDOG=1").unwrap();
    n.stopping("b\nREADY=1").unwrap();
    assert_eq!(recv(&sock), "STATUS=a WATCHDOG=1");
    assert_eq!(recv(&sock), "STOPPING=1\nSTATUS=b READY=1");
}

#[test]
fn from_env_is_none_without_notify_socket() {
    // Tests run in parallel threads of one process: only read the environment here.
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        assert!(Notifier::from_env().is_none());
    }
}
