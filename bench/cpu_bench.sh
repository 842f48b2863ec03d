#!/usr/bin/env bash
# Issue 14 goals 1 and 2 (docs/bench.md "Issue 14 — pacing and CPU"), a benchmark, not a test:
# in ONE namespace pair and ONE run it measures
#   cpu:  the CPU each prober spends per probe at each rate of RATES, in a steady window
#         (MEASURE_S after WARM_S): pathsentry-probe STAMP and ICMP as users run it (flags only,
#         its defaults: metrics endpoint on, SCHED_FIFO, kernel timestamps), with and without a
#         clear tap on its veth; beside it, at the same rates, smokeping_prober and fping (ICMP),
#         the raw sendmmsg/recvmmsg UDP echo client (bench-raw-udp), the floor of any prober
#         paced by its own wake-ups (bench-raw-udp pace: a timer wake-up and a send per probe,
#         nothing read, no timestamps), and, when
#         BEFORE names a directory holding an older pathsentry-probe, that one too;
#   miss: missed pacing slots of pathsentry-probe STAMP over MISS_S at each rate of MISS_RATES,
#         with SCHED_FIFO (the default) and without (--rt-priority 0), by cause; beside it the
#         BEFORE binary's under the same conditions;
#   load: one MISS_LOAD_S run at the highest MISS_RATE without SCHED_FIFO while LOAD_PROCS
#         busy loops compete for the CPUs: the missed slots and their causes under load.
# Probes per window are counted on the agent's veth (its TX packet counter), so every prober is
# charged for what it actually sent; CPU is the process's utime+stime (what getrusage and top
# report, tick-sampled) and, when perf is there, its task-clock (exact).
#
# Usage (root):  bash bench/cpu_bench.sh [BUILD_DIR]
# Knobs (defaults in brackets): OUT [bench/results/cpu-<date>], PARTS ["cpu miss load"],
#   RATES ["1000 10000"], WARM_S [2], MEASURE_S [10], MISS_RATES ["2000 10000"], MISS_S [60],
#   MISS_LOAD_S [10], LOAD_PROCS [2], BEFORE [""], TAP [1], PROBE_ARGS [""] (e.g.
#   "--records /dev/null": the records' writer thread, as an agent with an output runs),
#   BEFORE_ARGS [PROBE_ARGS]: the BEFORE binary's (with and without the tap, as the current one),
#   FAR_RPS [0]: 1 = the far side's receive path on a CPU of its own (RPS, bench/lib.sh far_rps),
#   QDISC [""]: the root qdisc of the agent's veth (e.g. fq; default: the veth's own, noqueue),
#   LAUNCH_AHEAD_US [""]: adds rows "pathsentry PROTO launch" run with --launch-ahead-us N
#   (launch-time pacing; its log line says whether the qdisc honoured it).
#
# Network safety: namespaces psc-<pid>-a / psc-<pid>-b joined only by a veth made here
# (198.18.0.1 <-> 198.18.0.2, RFC 2544 space, static neighbours, IPv6 off), no other link. On
# exit it stops only the PIDs it started and deletes only those two namespaces.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
build_arg=${1:-${BUILD_DIR:-$repo/build}}
[ -d "$build_arg" ] || build_arg=$repo/$build_arg
build=$(cd "$build_arg" && pwd)

OUT=${OUT:-$here/results/cpu-$(date +%Y%m%d-%H%M%S)}
PARTS=${PARTS:-"cpu miss load"}
RATES=${RATES:-"1000 10000"}
WARM_S=${WARM_S:-2}
MEASURE_S=${MEASURE_S:-10}
MISS_RATES=${MISS_RATES:-"2000 10000"}
MISS_S=${MISS_S:-60}
MISS_LOAD_S=${MISS_LOAD_S:-10}
LOAD_PROCS=${LOAD_PROCS:-2}
BEFORE=${BEFORE:-}
TAP=${TAP:-1}
PROBE_ARGS=${PROBE_ARGS:-}
BEFORE_ARGS=${BEFORE_ARGS-$PROBE_ARGS}
QDISC=${QDISC:-}
LAUNCH_AHEAD_US=${LAUNCH_AHEAD_US:-}
FAR_RPS=${FAR_RPS:-0}
RAW_PORT=9000

NS_A=psc-$$-a
NS_B=psc-$$-b
A4=198.18.0.1
B4=198.18.0.2
log() { printf '%s\n' "$*" >&2; }
die() {
  log "cpu_bench: $*"
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "needs root (namespaces, raw sockets)"
command -v python3 >/dev/null || die "python3 is missing (scripts/deps.sh installs it)"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
PROBE=$(find_bin pathsentry-probe)
REFL=$(find_bin pathsentry-reflector)
RAW=$(find_bin bench-raw-udp)
[ -n "$PROBE" ] && [ -n "$REFL" ] && [ -n "$RAW" ] ||
  die "missing in $build: cmake --build $build --target pathsentry-probe pathsentry-reflector bench-raw-udp"
if [ -n "$BEFORE" ]; then
  [ -x "$BEFORE/pathsentry-probe" ] || die "BEFORE=$BEFORE has no pathsentry-probe"
  BEFORE=$(cd "$BEFORE" && pwd)
fi
have_perf=0
command -v perf >/dev/null && perf stat -e task-clock -x, -o /dev/null true 2>/dev/null && have_perf=1
SMOKEPING=$(command -v prometheus-smokeping-prober || true)
command -v fping >/dev/null || log "cpu_bench: fping missing (scripts/deps.sh): its rows are skipped"
[ -n "$SMOKEPING" ] || log "cpu_bench: prometheus-smokeping-prober missing (scripts/deps.sh): its rows are skipped"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
: >"$OUT/rows.jsonl"

# --- processes and cleanup -----------------------------------------------------------------------
bg_pids=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${bg_pids[@]}"; do stop_pid "$p"; done
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tx_packets() { ip netns exec "$NS_A" cat /sys/class/net/va/statistics/tx_packets; }
now_ns() { date +%s%N; }

# --- the namespace pair --------------------------------------------------------------------------
ip netns add "$NS_A"
ip netns add "$NS_B"
for ns in "$NS_A" "$NS_B"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
veth_pair "$NS_A" "$NS_B" "$A4" "$B4"
[ "$FAR_RPS" = 1 ] && far_rps "$NS_A" "$NS_B"
if [ -n "$QDISC" ]; then
  # shellcheck disable=SC2086
  ip netns exec "$NS_A" tc qdisc replace dev va root $QDISC ||
    die "QDISC=$QDISC: this kernel has no such qdisc (sch_fq / sch_etf: CONFIG_NET_SCH_FQ, _ETF)"
fi
qdisc_now=$(ip netns exec "$NS_A" tc qdisc show dev va | awk 'NR == 1 { print $2 }')

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
header="cpu_bench  $(date -u +%Y-%m-%dT%H:%M:%SZ)  cpus=$(nproc)  load=$(cut -d' ' -f1-3 /proc/loadavg)  kernel=$(uname -r)  qdisc=$qdisc_now  far_rps=$FAR_RPS  commit=$commit${BEFORE:+  before=$BEFORE}"
log "$header"
echo "$header" >"$OUT/header.txt"

# The peers: the reflector (rate limit lifted, as in probe_bench.sh), the raw echo server.
ip netns exec "$NS_B" "$REFL" --allow "$A4/32" --bind "$B4" --rate-limit 100000000 \
  --burst 1000000 --log-level warn >"$OUT/reflector.log" 2>&1 &
bg_pids+=("$!")
ip netns exec "$NS_B" "$RAW" server --bind "$B4" --port "$RAW_PORT" >"$OUT/raw-server.log" 2>&1 &
bg_pids+=("$!")
sleep 0.5

row() { # JSON fields... -> rows.jsonl
  python3 -c 'import json,sys; print(json.dumps(dict(a.split("=",1) for a in sys.argv[1:])))' "$@" >>"$OUT/rows.jsonl"
}

# Runs CMD... in ns a, waits WARM_S, measures MEASURE_S, stops it. WHAT and RATE label the row.
measure() { # WHAT RATE CMD...
  local what=$1 rate=$2 pid k0 k1 p0 p1 t0 t1 tc="" threads=""
  shift 2
  ip netns exec "$NS_A" "$@" >"$OUT/run.log" 2>&1 &
  pid=$!
  bg_pids+=("$pid")
  sleep "$WARM_S"
  if ! kill -0 "$pid" 2>/dev/null; then
    log "  $what at $rate/s: exited early:"
    tail -3 "$OUT/run.log" >&2
    forget_pid "$pid"
    return 0
  fi
  k0=$(cpu_ticks "$pid")
  p0=$(tx_packets)
  t0=$(now_ns)
  if [ "$have_perf" -eq 1 ]; then
    # Per thread: where the time goes (the sender's wake-up per probe, the taps' clocks, the
    # writer's hand-off), each thread's task-clock and context switches (= its wake-ups).
    perf stat --per-thread -e task-clock,context-switches -x, -p "$pid" -o "$OUT/perf.txt" \
      -- sleep "$MEASURE_S" 2>/dev/null || true
    tc=$(awk -F, '$4 == "task-clock" && $2 ~ /^[0-9.]+$/ { s += $2; n++ }
                  END { if (n) printf "%.2f", s }' "$OUT/perf.txt")
    threads=$(awk -F, '$2 ~ /^[0-9.]+$/ {
        name = $1; sub(/-[0-9]+$/, "", name); gsub(/[=;\/]/, "_", name)
        if ($4 == "task-clock") ms[name] += $2; else if ($4 == "context-switches") cs[name] += $2
        seen[name] = 1 }
      END { for (t in seen) printf "%s=%.2f/%d;", t, ms[t], cs[t] }' "$OUT/perf.txt")
  else
    sleep "$MEASURE_S"
  fi
  k1=$(cpu_ticks "$pid")
  p1=$(tx_packets)
  t1=$(now_ns)
  stop_pid "$pid"
  forget_pid "$pid"
  cp "$OUT/run.log" "$OUT/$(echo "$what-$rate" | tr ' /' '__').log"
  row kind=cpu what="$what" rate="$rate" probes=$((p1 - p0)) ticks=$((k1 - k0)) \
    hz="$(getconf CLK_TCK)" wall_ns=$((t1 - t0)) task_clock_ms="${tc:-}" threads="$threads" \
    load="$(cut -d' ' -f1 /proc/loadavg)"
  log "$(tail -1 "$OUT/rows.jsonl")"
}

if [[ " $PARTS " == *" cpu "* ]]; then
  log "== cpu: CPU per probe, ${MEASURE_S} s windows after ${WARM_S} s"
  for rate in $RATES; do
    for proto in stamp icmp; do
      # shellcheck disable=SC2086
      measure "pathsentry $proto" "$rate" "$PROBE" --target "$B4" --proto "$proto" --rate "$rate" \
        --quiet $PROBE_ARGS
      if [ "$TAP" = 1 ]; then
        # shellcheck disable=SC2086
        measure "pathsentry $proto + tap" "$rate" "$PROBE" --target "$B4" --proto "$proto" \
          --rate "$rate" --quiet --tap va:bench:clear $PROBE_ARGS
      fi
      if [ -n "$LAUNCH_AHEAD_US" ]; then
        # shellcheck disable=SC2086
        measure "pathsentry $proto launch" "$rate" "$PROBE" --target "$B4" --proto "$proto" \
          --rate "$rate" --quiet --launch-ahead-us "$LAUNCH_AHEAD_US" $PROBE_ARGS
        grep -h "launch-time" "$OUT/run.log" >&2 || true
      fi
      if [ -n "$BEFORE" ]; then
        # shellcheck disable=SC2086
        measure "before $proto" "$rate" "$BEFORE/pathsentry-probe" --target "$B4" --proto "$proto" \
          --rate "$rate" --quiet $BEFORE_ARGS
        if [ "$TAP" = 1 ]; then
          # shellcheck disable=SC2086
          measure "before $proto + tap" "$rate" "$BEFORE/pathsentry-probe" --target "$B4" \
            --proto "$proto" --rate "$rate" --quiet --tap va:bench:clear $BEFORE_ARGS
        fi
      fi
    done
    if [ -n "$SMOKEPING" ]; then
      printf 'targets:\n- hosts:\n  - %s\n  interval: %sus\n  network: ip4\n  protocol: icmp\n  size: 56\n' \
        "$B4" "$((1000000 / rate))" >"$OUT/smokeping.yml"
      measure "smokeping_prober icmp" "$rate" "$SMOKEPING" --privileged \
        --config.file="$OUT/smokeping.yml" --web.listen-address=127.0.0.1:19374
    fi
    if command -v fping >/dev/null; then
      period=$(awk -v r="$rate" 'BEGIN { printf "%.4f", 1000 / r }')
      measure "fping icmp" "$rate" fping -l -p "$period" -i "$period" -t 500 -Q 3600 "$B4"
    fi
    measure "raw udp echo client" "$rate" "$RAW" client --target "$B4" --port "$RAW_PORT" \
      --rate "$rate" --duration $((WARM_S + MEASURE_S + 5))
    # The floor of any prober paced by its own wake-ups: a timer wake-up and a send per probe.
    measure "raw pace (wake + send)" "$rate" "$RAW" pace --target "$B4" --port "$RAW_PORT" \
      --rate "$rate" --duration $((WARM_S + MEASURE_S + 5))
  done
fi

miss_run() { # WHAT BINARY RATE RT SECONDS
  local what=$1 bin=$2 rate=$3 rt=$4 secs=$5 f
  f=$OUT/miss-$(echo "$what" | tr ' ' '_')-$rate-rt$rt.json
  # shellcheck disable=SC2086
  ip netns exec "$NS_A" "$bin" --target "$B4" --proto stamp --rate "$rate" --duration "$secs" \
    --quiet --rt-priority "$rt" --summary-json "$f" >"$OUT/run.log" 2>&1 &
  local pid=$!
  bg_pids+=("$pid")
  wait "$pid" || log "  $what exited $?"
  forget_pid "$pid"
  python3 - "$f" "$what" "$rate" "$rt" "$secs" "$OUT/rows.jsonl" <<'EOF'
import json, sys
f, what, rate, rt, secs, rows = sys.argv[1:]
try:
    s = json.load(open(f))["sessions"][0]
except Exception as e:  # a run that wrote no summary
    s = {"error": str(e)}
r = {"kind": "miss", "what": what, "rate": rate, "rt": rt, "seconds": secs,
     "sent": s.get("sent"), "missed_slots": s.get("missed_slots"),
     "send_errors": s.get("send_errors"), "missed": s.get("missed"), "lost": s.get("lost"),
     "max_send_lag_ns": s.get("max_send_lag_ns")}
open(rows, "a").write(json.dumps(r) + "\n")
print(json.dumps(r), file=sys.stderr)
EOF
}

if [[ " $PARTS " == *" miss "* ]]; then
  log "== miss: missed slots over $MISS_S s, STAMP, SCHED_FIFO on (10) and off (0)"
  for rate in $MISS_RATES; do
    for rt in 10 0; do
      miss_run "pathsentry" "$PROBE" "$rate" "$rt" "$MISS_S"
      [ -n "$BEFORE" ] && miss_run "before" "$BEFORE/pathsentry-probe" "$rate" "$rt" "$MISS_S"
    done
  done
fi

if [[ " $PARTS " == *" load "* ]]; then
  top=$(echo "$MISS_RATES" | tr ' ' '\n' | sort -n | tail -1)
  log "== load: $top/s for $MISS_LOAD_S s without SCHED_FIFO beside $LOAD_PROCS busy loops"
  load_pids=()
  for _ in $(seq "$LOAD_PROCS"); do
    sh -c 'while :; do :; done' &
    load_pids+=("$!")
    bg_pids+=("$!")
  done
  miss_run "pathsentry under load" "$PROBE" "$top" 0 "$MISS_LOAD_S"
  [ -n "$BEFORE" ] && miss_run "before under load" "$BEFORE/pathsentry-probe" "$top" 0 "$MISS_LOAD_S"
  for p in "${load_pids[@]}"; do
    stop_pid "$p"
    forget_pid "$p"
  done
fi

# --- the table -----------------------------------------------------------------------------------
python3 - "$OUT/rows.jsonl" "$OUT/header.txt" <<'EOF' | tee "$OUT/table.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(open(sys.argv[2]).read().strip())
cpu = [r for r in rows if r["kind"] == "cpu"]
if cpu:
    print("\nCPU per probe (steady window; us = microseconds of CPU per probe sent)")
    print("%-26s %7s %9s %8s %12s %12s %6s" % ("prober", "rate/s", "sent/s", "cpu %", "us/probe", "us/probe tc", "load"))
    for r in cpu:
        wall = int(r["wall_ns"]) / 1e9
        n = int(r["probes"])
        cpu_s = int(r["ticks"]) / int(r["hz"])
        tc = r.get("task_clock_ms") or ""
        tcu = "%.1f" % (float(tc) * 1e3 / n) if tc and n else "-"
        print("%-26s %7s %9.0f %8.1f %12s %12s %6s" % (
            r["what"], r["rate"], n / wall, 100 * cpu_s / wall,
            "%.1f" % (cpu_s * 1e6 / n) if n else "-", tcu, r["load"]))
    per = [r for r in cpu if r.get("threads") and r["what"].split()[0] in ("pathsentry", "before")]
    if per:
        print("\nPer thread (perf task-clock; us = its CPU per probe sent, wake/s = its context switches a second)")
        for r in per:
            n = int(r["probes"])
            wall = int(r["wall_ns"]) / 1e9
            parts = []
            for item in sorted(t for t in r["threads"].split(";") if t):
                name, v = item.split("=", 1)
                ms, cs = v.split("/")
                if float(ms) < 0.05 * wall:  # under 0.005 % of a CPU: the idle ones
                    continue
                parts.append("%s %.1f us %.0f wake/s" % (name, float(ms) * 1e3 / n if n else 0, int(cs) / wall))
            print("%-26s %7s  %s" % (r["what"], r["rate"], " | ".join(parts)))
miss = [r for r in rows if r["kind"] == "miss"]
if miss:
    print("\nMissed slots (STAMP; rt = SCHED_FIFO priority, 0 = off)")
    print("%-24s %7s %3s %5s %9s %7s %12s %10s %11s %6s %11s" % ("prober", "rate/s", "rt", "s", "sent", "missed", "late_wakeup", "ring_full", "send_error", "lost", "max lag us"))
    for r in miss:
        m = r.get("missed") or {}
        lag = r.get("max_send_lag_ns")
        print("%-24s %7s %3s %5s %9s %7s %12s %10s %11s %6s %11s" % (
            r["what"], r["rate"], r["rt"], r["seconds"], r["sent"], r["missed_slots"],
            m.get("late_wakeup", "-"), m.get("ring_full", "-"), m.get("send_error", r.get("send_errors")), r["lost"],
            "-" if lag is None else "%.0f" % (lag / 1e3)))
EOF
log "cpu_bench: results in $OUT"
