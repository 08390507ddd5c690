#!/usr/bin/env bash
# Last-resort cleanup for a test service started by tests/support.
#
# Usage: janitor.sh STATE_DIR   (stdin: a pipe whose write end the test process holds)
#
# Blocks reading stdin. If the guard finishes its own cleanup it writes "done" and the
# janitor exits quietly. If stdin reaches EOF first (the test process exited without
# dropping the guard, e.g. a static shared broker, a panic=abort or a SIGKILL), it kills
# every process group listed in STATE_DIR/pgids, stops the private epmd whose port is in
# STATE_DIR/epmd_port (if any) and removes STATE_DIR.
set -euo pipefail

dir="$1"
line=""
IFS= read -r line || true
if [ "$line" = done ]; then
    exit 0
fi
if [ -f "$dir/pgids" ]; then
    while IFS= read -r pgid; do
        [ -n "$pgid" ] && { kill -KILL -- "-$pgid" 2>/dev/null || true; }
    done < "$dir/pgids"
fi
if [ -f "$dir/epmd_port" ]; then
    port="$(cat "$dir/epmd_port")"
    # epmd refuses to stop while the dying node is still registered: retry for ~10 s.
    for _ in $(seq 50); do
        epmd -port "$port" -kill >/dev/null 2>&1 || true
        epmd -port "$port" -names >/dev/null 2>&1 || break
        sleep 0.2
    done
fi
case "$dir" in
    /tmp/*) rm -rf -- "$dir" ;;
esac
exit 0
