//! What the healing tests share: a helper that behaves one way at its first start and
//! another at every later one (the daemon passes helpers an explicit environment only, so
//! the switch is a marker file the wrapper itself creates), the figures of the daemon's
//! "healed" line, and the journal's account of one heal.
#![allow(dead_code, clippy::unwrap_used)]

use super::Daemon;
use std::path::{Path, PathBuf};

/// The records of one heal, in order, after the `Verified` of the mount it replaces.
pub const ONE_HEAL: [&str; 5] = ["HelperDied", "Cleaned", "SpawnIntended", "Spawned", "Verified"];

/// A helper script that runs `dms-testfs` with `first` as its fault switch at its first
/// start and with `later` at every later one (`None`: no fault). Whether a start is the
/// first is the existence of `<dir>/<name>.started`, made by the first start with a shell
/// redirection (the helper's environment has no `PATH`, so no external program is used).
pub fn changing_helper(
    dir: &Path,
    name: &str,
    first: Option<&str>,
    later: Option<&str>,
) -> PathBuf {
    let path = dir.join(name);
    let marker = dir.join(format!("{name}.started"));
    let testfs = super::testfs_bin();
    let run = |fault: Option<&str>| match fault {
        Some(f) => format!("DMS_TESTFS_FAULT={f} exec {}", testfs.display()),
        None => format!("exec {}", testfs.display()),
    };
    let script = format!(
        "#!/bin/sh\nif [ -e {marker} ]; then\n  {later}\nfi\n: > {marker}\n{first}\n",
        marker = marker.display(),
        later = run(later),
        first = run(first),
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// The `heal_ms` fields of the daemon's "✓ healed target `target`" lines, in log order.
pub fn heal_times(daemon: &Daemon, target: &str) -> Vec<u64> {
    let needle = format!("healed target {target}:");
    daemon
        .log_text()
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            let (_, rest) = l.split_once("heal_ms=")?;
            rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
        })
        .collect()
}

/// Whether `names` (a target's event names) holds [`ONE_HEAL`] as a contiguous run, and
/// ends with it (nothing after the heal but what `after` allows).
pub fn ends_with_one_heal(names: &[&str], after: &[&str]) -> bool {
    let Some(start) = names.windows(ONE_HEAL.len()).rposition(|w| w == ONE_HEAL) else {
        return false;
    };
    names[start + ONE_HEAL.len()..].iter().all(|n| after.contains(n))
}

/// How many times the daemon logged a death of `target`'s helper (the WARN line).
pub fn deaths_logged(daemon: &Daemon, target: &str) -> usize {
    let needle = format!("s3vaultfuse for target {target} died (");
    daemon.log_text().lines().filter(|l| l.contains(&needle)).count()
}
