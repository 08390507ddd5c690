//! A private RabbitMQ node (Debian's rabbitmq-server 3.10) for tests.
//!
//! Each node has its own node name (`dms-test-<pid>-<n>@localhost`), AMQP port, Erlang
//! distribution port, **private epmd port** (`ERL_EPMD_PORT`, so it never touches a
//! system epmd or another test's) and a temp dir holding mnesia, logs, the PID file, the
//! Erlang cookie (`HOME`) and empty config/env/plugin files so no system config is read.
//! Everything listens on 127.0.0.1 only. Start takes ~5 s on this machine.
//!
//! Sharing: [`Broker::shared`] returns one node per test binary, created on first use and
//! stored in a `OnceLock`. Statics are never dropped, so that node is stopped by its
//! janitor (see `support/mod.rs`) when the test process exits. Isolate tests on the shared
//! node by queue name (`dms.<unique node id>`). Tests that inject faults (closing
//! connections, stopping the app, killing the node) must use their own [`Broker::start`]
//! so they do not disturb tests running in parallel.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::proc::{dump_logs_if_panicking, record_pgids, run_with_timeout, GroupChild, Janitor};

const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";
const START_TIMEOUT: Duration = Duration::from_secs(90);
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running private RabbitMQ node; dropping it kills the node and its epmd.
#[derive(Debug)]
pub struct Broker {
    node: String,
    amqp_port: u16,
    dist_port: u16,
    epmd_port: u16,
    dir: Option<super::TestDir>,
    path: PathBuf,
    server: Mutex<Option<GroupChild>>,
    janitor: Option<Janitor>,
    startup: Duration,
}

impl Broker {
    /// Starts a new private node and waits until it accepts AMQP connections. Panics
    /// (with the log tail) if RabbitMQ is missing or does not come up within 90 s.
    pub fn start() -> Broker {
        let server = Path::new(RABBIT_BIN).join("rabbitmq-server");
        super::require_file(&server);
        let dir = super::temp_dir("dms-broker-");
        let path = dir.path().to_path_buf();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mut b = Broker {
            node: format!("dms-test-{}-{n}@localhost", std::process::id()),
            amqp_port: super::free_port(),
            dist_port: super::free_port(),
            epmd_port: super::free_port(),
            dir: Some(dir),
            path,
            server: Mutex::new(None),
            janitor: None,
            startup: Duration::ZERO,
        };
        for f in ["rabbitmq.conf", "rabbitmq-env.conf"] {
            std::fs::write(b.path.join(f), "").expect("write empty rabbitmq config");
        }
        std::fs::write(b.path.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        std::fs::write(b.path.join("epmd_port"), b.epmd_port.to_string()).expect("epmd_port");
        b.janitor = Some(Janitor::start(&b.path));
        let t0 = Instant::now();
        if let Err(e) = b.launch() {
            panic!("{e}");
        }
        b.startup = t0.elapsed();
        b
    }

    /// One node per test binary (see the module docs); started on first call.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(Broker::start)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` (guest may log in over loopback).
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    /// The Erlang node name, for `rabbitmqctl -n`.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The node's temp dir (logs under `log/`).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// How long the first start took (until `rabbitmqctl wait` returned).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The server's stdout/stderr log and RabbitMQ's own node log.
    pub fn logs(&self) -> Vec<PathBuf> {
        vec![self.path.join("server.log"), self.path.join("log").join(format!("{}.log", self.node))]
    }

    fn env(&self, cmd: &mut Command) {
        let p = &self.path;
        cmd.env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env("HOME", p)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_CONF_ENV_FILE", p.join("rabbitmq-env.conf"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("RABBITMQ_MNESIA_BASE", p.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", p.join("log"))
            .env("RABBITMQ_PID_FILE", p.join("rabbitmq.pid"))
            .env("RABBITMQ_CONFIG_FILE", p.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", p.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", p.join("enabled_plugins"))
            .current_dir(p);
    }

    /// Starts `rabbitmq-server` and waits for it (`rabbitmqctl wait <pidfile>`).
    fn launch(&self) -> Result<(), String> {
        let _ = std::fs::remove_file(self.path.join("rabbitmq.pid"));
        let mut cmd = Command::new(Path::new(RABBIT_BIN).join("rabbitmq-server"));
        self.env(&mut cmd);
        let child = GroupChild::spawn("rabbitmq-server", cmd, &self.path.join("server.log"));
        record_pgids(&self.path, &[child.pid()]);
        *self.server.lock().expect("broker lock") = Some(child);

        let pidfile = self.path.join("rabbitmq.pid");
        let secs = START_TIMEOUT.as_secs().to_string();
        let pid_arg = pidfile.to_string_lossy().into_owned();
        let waited = self.ctl(&["wait", &pid_arg, "--timeout", &secs], START_TIMEOUT);
        if let Err(e) = waited {
            let mut guard = self.server.lock().expect("broker lock");
            let early = guard.as_mut().and_then(|c| c.check_alive().err());
            return Err(format!(
                "RabbitMQ node {} did not start within {START_TIMEOUT:?}: {e}\n{}\n\
                 server log {}:\n{}\nnode log {}:\n{}",
                self.node,
                early.unwrap_or_default(),
                self.logs()[0].display(),
                super::log_tail(&self.logs()[0], 40),
                self.logs()[1].display(),
                super::log_tail(&self.logs()[1], 40),
            ));
        }
        Ok(())
    }

    /// Runs `rabbitmqctl -n <node> <args>` against this node; returns its output.
    pub fn rabbitmqctl(&self, args: &[&str]) -> Result<String, String> {
        self.ctl(args, CTL_TIMEOUT)
    }

    fn ctl(&self, args: &[&str], timeout: Duration) -> Result<String, String> {
        let mut cmd = Command::new(Path::new(RABBIT_BIN).join("rabbitmqctl"));
        self.env(&mut cmd);
        cmd.arg("-n").arg(&self.node).args(args);
        run_with_timeout(cmd, timeout, &self.path)
    }

    /// `rabbitmqctl close_all_connections`: the broker closes every client connection
    /// (clients see a CONNECTION_FORCED close); the node keeps running.
    pub fn close_all_connections(&self) {
        self.rabbitmqctl(&["close_all_connections", "closed by test"])
            .expect("rabbitmqctl close_all_connections");
    }

    /// `rabbitmqctl stop_app`: the node stays up but RabbitMQ stops (connections drop,
    /// new ones are refused) until [`Broker::start_app`].
    pub fn stop_app(&self) {
        self.rabbitmqctl(&["stop_app"]).expect("rabbitmqctl stop_app");
    }

    /// `rabbitmqctl start_app`, then waits until the node accepts connections again.
    pub fn start_app(&self) {
        self.rabbitmqctl(&["start_app"]).expect("rabbitmqctl start_app");
        let pidfile = self.path.join("rabbitmq.pid");
        self.rabbitmqctl(&["wait", &pidfile.to_string_lossy(), "--timeout", "60"])
            .expect("rabbitmqctl wait after start_app");
    }

    /// SIGKILLs the node (a crash: no clean close for clients), then starts it again with
    /// the same name, ports and data (durable queues and persistent messages survive).
    /// Returns when the node accepts connections again.
    pub fn kill_and_restart(&self) {
        self.kill();
        if let Err(e) = self.launch() {
            panic!("restart after kill: {e}");
        }
    }

    /// SIGKILLs the node's process group and waits until the AMQP port is closed. The
    /// node stays down until [`Broker::restart`].
    pub fn kill(&self) {
        if let Some(mut c) = self.server.lock().expect("broker lock").take() {
            c.kill();
        }
        let addr = format!("127.0.0.1:{}", self.amqp_port);
        super::wait_for("the killed broker's AMQP port to close", START_TIMEOUT, || {
            std::net::TcpStream::connect(&addr).err().map(|_| ())
        })
        .expect("broker port still open after SIGKILL");
    }

    /// Starts the node again after [`Broker::kill`].
    pub fn restart(&self) {
        if let Err(e) = self.launch() {
            panic!("restart: {e}");
        }
    }
}

impl Broker {
    /// `epmd -port P -kill`, retried while the dying node is still registered (epmd
    /// refuses to stop while it lists a live node).
    fn stop_epmd(&self) {
        let port = self.epmd_port.to_string();
        let _ = super::wait_for("the private epmd to stop", Duration::from_secs(10), || {
            let mut kill = Command::new("epmd");
            kill.args(["-port", &port, "-kill"]);
            let _ = run_with_timeout(kill, Duration::from_secs(5), &self.path);
            let mut names = Command::new("epmd");
            names.args(["-port", &port, "-names"]);
            let gone = run_with_timeout(names, Duration::from_secs(5), &self.path).is_err();
            gone.then_some(())
        });
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        dump_logs_if_panicking(&format!("RabbitMQ {}", self.node), &self.logs());
        if let Some(mut c) = self.server.lock().map(|mut g| g.take()).unwrap_or(None) {
            c.kill();
        }
        // The node started a private epmd on its own port; stop it (it daemonizes into
        // its own session, so killing the server's process group does not reach it).
        self.stop_epmd();
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
