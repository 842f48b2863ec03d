#!/usr/bin/env bash
# Configures and builds pathsentry into ${BUILD_DIR:-build} (Ninja, RelWithDebInfo).
# Extra arguments go to cmake's configure step (e.g. -DPATHSENTRY_SANITIZE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DPATHSENTRY_WERROR=ON "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
