//! The admin socket's client side: one request, one answer.

use crate::admin::protocol::{AdminRequest, AdminResponse};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach dms-server at {} ({source}); is it running? (systemctl status dms-server)",
        path.display()
    )]
    Unreachable { path: PathBuf, source: std::io::Error },
    #[error("permission denied on {}: the admin socket serves root only", path.display())]
    Denied { path: PathBuf },
    #[error("lost the connection to {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("dms-server sent an answer this dms-ctl cannot read: {0}")]
    Garbled(String),
    /// The daemon refused or failed the command; the text is its reason.
    #[error("{0}")]
    Refused(String),
}

impl ClientError {
    /// Exit codes: 2 when the daemon cannot be asked at all, 1 when it said no.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused(_) => 1,
            _ => 2,
        }
    }
}

/// Ask and wait up to `timeout` for the answer's data.
pub fn ask(
    path: &Path,
    request: &AdminRequest,
    timeout: Duration,
) -> Result<serde_json::Value, ClientError> {
    let io = |source| ClientError::Io { path: path.to_path_buf(), source };
    let mut stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => ClientError::Denied { path: path.to_path_buf() },
        _ => ClientError::Unreachable { path: path.to_path_buf(), source },
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line =
        serde_json::to_string(request).map_err(|e| ClientError::Garbled(e.to_string()))?;
    line.push('\n');
    // A refusal (a non-root peer) is sent before the request is read, so the write may
    // fail: the answer is read anyway, and the write error counts only if there is none.
    let written = stream.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = BufReader::new(stream).read_line(&mut answer);
    match (written, read) {
        (_, Ok(n)) if n > 0 => {}
        (Err(e), _) | (Ok(()), Err(e)) => return Err(io(e)),
        (Ok(()), Ok(_)) => {
            return Err(ClientError::Garbled("the daemon closed without an answer".into()))
        }
    }
    let response: AdminResponse =
        serde_json::from_str(answer.trim_end()).map_err(|e| ClientError::Garbled(e.to_string()))?;
    match (response.ok, response.data, response.error) {
        (true, Some(data), _) => Ok(data),
        (_, _, Some(error)) if error.starts_with("permission denied") => {
            Err(ClientError::Denied { path: path.to_path_buf() })
        }
        (_, _, Some(error)) => Err(ClientError::Refused(error)),
        _ => Err(ClientError::Garbled("an answer with neither data nor error".into())),
    }
}
