//! A real OpenStack Barbican (barbican 23.0.0 from PyPI, in the test venv) run by
//! `scripts/infra/barbican_launcher.py`: sqlite + simple_crypto under a temp dir, the
//! shipped `unauthenticated-context` pipeline, plain HTTP on 127.0.0.1. Starts in ~1-2 s.
//!
//! Authentication as the launcher emulates it (keystonemiddleware stand-in):
//! - each `X-Auth-Token` is its own project: a secret stored with token A and read with
//!   token B gets Barbican's real **403**;
//! - a missing token, or one starting with `invalid` (see [`INVALID_TOKEN`]), gets **401**;
//! - an unknown secret ref gets Barbican's real **404** ([`Barbican::unknown_secret_ref`]).
//!
//! Faults ([`Barbican::set_fault`]): injected before Barbican sees the request, on every
//! `/v1` path or only on paths containing a substring (e.g. `/payload`): a status (500,
//! 503, ...), a delay (to exercise client timeouts), or both. A refused connection:
//! [`closed_port_url`].
//!
//! Sharing: under `scripts/test.sh` the whole suite shares one Barbican
//! ([`SUITE_ENV`], started by `examples/suite_services.rs`), which [`Barbican::shared`]
//! attaches to: a start costs ~1.5 CPU-seconds, and most tests only store a secret of their
//! own token's project and let the daemon read it. Tests that inject faults or read the
//! request log use their own [`Barbican::start`]; on the suite's instance those calls panic.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::http;
use super::proc::{dump_logs_if_panicking, record_pgids, GroupChild, Janitor};

const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Set by `scripts/test.sh` to the descriptor file `examples/suite_services.rs` wrote: the
/// suite's one Barbican, which [`Barbican::shared`] attaches to.
pub const SUITE_ENV: &str = "DMS_TEST_SUITE_BARBICAN";

/// A token the test Keystone stand-in rejects with 401.
pub const INVALID_TOKEN: &str = "invalid-token";

/// A fault to inject in front of Barbican (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// Answer with this status instead of forwarding to Barbican.
    pub status: Option<u16>,
    /// Sleep this long before answering (or forwarding).
    pub delay: Duration,
    /// Only for request paths containing this (empty: every `/v1` request).
    pub path_contains: String,
}

impl Fault {
    /// Every `/v1` request gets `status`.
    pub fn status(status: u16) -> Fault {
        Fault { status: Some(status), ..Fault::default() }
    }

    /// Every `/v1` request is delayed by `delay` (then served normally).
    pub fn delay(delay: Duration) -> Fault {
        Fault { delay, ..Fault::default() }
    }

    /// Restricts the fault to paths containing `fragment` (e.g. `"/payload"`).
    pub fn only_for(mut self, fragment: &str) -> Fault {
        self.path_contains = fragment.to_string();
        self
    }
}

/// A running Barbican; dropping it kills the server (unless it is the suite's).
#[derive(Debug)]
pub struct Barbican {
    port: u16,
    server: Option<GroupChild>,
    janitor: Option<Janitor>,
    dir: Option<super::TestDir>,
    path: PathBuf,
    startup: Duration,
    /// The suite's instance, attached to: nothing of it is owned, and faults are refused.
    attached: bool,
}

impl Barbican {
    /// Starts Barbican on a free loopback port and waits until `/v1` answers.
    pub fn start() -> Barbican {
        let python = super::venv_bin("python");
        let launcher = super::infra_script("barbican_launcher.py");
        super::require_file(&launcher);
        let dir = super::temp_dir("dms-barbican-");
        let path = dir.path().to_path_buf();
        let janitor = Janitor::start(&path);
        let port = super::free_port();
        let t0 = Instant::now();
        let mut cmd = Command::new(python);
        cmd.arg(&launcher)
            .arg("--dir")
            .arg(path.join("state"))
            .arg("--port")
            .arg(port.to_string())
            .env("PYTHONWARNINGS", "ignore")
            .current_dir(&path);
        let mut server = GroupChild::spawn("barbican", cmd, &path.join("barbican.log"));
        record_pgids(&path, &[server.pid()]);
        let probe = format!("http://127.0.0.1:{port}/v1/secrets?limit=1");
        let ready = super::wait_for("Barbican to answer /v1", START_TIMEOUT, || {
            if let Err(e) = server.check_alive() {
                return Some(Err(e));
            }
            match http::request("GET", &probe, &[("X-Auth-Token", "readiness-probe")], b"") {
                Ok(r) if r.status == 200 => Some(Ok(())),
                Ok(r) => Some(Err(format!("readiness probe got {}: {}", r.status, r.text()))),
                Err(_) => None,
            }
        });
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => panic!(
                "Barbican did not start: {e}\nlog {}:\n{}",
                server.log().display(),
                super::log_tail(server.log(), 60)
            ),
        }
        let _ = std::fs::remove_file(path.join("state/requests.log"));
        Barbican {
            port,
            server: Some(server),
            janitor: Some(janitor),
            dir: Some(dir),
            path,
            startup: t0.elapsed(),
            attached: false,
        }
    }

    /// The suite's Barbican when there is one ([`SUITE_ENV`]), else one of this test's own
    /// ([`Barbican::start`]). For tests that neither inject faults nor read the request log.
    pub fn shared() -> Barbican {
        match std::env::var_os(SUITE_ENV) {
            Some(file) => Barbican::attach(std::path::Path::new(&file)),
            None => Barbican::start(),
        }
    }

    /// What [`Barbican::shared`] needs to find this instance, as one line.
    pub fn suite_descriptor(&self) -> String {
        format!("{} {}\n", self.port, self.path.display())
    }

    fn attach(file: &std::path::Path) -> Barbican {
        let [port, dir] = super::suite_descriptor(SUITE_ENV, file);
        Barbican {
            port: port.parse().unwrap_or_else(|e| panic!("port {port:?}: {e}")),
            server: None,
            janitor: None,
            dir: None,
            path: PathBuf::from(&dir),
            startup: Duration::ZERO,
            attached: true,
        }
    }

    /// Faults and the request log of the suite's instance belong to every test at once.
    fn owned(&self, what: &str) {
        assert!(
            !self.attached,
            "{what} on the suite's shared Barbican would reach every other test: use Barbican::start()"
        );
    }

    /// `http://127.0.0.1:<port>` (secret refs are `<url>/v1/secrets/<uuid>`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The launcher's stdout/stderr and Barbican's own service log.
    pub fn logs(&self) -> Vec<PathBuf> {
        vec![self.path.join("barbican.log"), self.path.join("state/barbican-service.log")]
    }

    /// Stores `payload` (e.g. a JSON credentials document) as an opaque `text/plain`
    /// secret owned by `token`'s project; returns the secret ref (a URL).
    /// (`application/json` is refused by Barbican, hence text/plain.)
    pub fn store_secret(&self, token: &str, payload: &str) -> String {
        let body = serde_json::json!({
            "name": "dms-test-credentials",
            "payload": payload,
            "payload_content_type": "text/plain",
            "secret_type": "opaque",
        })
        .to_string();
        let r = http::request(
            "POST",
            &format!("{}/v1/secrets", self.url()),
            &[
                ("X-Auth-Token", token),
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("store secret: {e}"));
        assert_eq!(r.status, 201, "store secret: status {}: {}", r.status, r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("secret_ref JSON");
        v["secret_ref"].as_str().expect("secret_ref in response").to_string()
    }

    /// A well-formed secret ref that does not exist (GET gives 404).
    pub fn unknown_secret_ref(&self) -> String {
        format!("{}/v1/secrets/00000000-0000-4000-8000-000000000000", self.url())
    }

    /// Injects `fault` for subsequent requests (replaces any previous fault).
    pub fn set_fault(&self, fault: &Fault) {
        self.owned("set_fault");
        let v = serde_json::json!({
            "status": fault.status,
            "delay_secs": fault.delay.as_secs_f64(),
            "path_contains": fault.path_contains,
            "body": format!("injected fault {:?}", fault.status),
        });
        let tmp = self.path.join("state/fault.json.tmp");
        std::fs::write(&tmp, v.to_string()).expect("write fault");
        std::fs::rename(&tmp, self.path.join("state/fault.json")).expect("install fault");
    }

    /// Removes any injected fault.
    pub fn clear_fault(&self) {
        self.owned("clear_fault");
        let _ = std::fs::remove_file(self.path.join("state/fault.json"));
    }

    /// The `/v1` requests seen so far (after startup), one line each:
    /// `METHOD PATH accept=<Accept> token=<yes|no>` (the token itself is never logged).
    pub fn requests(&self) -> Vec<String> {
        self.owned("requests");
        std::fs::read_to_string(self.path.join("state/requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Barbican {
    fn drop(&mut self) {
        dump_logs_if_panicking("Barbican", &self.logs());
        if let Some(mut s) = self.server.take() {
            s.kill();
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

/// `http://127.0.0.1:<port>` where nothing listens (connection refused).
pub fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", super::free_port())
}
