#!/usr/bin/env bash
# Real fuzzing: cargo-fuzz (libFuzzer, coverage-guided, nightly Rust) on every fuzz target
# for a given time each, one after the other.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#        (default: 1800 s, every target in fuzz/fuzz_targets; DMS_FUZZ_JOBS=N runs N
#        libFuzzer workers per target, default 1)
#
# Each target fuzzes into a scratch corpus seeded from fuzz/corpus/<target>/; afterwards only
# the inputs that add coverage are merged back into fuzz/corpus/<target>/ (libFuzzer's
# -merge=1), so the committed corpus grows by what is worth keeping (review, then commit).
# A crash leaves its input in fuzz/artifacts/<target>/ (see fuzz/README.md: reproduce,
# minimize, add to the corpus, fix). The script ends with one line per target: executions,
# coverage (edges), features, corpus size before and after, and exits 1 if any target found
# a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-1800}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(ls fuzz/fuzz_targets | sed -n 's/\.rs$//p' | sort)
fi
jobs="${DMS_FUZZ_JOBS:-1}"

. scripts/lib/deps.sh
ensure_build_deps
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

work="$(mktemp -d /tmp/fuzz-work.XXXXXX)"
trap 'rm -rf "$work"' EXIT
summary=()
failed=0
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    scratch="$work/$target"
    mkdir -p "$scratch" "fuzz/artifacts/$target"
    before=$(find "$corpus" -type f | wc -l)
    log="$work/$target.log"
    printf '\n== fuzzing %s for %s s (%s worker(s))\n' "$target" "$seconds" "$jobs"
    status=0
    parallel=()
    # With -jobs, libFuzzer runs workers that log to fuzz-<n>.log in the current directory.
    [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
    cargo +nightly fuzz run "$target" "$scratch" "$corpus" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
        "${parallel[@]}" >"$log" 2>&1 || status=$?
    for w in fuzz-*.log; do [ -e "$w" ] && cat "$w" >>"$log" && rm -f "$w"; done
    tail -n 5 "$log"
    # (A crash ends a run without final stats: none of these may fail the script.)
    execs=$( (grep -o 'stat::number_of_executed_units: [0-9]*' "$log" || true) | awk '{s+=$2} END {print s+0}')
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    cov=$( (grep -oE 'cov: [0-9]+' <<<"$done_line" || true) | awk '{print $2}')
    ft=$( (grep -oE 'ft: [0-9]+' <<<"$done_line" || true) | awk '{print $2}')
    if [ "$status" -ne 0 ]; then
        failed=1
        crash=$(ls -t "fuzz/artifacts/$target" 2>/dev/null | grep -v '^fuzz.log$' | head -n 1 || true)
        summary+=("$target: FAILED (exit $status) after $execs executions; artifact: fuzz/artifacts/$target/$crash; log kept at fuzz/artifacts/$target/fuzz.log")
        cp "$log" "fuzz/artifacts/$target/fuzz.log"
        continue
    fi
    # Keep only what adds coverage.
    cargo +nightly fuzz run "$target" "$corpus" "$scratch" -- -merge=1 >"$work/$target.merge.log" 2>&1
    after=$(find "$corpus" -type f | wc -l)
    summary+=("$target: $execs executions in $seconds s, cov ${cov:-?} edges, ft ${ft:-?} features, corpus $before -> $after files")
done

printf '\n== fuzzing summary\n'
printf '%s\n' "${summary[@]}"
exit "$failed"
