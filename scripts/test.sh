#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, every test of the workspace, and
# the fuzz corpus replayed through the fuzz targets on stable Rust.
# Usage: scripts/test.sh            (from anywhere; run as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/deps.sh
ensure_build_deps

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)

step "cargo clippy (workspace, all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo clippy (fuzz package)"
(cd fuzz && cargo clippy --all-targets --locked -- -D warnings)

step "tests: workspace"
cargo test --workspace --locked

step "tests: fuzz corpus replay (stable; see fuzz/README.md for real fuzzing)"
(cd fuzz && cargo test --locked)

step "benchmark smoke run (small scale; figures are not compared here)"
DMS_BENCH_EVENTS=20000 cargo bench -p dms-journal --bench journal_bench --locked
