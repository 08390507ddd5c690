//! The `/metrics` endpoint: a minimal HTTP/1.1 responder (see the module docs above).

use super::{global, Gauges, Metrics, MetricsError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Requests are one line and a few headers; anything longer is not a scraper.
pub(super) const MAX_REQUEST: usize = 4 * 1024;
/// A client gets this long to send its request and this long again to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapers are one or two Prometheus servers; more connections than this are refused.
pub(super) const MAX_CONNECTIONS: usize = 16;
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    loop {
        if *shutdown.borrow() {
            return;
        }
        while connections.try_join_next().is_some() {}
        tokio::select! {
            changed = shutdown.changed() => if changed.is_err() { return },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() >= MAX_CONNECTIONS => {
                    tracing::debug!(%peer, "too many metrics connections; closing this one");
                    drop(stream);
                }
                Ok((stream, peer)) => {
                    let gauges = Arc::clone(&gauges);
                    connections.spawn(async move {
                        if let Err(e) = answer(&stream, metrics, gauges.as_ref()).await {
                            tracing::debug!(%peer, error = %e, "metrics connection failed");
                        }
                    });
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

/// Read one request (bounded, deadlined), write one response, close.
async fn answer(
    stream: &TcpStream,
    metrics: &Metrics,
    gauges: &(dyn Fn() -> Gauges + Send + Sync),
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(IO_TIMEOUT, read_head(stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()), // silent client: just close
    };
    let response = match route(&head) {
        Route::Metrics => respond("200 OK", CONTENT_TYPE, &metrics.render(&gauges())),
        Route::NotFound => respond("404 Not Found", "text/plain", "not found; try /metrics\n"),
        Route::NotAllowed => respond("405 Method Not Allowed", "text/plain", "GET only\n"),
        Route::Bad => respond("400 Bad Request", "text/plain", "bad request\n"),
    };
    match tokio::time::timeout(IO_TIMEOUT, write_all(stream, response.as_bytes())).await {
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
