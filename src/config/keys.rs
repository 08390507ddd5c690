//! Every configuration key, its environment variable, default and meaning: one table, so
//! the loader, the unknown-key check and `docs/configuration.md` cannot drift apart (a test
//! compares the document with [`markdown_table`]).

use crate::wire::DEFAULT_MOUNT_BASE;

/// What happens when a key is set nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    Required,
    /// Unset means "off" / "none".
    Optional,
    Default(&'static str),
    /// A default too long for the table; the text says where it is documented.
    Builtin(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub env: &'static str,
    pub fallback: Fallback,
    pub doc: &'static str,
}

const fn key(name: &'static str, env: &'static str, fallback: Fallback, doc: &'static str) -> Key {
    Key { name, env, fallback, doc }
}

use Fallback::{Default as D, Optional as O, Required as R};

pub const KEYS: &[Key] = &[
    key("rabbitmq_url", "DMS_RABBITMQ_URL", R, "Broker URL, `amqp://`, `amqps://` or oslo.messaging's `rabbit://` (read as `amqp://`); a cluster as comma-separated `user:pass@host:port` entries sharing one virtual host and query (`rabbit://u:p@h1:5672,u:p@h2:5672/vhost`). Hosts are tried in a shuffled order, the next one at once when a connection is lost. Percent-encode `,` `@` `/` `?` `#` in passwords. No password is ever logged."),
    key("node_id", "DMS_NODE_ID", R, "This node's name (`A-Z a-z 0-9 . _ -`, no leading dot, at most 128 bytes); the daemon consumes queue `dms.<node_id>`."),
    key("auth_url", "DMS_AUTH_URL", O, "Keystone URL (`http(s)://`); informational, requests bring their own token."),
    key("mount_base_path", "DMS_MOUNT_BASE", D(DEFAULT_MOUNT_BASE), "Absolute directory every requested mount path must lie strictly inside."),
    key("log_level", "DMS_LOG_LEVEL", D("info"), "`error`, `warn`, `info`, `debug` or `trace` (any case; `warning` and `critical` are accepted)."),
    key("log_format", "DMS_LOG_FORMAT", D("auto"), "`auto`: native journal entries (fields `TARGET_ID`, `REQUEST_KEY`, `ACTION`, `OUTCOME`, `HELPER_PID`) when stderr is the journal (systemd's `JOURNAL_STREAM`), else `text`; `text`: one line per event on stderr, coloured only on a terminal; `json`: one JSON object per line on stderr; `journal`: native journal entries always."),
    key("s3vaultfuse_bin", "DMS_S3VAULTFUSE_BIN", D("/usr/bin/s3vaultfuse.py"), "Absolute path of the S3 FUSE helper, started with no arguments."),
    key("pid_dir", "DMS_PID_DIR", D("/run/dms/s3"), "Directory of the helpers' PID files (`<target id>.pid`)."),
    key("journal_path", "DMS_JOURNAL_PATH", D("/var/lib/dms/journal"), "Directory of the sled journal."),
    key("mount_program", "DMS_MOUNT_PROGRAM", D("mount"), "mount(8): a program name looked up in `PATH`, or an absolute path."),
    key("umount_program", "DMS_UMOUNT_PROGRAM", D("umount"), "umount(8): a program name looked up in `PATH`, or an absolute path."),
    key("rootwrap_bin", "DMS_ROOTWRAP_BIN", O, "Absolute path of a rootwrap program to prefix mount/umount with; set together with `rootwrap_conf`."),
    key("rootwrap_conf", "DMS_ROOTWRAP_CONF", O, "Absolute path of the rootwrap configuration; set together with `rootwrap_bin`."),
    key("admin_socket", "DMS_ADMIN_SOCKET", D("/run/dms/admin.sock"), "Unix socket of the admin interface (`dms-ctl`, online `dms-journal`): mode 0600, and only root peers are served."),
    key("metrics_listen", "DMS_METRICS_LISTEN", D("127.0.0.1:9477"), "`host:port` serving Prometheus metrics at `/metrics` (a loopback or local address; port 0 picks a free one, logged at start), or `off`. `0.0.0.0` and `::` (every address of the host) are refused unless `metrics_allow_any_address = true`. An address that cannot be bound is logged as an error and the daemon serves mounts without metrics."),
    key("metrics_allow_any_address", "DMS_METRICS_ALLOW_ANY_ADDRESS", D("false"), "`true` lets `metrics_listen` be `0.0.0.0` or `::`, reachable from the network although the endpoint has no TLS and no authentication. An explicit opt-in; logged at start-up."),
    key("journal_retention_days", "DMS_JOURNAL_RETENTION_DAYS", D("30"), "Days of finished history kept in the journal (1–3650); older history is compacted hourly into per-target snapshots, current states and unfinished operations are always kept."),
    key("helper_log_dir", "DMS_HELPER_LOG_DIR", D("/var/log/dms/helpers"), "Directory of the helpers' stdout/stderr log files."),
    key("helper_cgroup_root", "DMS_HELPER_CGROUP_ROOT", D("auto"), "Where each helper's own cgroup is made (`<root>/<target id>`): `auto` = `dms-helpers` under the daemon's own cgroup in the hierarchy found at start (the v1 `memory` and `pids` controllers where memory is a v1 controller, else cgroup v2); an absolute cgroup path such as `/dms-helpers` = that path in every hierarchy; `off` = no cgroups (no limits, no OOM cause from the cgroup)."),
    key("helper_memory_max", "DMS_HELPER_MEMORY_MAX", O, "Memory limit of each helper's cgroup, in bytes or with a `K`, `M`, `G` or `T` suffix (powers of 1024; at least `1M`): v2 `memory.max`, v1 `memory.limit_in_bytes`. A helper past it is killed by the OOM killer alone, and its death says so. Unset: no limit."),
    key("helper_tasks_max", "DMS_HELPER_TASKS_MAX", O, "Most processes and threads in each helper's cgroup (1–4194304): `pids.max`. Unset: no limit."),
    key("credentials_timeout", "DMS_CREDENTIALS_TIMEOUT", D("10"), "Seconds allowed for fetching credentials from Barbican."),
    key("helper_mount_timeout", "DMS_HELPER_MOUNT_TIMEOUT", D("30"), "Seconds a started helper has to make its mount appear."),
    key("heal_attempts", "DMS_HEAL_ATTEMPTS", D("3"), "Deaths of a mounted target's helper that are healed within `heal_window` (0–100): the dead mount is detached and a new helper is started with the same environment at the same path, so the target stays mounted. Each death after the first in a window waits a backoff (1 s, doubling, at most 30 s). One more death in the window and the target is lost (`helper died N times in M s; not healed again`). 0 turns healing off."),
    key("heal_window", "DMS_HEAL_WINDOW", D("600"), "Seconds over which a target's helper deaths count against `heal_attempts`."),
    key("helper_stop_grace", "DMS_HELPER_STOP_GRACE", D("10"), "Seconds between SIGTERM and SIGKILL when stopping a helper."),
    key("nfs_mount_timeout", "DMS_NFS_MOUNT_TIMEOUT", D("60"), "Seconds allowed for mount(8) of an NFS target, its output and its children included: at the deadline its whole process group is killed and the mount fails."),
    key("resync_interval", "DMS_RESYNC_INTERVAL", D("30"), "Seconds between two runtime resyncs: the journal compared with the mount table, the PID files and the live helpers, and converged (a mount removed or a PID file edited by hand, a hung mount)."),
    key("mount_probe_timeout", "DMS_MOUNT_PROBE_TIMEOUT", D("5"), "Seconds a mount point may take to answer a `stat` before the reconciler calls it dead (a hung FUSE helper or NFS server)."),
    key("umount_timeout", "DMS_UMOUNT_TIMEOUT", D("30"), "Seconds allowed for each umount(8) attempt."),
    key("max_concurrent_targets", "DMS_MAX_CONCURRENT_TARGETS", D("16"), "Host operations run at once node-wide (1–1024): credential fetches, helper starts and stops, S3 unmounts. Taken per operation, not per request; requests for one target are always serialized."),
    key("nfs_ops_per_server", "DMS_NFS_OPS_PER_SERVER", D("4"), "mount(8)/umount(8) runs at once against one NFS server (1–64), outside `max_concurrent_targets`: a hung server stalls at most this many operations, its own."),
    key("nfs_breaker_backoff", "DMS_NFS_BREAKER_BACKOFF", D("30"), "Seconds an NFS server's operations fail fast after one of them timed out; each failed probe doubles it, up to ten times this. Then one operation probes the server; an answer closes the breaker."),
    key("park_after", "DMS_PARK_AFTER", D("0.5"), "Seconds a keyed request may hold its AMQP delivery before it is parked in the journal's inbox and its delivery acked (at most 86400). A parked request's keystone token waits in the kernel keyring (never on disk): resumed after a restart of the daemon it still has it; after a reboot it has none, and one that still had to fetch credentials fails and must be sent again."),
    key("prefetch", "DMS_PREFETCH", D("32"), "AMQP prefetch count: unacked deliveries in flight (1–65535)."),
    key("queue_type", "DMS_QUEUE_TYPE", D("classic"), "How `dms.<node_id>` is declared: `classic` (no arguments, as clients declare it; mirrored or not by the broker's policy) or `quorum` (`x-queue-type: quorum`). Must match the queue as it exists: a mismatch is logged once with the value to set, and the daemon keeps retrying."),
    key("rabbitmq_ca_file", "DMS_RABBITMQ_CA_FILE", O, "Absolute path of a PEM CA bundle to verify the broker's TLS certificate with (`amqps://`); unset: the system's trust store."),
    key("rabbitmq_cert_file", "DMS_RABBITMQ_CERT_FILE", O, "Absolute path of a PEM client certificate (chain) for brokers that require one (`amqps://`); set together with `rabbitmq_key_file`."),
    key("rabbitmq_key_file", "DMS_RABBITMQ_KEY_FILE", O, "Absolute path of the PEM private key of `rabbitmq_cert_file` (PKCS#8, PKCS#1 or SEC1); set together with it."),
    key("rabbitmq_insecure", "DMS_RABBITMQ_INSECURE", D("false"), "`true` turns off verification of the broker's TLS certificate (`amqps://`). An explicit opt-out; logged at start-up."),
    key("barbican_ca_file", "DMS_BARBICAN_CA_FILE", O, "Absolute path of a PEM CA bundle to verify Barbican's TLS certificate with."),
    key("barbican_insecure", "DMS_BARBICAN_INSECURE", D("false"), "`true` turns off TLS verification towards Barbican. An explicit opt-out; logged at start-up."),
    key("secret_ref_prefixes", "DMS_SECRET_REF_PREFIXES", O, "Comma-separated `http(s)://` URL prefixes every `secret_ref` must start with (at a `/` boundary). Unset: any plain http(s) URL."),
    key("nfs_fstypes", "DMS_NFS_FSTYPES", D("nfs,nfs4"), "Comma-separated filesystem types the mount table may show for a mounted NFS target (a stand-in `mount_program` may mount another type, e.g. `tmpfs` in tests)."),
    key("nfs_allowed_options", "DMS_NFS_ALLOWED_OPTIONS", Fallback::Builtin("see below"), "Comma-separated NFS mount option names a request may use. `suid`, `dev`, `exec` are never allowed; `nosuid,nodev` are always added."),
];

/// The variable that names the configuration file (`--config PATH` wins over it).
pub const CONFIG_ENV: &str = "DMS_CONFIG";
pub const DEFAULT_CONFIG_PATH: &str = "/etc/trilio-dms/server.conf";

pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The reference table of `docs/configuration.md`.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| key | environment variable | default | meaning |\n| --- | --- | --- | --- |\n",
    );
    for k in KEYS {
        let default = match k.fallback {
            Fallback::Required => "**required**".to_owned(),
            Fallback::Optional => "unset".to_owned(),
            Fallback::Builtin(text) => text.to_owned(),
            Fallback::Default(d) => format!("`{d}`"),
        };
        out.push_str(&format!("| `{}` | `{}` | {default} | {} |\n", k.name, k.env, k.doc));
    }
    out
}
