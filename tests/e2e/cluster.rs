//! The stand of the end-to-end tests on a RabbitMQ cluster (`server_cluster*.rs`): the
//! process's three-node cluster with a tenant of the test's own, a Barbican holding
//! dms-testfs credentials, a temp dir for the daemon, and the checks every such test makes
//! once the daemon has stopped (the journal and the host: exactly one outcome per request,
//! nothing orphaned).
#![allow(dead_code, clippy::unwrap_used)]

use super::host::{helpers_serving, HelperReaper};
use super::traffic::{client_loop, Ledger, Load};
use super::{standard_env_for, testfs_bin, Daemon};
use crate::support::{self, mountns, Barbican, Cluster, Tenant, TestDir};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub const TOKEN: &str = "gAAAAAB-cluster-keystone-token";
const SECRET: &str = "cluster-secret-access-key";

/// Everything a cluster test needs (see the module docs).
pub struct Stand {
    pub cluster: &'static Cluster,
    pub tenant: Tenant,
    pub barbican: Barbican,
    pub secret_ref: String,
    pub dir: TestDir,
    _reaper: HelperReaper,
}

impl Stand {
    /// Starts the cluster (or takes the process's) and Barbican side by side.
    pub fn up(label: &str) -> Stand {
        let barbican = std::thread::spawn(Barbican::shared);
        let cluster = Cluster::shared();
        eprintln!("three-node cluster started in {}", cluster.startup_report());
        let barbican = barbican.join().unwrap_or_else(|_| panic!("Barbican did not start"));
        let tenant = cluster.tenant(label);
        let credentials = super::testfs_credentials("AKIACLUSTER", SECRET, label);
        let secret_ref = barbican.store_secret(TOKEN, &credentials);
        let dir = support::temp_dir("dms-cluster-e2e-");
        let reaper = HelperReaper(dir.path().join("pids"));
        Stand { cluster, tenant, barbican, secret_ref, dir, _reaper: reaper }
    }

    /// The daemon's variables: the standard layout under the stand's dir, `url` as
    /// `DMS_RABBITMQ_URL`, then `extra`.
    pub fn env(&self, node: &str, url: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
        standard_env_for(url, self.dir.path(), node, &testfs_bin(), "debug", extra)
    }

    /// Starts the daemon as node `node` on `url` and waits until it consumes.
    pub fn daemon(&self, node: &str, url: &str, extra: &[(&str, String)]) -> Daemon {
        Daemon::spawn(self.dir.path(), node, self.env(node, url, extra))
    }

    /// `clients` clients of [`client_loop`] on `rt`, through `urls`, each pausing `pause`
    /// between its cycles, until `stop`.
    pub fn traffic(
        &self,
        rt: &tokio::runtime::Runtime,
        daemon: &Daemon,
        urls: Vec<String>,
        clients: usize,
        pause: Duration,
    ) -> Traffic {
        let load = Load {
            urls,
            node: daemon.node.clone(),
            base: daemon.base.display().to_string(),
            secret_ref: self.secret_ref.clone(),
            token: TOKEN.into(),
            ledger: Ledger::default(),
            stop: Arc::new(AtomicBool::new(false)),
            pause,
        };
        let tasks =
            (0..clients).map(|n| rt.spawn(client_loop(load.clone(), "cl".into(), n))).collect();
        Traffic { load, tasks, clients }
    }

    /// Which node (1-based) consumes `dms.<node>`, asked of node `ask` (every
    /// [`support::CLI_POLL`]), once one does.
    pub fn wait_consumer(&self, ask: usize, node: &str) -> usize {
        let queue = format!("dms.{node}");
        let vhost = &self.tenant.vhost;
        let what = format!("a consumer of {queue}");
        support::poll_every(&what, super::T, support::CLI_POLL, || {
            self.cluster.consumer_node(ask, vhost, &queue).ok().flatten()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The clients of a traffic run.
pub struct Traffic {
    pub load: Load,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
    pub clients: usize,
}

impl Traffic {
    /// Tells the clients to stop and waits until each has ended its last cycle; returns
    /// how often they reconnected in all.
    pub fn stop(self, rt: &tokio::runtime::Runtime) -> (Ledger, usize) {
        self.load.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reconnects = rt.block_on(join(self.tasks));
        (self.load.ledger, reconnects)
    }
}

async fn join(tasks: Vec<tokio::task::JoinHandle<usize>>) -> usize {
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("a traffic client panicked");
    }
    total
}

/// How many times the daemon's log says it started consuming `dms.<node>`.
pub fn consuming_lines(daemon: &Daemon) -> usize {
    daemon.log_text().matches(&format!("consuming dms.{}", daemon.node)).count()
}

/// After the daemon stopped, with its files in `journal`, `pid_dir` and `base`: the
/// journal verifies; every request of `ledger` has exactly one outcome in it; no parked
/// request; and, every client having ended unmounted, no helper, mount or PID file is
/// left, and each target's state is Unmounted.
pub fn check_journal_and_host(journal: &Path, pid_dir: &Path, base: &str, ledger: &Ledger) {
    let (code, out, err) = super::journal::tool(journal, &["verify"]);
    assert_eq!(code, 0, "dms-journal verify: {out}{err}");
    let ledger = ledger.lock().unwrap();
    let mut targets: Vec<&str> = ledger.values().map(|s| s.target.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    for target in targets {
        let records = super::journal::history(journal, target);
        let outcomes = super::journal::outcomes_per_key(&records);
        for (key, seen) in ledger.iter().filter(|(_, s)| s.target == target) {
            assert_eq!(outcomes.get(key), Some(&1), "{key} ({seen:?}): one outcome in the journal");
        }
        let path = format!("{base}/{target}");
        assert_eq!(helpers_serving(&path), Vec::<u32>::new(), "orphan helper for {path}");
        assert!(mountns::mount_at(Path::new(&path)).is_none(), "stale mount at {path}");
        let state = super::journal::state(journal, target);
        assert_eq!(state.phase, dms_journal::Phase::Unmounted, "{target}: {state:?}");
    }
    let pid_files = std::fs::read_dir(pid_dir).map_or(0, |d| d.count());
    assert_eq!(pid_files, 0, "PID files left in {}", pid_dir.display());
    let (journal, _) = super::journal::open(journal);
    assert!(journal.inbox().unwrap().is_empty(), "parked requests left");
}

/// The secrets of the stand (the tenant's broker password, the token, the S3 key) are in
/// none of `texts`.
pub fn assert_no_secret(stand: &Stand, what: &str, text: &str) {
    super::host::assert_no_secret(what, text, &[stand.tenant.password(), TOKEN, SECRET]);
}
