//! Labels of the healing counters: `dms_helper_deaths_total{cause}` (why a mounted target's
//! helper died, as [`DeathCause`] words it) and `dms_helper_heals_total{outcome}` (what
//! became of the target).

use crate::exec::death::DeathCause;

/// One of each cause, in the order the counters are kept and exposed.
pub(super) const CAUSES: [DeathCause; 4] =
    [DeathCause::Exit(0), DeathCause::Signal(0), DeathCause::Oom, DeathCause::Unknown];

/// Where `cause` is counted (its place in [`CAUSES`]).
pub(super) fn cause_index(cause: DeathCause) -> usize {
    match cause {
        DeathCause::Exit(_) => 0,
        DeathCause::Signal(_) => 1,
        DeathCause::Oom => 2,
        DeathCause::Unknown => 3,
    }
}

/// What became of a target whose helper died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealOutcome {
    /// A replacement serves the path.
    Healed,
    /// It could not be healed (no environment known, a clean exit, the spawn failed, the
    /// mount never came): the target is lost.
    Failed,
    /// Its helpers died more often than `heal_attempts` within `heal_window`: lost.
    GivenUp,
}

impl HealOutcome {
    pub const ALL: [HealOutcome; 3] =
        [HealOutcome::Healed, HealOutcome::Failed, HealOutcome::GivenUp];

    pub fn label(self) -> &'static str {
        match self {
            HealOutcome::Healed => "healed",
            HealOutcome::Failed => "failed",
            HealOutcome::GivenUp => "given_up",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_its_own_counter_in_label_order() {
        for (i, cause) in CAUSES.into_iter().enumerate() {
            assert_eq!(cause_index(cause), i, "{}", cause.label());
        }
        assert_eq!(cause_index(DeathCause::Signal(9)), cause_index(DeathCause::Signal(15)));
        let labels: Vec<&str> = CAUSES.iter().map(|c| c.label()).collect();
        assert_eq!(labels, ["exit", "signal", "oom", "unknown"]);
    }
}
