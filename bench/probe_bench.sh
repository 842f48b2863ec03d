#!/usr/bin/env bash
# Issue 2's benchmark (architecture §9), not a test: in ONE namespace pair and ONE run it measures
#   (c) the machine's limit: a raw sendmmsg/recvmmsg UDP echo (bench-raw-udp), highest zero-loss
#       paced rate; and (RAW_TS=1) the same echo taking the kernel timestamps a prober needs;
#   (a) pathsentry-probe, STAMP and ICMP, at rising rates until a step loses probes (or cannot
#       keep its rate, or passes the raw limit), then bisects between the last clean and the
#       first unclean rate;
#   (b) fping against the same host, at FPING_RATE and flat out;
#   (d) RTT error: pathsentry's RTT minus the RTT of the same packets in a nanosecond pcap taken
#       on the agent's veth.
# and prints one side-by-side table (also written as JSON) — see docs/bench.md.
#
# Usage (root):  bash bench/probe_bench.sh [BUILD_DIR]        (default: $BUILD_DIR or ./build)
# Environment knobs (defaults in brackets): OUT [bench/results/<date>], STEP_S [3],
#   RATES ["1000 10000 25000 50000 75000 100000 150000 200000 300000 400000 600000 800000"],
#   PROTOS ["stamp icmp"], REFINE [2], TIMEOUT_MS [500], RTT_RATE [1000], RTT_S [5],
#   FPING_RATE [1000], FPING_MAX_COUNT [60000], RAW_SIZE [44], PCAP_IMMEDIATE [0], BENCH_NICE [-10],
#   RAW_RT_PRIORITY [10], FAR_RT_PRIORITY [9], FAR_RPS [0], RAW_TS [1],
#   PROBE_ARGS [""] (extra flags for pathsentry-probe), REFLECTOR_ARGS [see below].
#
# Network safety: creates namespaces psb-<pid>-a / psb-<pid>-b joined only by a veth made here
# (198.18.0.1 <-> 198.18.0.2, RFC 2544 benchmarking space), no link to the root namespace, no
# routes out. On exit (also Ctrl-C / SIGTERM) it stops only the PIDs it started and deletes
# only those two namespaces.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
build_arg=${1:-${BUILD_DIR:-$repo/build}}
[ -d "$build_arg" ] || build_arg=$repo/$build_arg
build=$(cd "$build_arg" && pwd)

OUT=${OUT:-$here/results/$(date +%Y%m%d-%H%M%S)}
STEP_S=${STEP_S:-3}
RATES=${RATES:-"1000 10000 25000 50000 75000 100000 150000 200000 300000 400000 600000 800000"}
PROTOS=${PROTOS:-"stamp icmp"}
REFINE=${REFINE:-2}
TIMEOUT_MS=${TIMEOUT_MS:-500}
STAMP_PORT=${STAMP_PORT:-862}
RAW_PORT=${RAW_PORT:-9000}
RAW_SIZE=${RAW_SIZE:-44}  # = a STAMP test packet's UDP payload (RFC 8762, unauthenticated)
RTT_RATE=${RTT_RATE:-1000}
RTT_S=${RTT_S:-5}
FPING_RATE=${FPING_RATE:-1000}
FPING_MAX_COUNT=${FPING_MAX_COUNT:-60000}  # fping refuses > 65535 probes per 10 s
PROBE_ARGS=${PROBE_ARGS:-}
# 1 = capture with --immediate-mode. Off by default: per-packet wakeups of the capture run
# between the tap's TX timestamp and the driver's, and measurably widen the gap (docs/bench.md).
PCAP_IMMEDIATE=${PCAP_IMMEDIATE:-0}
BENCH_NICE=${BENCH_NICE:--10} # nice value of every measured process (0 = as started)
# pathsentry-probe runs its sender/receiver threads SCHED_FIFO (--rt-priority, default 10), so
# the raw client does too, at this priority (0 = normal scheduling).
RAW_RT_PRIORITY=${RAW_RT_PRIORITY:-10}
# The far side (the raw echo server, and the reflector through its --rt-priority) at this
# SCHED_FIFO priority (0 = normal scheduling). Over a real link it is another machine, whose CPU
# the near side's SCHED_FIFO threads cannot take; here both share the CPUs, and at the normal
# policy the agent's two SCHED_FIFO threads starved the reflector until its socket overflowed
# (150 000/s: 1.8-4 % of the requests dropped at 54 % of a CPU for it), where the
# single-threaded raw client left its server a CPU. One below the agent's receiver (10): at an
# equal priority SCHED_FIFO never preempts, and the reflector's batches kept the receiver off
# the CPU until the agent's own socket overflowed (225 000/s: 29 403 dropped). docs/bench.md,
# issue 14 session 14.
FAR_RT_PRIORITY=${FAR_RT_PRIORITY:-9}
# 1 = the far side as a host of its own: the far veth's receive path (the kernel's ICMP echo, the
# UDP receive of the reflector's and the raw echo server's requests) is steered by RPS to the
# last CPU, and the near veth's (the replies) to CPU 0. Without it the far side's receive path
# runs in the sender's softirq, on the sender's CPU: over a real link the target's kernel is
# another machine's. Applies to every row alike (the raw echo too); meta.json says which. It
# costs the single-threaded raw echo far more than the agent (docs/bench.md, session 12: the raw
# limit 281 451 -> 123 369/s), so issue 14's ratios are taken with the default, 0.
FAR_RPS=${FAR_RPS:-0}
# 1 = also search the raw echo's limit with kernel timestamps (bench-raw-udp --timestamps): the
# ceiling of a prober that timestamps in the kernel, printed beside the plain raw limit.
RAW_TS=${RAW_TS:-1}
# The reflector rate-limits each source (default 100 000/s) and all sources together (200 000/s):
# lift both, or the bench measures them (the global one capped every STAMP row at 200 000/s
# before session 14).
REFLECTOR_ARGS=${REFLECTOR_ARGS:-"--rate-limit 100000000 --burst 1000000 --global-rate-limit 100000000 --global-burst 1000000 --log-level warn"}

NS_A=psb-$$-a
NS_B=psb-$$-b
A4=198.18.0.1
B4=198.18.0.2
report() { BENCH_TIMEOUT_MS=$TIMEOUT_MS python3 "$here/report.py" "$@"; }
# Every measured process runs at the same raised priority, so that background work on a
# shared machine (builds) disturbs all of them alike and less. nice and ip netns exec both
# exec in place: the PID is the program's.
IN_A=(nice -n "$BENCH_NICE" ip netns exec "$NS_A")
IN_B=(nice -n "$BENCH_NICE" ip netns exec "$NS_B")
RAW_CLIENT=("${IN_A[@]}")
[ "$RAW_RT_PRIORITY" -gt 0 ] && RAW_CLIENT=(chrt -f "$RAW_RT_PRIORITY" "${IN_A[@]}")
RAW_SERVER=("${IN_B[@]}")
[ "$FAR_RT_PRIORITY" -gt 0 ] && RAW_SERVER=(chrt -f "$FAR_RT_PRIORITY" "${IN_B[@]}")
log() { printf '%s\n' "$*" >&2; }
die() {
  log "probe_bench: $*"
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (namespaces, pcap)"
command -v python3 >/dev/null || die "python3 is missing (scripts/deps.sh installs it)"
command -v fping >/dev/null || die "fping is missing (scripts/deps.sh installs it)"
command -v tcpdump >/dev/null || die "tcpdump is missing (scripts/deps.sh installs it)"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
RAW=$(find_bin bench-raw-udp)
RUNSTAT=$(find_bin bench-runstat)
RTTERR=$(find_bin bench-rtt-error)
PROBE=$(find_bin pathsentry-probe)
REFL=$(find_bin pathsentry-reflector)
[ -n "$RAW" ] && [ -n "$RUNSTAT" ] && [ -n "$RTTERR" ] ||
  die "bench programs missing in $build: cmake --build $build --target bench-raw-udp bench-runstat bench-rtt-error"
have_pathsentry=1
if [ -z "$PROBE" ] || [ -z "$REFL" ]; then
  have_pathsentry=0
  log "probe_bench: pathsentry-probe/pathsentry-reflector not built in $build: parts (a) and (d) are SKIPPED"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# --- processes and cleanup -----------------------------------------------------------------------
bg_pids=()
fg_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$fg_pid" ] && stop_pid "$fg_pid"
  local p
  for p in "${bg_pids[@]}"; do stop_pid "$p"; done
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

run_fg() { # run a command in the background and wait, so a signal can stop it
  "$@" &
  fg_pid=$!
  local rc=0
  wait "$fg_pid" || rc=$?
  fg_pid=""
  return "$rc"
}
wait_line() { # FILE PATTERN PID: wait up to 5 s for PATTERN in FILE while PID lives
  local i
  for i in $(seq 50); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  log "probe_bench: no '$2' in $1:"
  cat "$1" >&2 || true
  return 1
}
now_ns() { date +%s%N; }
udp_drops() { # NS: UDP datagrams dropped for a full socket buffer in that namespace so far
  ip netns exec "$1" cat /proc/net/snmp |
    awk '$1 == "Udp:" && !h { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1; next }
         $1 == "Udp:" && h { print $c; exit }'
}
cpu_pct() { # TICKS0 TICKS1 NS0 NS1
  awk -v k0="$1" -v k1="$2" -v t0="$3" -v t1="$4" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { w = (t1 - t0) / 1e9; printf "%.1f", (w > 0 ? 100 * (k1 - k0) / hz / w : 0) }'
}

# --- the namespace pair --------------------------------------------------------------------------
ip netns add "$NS_A"
ip netns add "$NS_B"
veth_pair "$NS_A" "$NS_B" "$A4" "$B4"
[ "$FAR_RPS" = 1 ] && far_rps "$NS_A" "$NS_B"

commit=${COMMIT:-$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)}
cat >"$OUT/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "kernel": "$(uname -r)", "cpus": $(nproc),
 "cpu_model": "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)",
 "loadavg_start": "$(cut -d' ' -f1-3 /proc/loadavg)", "commit": "$commit", "build": "$build",
 "ns_a": "$NS_A", "ns_b": "$NS_B", "step_s": $STEP_S, "timeout_ms": $TIMEOUT_MS,
 "raw_size": $RAW_SIZE, "rates": "$RATES", "probe_args": "$PROBE_ARGS",
 "pcap_immediate": $PCAP_IMMEDIATE, "nice": $BENCH_NICE, "raw_rt_priority": $RAW_RT_PRIORITY, "far_rt_priority": $FAR_RT_PRIORITY, "far_rps": $FAR_RPS, "raw_ts": $RAW_TS,
 "sched_autogroup": $(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo null),
 "reflector_args": "$REFLECTOR_ARGS"}
EOF
log "probe_bench: namespaces $NS_A/$NS_B, results in $OUT, load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- (c) the raw limit ---------------------------------------------------------------------------
# raw_search TAG [ARGS...]: the highest zero-loss paced rate of the raw echo, run with ARGS on
# both ends; writes raw$TAG-search.json and raw$TAG.step.json, sets raw_limit / raw_limit_target.
raw_search() {
  local tag=$1 try k0 k1 t0 t1 target
  shift
  "${RAW_SERVER[@]}" "$RAW" server --bind "$B4" --port "$RAW_PORT" "$@" >"$OUT/raw$tag-server.log" 2>&1 &
  raw_srv=$!
  bg_pids+=("$raw_srv")
  wait_line "$OUT/raw$tag-server.log" "raw echo listening" "$raw_srv" || die "raw echo server did not start"
  run_fg "${RAW_CLIENT[@]}" "$RAW" client --search --confirm-tries 0 --timeout-ms "$TIMEOUT_MS" \
    --target "$B4" --port "$RAW_PORT" --size "$RAW_SIZE" --step-duration 2 "$@" >"$OUT/raw$tag-search.json" || true
  target=$(report get "$OUT/raw$tag-search.json" best_clean_rate)
  [ "$target" = null ] && target=$(report get "$OUT/raw$tag-search.json" flat_out.echo_rate)
  # Confirm over a full step, stepping down 10 % per lost run; the echo server's CPU is measured
  # around each confirmation. The limit is the first clean one.
  raw_limit=null
  raw_limit_target=""
  for try in 1 2 3 4 5 6 7 8; do
    k0=$(cpu_ticks "$raw_srv")
    t0=$(now_ns)
    run_fg "${RAW_CLIENT[@]}" "$RAW" client --timeout-ms "$TIMEOUT_MS" --target "$B4" \
      --port "$RAW_PORT" --size "$RAW_SIZE" --rate "$target" --duration "$STEP_S" "$@" >"$OUT/raw$tag-limit.json" || true
    t1=$(now_ns)
    k1=$(cpu_ticks "$raw_srv")
    cp "$OUT/raw$tag-limit.json" "$OUT/raw$tag-confirm-$try.json"
    report raw-step --client "$OUT/raw$tag-limit.json" --search "$OUT/raw$tag-search.json" \
      --server-cpu "$(cpu_pct "$k0" "$k1" "$t0" "$t1")" --out "$OUT/raw$tag.step.json"
    log "  confirm $(printf %.0f "$target")/s for $STEP_S s: $(report get "$OUT/raw$tag.step.json" why)"
    if [ "$(report get "$OUT/raw$tag.step.json" clean)" = true ]; then
      raw_limit=$(report get "$OUT/raw$tag.step.json" echo_rate)
      raw_limit_target=$target
      break
    fi
    target=$(awk -v r="$target" 'BEGIN { printf "%.0f", r * 0.9 }')
  done
  stop_pid "$raw_srv"
  forget_pid "$raw_srv"
}
if [ "$RAW_TS" = 1 ]; then
  # The same echo with the kernel timestamps an instrument takes (the client's TX timestamp from
  # the error queue, the server's RX timestamp): the ceiling of any prober that timestamps in the
  # kernel, beside the goal's plain raw limit (docs/bench.md, issue 14 session 17).
  log "== (c) raw echo with kernel timestamps (--timestamps): searching the highest zero-loss rate"
  raw_search -ts --timestamps
  log "raw limit with kernel timestamps: $raw_limit/s"
fi
log "== (c) raw sendmmsg/recvmmsg UDP echo: searching the highest zero-loss rate"
raw_search "" # last: its raw_limit / raw_limit_target are the ones the steps below use
log "raw limit: $raw_limit/s"

# --- (a) pathsentry at rising rates --------------------------------------------------------------
refl_pid=""
if [ "$have_pathsentry" -eq 1 ]; then
  # shellcheck disable=SC2086
  "${IN_B[@]}" "$REFL" --allow "$A4/32" --bind "$B4" --port "$STAMP_PORT" \
    --rt-priority "$FAR_RT_PRIORITY" $REFLECTOR_ARGS >"$OUT/reflector.log" 2>&1 &
  refl_pid=$!
  bg_pids+=("$refl_pid")
  wait_line "$OUT/reflector.log" "reflector listening" "$refl_pid" || die "reflector did not start"
fi

step=""
probe_step() { # PROTO RATE; sets $step to the step record's path
  local proto=$1 rate=$2 tag k0 k1 t0 t1 peer=null da0 da1 db0 db1
  tag=probe-$proto-$(printf %08d "$rate")
  step=$OUT/$tag.step.json
  da0=$(udp_drops "$NS_A")
  db0=$(udp_drops "$NS_B")
  k0=$(cpu_ticks "$refl_pid")
  t0=$(now_ns)
  # shellcheck disable=SC2086
  run_fg "$RUNSTAT" --out "$OUT/$tag.runstat.json" -- "${IN_A[@]}" "$PROBE" \
    --target "$B4" --proto "$proto" --rate "$rate" --duration "$STEP_S" --source "$A4" \
    --timeout-ms "$TIMEOUT_MS" --stamp-port "$STAMP_PORT" --summary-json "$OUT/$tag.summary.json" \
    --quiet $PROBE_ARGS >"$OUT/$tag.log" 2>&1 || true
  t1=$(now_ns)
  k1=$(cpu_ticks "$refl_pid")
  da1=$(udp_drops "$NS_A")
  db1=$(udp_drops "$NS_B")
  [ "$proto" = stamp ] && peer=$(cpu_pct "$k0" "$k1" "$t0" "$t1")
  report probe-step --summary "$OUT/$tag.summary.json" --runstat "$OUT/$tag.runstat.json" \
    --proto "$proto" --rate "$rate" --duration "$STEP_S" --peer-cpu "$peer" \
    --agent-udp-drops $((da1 - da0)) \
    --peer-udp-drops $((db1 - db0)) --out "$step"
  log "$(printf '  %-5s %8s/s: sent %8.0f/s, lost %s, cpu %.0f%%, p50 %s ns, p99 %s ns -> %s' \
    "$proto" "$rate" "$(report get "$step" achieved_rate)" "$(report get "$step" lost)" \
    "$(report get "$step" cpu_pct)" "$(report get "$step" rtt_p50_ns)" \
    "$(report get "$step" rtt_p99_ns)" "$(report get "$step" why)")"
}

if [ "$have_pathsentry" -eq 1 ]; then
  for proto in $PROTOS; do
    log "== (a) pathsentry $proto at rising rates, $STEP_S s each"
    # Rise while nothing is lost. A step that loses nothing but cannot hold its rate is
    # recorded and the rise goes on, unless it reached less than half the rate asked
    # (saturated: asking more will not send more). Stop at the raw limit.
    good=0
    bad=0
    for rate in $RATES; do
      probe_step "$proto" "$rate"
      if [ "$(report get "$step" clean)" = true ]; then
        good=$rate
      elif [ "$bad" -eq 0 ]; then
        bad=$rate
      fi
      [ "$(report get "$step" lossless)" = true ] || break
      awk -v a="$(report get "$step" achieved_rate)" -v r="$rate" 'BEGIN { exit !(a < r / 2) }' &&
        {
          log "  saturated: sent less than half the rate asked"
          break
        }
      if [ "$raw_limit" != null ] && awk -v r="$rate" -v l="$raw_limit" 'BEGIN { exit !(r >= l) }'; then
        log "  reached the raw limit ($raw_limit/s)"
        break
      fi
    done
    # Bisect between the highest clean rate and the first unclean one above it.
    i=0
    while [ "$bad" -gt "$good" ] && [ "$i" -lt "$REFINE" ]; do
      mid=$(((good + bad) / 2))
      [ "$mid" -le "$good" ] && break
      probe_step "$proto" "$mid"
      if [ "$(report get "$step" clean)" = true ]; then good=$mid; else bad=$mid; fi
      i=$((i + 1))
    done
  done
fi

# --- (b) fping -----------------------------------------------------------------------------------
fping_step() { # RATE (0 = flat out) COUNT
  local rate=$1 count=$2 period tag
  if [ "$rate" -gt 0 ]; then
    period=$(awk -v r="$rate" 'BEGIN { printf "%.4f", 1000 / r }')
  else
    period=0
  fi
  tag=fping-$(printf %08d "$rate")
  # -C: every RTT (ms, 3 decimals = 1 us resolution); -p per-target period, -i global interval
  # (both in ms; root may go below the 10 ms / 1 ms floors that apply to other users);
  # -t: wait this long for a reply (its default is the period, which counts slow replies lost);
  # -s: final stats, whose "elapsed real time" gives the achieved rate. fping keeps 16-bit
  # sequence numbers for 10 s, so a run cannot send more than 65535 probes.
  run_fg "$RUNSTAT" --out "$OUT/$tag.runstat.json" -- "${IN_A[@]}" fping -C "$count" \
    -p "$period" -i "$period" -t "$TIMEOUT_MS" -q -s -S "$A4" "$B4" >"$OUT/$tag.txt" 2>&1 || true
  report fping-step --output "$OUT/$tag.txt" --runstat "$OUT/$tag.runstat.json" --target "$B4" \
    --rate "$rate" --period-ms "$period" --count "$count" --out "$OUT/$tag.step.json"
  log "$(printf '  fping %8s/s (-p %s ms): sent %8.0f/s, lost %s, cpu %.0f%%, p50 %s ns -> %s' \
    "$rate" "$period" "$(report get "$OUT/$tag.step.json" achieved_rate)" \
    "$(report get "$OUT/$tag.step.json" lost)" "$(report get "$OUT/$tag.step.json" cpu_pct)" \
    "$(report get "$OUT/$tag.step.json" rtt_p50_ns)" "$(report get "$OUT/$tag.step.json" why)")"
}
log "== (b) fping at $FPING_RATE/s and flat out"
fping_count=$((FPING_RATE * STEP_S))
[ "$fping_count" -gt "$FPING_MAX_COUNT" ] && fping_count=$FPING_MAX_COUNT
fping_step "$FPING_RATE" "$fping_count"
fping_step 0 "$FPING_MAX_COUNT"

# --- (d) RTT error against a pcap ----------------------------------------------------------------
if [ "$have_pathsentry" -eq 1 ]; then
  log "== (d) RTT error: pathsentry --proto both at $RTT_RATE/s for $RTT_S s, pcap on $NS_A/va"
  immediate=()
  [ "$PCAP_IMMEDIATE" = 1 ] && immediate=(--immediate-mode)
  "${IN_A[@]}" tcpdump -i va -n -Z root -s 200 --time-stamp-precision=nano \
    "${immediate[@]}" -U -w "$OUT/rtt.pcap" "udp port $STAMP_PORT or icmp" >"$OUT/tcpdump.log" 2>&1 &
  cap=$!
  bg_pids+=("$cap")
  wait_line "$OUT/tcpdump.log" "listening on" "$cap" || die "tcpdump did not start"
  # shellcheck disable=SC2086
  run_fg "$RUNSTAT" --out "$OUT/rtt.runstat.json" -- "${IN_A[@]}" "$PROBE" \
    --target "$B4" --proto both --rate "$RTT_RATE" --duration "$RTT_S" --source "$A4" \
    --timeout-ms "$TIMEOUT_MS" --stamp-port "$STAMP_PORT" --records "$OUT/rtt.records.jsonl" \
    --summary-json "$OUT/rtt.summary.json" --quiet $PROBE_ARGS >"$OUT/rtt.log" 2>&1 || true
  sleep 1.2 # a buffered capture hands over its ring block after at most 1 s
  stop_pid "$cap"
  forget_pid "$cap"
  grep -E "captured|dropped" "$OUT/tcpdump.log" >&2 || true
  "$RTTERR" --pcap "$OUT/rtt.pcap" --records "$OUT/rtt.records.jsonl" --stamp-port "$STAMP_PORT" \
    >"$OUT/rtt_error.json" || log "probe_bench: bench-rtt-error failed"
fi

# --- (c') the raw limit again, to show how much the machine drifted during the run -------------
if [ -n "$raw_limit_target" ]; then
  log "== (c') raw echo again at the start's limit ($(printf %.0f "$raw_limit_target")/s): did the machine drift?"
  "${RAW_SERVER[@]}" "$RAW" server --bind "$B4" --port "$RAW_PORT" >"$OUT/raw-server-end.log" 2>&1 &
  raw_srv=$!
  bg_pids+=("$raw_srv")
  wait_line "$OUT/raw-server-end.log" "raw echo listening" "$raw_srv" || die "raw echo server did not start"
  k0=$(cpu_ticks "$raw_srv")
  t0=$(now_ns)
  run_fg "${RAW_CLIENT[@]}" "$RAW" client --timeout-ms "$TIMEOUT_MS" --target "$B4" \
    --port "$RAW_PORT" --size "$RAW_SIZE" --rate "$raw_limit_target" --duration "$STEP_S" >"$OUT/raw-end.json" || true
  t1=$(now_ns)
  k1=$(cpu_ticks "$raw_srv")
  report raw-step --client "$OUT/raw-end.json" --search "$OUT/raw-search.json" \
    --server-cpu "$(cpu_pct "$k0" "$k1" "$t0" "$t1")" --out "$OUT/raw-end.step.json"
  log "  $(report get "$OUT/raw-end.step.json" why)"
  stop_pid "$raw_srv"
  forget_pid "$raw_srv"
fi

# --- the table -----------------------------------------------------------------------------------
sed -i "s|}\$|, \"loadavg_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}|" "$OUT/meta.json"
echo
report table "$OUT"
echo
echo "(JSON: $OUT/summary.json; raw outputs beside it)"
