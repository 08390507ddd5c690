//! Healing is bounded (issue 29, "Prove it"): a helper that dies at every start is
//! replaced `heal_attempts` times within `heal_window`, then given up. The real daemon,
//! broker, Barbican and FUSE (dms-testfs behind a wrapper: the first helper serves until
//! SIGKILLed, every later one mounts and dies 2 s later), in a private mount namespace.
//! (A replacement that exits before its spawn is confirmed is not retried but `failed` at
//! once, where one that exits a moment later counts as a death and is retried: a race of
//! the daemon's, so this test's replacements mount first.) Given up means:
//! the journal ends with `Lost` "... not healed again" and its `Cleaned`, nothing is left of the target (no
//! helper, no mount, no PID file), `dms_helper_heals_total{outcome="given_up"}` counts it,
//! and the `DmsHelperNotHealed` alert's expression (dist/prometheus/dms-alerts.yml) holds
//! on the scraped counters.
#![allow(clippy::unwrap_used)]

use crate::server_metrics::{metrics_addr, scrape, value};
use crate::{e2e, support};

use e2e::heal::{changing_helper, deaths_logged};
use e2e::host::{helpers_serving, mounted, pid_of, sigkill, wait_until, HelperReaper};
use e2e::journal::{event_names, history, lost_reasons};
use e2e::{call, mounted_msg, runtime, s3_mount, testfs_credentials, uuid, Daemon};
use std::path::Path;
use std::time::Duration;
use support::mountns::{self, run_isolated_with_timeout};
use support::{Barbican, Broker};

const TOKEN: &str = "gAAAAAB-heal-bound-keystone-token";
const LIMIT: Duration = Duration::from_secs(240);
const ATTEMPTS: u32 = 2;

fn heals(body: &str, outcome: &str) -> f64 {
    value(body, &format!("dms_helper_heals_total{{outcome=\"{outcome}\"}}"))
}

fn deaths(body: &str, cause: &str) -> f64 {
    value(body, &format!("dms_helper_deaths_total{{cause=\"{cause}\"}}"))
}

/// What `DmsHelperNotHealed` computes, `increase(dms_helper_heals_total{outcome=~
/// "given_up|failed"}[15m]) > 0`, from two scrapes of one daemon less than 15 min apart
/// (its counters start at 0 and never reset while it runs, so the increase is the
/// difference).
fn not_healed_alert_fires(before: &str, after: &str) -> bool {
    let lost = |body: &str| heals(body, "given_up") + heals(body, "failed");
    lost(after) - lost(before) > 0.0
}

#[test]
fn a_helper_that_dies_at_every_start_is_given_up_after_the_bound_and_the_alert_fires() {
    let name = "a_helper_that_dies_at_every_start_is_given_up_after_the_bound_and_the_alert_fires";
    run_isolated_with_timeout(name, LIMIT, || {
        let barbican = Barbican::shared();
        let creds = testfs_credentials("AKIAHEALBOUND", "heal-bound-secret", "bucket-bound");
        let secret_ref = barbican.store_secret(TOKEN, &creds);
        let dir = support::temp_dir("dms-heal-bound-");
        let _reaper = HelperReaper(dir.path().join("pids"));
        let helper = changing_helper(dir.path(), "helper-once", None, Some("die-after=2"));
        let extra = [
            ("DMS_S3VAULTFUSE_BIN", helper.display().to_string()),
            ("DMS_HEAL_ATTEMPTS", ATTEMPTS.to_string()),
            ("DMS_HEAL_WINDOW", "120".to_owned()),
        ];
        let mut daemon = Daemon::start(Broker::shared(), dir.path(), "heal-bound", &extra);
        let addr = metrics_addr(&mut daemon);
        let (target, path) = ("bound-1", daemon.path("bound-1"));
        let reply =
            call(&runtime(), &daemon, &s3_mount(target, &path, &secret_ref, TOKEN), &uuid());
        assert_eq!(reply, mounted_msg(&path), "{}", daemon.log_text());
        mounted(&path, "fuse.dms-testfs");
        let before = scrape(addr);
        assert!(!not_healed_alert_fires(&before, &before));

        sigkill(pid_of(&daemon, target), "the helper");
        wait_until("the target to be given up and cleaned", &daemon, || {
            daemon.log_text().contains("not healed again")
                && daemon.pid_files().is_empty()
                && mountns::mount_at(Path::new(&path)).is_none()
                && helpers_serving(&path).is_empty()
        });
        let after = scrape(addr);
        assert_eq!(heals(&after, "given_up"), 1.0, "{after}");
        assert_eq!(heals(&after, "healed"), f64::from(ATTEMPTS), "{after}");
        let all: f64 = ["exit", "signal", "oom", "unknown"].iter().map(|c| deaths(&after, c)).sum();
        assert_eq!(all, f64::from(ATTEMPTS + 1), "every death counted: {after}");
        assert!(deaths(&after, "signal") >= 1.0, "the SIGKILL: {after}");
        assert!(not_healed_alert_fires(&before, &after), "{after}");
        let logged = deaths_logged(&daemon, target);
        assert_eq!(logged, ATTEMPTS as usize + 1, "{}", daemon.log_text());
        let log = daemon.log_text();
        assert!(log.contains(&format!("target {target} died and the target was not healed")));
        let journal = daemon.journal.clone();
        daemon.stop();

        let records = history(&journal, target);
        let names = event_names(&records);
        // Given up, then its remains cleaned up: nothing after.
        assert!(names.ends_with(&["Lost", "Cleaned"]), "{names:?}");
        let died = names.iter().filter(|n| **n == "HelperDied").count();
        assert_eq!(died, ATTEMPTS as usize, "one HelperDied per healed death: {names:?}");
        let verified = names.iter().filter(|n| **n == "Verified").count();
        assert_eq!(verified, 1 + ATTEMPTS as usize, "the mount and each replacement: {names:?}");
        let reasons = lost_reasons(&records);
        let last = reasons.last().unwrap();
        let counted = format!("helper died {} times in ", ATTEMPTS + 1);
        assert!(last.contains(&counted) && last.contains("not healed again"), "{last}");
        assert!(!log.contains("heal-bound-secret"), "the secret key reached the log");
    });
}
