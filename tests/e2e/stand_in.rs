//! A stand-in for mount(8) (`DMS_MOUNT_PROGRAM`): an NFS server that hangs, or answers,
//! as the test says, with every run recorded, and nothing of it left behind.

use super::Daemon;
use crate::support;
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A stand-in for mount(8) that does what `<dir>/mode` says: `hang` — a wrapper that does
/// not exec, its background child holding the pipes, both sleeping for 10 minutes —,
/// `hang <text>` — hang only when an argument contains `<text>` (one hung NFS server among
/// others), `slow` — mount after 2 s, otherwise (`ok`) — mount a tmpfs at the target. Each run appends "<own pid> <child pid>" to `runs`.
pub struct StandIn {
    pub script: PathBuf,
    mode: PathBuf,
    runs: PathBuf,
}

impl StandIn {
    pub fn new(dir: &Path) -> StandIn {
        let (script, mode, runs) = (dir.join("mount-stand-in"), dir.join("mode"), dir.join("runs"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nmode=\"$(cat {mode})\"\ncase \"$mode\" in\n  slow) sleep 2 ;;\n  hang) hang=1 ;;\n  hang\\ *) case \" $* \" in *\"${{mode#hang }}\"*) hang=1 ;; esac ;;\nesac\nif [ -n \"$hang\" ]; then\n  sleep 600 &\n  echo \"$$ $!\" >> {runs}\n  wait\n  exit 1\nfi\nfor last; do :; done\nexec mount -t tmpfs -o size=1m nfs-stand-in \"$last\"\n",
                mode = mode.display(),
                runs = runs.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let stand_in = StandIn { script, mode, runs };
        stand_in.set("hang");
        stand_in
    }

    pub fn set(&self, mode: &str) {
        std::fs::write(&self.mode, mode).unwrap();
    }

    /// The (wrapper, child) PIDs of every run so far.
    pub fn runs(&self) -> Vec<(i32, i32)> {
        let text = std::fs::read_to_string(&self.runs).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
            .collect()
    }

    pub fn wait_runs(&self, count: usize, daemon: &Daemon) {
        let waited =
            support::wait_for("the hanging mount program", Duration::from_secs(60), || {
                (self.runs().len() >= count).then_some(())
            });
        if let Err(e) = waited {
            panic!("{e}\n--- daemon log ---\n{}", daemon.log_text());
        }
    }

    /// The variables that make a daemon run this stand-in for NFS mounts (a tmpfs passes
    /// for NFS).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DMS_MOUNT_PROGRAM", self.script.display().to_string()),
            ("DMS_NFS_FSTYPES", "nfs,nfs4,tmpfs".into()),
        ]
    }

    /// The processes of the stand-in's runs that are still alive (zombies count as dead).
    pub fn alive(&self) -> Vec<i32> {
        let mut alive = Vec::new();
        for (wrapper, child) in self.runs() {
            if is_alive(wrapper, "mount-stand-in") {
                alive.push(wrapper);
            }
            if is_alive(child, "sleep") {
                alive.push(child);
            }
        }
        alive
    }

    /// Waits until no run is alive, for at most `within`: a killed process dies promptly,
    /// not at once (under load it waits to be scheduled). The ones still alive otherwise.
    pub fn wait_gone(&self, within: Duration) -> Result<(), Vec<i32>> {
        let gone = support::wait_for("the mount programs to die", within, || {
            self.alive().is_empty().then_some(())
        });
        gone.map_err(|_| self.alive())
    }
}

impl Drop for StandIn {
    /// A failing test leaves nothing behind either.
    fn drop(&mut self) {
        for (wrapper, child) in self.runs() {
            if is_alive(wrapper, "mount-stand-in") {
                let _ = kill_process_group(Pid::from_raw(wrapper).unwrap(), Signal::KILL);
            }
            if is_alive(child, "sleep") {
                let _ = kill_process(Pid::from_raw(child).unwrap(), Signal::KILL);
            }
        }
    }
}

pub fn is_alive(pid: i32, comm: &str) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let name = std::fs::read_to_string(proc.join("comm")).unwrap_or_default();
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    let zombie = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    name.trim() == comm && !zombie
}
