//! The admin socket's client side, for `dms-ctl` and an online `dms-journal`: one request,
//! one answer. Plain std: a blocking Unix socket with deadlines, so a stuck daemon cannot
//! hang an operator's shell.
//!
//! [`AskError`] says what went wrong with the socket itself, without naming it; each tool
//! words it in its own messages (`dms-ctl` adds the path and how to find out why,
//! `dms-journal` names the journal and where the socket's path came from).

use super::protocol::{AdminRequest, AdminResponse};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Connecting (or setting its deadlines) failed: see [`connect_reason`].
    #[error("{}", connect_reason(.0))]
    Connect(std::io::Error),
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    #[error("cannot send the request: {0}")]
    Send(std::io::Error),
    #[error("no answer within {}s", .after.as_secs())]
    Timeout { after: Duration, source: std::io::Error },
    #[error("cannot read the answer: {0}")]
    Receive(std::io::Error),
    #[error("the daemon closed the connection without answering")]
    Closed,
    #[error("the answer does not follow the admin protocol: {0}")]
    Malformed(serde_json::Error),
    #[error("the answer does not follow the admin protocol: it has neither data nor an error")]
    Empty,
    /// The daemon refused or failed the command; the text is its reason.
    #[error("the daemon refused: {0}")]
    Refusal(String),
}

/// The usual reasons a connection fails, in an operator's words.
fn connect_reason(error: &std::io::Error) -> String {
    match error.kind() {
        ErrorKind::NotFound => "there is no socket there".to_owned(),
        ErrorKind::PermissionDenied => {
            "permission denied: the admin socket serves root only".to_owned()
        }
        ErrorKind::ConnectionRefused => "nothing is listening on it".to_owned(),
        _ => format!("cannot connect: {error}"),
    }
}

/// Send `request` to the daemon at `socket` and wait up to `timeout` (each for the write
/// and the read) for the answer's data.
pub fn ask(
    socket: &Path,
    request: &AdminRequest,
    timeout: Duration,
) -> Result<serde_json::Value, AskError> {
    let mut stream = UnixStream::connect(socket).map_err(AskError::Connect)?;
    let deadlines = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)));
    deadlines.map_err(AskError::Connect)?;
    let mut line = serde_json::to_string(request).map_err(AskError::Encode)?;
    line.push('\n');
    // A refusal (a non-root peer) may be sent before the request is read, so the write may
    // fail: the answer is read anyway, and the write error counts only if there is none.
    let written = stream.write_all(line.as_bytes()).and_then(|()| stream.flush());
    let mut answer = String::new();
    let read = BufReader::new(stream).read_line(&mut answer);
    let timed_out =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    match (written, read) {
        (_, Ok(_)) if !answer.trim().is_empty() => {}
        (Err(e), _) if timed_out(&e) => {
            return Err(AskError::Timeout { after: timeout, source: e })
        }
        (Err(e), _) => return Err(AskError::Send(e)),
        (Ok(()), Err(e)) if timed_out(&e) => {
            return Err(AskError::Timeout { after: timeout, source: e })
        }
        (Ok(()), Err(e)) => return Err(AskError::Receive(e)),
        (Ok(()), Ok(_)) => return Err(AskError::Closed),
    }
    let response: AdminResponse =
        serde_json::from_str(answer.trim_end()).map_err(AskError::Malformed)?;
    match (response.ok, response.data, response.error) {
        (true, Some(data), _) => Ok(data),
        (_, _, Some(error)) => Err(AskError::Refusal(error)),
        _ => Err(AskError::Empty),
    }
}
