#!/usr/bin/env bash
# deploy/systemd: every unit passes `systemd-analyze verify` (with ExecStart pointed at this
# build's binaries, since /usr/local/bin holds none here) and its `systemd-analyze security`
# exposure score is printed. Usage: systemd_units_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIP: systemd-analyze not installed (scripts/deps.sh installs package systemd)"
  exit 0
fi
tmp=$(mktemp -d /tmp/pathsentry-units-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
declare -A bin=([probe]=probe/pathsentry-probe [reflector]=probe/pathsentry-reflector
  [collector]=probe/pathsentry-collector)
fail=0
for unit in "$src"/deploy/systemd/*.service; do
  name=$(basename "$unit")
  prog=${name#pathsentry-}
  prog=${prog%.service}
  exe=$build/${bin[$prog]:-none}
  if [ ! -x "$exe" ]; then
    echo "FAIL: $name: no binary $exe to point ExecStart at (build pathsentry-$prog)"
    fail=1
    continue
  fi
  sed "s|/usr/local/bin/pathsentry-$prog|$exe|g" "$unit" >"$tmp/$name"
  if out=$(systemd-analyze verify --man=no "$tmp/$name" 2>&1) && [ -z "$out" ]; then
    echo "ok: systemd-analyze verify $name"
  else
    echo "FAIL: systemd-analyze verify $name:"
    echo "$out"
    fail=1
  fi
  score=$(systemd-analyze security --offline=true "$tmp/$name" 2>&1 | tail -1)
  echo "security: $name: ${score#*→ }"
done
# The agent's unit lets SCHED_FIFO go without CAP_SYS_NICE: LimitRTPRIO covers the default
# rt_priority (10) and the sender's one above it.
probe_unit=$src/deploy/systemd/pathsentry-probe.service
rtprio=$(sed -n 's/^LimitRTPRIO=//p' "$probe_unit")
if [ -z "$rtprio" ] || [ "$rtprio" -lt 11 ]; then
  echo "FAIL: pathsentry-probe.service: LimitRTPRIO=${rtprio:-unset}, needs >= 11"
  fail=1
fi
if grep -q '^CapabilityBoundingSet=.*CAP_SYS_NICE' "$probe_unit"; then
  echo "FAIL: pathsentry-probe.service still grants CAP_SYS_NICE"
  fail=1
fi
for unit in "$src"/deploy/systemd/*.service; do
  if ! grep -q '^RestartPreventExitStatus=2$' "$unit" || ! grep -q '^Restart=on-failure$' "$unit" ||
    ! grep -q '^RestartSec=' "$unit"; then
    echo "FAIL: $(basename "$unit"): needs Restart=on-failure, RestartSec= and RestartPreventExitStatus=2 only"
    fail=1
  fi
done
exit $fail
