//! Labels of the healing counters: `dms_helper_deaths_total{cause}` (why a mounted target's
//! helper died) and `dms_helper_heals_total{outcome}` (what became of the target).

/// Why a helper died, from its exit status as the reaper words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathCause {
    /// It exited with a code (a crash it noticed itself, a failed mount).
    Exit,
    /// A signal ended it (SIGKILL, SIGSEGV, ...), other than the OOM killer's.
    Signal,
    /// The kernel's OOM killer ended it (its cgroup or the kernel log says so).
    Oom,
}

impl DeathCause {
    pub const ALL: [DeathCause; 3] = [DeathCause::Exit, DeathCause::Signal, DeathCause::Oom];

    pub fn label(self) -> &'static str {
        match self {
            DeathCause::Exit => "exit",
            DeathCause::Signal => "signal",
            DeathCause::Oom => "oom",
        }
    }

    /// The cause a status text names: `killed by the OOM killer (...)`, `signal: 9
    /// (SIGKILL)`, `exit status: 1`; anything else (an exit seen only through a pidfd,
    /// without its status) is an exit.
    pub fn of(status: &str) -> DeathCause {
        if status.contains("OOM") {
            DeathCause::Oom
        } else if status.starts_with("signal") {
            DeathCause::Signal
        } else {
            DeathCause::Exit
        }
    }
}

/// What became of a target whose helper died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealOutcome {
    /// A replacement serves the path.
    Healed,
    /// It could not be healed (no environment known, the spawn failed, the mount never
    /// came): the target is lost.
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
    use super::DeathCause;

    #[test]
    fn statuses_are_classified_by_what_ended_the_helper() {
        assert_eq!(DeathCause::of("signal: 9 (SIGKILL)"), DeathCause::Signal);
        assert_eq!(DeathCause::of("signal: 11 (SIGSEGV) (core dumped)"), DeathCause::Signal);
        assert_eq!(DeathCause::of("killed by the OOM killer (signal 9)"), DeathCause::Oom);
        assert_eq!(DeathCause::of("exit status: 1"), DeathCause::Exit);
        assert_eq!(DeathCause::of("exited (seen through its pidfd)"), DeathCause::Exit);
    }
}
