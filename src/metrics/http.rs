//! The `/metrics` endpoint: a minimal HTTP/1.1 responder (see the module docs above).
//!
//! Slow clients cannot starve scrapes. Any local user can connect (the address is local,
//! not private), so a fixed set of slots that idle clients can fill is a denial of service:
//! with 16 slots and a 5 s read deadline, 16 trickling clients made most scrapes fail.
//! Three rules instead:
//! - the request head must be complete [`HEAD_TIMEOUT`] (2 s) after accept, or the
//!   connection is closed: a slot held without progress is freed quickly;
//! - [`MAX_CONNECTIONS`] (64) slots, far more than scrapers;
//! - when every slot is taken, the newest connection is not refused: the *oldest*
//!   connection still reading its head is closed to make room. A scraper's head arrives
//!   right after its connect, so it is served before it could become the oldest; a flood of
//!   slow clients only evicts itself.
//!
//! No per-peer limit: on a loopback address every local user, the scraper included, is the
//! same peer (127.0.0.1), so such a limit would hit the scraper as much as the attacker.

use super::{global, Gauges, Metrics, MetricsError};
use prometheus_client::encoding::prometheus_text;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

/// Requests are one line and a few headers; anything longer is not a scraper.
pub(super) const MAX_REQUEST: usize = 4 * 1024;
/// From accept to the end of the request head. A scraper sends its few header lines at
/// once (a millisecond on a local address); a client that has not after this long is slow
/// or hostile, and is closed.
pub(super) const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// A client gets this long to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapers are one or two Prometheus servers; this is many times that, and the budget of
/// file descriptors spent on metrics at most.
pub(super) const MAX_CONNECTIONS: usize = 64;

/// Bind the metrics listener; separate from [`serve`] so the server can log the address
/// actually bound (port 0 picks a free one) and fail the start on a bad address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })
}

/// Serve the [`global`] registry on `listener` until `shutdown` turns true (or its sender
/// is dropped). `gauges` runs once per scrape.
pub async fn serve(
    listener: TcpListener,
    gauges: Arc<dyn Fn() -> Gauges + Send + Sync>,
    shutdown: watch::Receiver<bool>,
) {
    serve_registry(listener, global(), gauges, shutdown).await
}

/// [`serve`] with a given registry.
pub async fn serve_registry(
    listener: TcpListener,
    metrics: &'static Metrics,
    gauges: Arc<dyn Fn() -> Gauges + Send + Sync>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    // Accept order; each with whether its head is complete (then it is answering).
    let mut slots: VecDeque<Slot> = VecDeque::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        while connections.try_join_next().is_some() {}
        tokio::select! {
            changed = shutdown.changed() => if changed.is_err() { return },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    slots.retain(|slot| !slot.task.is_finished());
                    if slots.len() >= MAX_CONNECTIONS && !evict_oldest_reading(&mut slots) {
                        tracing::debug!(%peer, "every metrics connection is answering; closing this one");
                        drop(stream);
                        continue;
                    }
                    let gauges = Arc::clone(&gauges);
                    let head_done = Arc::new(AtomicBool::new(false));
                    let done = Arc::clone(&head_done);
                    let task = connections.spawn(async move {
                        if let Err(e) = answer(&stream, metrics, gauges.as_ref(), &done).await {
                            tracing::debug!(%peer, error = %e, "metrics connection failed");
                        }
                    });
                    slots.push_back(Slot { task, head_done });
                }
                Err(e) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// One connection being served.
struct Slot {
    task: AbortHandle,
    /// Its request head is complete: it is being answered (bounded by [`WRITE_TIMEOUT`]).
    head_done: Arc<AtomicBool>,
}

/// Close the oldest connection still waiting for its request head; false if there is none.
fn evict_oldest_reading(slots: &mut VecDeque<Slot>) -> bool {
    let Some(at) = slots.iter().position(|slot| !slot.head_done.load(Ordering::Acquire)) else {
        return false;
    };
    if let Some(slot) = slots.remove(at) {
        tracing::debug!("metrics connections full; closing the oldest one still silent");
        slot.task.abort();
    }
    true
}

/// Read one request (bounded, deadlined), write one response, close.
async fn answer(
    stream: &TcpStream,
    metrics: &Metrics,
    gauges: &(dyn Fn() -> Gauges + Send + Sync),
    head_done: &AtomicBool,
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()), // silent or trickling client: just close
    };
    head_done.store(true, Ordering::Release);
    let response = match route(&head) {
        Route::Metrics => match metrics.render(&gauges()) {
            Ok(text) => respond("200 OK", prometheus_text::CONTENT_TYPE, &text),
            Err(e) => {
                tracing::error!(error = %e, "metrics scrape failed");
                respond("500 Internal Server Error", "text/plain", "cannot encode the metrics\n")
            }
        },
        Route::NotFound => respond("404 Not Found", "text/plain", "not found; try /metrics\n"),
        Route::NotAllowed => respond("405 Method Not Allowed", "text/plain", "GET only\n"),
        Route::Bad => respond("400 Bad Request", "text/plain", "bad request\n"),
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write_all(stream, response.as_bytes())).await {
        Ok(written) => written,
        Err(_) => Ok(()),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    Metrics,
    NotFound,
    NotAllowed,
    Bad,
}

/// What the request line asks for. Only the request line matters: no body is expected
/// and every response closes the connection.
pub(super) fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|b| *b == b'\n').next() else { return Route::Bad };
    let Ok(line) = std::str::from_utf8(line) else { return Route::Bad };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Route::Bad;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics,
        (_, "/metrics") => Route::NotAllowed,
        _ => Route::NotFound,
    }
}

fn respond(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Read until the end of the headers, EOF, or [`MAX_REQUEST`] bytes (what was read is then
/// routed; an incomplete or oversized head usually fails to parse and gets a 400).
async fn read_head(stream: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; MAX_REQUEST];
    let mut len = 0;
    while len < MAX_REQUEST {
        stream.readable().await?;
        match stream.try_read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                let head = &buf[..len];
                if head.windows(4).any(|w| w == b"\r\n\r\n")
                    || head.windows(2).any(|w| w == b"\n\n")
                {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
