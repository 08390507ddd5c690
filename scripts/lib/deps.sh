# Shared dependency checks for scripts/*.sh. Installs what apt can provide; the Rust
# toolchain itself must come from rustup (Debian 12's rustc is too old for this workspace).

ensure_build_deps() {
    local missing=()
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    command -v c++ >/dev/null 2>&1 || missing+=(g++)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "ensure_build_deps: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # The workspace's minimum Rust (rust-version in Cargo.toml; every package inherits it).
    local msrv
    msrv="$(sed -n 's/^rust-version = "\([0-9.]*\)".*/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../../Cargo.toml" | head -1)"
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found. Install Rust with rustup (https://rustup.rs), version $msrv or newer." >&2
        exit 1
    fi
    local have
    have="$(rustc --version | sed -n 's/^rustc \([0-9]*\.[0-9]*\).*/\1/p')"
    if [ "$(printf '%s\n%s\n' "$msrv" "$have" | sort -V | head -1)" != "$msrv" ]; then
        echo "error: rustc $have is older than this workspace's minimum $msrv: rustup update stable" >&2
        exit 1
    fi
    local installed component
    installed="$(rustup component list --installed 2>/dev/null || true)"
    for component in rustfmt clippy; do
        grep -q "^$component" <<<"$installed" || rustup component add "$component" >/dev/null 2>&1 || true
    done
    # cargo-nextest runs the suite's tests (scripts/test.sh). Where none is installed, the
    # newest release whose own minimum Rust is the workspace's (compiled once, a few minutes).
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "ensure_build_deps: installing cargo-nextest 0.9.110 (cargo install, once)"
        cargo install --locked --quiet cargo-nextest@0.9.110
    fi
}

# Installs what the integration tests start by themselves (tests/support): RabbitMQ, s3fs
# + FUSE, unshare, curl, systemd-analyze, promtool, and a Python venv with moto[server] (S3) and barbican (pinned by
# scripts/infra/test-constraints.txt). Idempotent; takes well under a second when
# everything is already there. The venv lives in $DMS_TEST_VENV (default
# /var/lib/dms-test/venv), which the tests read too. Debian's rabbitmq-server is never
# left running: service starts are blocked during the install, and the tests run private
# nodes on their own ports, node names and epmd ports anyway.
ensure_test_infra() {
    local venv="${DMS_TEST_VENV:-/var/lib/dms-test/venv}"
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    local constraints="$here/infra/test-constraints.txt"
    # systemd: systemd-analyze verifies the unit file (tests/server_systemd.rs).
    # prometheus: promtool checks and unit-tests the alert rules in dist/ (tests/packaging/monitoring.rs).
    # binutils, rpm: objdump -T and rpm -qp on the packages (tests/packaging/packages.rs).
    # openssl: issues the certificates of the TLS test (src/exec/credentials/tls_tests.rs).
    local pkgs=(rabbitmq-server erlang-base s3fs fuse3 util-linux curl python3-venv iproute2 procps systemd prometheus binutils rpm openssl)
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "ensure_test_infra: installing ${missing[*]}"
        local policy=/usr/sbin/policy-rc.d own_policy=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        [ "$own_policy" = 1 ] && rm -f "$policy"
        # Where an init system did start the packaged services anyway, stop them.
        local unit
        for unit in rabbitmq-server prometheus prometheus-node-exporter; do
            if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
                systemctl stop "$unit" || true
                systemctl disable "$unit" >/dev/null 2>&1 || true
            fi
        done
    fi

    local want
    want="$(sha256sum "$constraints" | cut -d' ' -f1) moto[server]==5.2.5 barbican==23.0.0"
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.dms-test-infra" 2>/dev/null)" != "$want" ]; then
        echo "ensure_test_infra: creating the test venv $venv (moto, barbican)"
        mkdir -p "$(dirname "$venv")"
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -c "$constraints" \
            'moto[server]==5.2.5' 'barbican==23.0.0'
        echo "$want" > "$venv/.dms-test-infra"
    fi
    # The Debian 12 root the .deb is installed into (tests/packaging/packages_root.rs).
    ensure_debian_root
    [ -c /dev/fuse ] || echo "ensure_test_infra: warning: /dev/fuse is missing; the s3fs tests will fail" >&2
    # Every mount test runs in a private mount namespace; in a plain chroot unshare fails
    # with "cannot change root filesystem propagation: Invalid argument" in every test.
    if ! unshare -m --propagation private true 2>/dev/null; then
        if ! mountpoint -q /; then
            echo "error: / is not a mount point (a plain chroot?): the tests need private mount namespaces; run them in a VM or container, or bind-mount the new root onto itself before chroot (mount --bind DIR DIR)" >&2
        else
            echo "error: unshare -m --propagation private fails here (no CAP_SYS_ADMIN?): the tests need private mount namespaces, as root" >&2
        fi
        exit 1
    fi
}

# The tools scripts/package.sh builds with, pinned: cargo-zigbuild (links against an old
# glibc through zig), cargo-deb, cargo-generate-rpm (cargo install --locked, skipped when
# that version is installed), zig from PyPI's `ziglang` in a venv ($DMS_BUILD_VENV, default
# /var/lib/dms-build/venv), and from apt: binutils (objdump -T, the GLIBC floor check) and
# rpm (rpm -qp checks). Quiet and well under a second when everything is there. Puts the
# venv's bin/ on PATH (cargo-zigbuild runs zig as `python3 -m ziglang`).
DMS_PACKAGE_TOOLS=(cargo-zigbuild@0.24.1 cargo-deb@3.8.0 cargo-generate-rpm@0.21.1)
DMS_ZIGLANG=ziglang==0.15.2
ensure_package_tools() {
    local venv="${DMS_BUILD_VENV:-/var/lib/dms-build/venv}"
    local pkgs=(binutils rpm python3-venv) missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "ensure_package_tools: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    local installed tool name version
    installed="$(cargo install --list 2>/dev/null)"
    for tool in "${DMS_PACKAGE_TOOLS[@]}"; do
        name="${tool%@*}" version="${tool#*@}"
        if ! grep -qx "$name v$version:" <<<"$installed"; then
            echo "ensure_package_tools: cargo install --locked $tool"
            cargo install --locked --quiet "$tool"
        fi
    done
    if [ ! -x "$venv/bin/python-zig" ] || [ "$(cat "$venv/.dms-build" 2>/dev/null)" != "$DMS_ZIGLANG" ]; then
        echo "ensure_package_tools: creating the build venv $venv ($DMS_ZIGLANG)"
        mkdir -p "$(dirname "$venv")"
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "$DMS_ZIGLANG"
        echo "$DMS_ZIGLANG" > "$venv/.dms-build"
    fi
    export PATH="$venv/bin:$PATH"
}

# A Debian 12 (bookworm) minbase root for the package tests (tests/packaging/packages.rs),
# kept as a tarball: debootstrap takes minutes, unpacking it a second. Built once.
DMS_DEBIAN_ROOT_TARBALL="${DMS_DEBIAN_ROOT_TARBALL:-/var/lib/dms-test/debian12-minbase.tar.gz}"
ensure_debian_root() {
    [ -s "$DMS_DEBIAN_ROOT_TARBALL" ] && return 0
    if ! command -v debootstrap >/dev/null 2>&1; then
        echo "ensure_debian_root: installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    echo "ensure_debian_root: debootstrap bookworm (minbase) into $DMS_DEBIAN_ROOT_TARBALL (once; takes minutes)"
    local work
    mkdir -p "$(dirname "$DMS_DEBIAN_ROOT_TARBALL")"
    work="$(mktemp -d "$(dirname "$DMS_DEBIAN_ROOT_TARBALL")/debootstrap.XXXXXX")"
    # debootstrap mounts /proc and /sys in the new root; a private mount namespace takes
    # them away with it whatever happens.
    if ! unshare -m --propagation private \
        debootstrap --variant=minbase bookworm "$work/root" http://deb.debian.org/debian \
        > "$work/log" 2>&1; then
        tail -20 "$work/log" >&2
        rm -rf "$work"
        echo "error: debootstrap failed (log above)" >&2
        return 1
    fi
    rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
    tar -C "$work/root" -czf "$work/root.tar.gz" .
    mv -f "$work/root.tar.gz" "$DMS_DEBIAN_ROOT_TARBALL"
    rm -rf "$work"
}
