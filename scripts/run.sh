#!/usr/bin/env bash
# The main job, as far as it exists today: build the release binaries, write a journal of
# simulated requests (the engine's decide → append → effect → outcome loop, with made-up
# effect outcomes and a simulated restart + reconcile), and inspect it with dms-journal.
# The daemon (dms-server) arrives with issue 3; this script will then start it instead.
# Usage: scripts/run.sh [JOURNAL_DIR]     (default: a fresh temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/deps.sh
ensure_build_deps

dir="${1:-$(mktemp -d /tmp/dms-demo-journal.XXXXXX)}"
cargo build --release --locked -p dms-journal --bin dms-journal --example demo
./target/release/examples/demo "$dir"
echo
./target/release/dms-journal --path "$dir" inspect
echo
./target/release/dms-journal --path "$dir" inspect --target target-s3-001
echo
./target/release/dms-journal --path "$dir" verify
echo
echo "journal kept at $dir; try: ./target/release/dms-journal --path $dir inspect --json"
