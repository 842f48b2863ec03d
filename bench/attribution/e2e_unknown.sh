#!/usr/bin/env bash
# The share of `unknown` on the ESP tap with and without size cycling: runs the e2e drill test
# tests/e2e/attr_ec_port_test.sh (unchanged, its own lab prefix) once per setting, with the
# agent started through a wrapper that appends the setting's flags, and prints the test's
# "unknown on the ESP tap" lines per run. Root; builds nothing.
#
# Usage: bash bench/attribution/e2e_unknown.sh BUILD_DIR [SETTING...]
#   SETTING: "fixed" (--size-cycle 1), "default" (no flag: the agent's default), or a number N
#   (--size-cycle N). Default: fixed default.
set -euo pipefail
export TZ=UTC LC_ALL=C
[ "$(id -u)" -eq 0 ] || { echo "e2e_unknown: needs root (the lab)" >&2; exit 1; }
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(realpath "${1:?usage: e2e_unknown.sh BUILD_DIR [SETTING...]}")
shift
[ $# -gt 0 ] || set -- fixed default
[ -x "$BUILD/probe/pathsentry-probe" ] && [ -x "$BUILD/probe/pathsentry-reflector" ] || {
  echo "e2e_unknown: build pathsentry-probe and pathsentry-reflector in $BUILD first" >&2
  exit 1
}
WRAP=$(mktemp -d /tmp/pathsentry-e2e-unknown.XXXXXX)
trap 'rm -rf -- "$WRAP"' EXIT
mkdir -p "$WRAP/probe"
ln -s "$BUILD/probe/pathsentry-reflector" "$WRAP/probe/pathsentry-reflector"

for setting in "$@"; do
  case "$setting" in
    fixed) extra="--size-cycle 1" ;;
    default) extra="" ;;
    *[!0-9]* | "") echo "e2e_unknown: bad setting '$setting'" >&2; exit 2 ;;
    *) extra="--size-cycle $setting" ;;
  esac
  printf '#!/bin/sh\nexec %q "$@" %s\n' "$BUILD/probe/pathsentry-probe" "$extra" \
    >"$WRAP/probe/pathsentry-probe"
  chmod +x "$WRAP/probe/pathsentry-probe"
  echo "== size cycling: $setting (${extra:-agent default}), load: $(cut -d' ' -f1-3 /proc/loadavg)"
  out=$(bash "$REPO/tests/e2e/attr_ec_port_test.sh" "$WRAP" 2>&1) || true
  grep -E 'unknown on |wrong [0-9]|\] (PASSED|FAILED)' <<<"$out" |
    sed 's/^/   /'
done
