# What a test run must not leave behind, as a before/after comparison (sourced by
# scripts/test.sh): processes of the suite (helpers, daemons, the mount(8) stand-in, the
# private brokers and Barbicans and their janitors, all recognisable by their command line;
# any process carrying a helper's environment, whatever its command line; and any Erlang VM
# or epmd, since a broker's epmd, the RabbitMQ cluster's own among them, names no directory
# of the suite), mounts under /tmp, temp directories (`/tmp/dms-*` from the suite's support
# code, `/tmp/.tmp*` from tempfile), helper cgroups (`dms-test-*` roots of the cgroup
# tests, `dms-helpers` of a daemon left at `helper_cgroup_root = auto`, in any hierarchy, up
# to three levels down), and parked requests' tokens in the kernel keyring. Only what
# appeared during the run counts: a machine may hold older leftovers of an interrupted run,
# and those are not this run's doing.

leftover_processes() {
    {
        ps -eo pid=,args= |
            grep -E 'dms-testfs|dms-powercutfs|dms-server|mount-stand-in|/tmp/dms-|barbican_launcher|janitor\.sh|beam\.smp|epmd' |
            grep -v -E 'grep -E|leftovers' || true
        helper_processes
    } | sort -n -u
}

# Processes that carry a helper's environment (DMS_HELPER_TARGET, which the daemon gives
# every helper and a helper's children inherit), whatever their command line: a stand-in
# helper's `sleep`, an s3fs started by a wrapper script. "PID ARGS" lines.
helper_processes() {
    local environ pid
    for environ in /proc/[0-9]*/environ; do
        grep -qz '^DMS_HELPER_TARGET=' "$environ" 2>/dev/null || continue
        pid="${environ#/proc/}" pid="${pid%/environ}"
        printf '%s %s\n' "$pid" "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)"
    done
}

leftover_mounts() {
    findmnt -rn -o TARGET | grep -E '^/tmp/' || true
}

leftover_dirs() {
    find /tmp -maxdepth 1 \( -name 'dms-*' -o -name '.tmp*' \) -print 2>/dev/null | sort || true
}

# Keystone tokens a daemon kept in the kernel keyring for parked requests
# (src/exec/keyring.rs): "key-id description" lines.
leftover_keys() {
    grep -o '^[0-9a-f]* .*dms-parked-token:[0-9a-f]*:[0-9]*' /proc/keys 2>/dev/null |
        awk '{print $1, $NF}' | sort || true
}

leftover_cgroups() {
    find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -type d \( -name 'dms-test-*' -o -name 'dms-helpers' \) \
        -print 2>/dev/null | sort || true
}

# leftovers_snapshot DIR: record what exists now.
leftovers_snapshot() {
    local dir="$1"
    leftover_processes | awk '{print $1}' | sort > "$dir/processes"
    leftover_mounts | sort > "$dir/mounts"
    leftover_dirs > "$dir/dirs"
    leftover_cgroups > "$dir/cgroups"
    leftover_keys > "$dir/keys"
}

# What exists now and did not at the snapshot in DIR, one "kind: what" line each.
leftovers_new() {
    local dir="$1"
    leftover_processes | while read -r pid args; do
        grep -qx "$pid" "$dir/processes" || echo "process: $pid $args"
    done
    leftover_mounts | sort | comm -13 "$dir/mounts" - | sed 's/^/mount: /'
    leftover_dirs | comm -13 "$dir/dirs" - | sed 's/^/temp directory: /'
    leftover_cgroups | comm -13 "$dir/cgroups" - | sed 's/^/cgroup: /'
    leftover_keys | comm -13 "$dir/keys" - | sed 's/^/kept token (kernel keyring): /'
}

# leftovers_check DIR: fail (listing them) if the run left anything behind. Janitors stop
# their brokers a moment after a test binary exits, so this waits up to 30 s for that.
leftovers_check() {
    local dir="$1" left="" i
    for i in $(seq 1 30); do
        left="$(leftovers_new "$dir")"
        [ -z "$left" ] && break
        sleep 1
    done
    if [ -n "$left" ]; then
        echo "the suite left these behind:" >&2
        echo "$left" >&2
        return 1
    fi
    echo "nothing left behind: no process, mount, temp directory or cgroup of the suite survives"
}
