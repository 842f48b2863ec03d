#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, brings up the lab, runs the
# Express Connect failover drill with the agent watching, and leaves everything up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
exec bash deploy/lab/demo.sh "$@"
