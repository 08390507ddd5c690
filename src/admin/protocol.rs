//! The admin socket's protocol: one JSON line in, one JSON line out, then the server
//! closes the connection. Plain JSON so an operator with `socat` speaks it too; `dms-ctl`
//! and `dms-journal` speak it through [`super::client`].
//!
//! ```text
//! → {"command":"status"}
//! ← {"ok":true,"data":{...},"error":null}
//! → {"command":"stop","target":"t-1"}
//! ← {"ok":false,"data":null,"error":"t-1 is not mounted by a helper of this daemon"}
//! ```

use serde::{Deserialize, Serialize};

/// Requests are at most this long (a journal query's arguments are the longest).
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// The daemon: node, queue, version, pid, boot id, uptime, counts.
    Status,
    /// Every target not unmounted (`all`: every target the journal knows); `detailed` adds
    /// the helper's CPU and memory.
    Targets {
        #[serde(default)]
        detailed: bool,
        #[serde(default)]
        all: bool,
    },
    /// Counts per state, helpers alive, PID files on disk, and where memory (the journal's
    /// state) and disk (PID files, mount table) disagree.
    Stats,
    /// Run a reconcile pass now (what the periodic resync does) and report it.
    Cleanup,
    /// Stop one target's helper: an unmount through the engine, journaled like any request.
    /// Refused unless the target is mounted by a helper the journal knows.
    Stop {
        target: String,
        /// The helper PID the operator means (`dms-ctl stop --pid`): refused if the target's
        /// helper is another process by now.
        #[serde(default)]
        pid: Option<u32>,
    },
    /// `dms-journal` arguments (after the program name), answered against the journal the
    /// daemon holds; the data is a [`JournalAnswer`].
    Journal { args: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminResponse {
    pub ok: bool,
    pub data: Option<serde_json::Value>,
    pub error: Option<String>,
}

impl AdminResponse {
    pub fn ok(data: serde_json::Value) -> Self {
        Self { ok: true, data: Some(data), error: None }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self { ok: false, data: None, error: Some(message.into()) }
    }
}

/// What `dms-journal` would have printed and exited with, run offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalAnswer {
    pub exit_code: u8,
    pub stdout: String,
    pub stderr: String,
}
