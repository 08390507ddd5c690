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
# Whatever has started by the time the script exits is stopped and removed.
cleanup() {
    [ -n "${services_pid:-}" ] && kill "$services_pid" 2>/dev/null
    [ -n "${bench_pid:-}" ] && kill "$bench_pid" 2>/dev/null
    [ -n "${package_pid:-}" ] && kill -- "-$package_pid" 2>/dev/null
    rm -rf "$log" "$before" "${package_log:-}" "${services_dir:-}" "${bench_log:-}" \
        "${build_json:-}"
}
trap 'cleanup || true' EXIT
leftovers_snapshot "$before"

# One debug build serves every step: it compiles the workspace (the fuzz package is a member)
# once, with clippy's lints run as it compiles, and makes the tests, the benchmarks and the
# fuzz corpus replay; the benchmark smoke runs reuse it instead of compiling in release.
target="${CARGO_TARGET_DIR:-$PWD/target}"

step "cargo fmt --check"
cargo fmt --all -- --check

# The packages' glibc-2.28 build is the suite's second compile: of `dev` binaries (the
# release build's optimizing compile costs ~350 CPU-seconds, `dev` ~215; the packaging,
# the linking against glibc 2.28 and its floor check are the same), fast-compressed. It
# runs from here on at the lowest CPU priority, on the cycles the rest leaves idle (the
# debug build's serial stretches; the tests below mostly wait on brokers, daemons and
# deadlines), and the package tests run once it is done. It has a target directory of its
# own, so the two builds share nothing but the crates' sources.
step "packages: scripts/package.sh started in the background (nice 19)"
ensure_package_tools
export DMS_PACKAGE_DIR="$target/packages"
package_log="$(mktemp /tmp/package-log.XXXXXX)"
# setsid: a process group of its own to stop it by. A new session is also a new scheduler
# autogroup, which would get as much CPU as this whole script whatever its nice value, so
# the autogroup itself is set to nice 19 (/proc/self/autogroup; ignored where there is none).
# A target directory of its own: the `dev` build's build scripts and proc macros (host
# artifacts) would otherwise share target/debug with the debug build, whose next cargo call
# then waited for this build's lock and recompiled the workspace.
setsid env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS CARGO_TARGET_DIR="$target/package-build" sh -c \
    'echo 19 > /proc/self/autogroup 2>/dev/null; exec nice -n 19 "$@"' package \
    scripts/package.sh --profile dev --fast --out "$DMS_PACKAGE_DIR" > "$package_log" 2>&1 &
package_pid=$!

# `cargo clippy` is `cargo check` with clippy-driver as the workspace's rustc wrapper and
# its arguments in CLIPPY_ARGS. The same wrapper on the debug build lints every target as
# it compiles it, so the tree is compiled once instead of checked and then built (the lints
# and their `-D warnings` are exactly `cargo clippy --workspace --all-targets -- -D
# warnings`). Every cargo call of the suite below keeps the same environment, so none of
# them compiles the workspace again.
clippy_driver="$(rustup which clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
step "build: every test, benchmark, example and fuzz target (debug), linted by clippy (warnings are errors)"
build_json="$(mktemp /tmp/build-json.XXXXXX)"
cargo test --workspace --all-targets --locked --no-run --message-format=json-render-diagnostics > "$build_json"
# cargo test builds the examples but does not copy them to target/debug/examples/NAME.
suite_services="$(grep '"name":"suite_services"' "$build_json" | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -1)"
rm -f "$build_json"
[ -x "$suite_services" ] || { echo "the build made no examples/suite_services.rs binary" >&2; exit 1; }

# One RabbitMQ node and one Barbican for the whole suite: cargo-nextest runs each test in a
# process of its own, and a node per test process cost ~4 s and ~6 CPU-seconds each, a
# Barbican ~1.5 CPU-seconds. Each test process gets a virtual host of its own on the node
# (tests/support/broker.rs), each test its own token's project in Barbican; tests that
# inject faults still start their own. Killing suite_services stops both: their janitors
# (the same ones every test's have) kill them and remove their directories.
step "the suite's RabbitMQ node and Barbican (examples/suite_services.rs)"
services_dir="$(mktemp -d /tmp/suite-services.XXXXXX)"
"$suite_services" "$services_dir" < /dev/null &
services_pid=$!
for _ in $(seq 600); do
    [ -f "$services_dir/broker" ] && [ -f "$services_dir/barbican" ] && break
    kill -0 "$services_pid" 2>/dev/null || { echo "the suite's services did not start" >&2; exit 1; }
    sleep 0.2
done
[ -f "$services_dir/barbican" ] || { echo "the suite's services did not start within 120 s" >&2; exit 1; }
export DMS_TEST_SUITE_BROKER="$services_dir/broker" DMS_TEST_SUITE_BARBICAN="$services_dir/barbican"

# The benchmark smoke runs mostly wait too (daemons, deadlines): they run beside the tests.
step "benchmark smoke runs started in the background (debug build, small scale; figures are reported, not compared)"
bench_log="$(mktemp /tmp/bench-log.XXXXXX)"
DMS_TESTFS_BIN="$target/debug/dms-testfs" DMS_BENCH_EVENTS=20000 DMS_BENCH_QUICK=1 \
    cargo test --workspace --bench '*' --locked > "$bench_log" 2>&1 &
bench_pid=$!

# cargo-nextest runs every test in a process of its own, so the tests overlap
# (.config/nextest.toml): most of the suite's time is waiting on brokers, daemons and
# deadlines, not CPU. Doc tests are cargo test's alone.
step "tests: workspace but the package tests (cargo-nextest; the fuzz corpus replay included)"
cargo nextest run --workspace --locked -E 'not (binary_id(dms::integration) & test(/^packaging::/))' 2>&1 | tee -a "$log"

step "benchmark smoke runs: waiting for them"
if ! wait "$bench_pid"; then
    cat "$bench_log" >&2
    echo "a benchmark smoke run failed" >&2
    exit 1
fi
cat "$bench_log"

step "packages: waiting for scripts/package.sh"
if ! wait "$package_pid"; then
    cat "$package_log" >&2
    echo "scripts/package.sh failed" >&2
    exit 1
fi
cat "$package_log"

step "tests: the package tests (tests/packaging, on the packages just built)"
cargo nextest run --workspace --locked -E 'binary_id(dms::integration) & test(/^packaging::/)' 2>&1 | tee -a "$log"

step "tests: doc tests"
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"

step "stopping the suite's RabbitMQ node and Barbican"
kill "$services_pid"
wait "$services_pid" 2>/dev/null || true

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
