//! Routing, answers to well-formed and garbage requests, and slow and silent clients
//! against the real listener: scrapes still get through, and the slow ones are closed at the
//! head deadline.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::metrics::{Action, Outcome};
use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::time::Instant;

/// A listener on 127.0.0.1:0 serving a private registry; dropping the sender stops it.
async fn server() -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let gauges: Arc<dyn Fn() -> Gauges + Send + Sync> = Arc::new(Gauges::default);
    (addr, stop, tokio::spawn(serve_registry(listener, metrics, gauges, stopped)))
}

/// One scrape on a blocking socket (generous 10 s read bound): the status line, or "".
fn scrape(addr: SocketAddr) -> String {
    let mut s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_owned()
}

/// How long until the server closes `s` (EOF or reset), at most `within`; `None` if it
/// stays open that long.
fn closed_within(mut s: &StdStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed())
            }
            Err(_) => return None,
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_succeed_while_slow_and_silent_clients_hold_more_connections_than_there_are_slots()
{
    let (addr, stop, task) = server().await;
    // 32 clients trickle a byte a second (never finishing a head), and more silent ones
    // than there are slots are opened and reopened around the scrapes.
    let trickling: Vec<StdStream> = (0..32).map(|_| StdStream::connect(addr).unwrap()).collect();
    let stop_trickle = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop_trickle = Arc::clone(&stop_trickle);
        std::thread::spawn(move || {
            while !stop_trickle.load(Ordering::Relaxed) {
                for mut s in &trickling {
                    let _ = s.write_all(b"G");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let results = blocking(move || {
        let mut results = Vec::new();
        for _ in 0..10 {
            let silent: Vec<StdStream> =
                (0..MAX_CONNECTIONS + 16).map(|_| StdStream::connect(addr).unwrap()).collect();
            let started = Instant::now();
            results.push((scrape(addr), started.elapsed()));
            drop(silent);
        }
        results
    })
    .await;
    stop_trickle.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    for (status, took) in &results {
        assert_eq!(status, "HTTP/1.1 200 OK", "{results:?}");
        assert!(*took < Duration::from_secs(10), "{results:?}");
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_clients_are_closed_at_the_head_deadline() {
    let (addr, stop, task) = server().await;
    let closed = blocking(move || {
        let silent: Vec<StdStream> = (0..32).map(|_| StdStream::connect(addr).unwrap()).collect();
        let trickling = StdStream::connect(addr).unwrap();
        let writer = {
            let mut s = trickling.try_clone().unwrap();
            std::thread::spawn(move || {
                // "GET /metrics HTTP/1.1\r\n" a byte at a time, never the blank line.
                for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n".iter().cycle().take(40) {
                    if s.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        let bound = HEAD_TIMEOUT + Duration::from_secs(5);
        let mut closed: Vec<_> = silent.iter().map(|s| closed_within(s, bound)).collect();
        closed.push(closed_within(&trickling, bound));
        let _ = trickling.shutdown(std::net::Shutdown::Both);
        writer.join().unwrap();
        closed
    })
    .await;
    assert!(closed.iter().all(Option::is_some), "still open after the head deadline: {closed:?}");
    // The server still serves.
    assert_eq!(blocking(move || scrape(addr)).await, "HTTP/1.1 200 OK");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_slot_is_silent_a_new_connection_closes_the_oldest_and_is_served() {
    let (addr, stop, task) = server().await;
    let (oldest_closed, status) = blocking(move || {
        let silent: Vec<StdStream> =
            (0..MAX_CONNECTIONS).map(|_| StdStream::connect(addr).unwrap()).collect();
        // Every slot taken before the scrape arrives.
        std::thread::sleep(Duration::from_millis(300));
        let status = scrape(addr);
        // Well before the head deadline, the oldest silent client was closed for it.
        let oldest = closed_within(&silent[0], HEAD_TIMEOUT / 4);
        (oldest, status)
    })
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(oldest_closed.is_some(), "the oldest silent connection was not the one closed");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[test]
fn routes_only_get_metrics() {
    assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
    assert_eq!(route(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n"), Route::Metrics);
    assert_eq!(route(b"GET /metrics HTTP/1.1\n\n"), Route::Metrics);
    assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
    for garbage in [
        &b""[..],
        b"\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"\xff\xfe GET /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1 extra\r\n\r\n",
    ] {
        assert_eq!(route(garbage), Route::Bad, "{garbage:?}");
    }
}

/// A listener on 127.0.0.1:0 serving a leaked private registry, and its shutdown.
async fn server_of(
    metrics: &'static Metrics,
) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let gauges: Arc<dyn Fn() -> Gauges + Send + Sync> =
        Arc::new(|| Gauges { mounted: 1, helpers_tracked: 1, ..Gauges::default() });
    let task = tokio::spawn(serve_registry(listener, metrics, gauges, stopped));
    (addr, stop, task)
}

/// A blocking HTTP exchange: send `request` whole, read to EOF.
async fn exchange(addr: SocketAddr, request: &'static [u8]) -> String {
    exchange_then(addr, request, false).await
}

/// [`exchange`], optionally closing the sending side after the request (EOF).
async fn exchange_then(addr: SocketAddr, request: &'static [u8], eof: bool) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(request).unwrap();
        if eof {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn http_get_metrics_is_200_with_the_text_and_other_paths_are_404() {
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    metrics.request(Action::Unmount, Outcome::Success, Duration::from_millis(7));
    let (addr, stop, task) = server_of(metrics).await;

    let response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
    assert!(body.contains("dms_requests_total{action=\"unmount\",outcome=\"success\"} 1\n"));
    assert!(body.contains("dms_request_duration_seconds_count{action=\"unmount\"} 1\n"));
    assert!(body.contains("dms_targets{phase=\"mounted\"} 1\n"), "{body}");
    assert!(body.contains("dms_helpers_tracked 1\n"), "{body}");

    let response = exchange(addr, b"GET /other HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 404 Not Found\r\n"), "{response}");
    let response = exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn http_garbage_is_answered_400_or_closed_and_the_server_keeps_serving() {
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    let (addr, stop, task) = server_of(metrics).await;

    let response = exchange(addr, b"\x00\x01\x02\xff garbage\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    // More than the limit without a blank line: read up to the limit, then refused.
    static HUGE: [u8; 3 * MAX_REQUEST] = [b'A'; 3 * MAX_REQUEST];
    let response = exchange(addr, &HUGE).await;
    assert!(response.is_empty() || response.starts_with("HTTP/1.1 400 "), "{response}");
    // A client that connects and hangs up at once.
    drop(std::net::TcpStream::connect(addr).unwrap());
    // A request cut short by EOF (no blank line) is still routed.
    let response = exchange_then(addr, b"GET /metrics HTTP/1.1\r\n", true).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    let response = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(!task.is_finished());
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn serve_stops_when_the_shutdown_sender_is_dropped() {
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    let (_, stop, task) = server_of(metrics).await;
    drop(stop);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn bind_reports_the_address_it_could_not_take() {
    let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = bind(addr).await.unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
