//! The operator lines of the seed's server guide ("Log Messages"), in its words and at
//! INFO, so the runbooks and alerts written for the Python service find what they look
//! for. They are logged where the engine performs the effect, inside the request's (or the
//! reconcile step's) span, which carries the target and the helper's PID as fields.

use dms_journal::TargetId;
use std::path::Path;
use std::time::Duration;

pub(super) fn spawning(target: &TargetId) {
    tracing::info!("Spawning s3vaultfuse for target {target}");
}

pub(super) fn spawned(
    target: &TargetId,
    pid: u32,
    mount_path: &str,
    pid_file: &Path,
    tracked: u64,
) {
    tracing::info!("✓ s3vaultfuse spawned successfully for target {target}");
    tracing::info!("  PID: {pid}");
    tracing::info!("  Mount path: {mount_path}");
    tracing::info!("  PID file: {}", pid_file.display());
    tracing::info!("  Total tracked processes: {tracked}");
}

pub(super) fn killing(target: &TargetId, pid: u32, uptime: Option<Duration>) {
    tracing::info!("Killing s3vaultfuse process for target {target}");
    tracing::info!("  PID: {pid}");
    match uptime {
        Some(uptime) => tracing::info!("  Uptime: {}", uptime_text(uptime)),
        None => tracing::info!("  Uptime: unknown (the process is gone)"),
    }
}

pub(super) fn killed(target: &TargetId) {
    tracing::info!("✓ s3vaultfuse process killed for target {target}");
}

/// A mounted target's helper died: `s3vaultfuse for target T died (signal: 9 (SIGKILL),
/// uptime 0:12:03); healing`.
pub(super) fn died(target: &TargetId, status: &str, age: Option<Duration>, healing: bool) {
    let uptime = age.map_or_else(|| "unknown".to_owned(), uptime_text);
    let then = if healing { "healing" } else { "healing is off (heal_attempts = 0)" };
    tracing::warn!(%status, "s3vaultfuse for target {target} died ({status}, uptime {uptime}); {then}");
}

pub(super) fn healed(target: &TargetId, pid: u32, mount_path: &str, took: Duration) {
    let ms = took.as_millis() as u64;
    tracing::info!(
        heal_ms = ms,
        "✓ healed target {target}: s3vaultfuse pid {pid} serves {mount_path} again ({ms} ms after its predecessor died)"
    );
}

pub(super) fn pid_file_deleted(path: &Path) {
    tracing::info!("✓ PID file deleted: {}", path.display());
}

/// Python's `str(timedelta)` without the fraction: `1:23:45`, `2 days, 0:00:05`.
pub fn uptime_text(uptime: Duration) -> String {
    let secs = uptime.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let hms = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        n => format!("{n} days, {hms}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_uptimes_when_rendered_then_they_read_as_pythons_timedelta() {
        assert_eq!(uptime_text(Duration::from_secs(0)), "0:00:00");
        assert_eq!(uptime_text(Duration::from_secs(5025)), "1:23:45");
        assert_eq!(uptime_text(Duration::from_millis(59_999)), "0:00:59");
        assert_eq!(uptime_text(Duration::from_secs(86_400 + 5)), "1 day, 0:00:05");
        assert_eq!(uptime_text(Duration::from_secs(3 * 86_400 + 36_000)), "3 days, 10:00:00");
    }
}
