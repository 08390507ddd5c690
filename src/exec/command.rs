//! Running mount(8) and umount(8) (or the configured stand-ins): argv only, never a shell,
//! always with a deadline, optionally behind a rootwrap prefix.
//!
//! A hung NFS server makes mount(8) block in the kernel; the deadline turns that into a
//! failure of that one target (DESIGN §3.5) instead of a stuck worker. A program that
//! overruns is killed; its output is captured through pipes drained by threads, so a
//! chatty program cannot block on a full pipe.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{program} did not finish within {timeout:?} and was killed")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed { program: String, status: String, stderr: String },
}

/// A program and the prefix it runs behind (`rootwrap_bin rootwrap_conf`, DESIGN §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub program: PathBuf,
    pub rootwrap: Option<(PathBuf, PathBuf)>,
}

impl Program {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into(), rootwrap: None }
    }

    /// The full argv for `args`.
    pub fn argv(&self, args: &[&str]) -> Vec<OsString> {
        let mut argv = Vec::new();
        if let Some((bin, conf)) = &self.rootwrap {
            argv.push(bin.clone().into_os_string());
            argv.push(conf.clone().into_os_string());
        }
        argv.push(self.program.clone().into_os_string());
        argv.extend(args.iter().map(OsString::from));
        argv
    }

    /// Run with `args`; success is exit status 0 within `timeout`. Returns stdout.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<String, RunError> {
        let argv = self.argv(args);
        let name = self.program.display().to_string();
        let spawn_error =
            |e: std::io::Error| RunError::Spawn { program: name.clone(), reason: e.to_string() };
        let (first, rest) = argv
            .split_first()
            .ok_or_else(|| spawn_error(std::io::ErrorKind::InvalidInput.into()))?;
        let mut child = Command::new(first)
            .args(rest)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = match wait_deadline(&mut child, timeout) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout { program: name, timeout });
            }
        };
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        if status.success() {
            Ok(out)
        } else {
            let stderr = err.trim().to_owned();
            Err(RunError::Failed { program: name, status: status.to_string(), stderr })
        }
    }
}

/// Read a pipe to its end on a thread of its own (bounded: 64 KiB is kept).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(pipe) = pipe {
            let _ = pipe.take(64 * 1024).read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn given_a_rootwrap_prefix_when_building_argv_then_it_comes_first_and_nothing_is_joined() {
        let mut p = Program::new("mount");
        p.rootwrap = Some(("/usr/bin/dms-rootwrap".into(), "/etc/dms/rootwrap.conf".into()));
        let argv = p.argv(&["-t", "nfs", "-o", "nosuid,nodev", "h:/x; rm -rf /", "/mnt/a b"]);
        let argv: Vec<String> = argv.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            argv,
            [
                "/usr/bin/dms-rootwrap",
                "/etc/dms/rootwrap.conf",
                "mount",
                "-t",
                "nfs",
                "-o",
                "nosuid,nodev",
                "h:/x; rm -rf /",
                "/mnt/a b"
            ]
        );
    }

    #[test]
    fn given_programs_that_succeed_fail_or_hang_then_each_outcome_is_reported() {
        assert_eq!(Program::new("echo").run(&["hi"], Duration::from_secs(5)).unwrap(), "hi\n");
        let err = Program::new("sh").run(&["-c", "echo boom >&2; exit 32"], Duration::from_secs(5));
        assert_eq!(
            err,
            Err(RunError::Failed {
                program: "sh".into(),
                status: "exit status: 32".into(),
                stderr: "boom".into()
            })
        );
        let started = Instant::now();
        let err = Program::new("sleep").run(&["30"], Duration::from_millis(200));
        assert!(matches!(err, Err(RunError::Timeout { .. })), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let err = Program::new("/nonexistent/mount").run(&[], Duration::from_secs(1));
        assert!(matches!(err, Err(RunError::Spawn { .. })), "{err:?}");
    }

    #[test]
    fn given_the_daemons_environment_when_running_then_it_is_not_passed_on() {
        let out = Program::new("env").run(&[], Duration::from_secs(5)).unwrap();
        assert!(!out.contains("CARGO_MANIFEST_DIR"), "{out}");
        assert!(out.contains("LC_ALL=C"));
    }
}
