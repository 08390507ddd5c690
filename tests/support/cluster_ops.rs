//! What tests do with a [`Cluster`]: the URLs a client or the daemon is given, a tenant (a
//! virtual host and a user of its own) per test, what `rabbitmqctl` says about the nodes,
//! queues and consumers, and the faults an operator or a crash inflicts: SIGKILL and
//! restart of a node, `stop_app`/`start_app`, a rolling restart of all three.

use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::{Cluster, NODES, START_TIMEOUT};

static TENANTS: AtomicU32 = AtomicU32::new(0);

/// An AMQP URL in oslo.messaging's `transport_url` form: one `user:pass@host:port` entry
/// per node of `ports`, in that order, sharing one virtual host (`/` is `%2f`).
pub fn oslo_url(user: &str, password: &str, ports: &[u16], vhost: &str) -> String {
    let vhost = if vhost == "/" { "%2f" } else { vhost };
    let hosts: Vec<String> =
        ports.iter().map(|p| format!("{user}:{password}@127.0.0.1:{p}")).collect();
    format!("amqp://{}/{vhost}", hosts.join(","))
}

/// A virtual host and a user (with a password of its own, full rights on that host only)
/// on the cluster, with the `ha-dms` policy set in it: queues of the same name in two tests
/// never meet, and the password is a real one for the daemon to keep out of its logs.
pub struct Tenant {
    pub vhost: String,
    pub user: String,
    password: String,
    ports: Vec<u16>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tenant {{ vhost: {:?}, user: {:?}, password: <hidden> }}", self.vhost, self.user)
    }
}

impl Tenant {
    /// The single-host URL of node `n`.
    pub fn amqp_url(&self, n: usize) -> String {
        oslo_url(&self.user, &self.password, &[self.ports[n - 1]], &self.vhost)
    }

    /// Every node named in `order` (1-based), in that order, in one oslo.messaging URL.
    pub fn cluster_url(&self, order: &[usize]) -> String {
        let ports: Vec<u16> = order.iter().map(|n| self.ports[n - 1]).collect();
        oslo_url(&self.user, &self.password, &ports, &self.vhost)
    }

    /// [`Tenant::cluster_url`] of all nodes in a random order.
    pub fn cluster_url_shuffled(&self) -> String {
        self.cluster_url(&shuffled())
    }

    /// The password, for checks that it reached no log.
    pub fn password(&self) -> &str {
        &self.password
    }
}

/// `1..=NODES` in a random order.
pub fn shuffled() -> Vec<usize> {
    let mut order: Vec<usize> = (1..=NODES).collect();
    for i in (1..order.len()).rev() {
        let j = (super::s3::rand_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

impl Cluster {
    /// The single-host URL of node `n` for `guest` on the default virtual host.
    pub fn amqp_url(&self, n: usize) -> String {
        oslo_url("guest", "guest", &[self.amqp_port(n)], "/")
    }

    /// All nodes in `order` (1-based) for `guest` on the default virtual host.
    pub fn cluster_url(&self, order: &[usize]) -> String {
        let ports: Vec<u16> = order.iter().map(|&n| self.amqp_port(n)).collect();
        oslo_url("guest", "guest", &ports, "/")
    }

    /// A new [`Tenant`] named after `label`.
    pub fn tenant(&self, label: &str) -> Tenant {
        let k = TENANTS.fetch_add(1, Ordering::SeqCst);
        let vhost = format!("dms-{label}-{}-{k}", std::process::id());
        let user = format!("dms-{label}-{k}");
        let password = format!("pw{:016x}", super::s3::rand_u64());
        let ctl = |args: &[&str]| {
            self.rabbitmqctl(1, args)
                .map_err(|e| e.replace(&password, "<password>"))
                .unwrap_or_else(|e| panic!("creating tenant {vhost}: {e}"))
        };
        // Two rounds of two calls side by side (each call boots an Erlang VM).
        std::thread::scope(|s| {
            s.spawn(|| ctl(&["add_vhost", &vhost]));
            ctl(&["add_user", &user, &password]);
        });
        std::thread::scope(|s| {
            s.spawn(|| self.set_ha_policy(&vhost));
            ctl(&["set_permissions", "-p", &vhost, &user, ".*", ".*", ".*"]);
        });
        let ports = (1..=NODES).map(|n| self.amqp_port(n)).collect();
        Tenant { vhost, user, password, ports }
    }

    /// The nodes `rabbitmqctl cluster_status` (asked of node `n`) reports running.
    pub fn running_nodes(&self, n: usize) -> Result<Vec<String>, String> {
        let out = self.rabbitmqctl(n, &["cluster_status", "--formatter", "json"])?;
        let status: Value = parse_json(&out)?;
        let running =
            status["running_nodes"].as_array().ok_or(format!("no running_nodes in {out}"))?;
        Ok(running.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
    }

    /// Waits until node `ask` reports `count` running nodes. (One node's view, asked every
    /// [`super::CLI_POLL`]: each `rabbitmqctl` call boots an Erlang VM.)
    pub fn wait_running(&self, ask: usize, count: usize) {
        let mut last = String::new();
        let what = format!("{count} running nodes");
        let ok = super::poll_every(&what, START_TIMEOUT, super::CLI_POLL, || {
            match self.running_nodes(ask) {
                Ok(running) if running.len() == count => return Some(()),
                Ok(running) => last = format!("node {ask} reports {running:?}"),
                Err(e) => last = e,
            }
            None
        });
        ok.unwrap_or_else(|e| panic!("{e}: {last}"));
    }

    /// Whether node `n`'s server process is running (it may have its app stopped).
    pub fn is_up(&self, n: usize) -> bool {
        self.node(n).server.lock().expect("node lock").is_some()
    }

    /// `rabbitmqctl list_<what> -p <vhost> <columns>`, asked of node `n`: one map per row,
    /// column name to text. (Not `--formatter json`: it prints PIDs as `#PID<1.2.3>`, without
    /// the node; the table prints `<node@host.1.2.3>`.)
    pub fn list(
        &self,
        n: usize,
        what: &str,
        vhost: &str,
        columns: &[&str],
    ) -> Result<Vec<Row>, String> {
        let cmd = format!("list_{what}");
        let mut args = vec![cmd.as_str(), "-p", vhost, "-q", "--no-table-headers"];
        args.extend_from_slice(columns);
        let out = self.rabbitmqctl(n, &args)?;
        let rows = out.lines().filter(|l| !l.trim().is_empty()).map(|line| {
            columns
                .iter()
                .map(|c| (*c).to_owned())
                .zip(line.split('\t').map(str::to_owned))
                .collect()
        });
        Ok(rows.collect())
    }

    /// The nodes (1-based, sorted) of the Erlang PIDs in a `list_*` cell: one PID
    /// (`<node@host.1.2.3>`) or a list of them.
    pub fn nodes_of(&self, cell: &str) -> Vec<usize> {
        let mut nodes: Vec<usize> =
            cell.split('<').skip(1).filter_map(|pid| self.number_of(&pid_node(pid))).collect();
        nodes.sort_unstable();
        nodes
    }

    /// The node (1-based) whose channel consumes `queue` in `vhost`, asked of node `n`:
    /// `None` while nobody consumes it.
    pub fn consumer_node(
        &self,
        n: usize,
        vhost: &str,
        queue: &str,
    ) -> Result<Option<usize>, String> {
        let rows = self.list(n, "consumers", vhost, &["queue_name", "channel_pid"])?;
        let row = rows.iter().find(|r| r["queue_name"] == queue);
        Ok(row.and_then(|r| self.nodes_of(&r["channel_pid"]).first().copied()))
    }

    /// SIGKILLs node `n` (its beam and every child: the node's process group) and waits
    /// until its AMQP and distribution ports are closed. It stays down until
    /// [`Cluster::restart`].
    pub fn kill(&self, n: usize) {
        if let Some(mut c) = self.node(n).server.lock().expect("node lock").take() {
            c.kill();
        }
        self.record_processes();
        for port in [self.node(n).amqp_port, self.node(n).dist_port] {
            super::wait_for(&format!("node {n}'s port {port} to close"), START_TIMEOUT, || {
                TcpStream::connect(("127.0.0.1", port)).err().map(|_| ())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Starts node `n` again after [`Cluster::kill`] (same name, ports and data) and waits
    /// until it has rejoined: every node reports all of them running.
    pub fn restart(&self, n: usize) {
        self.launch(n).unwrap_or_else(|e| panic!("restart: {e}"));
        self.wait_running(n, NODES);
    }

    /// `rabbitmqctl stop_app` on node `n`: its clients are disconnected, the Erlang node
    /// stays (and stays a cluster member) until [`Cluster::start_app`].
    pub fn stop_app(&self, n: usize) {
        self.rabbitmqctl(n, &["stop_app"]).unwrap_or_else(|e| panic!("stop_app on node {n}: {e}"));
    }

    /// `rabbitmqctl start_app` on node `n` (it returns once the app has started), then
    /// waits until the node accepts AMQP connections (a TCP connect: no CLI call) and
    /// every node reports all of them running.
    pub fn start_app(&self, n: usize) {
        self.rabbitmqctl(n, &["start_app"])
            .unwrap_or_else(|e| panic!("start_app on node {n}: {e}"));
        self.wait_amqp(n);
        self.wait_running(n, NODES);
    }

    /// Waits until node `n` accepts TCP connections on its AMQP port.
    pub fn wait_amqp(&self, n: usize) {
        let port = self.node(n).amqp_port;
        super::wait_for(&format!("node {n} to accept AMQP connections"), START_TIMEOUT, || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(drop)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until stopping node `n` would leave every mirrored queue a synchronised copy
    /// elsewhere (`rabbitmq-queues check_if_node_is_mirror_sync_critical`, the check a
    /// rolling upgrade runs before each node).
    pub fn wait_not_mirror_critical(&self, n: usize) {
        let mut last = String::new();
        let what = format!("node {n} not to be mirror-sync critical");
        super::poll_every(&what, START_TIMEOUT, super::CLI_POLL, || {
            let check = ["check_if_node_is_mirror_sync_critical"];
            match self.tool(n, "rabbitmq-queues", &check, super::cluster::CTL_TIMEOUT) {
                Ok(_) => Some(()),
                Err(e) => {
                    last = e;
                    None
                }
            }
        })
        .unwrap_or_else(|e| panic!("{e}: {last}"));
    }

    /// A rolling restart as a control-plane upgrade does it: node by node, once it is not
    /// mirror-sync critical, `stop_app`, `hold`, `start_app` (and wait for it to rejoin).
    /// Returns how long each node was out.
    pub fn rolling_restart(&self, hold: Duration) -> Vec<Duration> {
        (1..=NODES)
            .map(|n| {
                self.wait_not_mirror_critical(n);
                let t0 = Instant::now();
                self.stop_app(n);
                std::thread::sleep(hold);
                self.start_app(n);
                t0.elapsed()
            })
            .collect()
    }
}

/// A row of a `list_*` table: column name to text.
pub type Row = std::collections::BTreeMap<String, String>;

/// The node of an Erlang PID as `rabbitmqctl` prints it: `<name@host.1.2.3>`.
pub fn pid_node(pid: &str) -> String {
    let inner = pid.trim_start_matches('<').split('>').next().unwrap_or_default();
    match inner.split_once('@') {
        Some((name, rest)) => format!("{name}@{}", rest.split('.').next().unwrap_or_default()),
        None => inner.to_owned(),
    }
}

/// The JSON document in a CLI tool's output (which may print a banner line before it).
fn parse_json(out: &str) -> Result<Value, String> {
    let start = out.find(['[', '{']).ok_or(format!("no JSON in {out:?}"))?;
    serde_json::from_str(&out[start..]).map_err(|e| format!("{e}: {out:?}"))
}
