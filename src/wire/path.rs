//! Mount paths from requests.
//!
//! The rule is "reject, never normalize": a path is accepted only if it is already in the
//! one canonical spelling (absolute, no empty, `.` or `..` components, no trailing `/`) and
//! lies strictly below the mount base. Normalizing would make two different strings name
//! the same target, and the journal, the PID files and the mount table are compared by
//! string; a client that sends a non-canonical path is buggy and should hear so.
//!
//! Symlinks are not resolved here (this module does no I/O): the mount executor must not
//! follow a symlink planted inside the mount base.

use super::{echo, WireError};
use dms_journal::MountBase;

/// Linux `PATH_MAX` includes the terminating NUL.
const MAX_PATH_LEN: usize = 4095;
/// Linux `NAME_MAX`.
const MAX_COMPONENT_LEN: usize = 255;

/// `raw` if it is a canonical path strictly inside `base`.
pub(super) fn mount_path(raw: &str, base: &MountBase) -> Result<String, WireError> {
    let refuse = |reason: String| WireError::BadMountPath { path: echo(raw), reason };
    if raw.len() > MAX_PATH_LEN {
        return Err(refuse(format!("longer than {MAX_PATH_LEN} bytes")));
    }
    if raw.chars().any(char::is_control) {
        return Err(refuse("contains a control character".to_owned()));
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(refuse("must be an absolute path".to_owned()));
    };
    for component in rest.split('/') {
        match component {
            "" => return Err(refuse("must be normalized (no '//' or trailing '/')".to_owned())),
            "." | ".." => return Err(refuse("must not contain '.' or '..' components".to_owned())),
            c if c.len() > MAX_COMPONENT_LEN => {
                return Err(refuse(format!(
                    "has a component longer than {MAX_COMPONENT_LEN} bytes"
                )))
            }
            _ => {}
        }
    }
    match base.contains(raw) {
        true => Ok(raw.to_owned()),
        false => Err(refuse(format!("must be inside the mount base {base}"))),
    }
}
