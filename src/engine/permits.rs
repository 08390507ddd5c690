//! Concurrency bounds on host work, taken per effect, never per request.
//!
//! A permit held for a whole request lets whatever that request waits on (an NFS server
//! that never answers, a target's own queue) hold capacity every other target needs: 16
//! hung NFS mounts used to hold all 16 permits for the whole mount timeout, and healthy S3
//! mounts got no answer meanwhile. So a permit is taken around the one effect that does the
//! work, and what one NFS server's operations may take is bounded by that server's own pool:
//!
//! - credential fetches, helper starts and stops and S3 unmounts share the node-wide pool
//!   (`max_concurrent_targets`);
//! - mount(8) and umount(8) of an NFS target take a permit of *its server's* pool
//!   (`nfs_ops_per_server`): a hung server stalls at most that many operations, its own;
//! - waiting for a helper's mount to appear, and PID-file touches, take none: they wait on
//!   or do nothing another target needs.

use dms_journal::{Effect, TargetKind, TargetState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// Which pool an effect draws from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pool {
    /// Nothing shared: the effect waits on or touches only its own target.
    None,
    Node,
    /// The NFS server (host part of the export) the effect talks to.
    NfsServer(String),
}

impl Pool {
    /// The pool `effect` of the target in `state` draws from. `state` is read for the kind
    /// of target an unmount or cleanup is about (the effect itself says only where).
    pub(super) fn of(effect: &Effect, state: Option<&TargetState>) -> Pool {
        let server = || match state.and_then(|t| t.spec.as_ref()).map(|s| &s.kind) {
            Some(TargetKind::Nfs { export, .. }) => Some(nfs_server(export).to_owned()),
            _ => None,
        };
        match effect {
            // A lazy detach returns at once whatever serves the mount (a hung helper too),
            // and its look at the bare path has a deadline: no unmount waits behind a burst
            // of credential fetches for it.
            Effect::VerifyMount { .. }
            | Effect::Detach { .. }
            | Effect::RemoveMountPoint { .. }
            | Effect::RemoveStalePidFile { .. }
            | Effect::WritePidFile { .. }
            | Effect::Respawn { .. }
            | Effect::Reply { .. } => Pool::None,
            Effect::FetchCredentials { .. } | Effect::SpawnHelper { .. } => Pool::Node,
            Effect::MountNfs { export, .. } => Pool::NfsServer(nfs_server(export).to_owned()),
            Effect::Unmount { .. } | Effect::Cleanup { .. } => {
                server().map_or(Pool::Node, Pool::NfsServer)
            }
        }
    }
}

/// The server part of an NFS export (`host:/path`, `[v6]:/path`), as the breaker and the
/// per-server pool name it. The codec checked the form; anything else is its own server.
pub fn nfs_server(export: &str) -> &str {
    match export.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once("]:").map_or(export, |(host, _)| host),
        None => export.split_once(':').map_or(export, |(host, _)| host),
    }
}

#[derive(Debug)]
pub(super) struct Permits {
    node: Semaphore,
    per_server: usize,
    servers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A permit of some pool, released on drop.
#[derive(Debug)]
pub(super) enum Permit<'a> {
    None,
    Node(#[allow(dead_code)] SemaphorePermit<'a>),
    NfsServer(#[allow(dead_code)] OwnedSemaphorePermit),
}

#[derive(Debug, thiserror::Error)]
#[error("the permit pools are closed")]
pub(super) struct Closed;

impl Permits {
    pub(super) fn new(node: usize, per_server: usize) -> Self {
        Self {
            node: Semaphore::new(node.max(1)),
            per_server: per_server.max(1),
            servers: Mutex::new(HashMap::new()),
        }
    }

    /// Wait for a permit of `pool`.
    pub(super) async fn acquire(&self, pool: &Pool) -> Result<Permit<'_>, Closed> {
        match pool {
            Pool::None => Ok(Permit::None),
            Pool::Node => self.node.acquire().await.map(Permit::Node).map_err(|_| Closed),
            Pool::NfsServer(server) => {
                let semaphore = Arc::clone(
                    lock(&self.servers)
                        .entry(server.clone())
                        .or_insert_with(|| Arc::new(Semaphore::new(self.per_server))),
                );
                semaphore.acquire_owned().await.map(Permit::NfsServer).map_err(|_| Closed)
            }
        }
    }

    /// Operations running against each NFS server right now (for status views). Pools of
    /// servers with nothing running are dropped here, so the map stays as small as the set
    /// of servers in use.
    pub(super) fn nfs_in_use(&self) -> Vec<(String, usize)> {
        let mut servers = lock(&self.servers);
        servers.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < self.per_server);
        let mut out: Vec<_> = servers
            .iter()
            .map(|(name, s)| (name.clone(), self.per_server - s.available_permits()))
            .collect();
        out.sort();
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn given_exports_when_naming_the_server_then_the_host_part_is_taken() {
        assert_eq!(nfs_server("filer-1.example:/exports/a"), "filer-1.example");
        assert_eq!(nfs_server("10.0.0.5:/x"), "10.0.0.5");
        assert_eq!(nfs_server("[fd00::5]:/x"), "fd00::5");
        assert_eq!(nfs_server("odd"), "odd");
    }

    #[tokio::test]
    async fn given_a_server_pool_used_up_when_another_server_asks_then_it_is_not_held_back() {
        let permits = Permits::new(1, 2);
        let hung = Pool::NfsServer("hung".into());
        let _a = permits.acquire(&hung).await.unwrap();
        let _b = permits.acquire(&hung).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), permits.acquire(&hung)).await;
        assert!(third.is_err(), "a third operation against a full server pool must wait");
        let other = Pool::NfsServer("healthy".into());
        let got = tokio::time::timeout(Duration::from_millis(500), permits.acquire(&other)).await;
        assert!(got.is_ok(), "another server's pool is its own");
        let node = tokio::time::timeout(Duration::from_millis(500), permits.acquire(&Pool::Node));
        assert!(node.await.is_ok(), "the node pool is not drawn on by NFS work");
        assert_eq!(permits.nfs_in_use(), vec![("healthy".into(), 1), ("hung".into(), 2)]);
    }
}
