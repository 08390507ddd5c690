//! What the engine is asked to do, whoever asks: the broker transport (a decoded wire
//! request), the transport's inbox (a request parked before a restart) or the admin socket
//! (`dms-ctl stop`). The engine knows nothing of the wire: each caller converts what it
//! received into a [`Job`], so the admin socket no longer forges wire requests and the
//! wire format can change without the engine noticing.

use dms_journal::{Command, OperationId, RequestKey, TargetId, TargetSpec};
use secrecy::SecretString;

/// One request for one target, at the journal's level.
#[derive(Debug, Clone)]
pub struct Job {
    /// What identifies the request across redeliveries; `None`: answered, never replayed.
    pub key: Option<RequestKey>,
    pub target: TargetId,
    pub ask: Ask,
    /// The keystone token, for the one effect that needs it (fetching S3 credentials).
    /// Held in memory by the request's run only: never journaled, logged or parked.
    pub token: Option<SecretString>,
}

/// What a job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    Mount(TargetSpec),
    Unmount { mount_path: String },
}

impl Job {
    /// An unmount with no token (admin stops, tests).
    pub fn unmount(key: Option<RequestKey>, target: TargetId, mount_path: String) -> Self {
        Job { key, target, ask: Ask::Unmount { mount_path }, token: None }
    }

    /// The journal command this job asks for, as operation `op`.
    pub fn command(&self, op: OperationId) -> Command {
        let request = self.key.clone();
        match &self.ask {
            Ask::Mount(spec) => {
                Command::Mount { op, request, spec: spec.clone(), nested: None, outage: None }
            }
            Ask::Unmount { mount_path } => {
                Command::Unmount { op, request, mount_path: mount_path.clone() }
            }
        }
    }

    pub fn mount_path(&self) -> &str {
        match &self.ask {
            Ask::Mount(spec) => &spec.mount_path,
            Ask::Unmount { mount_path } => mount_path,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dms_journal::TargetKind;

    #[test]
    fn given_a_mount_job_when_turned_into_a_command_then_it_carries_key_spec_and_no_facts() {
        let spec = TargetSpec {
            kind: TargetKind::Nfs { export: "h:/e".into(), options: "ro".into() },
            mount_path: "/b/t".into(),
        };
        let job = Job {
            key: Some(RequestKey::new("k").unwrap()),
            target: TargetId::new("t").unwrap(),
            ask: Ask::Mount(spec.clone()),
            token: None,
        };
        let op = OperationId::random();
        let Command::Mount { op: got, request, spec: got_spec, nested, outage } = job.command(op)
        else {
            panic!("not a mount");
        };
        assert_eq!((got, request.unwrap().as_str(), got_spec), (op, "k", spec));
        assert!(nested.is_none() && outage.is_none());
        assert_eq!(job.mount_path(), "/b/t");
        let unmount = Job::unmount(None, TargetId::new("t").unwrap(), "/b/t".into());
        assert!(matches!(unmount.command(op), Command::Unmount { request: None, .. }));
    }
}
