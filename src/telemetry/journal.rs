//! Native journal entries (systemd's journal protocol over `/run/systemd/journal/socket`),
//! through `tracing-journald`.
//!
//! Field names are the tracing field names upper-cased, without a prefix, so a request's
//! span fields read `TARGET_ID`, `REQUEST_KEY`, `ACTION` and `HELPER_PID`, and its outcome
//! line `OUTCOME`. Levels map to the syslog priorities `journalctl -p` expects (INFO is
//! "informational", not "notice").

use tracing_journald::{Priority, PriorityMappings};

/// The identifier `journalctl -t` selects (the unit name selects the same entries).
const SYSLOG_IDENTIFIER: &str = "dms-server";

pub(super) fn layer() -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())
        .with_priority_mappings(PriorityMappings {
            info: Priority::Informational,
            debug: Priority::Debug,
            ..PriorityMappings::new()
        }))
}

/// True when stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` holds
/// its `device:inode`, and stderr still is that file (a child that inherited the variable
/// with stderr redirected elsewhere must keep writing there, as systemd.exec(5) says).
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    stream.to_str().is_some_and(|s| names_file(s, stat.st_dev, stat.st_ino))
}

/// `JOURNAL_STREAM`'s format: decimal `device:inode`.
fn names_file(stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = stream.split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_journal_stream_values_when_matched_against_a_file_then_only_its_own_matches() {
        assert!(names_file("64769:1234", 64769, 1234));
        assert!(!names_file("64769:1235", 64769, 1234));
        assert!(!names_file("1:1234", 64769, 1234));
        assert!(!names_file("garbage", 64769, 1234));
        assert!(!names_file("64769:", 64769, 1234));
    }
}
