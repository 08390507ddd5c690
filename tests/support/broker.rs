//! A private RabbitMQ node (Debian's rabbitmq-server 3.10) for tests.
//!
//! Each node has its own node name (`dms-test-<pid>-<n>@localhost`), AMQP port, Erlang
//! distribution port, **private epmd port** (`ERL_EPMD_PORT`, so it never touches a
//! system epmd or another test's) and a temp dir holding mnesia, logs, the PID file, the
//! Erlang cookie (`HOME`) and empty config/env/plugin files so no system config is read.
//! Everything listens on 127.0.0.1 only. Start takes ~5 s on this machine.
//!
//! Sharing: [`Broker::shared`] returns one node per test process, created on first use and
//! stored in a `OnceLock`. Statics are never dropped, so that node is stopped by its
//! janitor (see `support/mod.rs`) when the test process exits. Under `scripts/test.sh`
//! the whole suite shares one node instead ([`SUITE_ENV`], started by
//! `examples/suite_services.rs`): cargo-nextest runs every test in a process of its own, and
//! a node per test cost ~4 s and ~6 CPU-seconds each, a fifth of the suite's test CPU.
//! There each test process gets a virtual host of its own (created through the management
//! API), so queues of the same name in two tests never meet. Tests that inject faults
//! (closing connections, stopping the app, killing the node) must use their own
//! [`Broker::start`] so they do not disturb tests running in parallel; on the suite's node
//! those calls panic.

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

/// Set by `scripts/test.sh` to the descriptor file `examples/suite_services.rs` wrote: the
/// suite's one node, which [`Broker::shared`] attaches to.
pub const SUITE_ENV: &str = "DMS_TEST_SUITE_BROKER";

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
    /// The management API's port (the suite's node only; 0 elsewhere).
    management_port: u16,
    /// This process's virtual host on the suite's node (`None`: the default `/`, on a node
    /// this process owns).
    vhost: Option<String>,
}

impl Broker {
    /// Starts a new private node and waits until it accepts AMQP connections. Panics
    /// (with the log tail) if RabbitMQ is missing or does not come up within 90 s.
    pub fn start() -> Broker {
        Self::start_with(false)
    }

    fn start_with(management: bool) -> Broker {
        Self::start_configured(management, |_| String::new())
    }

    /// [`Broker::start`] with more `rabbitmq.conf` lines: `extra` gets the node's private
    /// directory (for files the lines name, such as TLS certificates) and returns them.
    pub fn start_configured(management: bool, extra: impl FnOnce(&Path) -> String) -> Broker {
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
            management_port: if management { super::free_port() } else { 0 },
            vhost: None,
        };
        let (conf, plugins) = if management {
            let port = b.management_port;
            (
                format!("management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {port}\n"),
                "[rabbitmq_management].\n",
            )
        } else {
            (String::new(), "[].\n")
        };
        let conf = conf + &extra(&b.path);
        std::fs::write(b.path.join("rabbitmq.conf"), conf).expect("write rabbitmq.conf");
        std::fs::write(b.path.join("rabbitmq-env.conf"), "").expect("write rabbitmq-env.conf");
        std::fs::write(b.path.join("enabled_plugins"), plugins).expect("write enabled_plugins");
        std::fs::write(b.path.join("epmd_port"), b.epmd_port.to_string()).expect("epmd_port");
        b.janitor = Some(Janitor::start(&b.path));
        let t0 = Instant::now();
        if let Err(e) = b.launch() {
            panic!("{e}");
        }
        b.startup = t0.elapsed();
        b
    }

    /// One node per test process, or a virtual host of this process on the suite's node
    /// (see the module docs); set up on first call.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(|| match std::env::var_os(SUITE_ENV) {
            Some(file) => Broker::attach(Path::new(&file)),
            None => Broker::start(),
        })
    }

    /// The suite's node (`examples/suite_services.rs`): a private node like any other, with
    /// the management API on loopback, where each test process makes its virtual host.
    pub fn start_for_suite() -> Broker {
        Self::start_with(true)
    }

    /// What [`Broker::attach`] needs to find the suite's node, as one line.
    pub fn suite_descriptor(&self) -> String {
        format!(
            "{} {} {} {} {} {}\n",
            self.node,
            self.amqp_port,
            self.dist_port,
            self.epmd_port,
            self.management_port,
            self.path.display()
        )
    }

    /// This process's virtual host on the suite's node described in `file`. Nothing of the
    /// node is owned: dropping the result stops nothing.
    fn attach(file: &Path) -> Broker {
        let [node, amqp, dist, epmd, management, dir] = super::suite_descriptor(SUITE_ENV, file);
        let port = |p: &str| p.parse::<u16>().unwrap_or_else(|e| panic!("port {p:?}: {e}"));
        let vhost =
            format!("dms-test-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let b = Broker {
            node,
            amqp_port: port(&amqp),
            dist_port: port(&dist),
            epmd_port: port(&epmd),
            dir: None,
            path: PathBuf::from(dir),
            server: Mutex::new(None),
            janitor: None,
            startup: Duration::ZERO,
            management_port: port(&management),
            vhost: Some(vhost.clone()),
        };
        let api = format!("http://127.0.0.1:{}/api", b.management_port);
        let auth =
            [("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q="), ("content-type", "application/json")];
        let all = br#"{"configure":".*","write":".*","read":".*"}"#;
        for (url, body) in [
            (format!("{api}/vhosts/{vhost}"), &b"{}"[..]),
            (format!("{api}/permissions/{vhost}/guest"), &all[..]),
        ] {
            match super::http::request("PUT", &url, &auth, body) {
                Ok(r) if (200..300).contains(&r.status) => {}
                Ok(r) => panic!("PUT {url} on the suite broker: {} {}", r.status, r.text()),
                Err(e) => panic!("PUT {url} on the suite broker: {e}"),
            }
        }
        b
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/<vhost>` (guest may log in over loopback; the
    /// default virtual host `/` is `%2f`).
    pub fn amqp_url(&self) -> String {
        let vhost = self.vhost.as_deref().unwrap_or("%2f");
        format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", self.amqp_port)
    }

    /// Fault injection on the suite's node would reach every test running beside.
    fn owned(&self, what: &str) {
        assert!(
            self.vhost.is_none(),
            "{what} on the suite's shared node would disturb every other test: use Broker::start()"
        );
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
        let ports = NodePorts { epmd: self.epmd_port, amqp: self.amqp_port, dist: self.dist_port };
        node_env(cmd, &self.node, ports, &self.path, &self.path);
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
        self.owned("close_all_connections");
        self.rabbitmqctl(&["close_all_connections", "closed by test"])
            .expect("rabbitmqctl close_all_connections");
    }

    /// `rabbitmqctl stop_app`: the node stays up but RabbitMQ stops (connections drop,
    /// new ones are refused) until [`Broker::start_app`].
    pub fn stop_app(&self) {
        self.owned("stop_app");
        self.rabbitmqctl(&["stop_app"]).expect("rabbitmqctl stop_app");
    }

    /// `rabbitmqctl start_app`, then waits until the node accepts connections again.
    pub fn start_app(&self) {
        self.owned("start_app");
        self.rabbitmqctl(&["start_app"]).expect("rabbitmqctl start_app");
        let pidfile = self.path.join("rabbitmq.pid");
        self.rabbitmqctl(&["wait", &pidfile.to_string_lossy(), "--timeout", "60"])
            .expect("rabbitmqctl wait after start_app");
    }

    /// SIGKILLs the node (a crash: no clean close for clients), then starts it again with
    /// the same name, ports and data (durable queues and persistent messages survive).
    /// Returns when the node accepts connections again.
    pub fn kill_and_restart(&self) {
        self.owned("kill_and_restart");
        self.kill();
        if let Err(e) = self.launch() {
            panic!("restart after kill: {e}");
        }
    }

    /// SIGKILLs the node's process group and waits until the AMQP port is closed. The
    /// node stays down until [`Broker::restart`].
    pub fn kill(&self) {
        self.owned("kill");
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
        self.owned("restart");
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
        // its own session, so killing the server's process group does not reach it). The
        // suite's node and its epmd belong to the suite.
        if self.vhost.is_none() {
            self.stop_epmd();
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

/// The ports of one private RabbitMQ node.
#[derive(Debug, Clone, Copy)]
pub(super) struct NodePorts {
    pub(super) epmd: u16,
    pub(super) amqp: u16,
    pub(super) dist: u16,
}

/// The whole environment of a private node `name` (and of the CLI tools talking to it):
/// nothing inherited. `home` holds the cookie and the configuration files, `data` the
/// node's mnesia, logs and PID file (the same for a lone node, one each in a cluster).
pub(super) fn node_env(cmd: &mut Command, name: &str, ports: NodePorts, home: &Path, data: &Path) {
    cmd.env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .env("HOME", home)
        .env("ERL_EPMD_PORT", ports.epmd.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_CONF_ENV_FILE", home.join("rabbitmq-env.conf"))
        .env("RABBITMQ_NODENAME", name)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", ports.amqp.to_string())
        .env("RABBITMQ_DIST_PORT", ports.dist.to_string())
        .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}")
        .env("RABBITMQ_MNESIA_BASE", data.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", data.join("log"))
        .env("RABBITMQ_PID_FILE", data.join("rabbitmq.pid"))
        .env("RABBITMQ_CONFIG_FILE", home.join("rabbitmq.conf"))
        .env("RABBITMQ_ADVANCED_CONFIG_FILE", home.join("advanced.config"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", home.join("enabled_plugins"))
        .current_dir(data);
}
