#!/usr/bin/env bash
# Issue 14 goal 7: a 20 000/s STAMP session against pathsentry-reflector on loopback, once with
# the old per-source default (10 000/s, burst 1000) and once with today's defaults. Prints, per
# run, what the agent's summary says: sent, lost, lost forward/reverse, forward_cap_pps (the
# agent's "forward loss capped by a rate limit" hint), the per-second lines that carry the hint,
# and the reflector's own dropped_rate_limited counter.
#
# usage: bench/reflector_rate_limit.sh BUILD_DIR [RATE] [SECONDS]
# Loopback only (127.0.0.1, port 18621). No root needed.
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [RATE] [SECONDS]}
rate=${2:-20000}
secs=${3:-8}
probe="$build/probe/pathsentry-probe"
refl="$build/probe/pathsentry-reflector"
[ -x "$probe" ] && [ -x "$refl" ] || { echo "build pathsentry-probe and pathsentry-reflector first" >&2; exit 2; }
work=$(mktemp -d /tmp/ps-rl-bench-XXXXXX)
rpid=""
cleanup() {
  if [ -n "$rpid" ]; then kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

run() {  # $1 = label, rest = reflector flags
  local label=$1
  shift
  "$refl" --allow 127.0.0.0/8 --bind 127.0.0.1 --port 18621 --metrics-listen off \
    --log-level warn "$@" >"$work/refl.out" 2>"$work/refl.err" &
  rpid=$!
  for _ in $(seq 50); do grep -q "listening" "$work/refl.out" && break; sleep 0.1; done
  "$probe" --target 127.0.0.1 --proto stamp --stamp-port 18621 --rate "$rate" \
    --duration "$secs" --metrics-listen off --summary-json "$work/sum.json" \
    >"$work/lines.txt" 2>"$work/probe.err" || true
  kill -INT "$rpid"
  wait "$rpid" || true
  rpid=""
  python3 - "$label" "$work/sum.json" "$work/lines.txt" "$work/refl.out" <<'EOF'
import json, re, sys
label, summary, lines, refl = sys.argv[1:]
s = json.load(open(summary))["sessions"][0]
hint = [l.rstrip() for l in open(lines) if "forward loss capped" in l]
m = re.search(r"dropped_rate_limited=(\d+)", open(refl).read())
lost = s["lost"]
print(f"{label}: sent {s['sent']}, lost {lost} ({100.0 * lost / max(s['sent'], 1):.1f} %), "
      f"forward {s['lost_forward']}, reverse {s['lost_reverse']}, missed slots {s['missed_slots']}, "
      f"forward_cap_pps {s['forward_cap_pps']}, reflector dropped_rate_limited "
      f"{m.group(1) if m else '?'}, interval lines with the hint {len(hint)}")
if hint:
    print("  e.g. " + hint[-1])
EOF
}

echo "STAMP at $rate/s for $secs s, loopback"
run "old default (--rate-limit 10000 --burst 1000)" --rate-limit 10000 --burst 1000
run "today's defaults" 
