//! A private three-node RabbitMQ cluster (Debian's rabbitmq-server 3.10) for tests, as
//! DESIGN §5 describes it: three nodes on one machine with their own node names, AMQP and
//! distribution ports, mnesia and log directories, but ONE epmd port (`ERL_EPMD_PORT`) and
//! ONE Erlang cookie (one `HOME`); nodes 2 and 3 then `stop_app`, `join_cluster <node 1>`
//! and `start_app`, and the HA policy `ha-dms` mirrors every `dms.*` queue to all nodes.
//!
//! Start-up, measured on the 2-core test machine (shared with other builds): the three
//! nodes boot in parallel in 14-18 s (one node alone boots in about 7 s), the two joins run
//! one after the other (side by side, one node's boot failed in mnesia now and then under
//! load), the policy and the readiness check take about 1 s: 20-30 s in all (up to 58 s
//! while other jobs kept the load average above 20). Booting one after the
//! other would cost 3 × 7 s before the joins. [`Cluster::startup_report`] gives the steps;
//! the cluster tests print it.
//!
//! Ownership: the cluster's epmd is started by the fixture itself, in the foreground, as a
//! child of ours (the nodes find it on the shared port and start none), so it is stopped
//! by PID like every node, never by a broad name. Every process (the epmd and each node's
//! process group) is recorded for the janitor (`scripts/infra/janitor.sh`, see
//! `support/mod.rs`), which kills them and removes the cluster's directory
//! (`/tmp/dms-cluster-*`) if the test process exits without dropping the guard, as it
//! does for [`Cluster::shared`] (a static). `scripts/lib/leftovers.sh` checks that no
//! `beam.smp` or `epmd` survives the suite.
//!
//! Sharing: [`Cluster::shared`] starts one cluster per test process, on first use. Unlike
//! the single node, there is no suite-wide cluster: every cluster test injects faults, so
//! each test process owns its cluster (`.config/nextest.toml` runs the cluster tests one at
//! a time, so that at most three nodes boot at once). Tests isolate themselves with a
//! [`Tenant`] (a virtual host and a user of their own, `cluster_ops.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::broker::{node_env, NodePorts};
use super::proc::{dump_logs_if_panicking, record_pgids, run_with_timeout, GroupChild, Janitor};

pub(super) const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(90);
pub(super) const CTL_TIMEOUT: Duration = Duration::from_secs(60);
/// The nodes of a cluster: three, as OpenStack deployments run it.
pub const NODES: usize = 3;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One node of the cluster (1-based in every public call).
#[derive(Debug)]
pub(super) struct Node {
    pub(super) name: String,
    pub(super) amqp_port: u16,
    pub(super) dist_port: u16,
    pub(super) dir: PathBuf,
    pub(super) server: Mutex<Option<GroupChild>>,
}

/// A running private three-node cluster; dropping it kills every node and the epmd, and
/// removes its directory.
#[derive(Debug)]
pub struct Cluster {
    pub(super) nodes: Vec<Node>,
    pub(super) epmd_port: u16,
    epmd: Mutex<Option<GroupChild>>,
    /// The shared `HOME` (the cookie), the config files, the janitor's `pgids`.
    pub(super) path: PathBuf,
    dir: Option<super::TestDir>,
    janitor: Option<Janitor>,
    startup: Duration,
    /// How long each step of the start took, for the tests' logs.
    phases: String,
}

impl Cluster {
    /// Starts three nodes and clusters them (see the module docs). Panics with the logs'
    /// tails if RabbitMQ is missing or a step fails.
    pub fn start() -> Cluster {
        super::require_file(&Path::new(RABBIT_BIN).join("rabbitmq-server"));
        super::require_file(Path::new("/usr/bin/epmd"));
        let dir = super::temp_dir("dms-cluster-");
        let path = dir.path().to_path_buf();
        let k = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nodes = (1..=NODES)
            .map(|i| {
                let node_dir = path.join(format!("n{i}"));
                std::fs::create_dir_all(&node_dir).expect("create node dir");
                Node {
                    name: format!("dms-cl-{}-{k}-n{i}@localhost", std::process::id()),
                    amqp_port: super::free_port(),
                    dist_port: super::free_port(),
                    dir: node_dir,
                    server: Mutex::new(None),
                }
            })
            .collect();
        let mut c = Cluster {
            nodes,
            epmd_port: super::free_port(),
            epmd: Mutex::new(None),
            path,
            dir: Some(dir),
            janitor: None,
            startup: Duration::ZERO,
            phases: String::new(),
        };
        for (file, text) in
            [("rabbitmq.conf", ""), ("rabbitmq-env.conf", ""), ("enabled_plugins", "[].\n")]
        {
            std::fs::write(c.path.join(file), text).expect("write node config");
        }
        // One cookie for all, written before any node starts: three nodes booting at once
        // would each create one in the shared HOME.
        let cookie = format!("DMSCLUSTER{:016X}", super::s3::rand_u64());
        let cookie_file = c.path.join(".erlang.cookie");
        std::fs::write(&cookie_file, cookie).expect("write the Erlang cookie");
        std::fs::set_permissions(&cookie_file, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .expect("chmod the Erlang cookie");
        c.janitor = Some(Janitor::start(&c.path));
        let t0 = Instant::now();
        c.start_epmd();
        let cr = &c;
        std::thread::scope(|s| {
            let boots: Vec<_> = (1..=NODES).map(|n| s.spawn(move || cr.launch(n))).collect();
            for boot in boots {
                boot.join().expect("boot thread").unwrap_or_else(|e| panic!("{e}"));
            }
        });
        let booted = t0.elapsed();
        // One join at a time: two nodes changing the cluster's schema at once sometimes
        // leave one failing its boot (mnesia, seen under load on two cores).
        for n in 2..=NODES {
            cr.join(n).unwrap_or_else(|e| panic!("{e}"));
        }
        let joined = t0.elapsed();
        std::thread::scope(|s| {
            s.spawn(|| cr.set_ha_policy("/"));
            cr.wait_running(1, NODES);
        });
        c.startup = t0.elapsed();
        c.phases = format!(
            "{:.1} s: 3 nodes booted in parallel {:.1} s, nodes 2 and 3 joined one after the other {:.1} s, \
             policy and cluster_status {:.1} s",
            c.startup.as_secs_f64(),
            booted.as_secs_f64(),
            (joined - booted).as_secs_f64(),
            (c.startup - joined).as_secs_f64()
        );
        c
    }

    /// One cluster per test process, started on first use and never dropped (its janitor
    /// stops it when the process exits).
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(Cluster::start)
    }

    /// How long [`Cluster::start`] took, from the first process started to three running
    /// nodes with the policy set.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// [`Cluster::startup_time`] and its steps, as one line.
    pub fn startup_report(&self) -> &str {
        &self.phases
    }

    pub(super) fn node(&self, n: usize) -> &Node {
        assert!((1..=NODES).contains(&n), "node {n}: the cluster's nodes are 1..={NODES}");
        &self.nodes[n - 1]
    }

    /// The Erlang node name of node `n`, for `rabbitmqctl -n`.
    pub fn node_name(&self, n: usize) -> &str {
        &self.node(n).name
    }

    /// The AMQP port of node `n`.
    pub fn amqp_port(&self, n: usize) -> u16 {
        self.node(n).amqp_port
    }

    /// Node `n`'s number from its Erlang node name (as `rabbitmqctl` prints it).
    pub fn number_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name).map(|i| i + 1)
    }

    /// The server output and RabbitMQ's own log of every node.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.nodes
            .iter()
            .flat_map(|n| {
                [n.dir.join("server.log"), n.dir.join("log").join(format!("{}.log", n.name))]
            })
            .collect()
    }

    /// The environment of node `n` (and of `rabbitmqctl` talking to it): nothing inherited.
    pub(super) fn env(&self, n: usize, cmd: &mut Command) {
        let node = self.node(n);
        let ports = NodePorts { epmd: self.epmd_port, amqp: node.amqp_port, dist: node.dist_port };
        node_env(cmd, &node.name, ports, &self.path, &node.dir);
    }

    /// The shared epmd, in the foreground: a child of ours, stopped by PID.
    fn start_epmd(&self) {
        let mut cmd = Command::new("epmd");
        cmd.args(["-port", &self.epmd_port.to_string(), "-address", "127.0.0.1"]);
        let child = GroupChild::spawn("epmd", cmd, &self.path.join("epmd.log"));
        *self.epmd.lock().expect("epmd lock") = Some(child);
        self.record_processes();
        let addr = format!("127.0.0.1:{}", self.epmd_port);
        super::wait_for("the cluster's epmd to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(&addr).ok().map(|_| ())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", super::log_tail(&self.path.join("epmd.log"), 20)));
    }

    /// The process groups the janitor kills if this process exits without dropping us:
    /// the epmd and each running node (rewritten on every change, so a stale group id,
    /// which the kernel may hand out again, is never killed).
    pub(super) fn record_processes(&self) {
        let mut pgids: Vec<u32> = self
            .nodes
            .iter()
            .filter_map(|n| n.server.lock().expect("node lock").as_ref().map(GroupChild::pid))
            .collect();
        pgids.extend(self.epmd.lock().expect("epmd lock").as_ref().map(GroupChild::pid));
        record_pgids(&self.path, &pgids);
    }

    /// Starts node `n`'s `rabbitmq-server` and waits until the node is up
    /// (`rabbitmqctl wait <pidfile>`).
    pub(super) fn launch(&self, n: usize) -> Result<(), String> {
        let node = self.node(n);
        let pidfile = node.dir.join("rabbitmq.pid");
        let _ = std::fs::remove_file(&pidfile);
        let mut cmd = Command::new(Path::new(RABBIT_BIN).join("rabbitmq-server"));
        self.env(n, &mut cmd);
        let child = GroupChild::spawn(&node.name, cmd, &node.dir.join("server.log"));
        *node.server.lock().expect("node lock") = Some(child);
        self.record_processes();
        let secs = START_TIMEOUT.as_secs().to_string();
        let waited =
            self.ctl(n, &["wait", &pidfile.to_string_lossy(), "--timeout", &secs], START_TIMEOUT);
        waited.map(drop).map_err(|e| {
            let early = node.server.lock().expect("node lock").as_mut().and_then(|c| c.check_alive().err());
            let log = node.dir.join("log").join(format!("{}.log", node.name));
            format!(
                "RabbitMQ node {} did not start within {START_TIMEOUT:?}: {e}\n{}\nserver log:\n{}\nnode log:\n{}",
                node.name,
                early.unwrap_or_default(),
                super::log_tail(&node.dir.join("server.log"), 30),
                super::log_tail(&log, 30),
            )
        })
    }

    /// `stop_app`, `join_cluster <node 1>`, `start_app` on node `n`.
    fn join(&self, n: usize) -> Result<(), String> {
        let first = self.node_name(1).to_owned();
        for args in [vec!["stop_app"], vec!["join_cluster", &first], vec!["start_app"]] {
            self.rabbitmqctl(n, &args).map_err(|e| format!("node {n} joining {first}: {e}"))?;
        }
        Ok(())
    }

    /// The HA policy of DESIGN §5 in virtual host `vhost`: every `dms.*` queue mirrored to
    /// all nodes, new mirrors synchronised at once.
    pub fn set_ha_policy(&self, vhost: &str) {
        let definition = r#"{"ha-mode":"all","ha-sync-mode":"automatic"}"#;
        self.rabbitmqctl(
            1,
            &["set_policy", "-p", vhost, "ha-dms", r"^dms\.", definition, "--apply-to", "queues"],
        )
        .unwrap_or_else(|e| panic!("set_policy ha-dms: {e}"));
    }

    /// Runs `rabbitmqctl -n <node n> <args>`; returns its output.
    pub fn rabbitmqctl(&self, n: usize, args: &[&str]) -> Result<String, String> {
        self.ctl(n, args, CTL_TIMEOUT)
    }

    pub(super) fn ctl(&self, n: usize, args: &[&str], timeout: Duration) -> Result<String, String> {
        self.tool(n, "rabbitmqctl", args, timeout)
    }

    /// One of RabbitMQ's CLI tools (`rabbitmqctl`, `rabbitmq-queues`, ...) against node `n`.
    pub(super) fn tool(
        &self,
        n: usize,
        tool: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, String> {
        let mut cmd = Command::new(Path::new(RABBIT_BIN).join(tool));
        self.env(n, &mut cmd);
        cmd.arg("-n").arg(self.node_name(n)).args(args);
        run_with_timeout(cmd, timeout, &self.path)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        dump_logs_if_panicking("RabbitMQ cluster", &self.logs());
        for node in &self.nodes {
            if let Some(mut c) = node.server.lock().map(|mut g| g.take()).unwrap_or(None) {
                c.kill();
            }
        }
        if let Some(mut epmd) = self.epmd.lock().map(|mut g| g.take()).unwrap_or(None) {
            epmd.kill();
        }
        if let Some(mut j) = self.janitor.take() {
            j.dismiss();
        }
        if let Some(dir) = self.dir.take() {
            if super::keep_temp() {
                eprintln!("DMS_TEST_KEEP: keeping {}", dir.keep().display());
            }
        }
    }
}
