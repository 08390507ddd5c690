//! The harness must notice a broken machine: each of these wraps the real `decide` with
//! one defect and expects a seed script to fail on it.

use super::*;
use crate::seeds;
use dms_journal::Event;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn state_machine_seeds() -> Vec<Vec<u8>> {
    seeds::all().into_iter().filter(|s| s.target == "state_machine").map(|s| s.bytes).collect()
}

/// Some seed makes the harness panic with a message containing `expected`.
fn caught(broken: DecideFn, expected: &str) {
    let mut messages = Vec::new();
    for bytes in state_machine_seeds() {
        let Err(panic) = catch_unwind(AssertUnwindSafe(|| run_with(&bytes, broken))) else {
            continue;
        };
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        if msg.contains(expected) {
            return;
        }
        messages.push(msg);
    }
    panic!("no seed caught the defect {expected:?}; other panics: {messages:?}");
}

#[test]
fn the_real_machine_passes_every_seed() {
    for bytes in state_machine_seeds() {
        run(&bytes);
    }
}

#[test]
fn catches_an_illegal_record() {
    fn verified_too(s: &TargetState, c: &Command, k: Clock) -> Result<Decision, Rejection> {
        let mut d = decide_worded(s, c, k)?;
        if let Some(first) = d.records.first().cloned() {
            d.records.push(Record { event: Event::Verified, ..first });
        }
        Ok(d)
    }
    caught(verified_too, "illegal record");
}

#[test]
fn catches_a_forgotten_request() {
    fn amnesiac(s: &TargetState, c: &Command, k: Clock) -> Result<Decision, Rejection> {
        let mut s = s.clone();
        s.requests.clear();
        decide_worded(&s, c, k)
    }
    caught(amnesiac, "decided");
}

#[test]
fn catches_a_reply_that_differs_from_the_journal() {
    fn liar(s: &TargetState, c: &Command, k: Clock) -> Result<Decision, Rejection> {
        let mut d = decide_worded(s, c, k)?;
        for e in &mut d.effects {
            if let Effect::Reply { outcome: Outcome::Mounted { path, .. }, .. } = e {
                path.push('/');
            }
        }
        Ok(d)
    }
    caught(liar, "differs from the journaled answer");
}

#[test]
fn catches_a_record_for_another_clock() {
    fn late(s: &TargetState, c: &Command, k: Clock) -> Result<Decision, Rejection> {
        let mut d = decide_worded(s, c, k)?;
        for r in &mut d.records {
            r.at = Timestamp(r.at.0 + 1);
        }
        Ok(d)
    }
    caught(late, "assertion");
}

#[test]
fn catches_a_rejection_that_should_not_be() {
    fn grumpy(s: &TargetState, c: &Command, k: Clock) -> Result<Decision, Rejection> {
        match c {
            Command::Unmount { .. } if s.phase == dms_journal::Phase::Unmounted => {
                Err(Rejection::Busy {
                    target: s.target.clone(),
                    action: dms_journal::Action::Unmount,
                    since: String::new(),
                })
            }
            _ => decide_worded(s, c, k),
        }
    }
    caught(grumpy, "Busy while");
}

#[test]
fn catches_a_target_admitted_inside_another() {
    fn nester(s: &TargetState, c: &Command, k: Clock) -> Result<Decision, Rejection> {
        let mut c = c.clone();
        if let Command::Mount { nested, .. } = &mut c {
            *nested = None;
        }
        decide_worded(s, &c, k)
    }
    caught(nester, "nest");
}

#[test]
fn catches_a_mount_run_against_a_server_whose_breaker_is_open() {
    fn reckless(s: &TargetState, c: &Command, k: Clock) -> Result<Decision, Rejection> {
        let mut c = c.clone();
        if let Command::Mount { outage, .. } = &mut c {
            *outage = None;
        }
        decide_worded(s, &c, k)
    }
    caught(reckless, "breaker is open");
}
