//! The tool's side of online `dms-journal`: one request through the daemon's admin socket.
//!
//! The protocol (the daemon's `admin::protocol`, which this crate cannot depend on): one
//! JSON line `{"command":"journal","args":[...]}` in, one JSON line
//! `{"ok":true,"data":{"exit_code","stdout","stderr"},"error":null}` out, then the server
//! closes. Plain std: a blocking Unix socket with deadlines, so a stuck daemon cannot hang
//! an operator's shell.

use crate::cli::online::Answer;
use serde::Deserialize;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long one read or write on the socket may take. `verify` of a large journal is the
/// slowest answer; half a minute is far beyond it and still ends a hang.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("there is no socket there")]
    Missing,
    #[error("permission denied: the admin socket serves root only")]
    Denied,
    #[error("nothing is listening on it")]
    Refused,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("cannot send the request: {0}")]
    Send(std::io::Error),
    #[error("no answer within {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error("cannot read the answer: {0}")]
    Receive(std::io::Error),
    #[error("the daemon closed the connection without answering")]
    Closed,
    #[error("the answer does not follow the admin protocol: {0}")]
    Malformed(serde_json::Error),
    #[error("the daemon refused: {0}")]
    Refusal(String),
}

#[derive(Debug, Deserialize)]
struct Response {
    ok: bool,
    data: Option<serde_json::Value>,
    error: Option<String>,
}

/// Send `args` (a `dms-journal` command line without the program name) and return what the
/// daemon answered.
pub fn ask(socket: &Path, args: &[String]) -> Result<Answer, AskError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        ErrorKind::NotFound => AskError::Missing,
        ErrorKind::PermissionDenied => AskError::Denied,
        ErrorKind::ConnectionRefused => AskError::Refused,
        _ => AskError::Connect(e),
    })?;
    let timeouts = stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)));
    timeouts.map_err(AskError::Connect)?;
    let mut line = serde_json::json!({ "command": "journal", "args": args }).to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).and_then(|()| stream.flush()).map_err(|e| {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => AskError::Timeout,
            _ => AskError::Send(e),
        }
    })?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => AskError::Timeout,
        _ => AskError::Receive(e),
    })?;
    if reply.trim().is_empty() {
        return Err(AskError::Closed);
    }
    let response: Response = serde_json::from_str(&reply).map_err(AskError::Malformed)?;
    if !response.ok {
        let error = response.error.unwrap_or_else(|| "no reason given".to_owned());
        return Err(AskError::Refusal(error));
    }
    let data = response.data.unwrap_or(serde_json::Value::Null);
    serde_json::from_value(data).map_err(AskError::Malformed)
}
