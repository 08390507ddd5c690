//! `dms-ctl`'s wording of the admin client ([`crate::admin::client`], which online
//! `dms-journal` shares): every failure names the socket, and says how to find out why.

use crate::admin::client::AskError;
use crate::admin::protocol::AdminRequest;
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

    fn new(path: &Path, error: AskError) -> Self {
        let path = path.to_path_buf();
        match error {
            AskError::Connect(source) if source.kind() == std::io::ErrorKind::PermissionDenied => {
                ClientError::Denied { path }
            }
            AskError::Connect(source) => ClientError::Unreachable { path, source },
            AskError::Send(source)
            | AskError::Receive(source)
            | AskError::Timeout { source, .. } => ClientError::Io { path, source },
            AskError::Closed => ClientError::Garbled("the daemon closed without an answer".into()),
            AskError::Encode(e) | AskError::Malformed(e) => ClientError::Garbled(e.to_string()),
            AskError::Empty => ClientError::Garbled("an answer with neither data nor error".into()),
            AskError::Refusal(error) if error.starts_with("permission denied") => {
                ClientError::Denied { path }
            }
            AskError::Refusal(error) => ClientError::Refused(error),
        }
    }
}

/// Ask and wait up to `timeout` for the answer's data.
pub fn ask(
    path: &Path,
    request: &AdminRequest,
    timeout: Duration,
) -> Result<serde_json::Value, ClientError> {
    crate::admin::client::ask(path, request, timeout).map_err(|e| ClientError::new(path, e))
}
