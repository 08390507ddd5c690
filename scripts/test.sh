#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, benchmark smoke runs, every test
# of the workspace, and the fuzz corpus replayed through the fuzz targets on stable Rust.
# Usage: scripts/test.sh            (from anywhere; run as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/deps.sh
ensure_build_deps
ensure_test_infra

. scripts/lib/leftovers.sh

# Each step's heading says how long the one before it took (and the last line, the whole run).
step_start=$SECONDS
step() {
    [ -n "${step_name:-}" ] && printf '   (%s: %d s)\n' "$step_name" $((SECONDS - step_start))
    step_name="$*" step_start=$SECONDS
    printf '\n== %s\n' "$*"
}
log="$(mktemp /tmp/test-log.XXXXXX)"
before="$(mktemp -d /tmp/leftovers.XXXXXX)"
trap 'rm -rf "$log" "$before"' EXIT
leftovers_snapshot "$before"

# One build serves every step: clippy checks the workspace (the fuzz package is a member),
# then a single debug build makes the tests, the benchmarks and the fuzz corpus replay;
# the benchmark smoke runs reuse it instead of compiling the tree again in release.
target="${CARGO_TARGET_DIR:-$PWD/target}"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (workspace incl. fuzz targets, all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build: every test, benchmark, example and fuzz target (debug)"
cargo test --workspace --all-targets --locked --no-run

step "benchmark smoke runs (debug build, small scale; figures are reported, not compared)"
DMS_TESTFS_BIN="$target/debug/dms-testfs" DMS_BENCH_EVENTS=20000 DMS_BENCH_QUICK=1 \
    cargo test --workspace --bench '*' --locked

step "packages (scripts/package.sh: the glibc-2.28 release build; tests/packaging/packages*.rs read them)"
export DMS_PACKAGE_DIR="$target/packages"
scripts/package.sh --out "$DMS_PACKAGE_DIR"

# cargo-nextest runs every test in a process of its own, so the tests of different binaries
# overlap (.config/nextest.toml): most of the suite's time is waiting on brokers, daemons
# and deadlines, not CPU. Doc tests are cargo test's alone.
step "tests: workspace (cargo-nextest; the fuzz corpus replay included)"
cargo nextest run --workspace --locked 2>&1 | tee -a "$log"

step "tests: doc tests"
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"

step "nothing left behind"
leftovers_check "$before"

# One closing line for the whole suite (set -o pipefail already failed the script on any
# failing test above): nextest's summary plus the doc tests' results.
count() {
    grep -E '^ +Summary \[|^test result:' "$log" | grep -o "[0-9]\+ $1" | awk '{s+=$1} END {print s+0}'
}
passed=$(count passed)
failed=$(count failed)
printf '\n%s passed, %s failed (scripts/test.sh took %d s)\n' "$passed" "$failed" "$SECONDS"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
