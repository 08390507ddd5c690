#!/usr/bin/env bash
# The main job, locally: installs what it needs (build tools, RabbitMQ, the Python venv
# with Barbican), builds the release binaries, and starts a private RabbitMQ node, a
# private Barbican and dms-server in a private mount namespace. It then mounts and unmounts
# an S3 target over AMQP (the in-memory FUSE helper dms-testfs stands in for s3vaultfuse),
# shows the replies, the mount and the journal, and keeps running until Ctrl-C.
# Usage: scripts/run.sh          (DMS_DEV_EXIT=1 scripts/run.sh: stop after the demo)
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/deps.sh
ensure_build_deps
ensure_test_infra

cargo build --release --locked -p dms -p dms-testfs --bins --example dev_stack
exec ./target/release/examples/dev_stack
