#![allow(clippy::unwrap_used)]
use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static RELEASE: AtomicBool = AtomicBool::new(false);

/// Stands for a `stat` on a hung mount: it does not come back until released.
fn hang(_: &Path) -> bool {
    while !RELEASE.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn soon() -> Instant {
    Instant::now() + Duration::from_millis(100)
}

#[test]
fn given_a_hung_path_when_asked_again_then_it_is_stuck_at_once_without_a_thread() {
    let path = "/dms-probe-test/hung";
    assert!(matches!(probe(path, soon(), hang), Probed::TimedOut));
    assert_eq!(stuck_paths(), [path]);
    let threads = running();
    let started = Instant::now();
    for _ in 0..10 {
        assert!(matches!(probe(path, soon(), hang), Probed::Stuck));
    }
    assert!(started.elapsed() < Duration::from_millis(100), "answered without waiting");
    assert_eq!(running(), threads, "no thread started on a stuck path");
    // It comes back: the path is asked again, and answers.
    RELEASE.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while (running() > 0 || !stuck_paths().is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(stuck_paths().is_empty(), "an answer unsticks the path");
    assert!(matches!(probe(path, soon(), hang), Probed::Answered(true)));
}

#[test]
fn given_paths_and_errors_then_only_a_gone_filesystem_counts_as_gone() {
    let stat = |p: &Path| std::fs::metadata(p).map(drop);
    let deadline = Instant::now() + Duration::from_secs(5);
    assert!(matches!(probe("/", deadline, stat), Probed::Answered(Ok(()))));
    let Probed::Answered(Err(missing)) = probe("/nonexistent/dms", deadline, stat) else {
        panic!("a missing path is an answer");
    };
    assert!(!is_gone(&missing));
    let errno = |e: rustix::io::Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
    assert!(is_gone(&errno(rustix::io::Errno::NOTCONN)));
    assert!(is_gone(&errno(rustix::io::Errno::STALE)));
    for answered in [rustix::io::Errno::ACCESS, rustix::io::Errno::IO, rustix::io::Errno::NOENT] {
        assert!(!is_gone(&errno(answered)), "{answered:?}");
    }
    assert!(!stuck_paths().contains(&"/".to_owned()), "finished probes are forgotten");
}
