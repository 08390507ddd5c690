#!/usr/bin/env bash
# Installs DMS on this host (Debian 12, as root): builds the release binaries and installs
#   $PREFIX/bin/{dms-server,dms-ctl,dms-journal}        (PREFIX defaults to /usr)
#   /etc/systemd/system/dms-server.service              (ExecStart = $PREFIX/bin/dms-server)
#   /etc/trilio-dms/server.conf                          (the example, only if absent)
#   /etc/default/dms-server                              (mode 0600, for secrets; only if absent)
#   bash, zsh and fish completions of dms-ctl and dms-journal
#   man pages of dms-server, dms-ctl and dms-journal (share/man/man1)
#   /run/dms/s3, /var/lib/dms, /var/log/dms/helpers, the mount base
# then runs `systemctl daemon-reload` when systemd is the init system, and prints the next
# steps. Idempotent: a second run changes nothing but the binaries (if they changed), and
# never touches an operator's server.conf or /etc/default/dms-server.
#
# Usage: scripts/install.sh [--no-build] [--bin-dir DIR] [--prefix DIR] [DESTDIR=DIR] [PREFIX=DIR]
#   --no-build     use the binaries already in target/release
#   --bin-dir DIR  take the binaries from DIR (implies --no-build; e.g. target/debug)
#   --prefix DIR   install the binaries to DIR/bin (default /usr; PREFIX=DIR works too)
#   DESTDIR=DIR    staged install under DIR (--destdir DIR works too): no root needed, no
#                  systemctl call, paths inside the installed files are the final ones
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }
warn() { echo "install.sh: warning: $*" >&2; }

build=1
bin_dir=""
prefix="${PREFIX:-/usr}"
destdir="${DESTDIR:-}"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --bin-dir) [ "$#" -ge 2 ] || die "--bin-dir needs a directory"; bin_dir="$2"; build=0; shift ;;
        --bin-dir=*) bin_dir="${1#*=}"; build=0 ;;
        --prefix) [ "$#" -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift ;;
        --prefix=*|PREFIX=*) prefix="${1#*=}" ;;
        --destdir) [ "$#" -ge 2 ] || die "--destdir needs a directory"; destdir="$2"; shift ;;
        --destdir=*|DESTDIR=*) destdir="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

case "$prefix" in
    /*) prefix="${prefix%/}"; [ -n "$prefix" ] || die "PREFIX must not be /" ;;
    *) die "PREFIX must be an absolute path: $prefix" ;;
esac
if [ -n "$destdir" ]; then
    mkdir -p "$destdir"
    destdir="$(cd "$destdir" && pwd)"
    [ "$destdir" != / ] || destdir=""
fi
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (or give DESTDIR=DIR for a staged install)"
fi

# ---- binaries --------------------------------------------------------------------------
bins=(dms-server dms-ctl dms-journal)
if [ "$build" = 1 ]; then
    # shellcheck source=scripts/lib/deps.sh
    . "$repo/scripts/lib/deps.sh"
    ensure_build_deps
    echo "== building the release binaries"
    (cd "$repo" && cargo build --release --locked -p dms --bins)
fi
if [ -z "$bin_dir" ]; then
    bin_dir="${CARGO_TARGET_DIR:-$repo/target}/release"
fi
for b in "${bins[@]}"; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing (build it, or drop --no-build/--bin-dir)"
done

# ---- helpers ---------------------------------------------------------------------------
changed=0
# put MODE SRC DST: install SRC as DST with MODE, atomically (a running binary is replaced,
# never rewritten in place); an identical DST is left alone.
put() {
    local mode="$1" src="$2" dst="$3"
    mkdir -p "$(dirname "$dst")"
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
        chmod "$mode" "$dst"
        echo "  unchanged  ${dst#"$destdir"}"
        return
    fi
    install -m "$mode" "$src" "$dst.dms-new.$$"
    mv -f "$dst.dms-new.$$" "$dst"
    echo "  installed  ${dst#"$destdir"}"
    changed=1
}
# dir MODE PATH: create PATH with MODE (or set MODE on the existing directory).
dir() { install -d -m "$1" "$destdir$2"; }

tmp="$(mktemp -d /tmp/dms-install.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

echo "== installing into ${destdir:-/} (prefix $prefix)"
for b in "${bins[@]}"; do
    put 0755 "$bin_dir/$b" "$destdir$prefix/bin/$b"
done

# The unit names /usr/bin/dms-server; another prefix gets its own ExecStart.
sed "s|^ExecStart=/usr/bin/dms-server |ExecStart=$prefix/bin/dms-server |" \
    "$repo/dist/systemd/dms-server.service" > "$tmp/dms-server.service"
grep -q "^ExecStart=$prefix/bin/dms-server " "$tmp/dms-server.service" \
    || die "could not set ExecStart in dist/systemd/dms-server.service"
put 0644 "$tmp/dms-server.service" "$destdir/etc/systemd/system/dms-server.service"

dir 0755 /etc/trilio-dms
conf="$destdir/etc/trilio-dms/server.conf"
if [ -e "$conf" ]; then
    echo "  kept       /etc/trilio-dms/server.conf (exists; the example is $repo/dist/server.conf.example)"
else
    put 0640 "$repo/dist/server.conf.example" "$conf"
fi

# Secrets (DMS_RABBITMQ_URL with its password) go to the unit's EnvironmentFile.
envfile="$destdir/etc/default/dms-server"
if [ -e "$envfile" ]; then
    echo "  kept       /etc/default/dms-server (exists)"
    if [ -n "$(find "$envfile" -maxdepth 0 -perm /077 2>/dev/null)" ]; then
        warn "/etc/default/dms-server is readable by others; it may hold the broker password: chmod 0600 it"
    fi
else
    cat > "$tmp/default" <<'EOF'
# Environment of dms-server (the systemd unit's EnvironmentFile). Mode 0600, owned by root:
# this is the place for the broker password. DMS_<KEY>=value overrides <key> of
# /etc/trilio-dms/server.conf (one VAR=value per line; syntax: systemd.exec(5),
# EnvironmentFile=). dms-server reads it only when started by systemd.
#DMS_RABBITMQ_URL=amqp://dms_user:PASSWORD@rabbitmq-host:5672
EOF
    put 0600 "$tmp/default" "$envfile"
fi

# ---- shell completions -----------------------------------------------------------------
share="$prefix/share"
zsh_dir="$share/zsh/site-functions"
[ "$prefix" != /usr ] || zsh_dir=/usr/share/zsh/vendor-completions
missing_completions=()
for tool in dms-ctl dms-journal; do
    for shell in bash zsh fish; do
        case "$shell" in
            bash) dst="$share/bash-completion/completions/$tool" ;;
            zsh) dst="$zsh_dir/_$tool" ;;
            fish) dst="$share/fish/vendor_completions.d/$tool.fish" ;;
        esac
        if "$bin_dir/$tool" completions "$shell" > "$tmp/completion" 2>"$tmp/completion.err" \
            && [ -s "$tmp/completion" ]; then
            put 0644 "$tmp/completion" "$destdir$dst"
        else
            missing_completions+=("$tool/$shell")
        fi
    done
done
if [ "${#missing_completions[@]}" -gt 0 ]; then
    warn "no completions from \`<tool> completions <shell>\` for: ${missing_completions[*]}"
fi

# ---- manual pages (rendered by each binary from its clap definition) -------------------
missing_man=()
for tool in dms-server dms-ctl dms-journal; do
    flag=man
    [ "$tool" != dms-server ] || flag=--man
    if "$bin_dir/$tool" "$flag" > "$tmp/man" 2>"$tmp/man.err" && [ -s "$tmp/man" ]; then
        put 0644 "$tmp/man" "$destdir$share/man/man1/$tool.1"
    else
        missing_man+=("$tool")
    fi
done
if [ "${#missing_man[@]}" -gt 0 ]; then
    warn "no man page from \`<tool> man\` (dms-server --man) for: ${missing_man[*]}"
fi

# ---- state directories (the unit's RuntimeDirectory/StateDirectory/LogsDirectory modes) ---
dir 0755 /run/dms
dir 0755 /run/dms/s3
dir 0700 /var/lib/dms
dir 0750 /var/log/dms
dir 0750 /var/log/dms/helpers
# The default mount base: created if absent, an existing one is left as it is.
[ -d "$destdir/var/lib/trilio/triliovault-mounts" ] || dir 0755 /var/lib/trilio/triliovault-mounts

# ---- systemd ---------------------------------------------------------------------------
systemd_running=0
if [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemd_running=1
    systemctl daemon-reload
    echo "  ran        systemctl daemon-reload"
fi

cat <<EOF

DMS is installed.${destdir:+ (staged under $destdir)}
Next steps:
  1. Edit /etc/trilio-dms/server.conf: set node_id and rabbitmq_url (both are placeholders
     in the example); every key is documented there and in docs/configuration.md.
  2. Put the broker password in /etc/default/dms-server (mode 0600), e.g.
       DMS_RABBITMQ_URL=amqp://dms_user:PASSWORD@rabbitmq-host:5672
  3. Install the S3 FUSE helper at /usr/bin/s3vaultfuse.py (or set s3vaultfuse_bin).
  4. systemctl enable --now dms-server
  5. Check: systemctl status dms-server; dms-ctl health; journalctl -u dms-server -f
EOF
if [ "$systemd_running" = 1 ] && [ "$changed" = 1 ] && systemctl is-active --quiet dms-server; then
    echo "dms-server is running the old binaries: systemctl restart dms-server (mounts and helpers stay up)."
fi
