#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, every test of the workspace, and
# the fuzz corpus replayed through the fuzz targets on stable Rust.
# Usage: scripts/test.sh            (from anywhere; run as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/deps.sh
ensure_build_deps
ensure_test_infra

. scripts/lib/leftovers.sh

step() { printf '\n== %s\n' "$*"; }
log="$(mktemp /tmp/test-log.XXXXXX)"
before="$(mktemp -d /tmp/leftovers.XXXXXX)"
trap 'rm -rf "$log" "$before"' EXIT
leftovers_snapshot "$before"

step "cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)

step "cargo clippy (workspace, all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo clippy (fuzz package)"
(cd fuzz && cargo clippy --all-targets --locked -- -D warnings)

step "benchmark smoke runs (small scale; figures are reported, not compared)"
DMS_BENCH_EVENTS=20000 cargo bench -p dms-journal --bench journal_bench --locked
DMS_BENCH_QUICK=1 cargo bench -p dms --bench server_bench --locked
DMS_BENCH_QUICK=1 cargo bench -p dms --bench reconcile_bench --locked
DMS_BENCH_QUICK=1 cargo bench -p dms --bench containment_bench --locked

step "packages (scripts/package.sh; tests/packaging/packages*.rs read them from target/packages)"
scripts/package.sh --out target/packages

step "tests: workspace"
cargo test --workspace --locked 2>&1 | tee -a "$log"

step "tests: fuzz corpus replay (stable; see fuzz/README.md for real fuzzing)"
(cd fuzz && cargo test --locked) 2>&1 | tee -a "$log"

step "nothing left behind"
leftovers_check "$before"

# One closing line for the whole suite (set -o pipefail already failed the script on any
# failing cargo test above).
passed=$(grep '^test result:' "$log" | grep -o '[0-9]\+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep '^test result:' "$log" | grep -o '[0-9]\+ failed' | awk '{s+=$1} END {print s+0}')
printf '\n%s passed, %s failed\n' "$passed" "$failed"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
