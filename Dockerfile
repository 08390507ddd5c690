# dms-server in a container: the seed's `docker run` deployment.
#
#   docker build -t trilio/dms-server:latest .
#
#   docker run -d \
#     --name trilio-dms-server \
#     --restart unless-stopped \
#     --stop-timeout 60 \
#     --privileged \
#     --network host \
#     --device /dev/fuse \
#     -e DMS_RABBITMQ_URL=amqp://dms_user:dms_password@rabbitmq-host:5672 \
#     -e DMS_NODE_ID=compute-01 \
#     -e DMS_AUTH_URL=http://keystone:5000/v3 \
#     -v /var/lib/trilio/triliovault-mounts:/var/lib/trilio/triliovault-mounts:shared \
#     -v /run/dms:/run/dms \
#     -v /var/lib/dms:/var/lib/dms \
#     -v /var/log/dms:/var/log/dms \
#     trilio/dms-server:latest
#
# What each part is for (the daemon does not work without the first four):
# --privileged        mount(2) needs CAP_SYS_ADMIN, and FUSE and NFS mounts need the
#                     default seccomp/AppArmor profiles out of the way.
# --network host      the broker, Barbican, S3 and the NFS servers are reached as from the
#                     node itself; the metrics endpoint (127.0.0.1:9477) is the node's.
# --device /dev/fuse  the S3 helpers are FUSE file systems (implied by --privileged;
#                     explicit so that it survives a move to a capability list).
# ...:shared          mount propagation: the mounts the daemon makes under the mount base
#                     must appear on the HOST, where the backup workload reads them. The
#                     host directory must exist and be a shared mount point (systemd
#                     hosts make / shared; otherwise: mount --bind DIR DIR &&
#                     mount --make-shared DIR). Without ":shared" every mount stays
#                     invisible inside the container.
# -v /run/dms         the helpers' PID files (/run/dms/s3) and the admin socket
#                     (/run/dms/admin.sock), so `dms-ctl` on the host reaches the daemon.
# -v /var/lib/dms     the journal: it must outlive the container, or a new container
#                     forgets every mount (a VOLUME below keeps it across restarts at least).
# -v /var/log/dms     the helpers' log files (/var/log/dms/helpers); the daemon itself
#                     logs to stderr: docker logs -f trilio-dms-server.
# --stop-timeout 60   on SIGTERM the daemon finishes in-flight requests (up to 30 s).
# Configuration: DMS_* variables as above (every key: docs/configuration.md), or a file:
# -v /etc/trilio-dms:/etc/trilio-dms:ro. Keep the broker password out of shell history:
# --env-file /etc/default/dms-server (mode 0600) instead of -e DMS_RABBITMQ_URL=...
#
# The S3 FUSE helper: Trilio's s3vaultfuse is a Python program that this image does not
# contain. The daemon starts /usr/bin/s3vaultfuse.py (s3vaultfuse_bin) with no arguments.
# Build an image FROM this one that installs it and its Python dependencies there (python3
# and fuse3 are already here), or bind-mount a self-contained helper:
#   -v /usr/bin/s3vaultfuse.py:/usr/bin/s3vaultfuse.py:ro
#
# Unlike under systemd (KillMode=process), the helpers live in the container: stopping or
# restarting the container ends them, and their mounts go dead. The next start finds the
# dead mounts, detaches them and journals them lost; requesters mount again. Upgrade the
# daemon without touching the mounts by running it under systemd (scripts/install.sh).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:12-slim

# ---- build --------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between builds (BuildKit);
# the binaries are copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dms --bins \
    && mkdir -p /out \
    && cp target/release/dms-server target/release/dms-ctl target/release/dms-journal /out/

# ---- runtime ------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
# fuse3: fusermount3 and /etc/fuse.conf for the FUSE helpers; mount + util-linux: mount(8),
# umount(8); nfs-common: mount.nfs; ca-certificates: TLS to Barbican and the broker;
# python3: for the s3vaultfuse helper; tini: PID 1 reaps orphaned grandchildren (helpers'
# children, mount.nfs) and forwards SIGTERM to dms-server only.
# Versions come from the Debian 12 release the base image tracks (security updates
# included), so they are not pinned here.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
        fuse3 \
        mount \
        nfs-common \
        python3 \
        tini \
        util-linux \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /out/dms-server /out/dms-ctl /out/dms-journal /usr/bin/
COPY dist/server.conf.example /usr/share/doc/dms/server.conf.example
# The same directories and modes as the systemd unit (RuntimeDirectory=, StateDirectory=,
# LogsDirectory=) and scripts/install.sh. No configuration file is installed: DMS_* variables
# or a mounted /etc/trilio-dms/server.conf configure the daemon.
RUN install -d -m 0755 /run/dms /run/dms/s3 /etc/trilio-dms /var/lib/trilio/triliovault-mounts \
    && install -d -m 0700 /var/lib/dms \
    && install -d -m 0750 /var/log/dms /var/log/dms/helpers
VOLUME ["/var/lib/dms"]

# `dms-ctl health` exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (no answer on the admin
# socket); Docker knows only 0 healthy and 1 unhealthy, so CRITICAL and UNKNOWN map to 1.
# A long boot reconcile (many targets) is covered by the start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10m --retries=3 \
    CMD ["/bin/sh", "-c", "/usr/bin/dms-ctl health >/dev/null; [ $? -le 1 ]"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/bin/dms-server"]
