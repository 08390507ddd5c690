//! Group commit: concurrent appenders share physical flushes.
//!
//! An fsync costs milliseconds; the engine appends for many targets at once. Each writer
//! applies its batch, then takes a ticket (the count of applied writes, incremented *after*
//! the apply, so a ticket ≤ N means the write is in sled's buffers whenever `applied` reads
//! N). It then waits until `flushed ≥ ticket`. If no flush is running, the waiter leads one:
//! it reads `applied` as the flush's target (everything up to there is already applied,
//! hence covered by the flush), flushes outside the lock, publishes the new `flushed` and
//! wakes everyone. Writes that arrive during a flush are carried by the next one, whose
//! leader is one of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    applied: AtomicU64,
    flushes: AtomicU64,
    state: Mutex<FlushState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct FlushState {
    /// Every ticket up to this one is durable.
    flushed: u64,
    /// A leader is flushing right now.
    flushing: bool,
}

impl GroupCommit {
    /// Call right after a write was applied; the ticket is what [`Self::wait_durable`] needs.
    pub(super) fn applied(&self) -> u64 {
        self.applied.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(super) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }

    /// Block until the write holding `ticket` is durable, flushing as leader if nobody else
    /// is. A failed flush is reported to its leader only; waiters wake up, find their
    /// ticket still not durable and lead a flush of their own, so each of them either
    /// sees its write durable or gets an error.
    pub(super) fn wait_durable<E>(
        &self,
        ticket: u64,
        flush: impl Fn() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut state = lock(&self.state);
        loop {
            if state.flushed >= ticket {
                return Ok(());
            }
            if state.flushing {
                state = self.done.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.flushing = true;
            let target = self.applied.load(Ordering::SeqCst);
            drop(state);
            let result = flush();
            self.flushes.fetch_add(1, Ordering::SeqCst);
            state = lock(&self.state);
            state.flushing = false;
            if result.is_ok() {
                state.flushed = state.flushed.max(target);
            }
            self.done.notify_all();
            result?;
        }
    }
}

/// Nothing panics while these locks are held, but a poisoned lock must not turn into a
/// panic of the daemon either: the guarded data stays consistent, so keep using it.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_failed_flush_fails_its_leader_and_the_next_waiter_retries() {
        let commit = GroupCommit::default();
        let ticket = commit.applied();
        assert_eq!(commit.wait_durable(ticket, || Err("disk on fire")), Err("disk on fire"));
        assert_eq!(commit.wait_durable(ticket, || Ok::<(), &str>(())), Ok(()));
        assert_eq!(commit.flushes(), 2);
        assert_eq!(commit.wait_durable(ticket, || Err("not called")), Ok(()));
    }

    #[test]
    fn concurrent_waiters_share_flushes() {
        let commit = Arc::new(GroupCommit::default());
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let commit = Arc::clone(&commit);
                std::thread::spawn(move || {
                    let ticket = commit.applied();
                    commit.wait_durable(ticket, || {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        Ok::<(), ()>(())
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("no panic"), Ok(()));
        }
        assert!(commit.flushes() < 32, "{} flushes for 32 writers", commit.flushes());
    }
}
