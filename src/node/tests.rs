//! The whole daemon ([`super::run`]) in process, against the recording fakes, a real
//! journal and a real admin socket in a temp dir, jobs sent on a channel: boot reconcile,
//! supervision and the admin commands in milliseconds. The broker transport, the host's
//! executors and the real helpers are the end-to-end tests' (tests/server_*.rs).
#![allow(clippy::unwrap_used)]

use super::jobs;
use super::*;
use crate::admin::client::{self, AskError};
use crate::admin::protocol::AdminRequest;
use crate::config::Sources;
use crate::engine::fake::{FakeCredentials, FakeMounts, FakeProcesses, World};
use crate::engine::fake_observer::FakeObserver;
use crate::engine::{Ask, Job};
use dms_journal::{BootId, Outcome, RequestKey, TargetId, TargetKind, TargetSpec};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const BASE: &str = "/var/lib/trilio/triliovault-mounts";

fn config(dir: &Path) -> Config {
    let at = |name: &str| dir.join(name).display().to_string();
    let env: BTreeMap<String, String> = [
        ("DMS_RABBITMQ_URL", "amqp://unused@127.0.0.1:1/".to_owned()),
        ("DMS_NODE_ID", "harness".to_owned()),
        ("DMS_JOURNAL_PATH", at("journal")),
        ("DMS_ADMIN_SOCKET", at("admin.sock")),
        ("DMS_PID_DIR", at("pids")),
        ("DMS_HELPER_LOG_DIR", at("logs")),
        ("DMS_METRICS_LISTEN", "off".to_owned()),
        // Passes run at boot and when asked (the admin's cleanup), not on a timer.
        ("DMS_RESYNC_INTERVAL", "3600".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let sources = Sources {
        config_path: None,
        env: &env,
        default_config_path: PathBuf::from("/nonexistent/dms-harness/server.conf"),
    };
    Config::load(sources).unwrap()
}

/// One daemon on the fakes.
struct Node {
    world: Arc<World>,
    observer: FakeObserver,
    jobs: jobs::Sender,
    stop: watch::Sender<bool>,
    running: tokio::task::JoinHandle<Result<Exit, ServerError>>,
    socket: PathBuf,
}

fn start(dir: &Path, world: &Arc<World>, boot: u128) -> Node {
    let config = config(dir);
    let boot = BootId(uuid::Uuid::from_u128(boot));
    let observer = FakeObserver::new(Arc::clone(world), boot, config.mount_base_path.clone());
    let (jobs, intake) = jobs::channel();
    let ports = Ports {
        executors: Executors {
            credentials: FakeCredentials(Arc::clone(world)),
            processes: FakeProcesses { world: Arc::clone(world), boot },
            mounts: FakeMounts(Arc::clone(world)),
        },
        observer: observer.clone(),
        exits: Exits::default(),
        intake: Intake::Jobs(intake),
        owns_process: false,
    };
    let (stop, shutdown) = watch::channel(false);
    let socket = config.admin_socket.clone();
    let running = tokio::spawn(run(ports, config, shutdown));
    Node { world: Arc::clone(world), observer, jobs, stop, running, socket }
}

impl Node {
    async fn admin(&self, request: AdminRequest) -> Result<serde_json::Value, AskError> {
        let socket = self.socket.clone();
        tokio::task::spawn_blocking(move || client::ask(&socket, &request, Duration::from_secs(10)))
            .await
            .unwrap()
    }

    /// `target`'s state as `dms-ctl list --all` shows it.
    async fn state_of(&self, target: &str) -> String {
        let rows = self.admin(AdminRequest::Targets { detailed: false, all: true }).await.unwrap();
        let row = rows.as_array().unwrap().iter().find(|r| r["target"] == target).cloned();
        row.map_or_else(|| "unknown".into(), |r| r["state"].as_str().unwrap().to_owned())
    }

    async fn stop(self) -> Exit {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.running).await.unwrap().unwrap().unwrap()
    }
}

fn s3_mount(target: &str, key: &str) -> Job {
    Job {
        key: Some(RequestKey::new(key).unwrap()),
        target: TargetId::new(target).unwrap(),
        ask: Ask::Mount(TargetSpec {
            kind: TargetKind::S3 {
                secret_ref: format!("http://barbican:9311/v1/secrets/{target}"),
            },
            mount_path: format!("{BASE}/{target}"),
        }),
        token: Some(SecretString::from("tok")),
    }
}

/// Poll `check` every few milliseconds for up to 5 s.
async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test]
async fn given_a_mounted_helper_when_it_dies_then_its_watch_fires_and_the_target_is_healed() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &World::new(), 1);
    let mounted = node.jobs.ask(s3_mount("t1", "k1")).await.unwrap();
    assert_eq!(mounted, Outcome::Mounted { kind: "s3".into(), path: format!("{BASE}/t1") });
    // A pass (the admin's cleanup) sets up a watch on the helper it finds mounted.
    node.admin(AdminRequest::Cleanup).await.unwrap();
    assert_eq!(node.observer.watched(), [1000].into());

    node.observer.kill(1000, &format!("{BASE}/t1"));
    let verified = format!("verify {BASE}/t1 pid 1001");
    assert!(eventually(|| async { node.world.calls().contains(&verified) }).await);
    assert!(eventually(|| async { node.state_of("t1").await == "mounted" }).await);
    let calls = node.world.calls();
    let after_kill = &calls[calls.iter().position(|c| c == "kill pid 1000").unwrap() + 1..];
    let healed = [
        format!("unmount {BASE}/t1 nfs=false"),
        format!("spawn t1 {BASE}/t1 keys=true"),
        format!("verify {BASE}/t1 pid 1001"),
    ];
    assert_eq!(after_kill[..3], healed);
    // For the requester it never stopped being mounted.
    let again = node.jobs.ask(s3_mount("t1", "k2")).await.unwrap();
    assert_eq!(again, Outcome::AlreadyMounted { path: format!("{BASE}/t1") });
    assert_eq!(node.stop().await, Exit::Stopped);
}

/// After a restart the daemon holds no credentials: it reads the environment of the helper
/// it adopts (the one it gave it), so a death after the restart is healed all the same.
#[tokio::test]
async fn given_a_restart_when_an_adopted_helper_dies_then_it_is_healed_with_its_own_environment() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new();
    let node = start(dir.path(), &world, 1);
    node.jobs.ask(s3_mount("t1", "k1")).await.unwrap();
    assert_eq!(node.stop().await, Exit::Stopped);

    let node = start(dir.path(), &world, 1);
    // Jobs wait for the boot pass, which adopts the helper and reads its environment.
    let again = node.jobs.ask(s3_mount("t1", "k2")).await.unwrap();
    assert!(matches!(again, Outcome::AlreadyMounted { .. }), "{again:?}");
    assert!(world.calls().contains(&"read env pid 1000".to_owned()), "{:?}", world.calls());
    node.observer.kill(1000, &format!("{BASE}/t1"));
    let spawned = format!("spawn t1 {BASE}/t1 keys=true");
    assert!(
        eventually(|| async { world.calls().iter().filter(|c| **c == spawned).count() == 2 }).await
    );
    assert!(eventually(|| async { node.state_of("t1").await == "mounted" }).await);
    assert!(!world.calls().iter().any(|c| c.starts_with("fetch ") && c.contains("token=false")));
    assert_eq!(node.stop().await, Exit::Stopped);
}

#[tokio::test]
async fn given_a_journal_of_an_earlier_boot_when_the_node_starts_then_the_boot_pass_converges_it() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new();
    let node = start(dir.path(), &world, 1);
    node.jobs.ask(s3_mount("t1", "k1")).await.unwrap();
    assert_eq!(node.stop().await, Exit::Stopped);
    // A reboot: helpers and mounts are gone, the PID file (on disk here) stays.
    world.helpers.lock().unwrap().clear();
    world.mounted.lock().unwrap().clear();
    let before = world.calls().len();

    let started = Instant::now();
    let node = start(dir.path(), &world, 2);
    // Jobs wait for the boot pass: once this answers, the pass is done.
    let unmount = Job::unmount(
        Some(RequestKey::new("u1").unwrap()),
        TargetId::new("t1").unwrap(),
        format!("{BASE}/t1"),
    );
    let outcome = node.jobs.ask(unmount).await.unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    let calls = world.calls()[before..].to_vec();
    assert_eq!(calls[0], "observe", "{calls:?}");
    assert!(calls.contains(&"remove pid file t1".to_owned()), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.starts_with("stop ")),
        "no helper of another boot is signalled: {calls:?}"
    );
    assert!(world.pid_files.lock().unwrap().is_empty());
    assert_eq!(node.state_of("t1").await, "unmounted");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(node.stop().await, Exit::Stopped);
}

#[tokio::test]
async fn given_a_mounted_target_when_the_admin_stops_it_then_only_its_current_helper_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &World::new(), 1);
    node.jobs.ask(s3_mount("t1", "k1")).await.unwrap();
    let stats = node.admin(AdminRequest::Stats).await.unwrap();
    assert_eq!(
        (&stats["agreement"], &stats["helpers_alive"], &stats["mounts_under_base"]),
        (&true.into(), &1.into(), &1.into()),
        "{stats}"
    );

    let stale = node.admin(AdminRequest::Stop { target: "t1".into(), pid: Some(999) }).await;
    let Err(AskError::Refusal(refusal)) = stale else { panic!("{stale:?}") };
    assert!(refusal.contains("pid 1000 now, not 999"), "{refusal}");
    let stopped = node.admin(AdminRequest::Stop { target: "t1".into(), pid: None }).await.unwrap();
    assert_eq!(stopped["helper_pid"], 1000);
    assert!(node.world.calls().contains(&"stop t1 pid 1000".to_owned()));
    assert_eq!(node.state_of("t1").await, "unmounted");
    let again = node.admin(AdminRequest::Stop { target: "t1".into(), pid: None }).await;
    assert!(matches!(again, Err(AskError::Refusal(_))), "{again:?}");
    assert_eq!(node.stop().await, Exit::Stopped);
    assert!(!dir.path().join("admin.sock").exists(), "the socket is removed at the stop");
}

#[tokio::test]
async fn given_an_observer_that_fails_when_the_node_starts_then_it_does_not_serve() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new();
    world.fail("observe", "the mount table cannot be read");
    let node = start(dir.path(), &world, 1);
    let ended = tokio::time::timeout(Duration::from_secs(10), node.running).await.unwrap().unwrap();
    let Err(error) = ended else { panic!("a node that cannot observe started") };
    assert!(error.to_string().contains("the mount table cannot be read"), "{error}");
}

#[tokio::test]
async fn given_an_idle_admin_client_when_the_node_stops_then_it_is_told_and_the_stop_does_not_wait()
{
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &World::new(), 1);
    node.jobs.ask(s3_mount("t1", "k1")).await.unwrap();
    // Connected, request never sent: the socket's own read deadline is 10 s.
    let mut idle = tokio::net::UnixStream::connect(&node.socket).await.unwrap();
    let started = Instant::now();
    assert_eq!(node.stop().await, Exit::Stopped);
    assert!(started.elapsed() < Duration::from_secs(2), "stop took {:?}", started.elapsed());
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut idle, &mut answer).await.unwrap();
    assert!(answer.contains("dms-server is stopping"), "{answer}");
}

/// A crash between the spawn and `Spawned` (issue 29): the journal ends at the spawn
/// intent, and its helper runs without a mount yet, proven by nothing but the nonce in its
/// environment. The boot pass journals what the crash lost and waits for its mount; the
/// redelivered request is answered from the journal, and no second helper is started.
#[tokio::test]
async fn given_a_spawn_intent_and_its_helper_when_the_node_starts_then_the_helper_is_resumed() {
    use dms_journal::{decide, Clock, Command, OperationId, SpawnNonce, TargetState, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let (boot, nonce, op) = (1, SpawnNonce::random(), OperationId::random());
    {
        let path = config(dir.path()).journal_path;
        let (journal, _) = dms_journal::store::Journal::open(&path).unwrap();
        let clock = Clock { now: Timestamp(1), boot: BootId(uuid::Uuid::from_u128(boot)) };
        let mut state = TargetState::new(TargetId::new("t1").unwrap());
        let Job { key, ask: Ask::Mount(spec), .. } = s3_mount("t1", "k1") else { unreachable!() };
        let mount = Command::Mount { op, request: key, spec, nested: None, outage: None };
        for command in [mount, Command::CredsFetched { op, result: Ok(()), nonce }] {
            let decision = decide(&state, &command, clock, &crate::wire::Wire).unwrap();
            journal.append(&decision.records).unwrap();
            decision.records.iter().for_each(|r| state.apply(r));
        }
    }
    let world = World::new();
    world.helpers.lock().unwrap().insert(777);
    let mut env = crate::exec::helper::HelperEnv::default();
    env.set(SpawnNonce::ENV, nonce.env_value());
    world.envs.lock().unwrap().insert(777, env);
    // Another process of ours with a stale nonce is not taken for it.
    world.helpers.lock().unwrap().insert(778);
    let mut stale = crate::exec::helper::HelperEnv::default();
    stale.set(SpawnNonce::ENV, SpawnNonce::random().env_value());
    world.envs.lock().unwrap().insert(778, stale);

    let node = start(dir.path(), &world, boot);
    let outcome = node.jobs.ask(s3_mount("t1", "k1")).await.unwrap();
    assert_eq!(outcome, Outcome::Mounted { kind: "s3".into(), path: format!("{BASE}/t1") });
    let calls = world.calls();
    assert!(!calls.iter().any(|c| c.starts_with("spawn ")), "a second helper: {calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("stop ")), "{calls:?}");
    assert!(calls.contains(&"write pid file t1 777".to_owned()), "{calls:?}");
    assert!(calls.contains(&format!("verify {BASE}/t1 pid 777")), "{calls:?}");
    assert_eq!(node.state_of("t1").await, "mounted");
    assert_eq!(node.stop().await, Exit::Stopped);
}
