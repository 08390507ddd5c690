#!/usr/bin/env bash
# Builds the DMS packages: a .deb (cargo-deb) and an .rpm (cargo-generate-rpm) holding
# dms-server, dms-ctl, dms-journal, the systemd unit (/usr/lib/systemd/system), the example
# configuration as /etc/trilio-dms/server.conf and /etc/default/dms-server (configuration
# files: an upgrade never overwrites them), bash/zsh/fish completions and man pages.
#
# The binaries are built with cargo-zigbuild for x86_64-unknown-linux-gnu.2.28, so they
# need at most GLIBC_2.28 (Ubuntu 20.04+, RHEL 8+, Debian 10+); this script fails if any
# needs more (objdump -T) or does not run. Debug info is stripped (symbols are kept, so a
# backtrace still names functions). The files are laid out by scripts/install.sh (DESTDIR)
# under target/dms-package/root, the same layout a from-source install gets; Cargo.toml's
# [package.metadata.deb] and [package.metadata.generate-rpm] list what goes in.
#
# Usage: scripts/package.sh [--out DIR] [--no-build] [--profile PROFILE] [--fast]
#   --out DIR    where the packages go (default target/packages); older dms packages in
#                DIR are removed first
#   --no-build   package the binaries already built for the 2.28 target
#   --profile P  cargo profile of the binaries (default release, what operators install;
#                scripts/test.sh packages `dev` binaries: same script, same linking and
#                GLIBC floor, without the optimized compile, the suite's largest)
#   --fast       faster, larger compression of the .deb (xz, low level) and the .rpm (gzip)
# Installs its tools first (scripts/lib/deps.sh: ensure_package_tools).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "package.sh: error: $*" >&2; exit 1; }

out="$repo/target/packages"
build=1
profile=release
fast=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --out) [ "$#" -ge 2 ] || die "--out needs a directory"; out="$2"; shift ;;
        --out=*) out="${1#*=}" ;;
        --no-build) build=0 ;;
        --profile) [ "$#" -ge 2 ] || die "--profile needs a cargo profile"; profile="$2"; shift ;;
        --profile=*) profile="${1#*=}" ;;
        --fast) fast=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The glibc floor: the oldest glibc of the supported distributions (RHEL 8: 2.28).
glibc_floor=2.28
target=x86_64-unknown-linux-gnu
bins=(dms-server dms-ctl dms-journal)

# shellcheck source=scripts/lib/deps.sh
. "$repo/scripts/lib/deps.sh"
ensure_build_deps
ensure_package_tools

cd "$repo"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
# cargo's directory for a profile: `dev` builds into debug/.
case "$profile" in dev) profile_dir=debug ;; *) profile_dir="$profile" ;; esac
built="$target_dir/$target/$profile_dir"
if [ "$build" = 1 ]; then
    echo "== building the $profile binaries for glibc $glibc_floor (cargo zigbuild)"
    # No debug info to generate: the packages strip it anyway (below), and generating it
    # is a good part of the release build's time.
    CARGO_PROFILE_RELEASE_DEBUG=false \
        cargo zigbuild --profile "$profile" --locked --target "$target.$glibc_floor" -p dms --bins
fi

# Fixed paths: Cargo.toml's asset lists name them.
stage="$repo/target/dms-package"
rm -rf "$stage"
mkdir -p "$stage/bin"
echo "== checking the binaries (GLIBC floor $glibc_floor)"
for b in "${bins[@]}"; do
    [ -x "$built/$b" ] || die "$built/$b is missing (run without --no-build)"
    objcopy --strip-debug "$built/$b" "$stage/bin/$b"
    # The highest GLIBC_x.y symbol version the binary needs.
    need="$(objdump -T "$stage/bin/$b" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
    [ -n "$need" ] || die "$b: no GLIBC symbol versions found (objdump -T)"
    if [ "$(printf '%s\n%s\n' "$need" "$glibc_floor" | sort -V | tail -1)" != "$glibc_floor" ]; then
        die "$b needs GLIBC_$need, more than GLIBC_$glibc_floor: objdump -T $stage/bin/$b | grep GLIBC_$need"
    fi
    "$stage/bin/$b" --version >/dev/null || die "$b does not run"
    printf '  %-12s GLIBC_%s  %s bytes\n' "$b" "$need" "$(stat -c %s "$stage/bin/$b")"
done

echo "== laying out the files (scripts/install.sh DESTDIR=$stage/root)"
bash "$repo/scripts/install.sh" --bin-dir "$stage/bin" --destdir "$stage/root" > "$stage/install.log" \
    || { cat "$stage/install.log" >&2; die "scripts/install.sh failed"; }
if grep -q warning "$stage/install.log"; then
    cat "$stage/install.log" >&2
    die "scripts/install.sh warned (missing completions or man pages)"
fi

echo "== building the packages into $out"
rm -f "$out"/dms_*.deb "$out"/dms-*.rpm
# xz: RHEL 8's rpm (4.14) reads it; the default zstd payload needs a newer rpm. gzip
# (--fast) too, at about a fifth of the CPU. cargo-deb's --fast is xz at a low level (a
# fifth of its default's CPU); its gzip is far slower than either (zopfli).
deb_fast=() rpm_payload=xz
[ "$fast" = 1 ] && deb_fast=(--fast) rpm_payload=gzip
cargo deb --no-build --no-strip "${deb_fast[@]}" --output "$out" >/dev/null
cargo generate-rpm --payload-compress "$rpm_payload" --output "$out" >/dev/null
for f in "$out"/dms_*.deb "$out"/dms-*.rpm; do
    [ -f "$f" ] || die "no package in $out"
    printf '  %s  %s bytes\n' "$f" "$(stat -c %s "$f")"
done
