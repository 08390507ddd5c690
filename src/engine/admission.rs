//! Mount admission: the fact `decide` needs to refuse a target that would nest with another
//! ([`dms_journal::nesting`]), gathered so that two concurrent mounts cannot both pass.
//!
//! Each request runs under its own target's turn, so two mounts of nested paths for two
//! targets can be decided at the same time, each before the other's first record is in the
//! journal. So a mount being admitted reserves its path here until its request is done; a
//! mount is checked against the journal's tracked targets and these reservations together.

use dms_journal::nesting::relation;
use dms_journal::{Command, JournalState, Nesting, TargetId};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub(super) struct Admissions(Mutex<BTreeMap<TargetId, String>>);

/// A reserved path; the reservation ends when this is dropped.
#[derive(Debug)]
pub(super) struct Admitted<'a> {
    admissions: &'a Admissions,
    target: Option<TargetId>,
}

impl Admissions {
    /// For a mount command of `target`, fill in `nested` from `journal` and the paths being
    /// admitted right now, and reserve this path if it nests with nothing. The caller holds
    /// the journal state's lock, so the check and the reservation see one picture.
    pub(super) fn admit(
        &self,
        journal: &JournalState,
        target: &TargetId,
        command: &mut Command,
    ) -> Admitted<'_> {
        let mut admitted = Admitted { admissions: self, target: None };
        let Command::Mount { spec, nested, .. } = command else {
            return admitted;
        };
        let path = spec.mount_path.as_str();
        let mut reserved = lock(&self.0);
        *nested = journal.nesting(target, path).or_else(|| {
            reserved.iter().filter(|(other, _)| *other != target).find_map(|(other, at)| {
                relation(path, at).map(|relation| Nesting {
                    other: other.clone(),
                    other_path: at.clone(),
                    relation,
                })
            })
        });
        if nested.is_none() && !reserved.contains_key(target) {
            reserved.insert(target.clone(), path.to_owned());
            admitted.target = Some(target.clone());
        }
        admitted
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            lock(&self.admissions.0).remove(&target);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
