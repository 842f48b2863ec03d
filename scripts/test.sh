#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test:
# unit, integration, privileged (raw sockets, namespaces: needs root) and the e2e lab drills.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
build=${BUILD_DIR:-build}
echo "== format check"
bash scripts/format.sh --check
echo "== tests"
cd "$build"
ctest --output-on-failure -j1 "$@"
