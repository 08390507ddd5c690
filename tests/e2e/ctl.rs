//! `dms-ctl` run as an operator would against a test's daemon: the real binary, the
//! daemon's own environment and admin socket.
#![allow(dead_code, clippy::unwrap_used)]

use super::Daemon;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct Ctl {
    pub env: Vec<(String, String)>,
    pub socket: String,
    pub log: std::path::PathBuf,
    /// An empty `[server]` file: everything comes from the daemon's `DMS_*` variables.
    pub config: std::path::PathBuf,
}

impl Ctl {
    /// For the daemon started in `dir` with the standard layout (its admin socket there).
    pub fn new(daemon: &Daemon, dir: &Path) -> Ctl {
        let config = dir.join("server.conf");
        std::fs::write(&config, "[server]\n").unwrap();
        let socket = dir.join("admin.sock").display().to_string();
        Ctl { env: daemon.env.clone(), socket, log: daemon.log.clone(), config }
    }

    /// Run dms-ctl with the daemon's own environment (broker, node) and its socket.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_as(None, args)
    }

    pub fn run_as(&self, uid: Option<u32>, args: &[&str]) -> (i32, String, String) {
        let bin = bin();
        let mut cmd = match uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".into(),
                ])
                .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DMS_CONFIG", &self.config)
            .arg("--socket")
            .arg(&self.socket)
            .args(args);
        let out = cmd.output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }

    /// Run a command that does not end by itself (`--watch`) for `long`, then stop it and
    /// return what it printed.
    pub fn watch(&self, args: &[&str], long: Duration) -> String {
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DMS_CONFIG", &self.config)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(long);
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let (code, out, err) = self.run(args);
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert_eq!(code, 0, "dms-ctl {args:?}: {err}\n{log}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

/// Cargo names the binary for tests and benches; the dev stack (an example) never runs it.
fn bin() -> std::path::PathBuf {
    option_env!("CARGO_BIN_EXE_dms-ctl")
        .map(std::path::PathBuf::from)
        .expect("the dms-ctl binary (CARGO_BIN_EXE_dms-ctl)")
}
