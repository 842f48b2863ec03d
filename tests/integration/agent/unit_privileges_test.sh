#!/usr/bin/env bash
# The agent run as deploy/systemd/pathsentry-probe.service runs it: an unprivileged user with
# the unit's ambient capabilities and bounding set and its LimitRTPRIO (setpriv + prlimit, as
# systemd would set them). Once probing, the agent's effective capability set must be empty
# (CAP_SYS_NICE dropped: the RLIMIT_RTPRIO is enough for SCHED_FIFO) and its permitted set
# exactly what it needs: nothing without taps, CAP_NET_RAW alone with a tap (to reopen it).
# Probes go to 127.0.0.1 inside a namespace this script creates and removes. Needs root.
# Usage: unit_privileges_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
unit=$src/deploy/systemd/pathsentry-probe.service
agent=$build/probe/pathsentry-probe
[ "$(id -u)" -eq 0 ] || { echo "FAIL: needs root"; exit 1; }
for tool in setpriv prlimit ip; do
  command -v $tool >/dev/null || { echo "FAIL: $tool missing (scripts/deps.sh)"; exit 1; }
done
ns=psfault$$
tmp=$(mktemp -d /tmp/pathsentry-unitpriv-XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
chmod 0755 "$tmp"

# The unit's settings: "CAP_NET_RAW CAP_NET_ADMIN" -> "+net_raw,+net_admin".
caps=$(sed -n 's/^AmbientCapabilities=//p' "$unit" | tr ' ' '\n' | sed '/^$/d' |
  sed 's/^CAP_//' | tr 'A-Z' 'a-z' | sed 's/^/+/' | paste -sd, -)
bounding=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr ' ' '\n' | sed '/^$/d' |
  sed 's/^CAP_//' | tr 'A-Z' 'a-z' | sed 's/^/+/' | paste -sd, -)
rtprio=$(sed -n 's/^LimitRTPRIO=//p' "$unit")
echo "unit: ambient $caps, bounding $bounding, LimitRTPRIO ${rtprio:-unset}"
if [ -z "$rtprio" ] || [ "$rtprio" -lt 11 ]; then
  echo "FAIL: LimitRTPRIO=${rtprio:-unset}: SCHED_FIFO at rt_priority 10 (sender 11) needs 11"
  exit 1
fi
# Setting the limit needs CAP_SYS_RESOURCE, which some containers withhold even from root:
# there, the SCHED_FIFO half is skipped (said below) and the agent must still drop every
# capability, saying that SCHED_FIFO will be refused rather than keeping CAP_SYS_NICE.
limit=(prlimit "--rtprio=$rtprio:$rtprio")
if ! prlimit "--rtprio=$rtprio:$rtprio" true 2>/dev/null; then
  echo "SKIP (SCHED_FIFO part): cannot set RLIMIT_RTPRIO here (no CAP_SYS_RESOURCE)"
  limit=()
fi

fail=0
# run NAME EXPECTED_CAPPRM AGENT_ARGS...
run() {
  local name=$1 want_prm=$2
  shift 2
  local log=$tmp/$name.log
  ip netns exec "$ns" ${limit[@]+"${limit[@]}"} setpriv --reuid=65534 --regid=65534 --clear-groups \
    --inh-caps="-all,$caps" --ambient-caps="-all,$caps" --bounding-set="-all,$bounding" \
    "$agent" --target 127.0.0.1 --proto icmp --icmp-socket raw --rate 100 --duration 0 \
    --quiet --metrics-listen off "$@" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 500); do grep -q "probing" "$log" && break; sleep 0.02; done
  sleep 0.3
  local status
  status=$(cat /proc/$pid/status)
  local eff prm
  eff=$(awk '/^CapEff:/ {print $2}' <<<"$status")
  prm=$(awk '/^CapPrm:/ {print $2}' <<<"$status")
  # SCHED_FIFO (policy 1, field 41 of stat) on the sender and receiver threads.
  local fifo=0
  for t in /proc/$pid/task/*; do
    [ "$(awk '{print $41}' "$t/stat" 2>/dev/null)" = 1 ] && fifo=$((fifo + 1))
  done
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
  echo "$name: CapEff $eff CapPrm $prm, $fifo SCHED_FIFO thread(s)"
  if [ "$eff" != 0000000000000000 ] || [ "$prm" != "$want_prm" ]; then
    echo "FAIL: $name: want CapEff 0000000000000000 CapPrm $want_prm"
    cat "$log"
    fail=1
  fi
  if grep -q "keeping CAP_SYS_NICE" "$log"; then
    echo "FAIL: $name: $(grep -o 'cannot raise RLIMIT_RTPRIO.*' "$log")"
    fail=1
  fi
  if [ ${#limit[@]} -gt 0 ]; then
    if [ "$fifo" -lt 2 ] || grep -q "SCHED_FIFO will be refused" "$log"; then
      echo "FAIL: $name: the sender and receiver threads did not get SCHED_FIFO"
      cat "$log"
      fail=1
    fi
  elif ! grep -q "SCHED_FIFO will be refused" "$log"; then
    echo "FAIL: $name: the log does not say that SCHED_FIFO will be refused"
    cat "$log"
    fail=1
  fi
}
run no-taps 0000000000000000
# CAP_NET_RAW is bit 13.
run with-tap 0000000000002000 --tap lo:loop:clear
exit $fail
