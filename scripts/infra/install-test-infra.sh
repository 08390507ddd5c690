#!/usr/bin/env bash
# Installs the components the integration tests start themselves (see ensure_test_infra in
# scripts/lib/deps.sh). Run as root on Debian 12. Safe to run again: fast when installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/deps.sh
ensure_test_infra
