#!/usr/bin/env bash
# promtool against pathsentry's Prometheus files and the programs' REAL /metrics output
# (docs/metrics.md "Tests"): check rules, test rules (every rule firing and not firing), check
# config, check metrics on the agent's, the reflector's and the collector families' text, and
# every metric name the rules, their tests and the Grafana dashboard use is exported. Also: a
# configured metrics address that is taken ends the program with status 3 (the environment:
# retried by the unit); a taken default one
# only warns.
#
# The agent runs ~8 s against 127.0.0.1 with ICMP and STAMP (to a reflector started here), a
# clear tap on lo and TTL probes, so its path, tap and TTL families have series: it needs root
# (raw ICMP socket, capture on lo). Usage: promtool_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
probe=$build/probe/pathsentry-probe
reflector=$build/probe/pathsentry-reflector
dump=$build/tests/dump_collector_metrics
collector=$build/probe/pathsentry-collector
prom=$src/deploy/prometheus
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (raw ICMP socket and a capture on lo)"
command -v promtool >/dev/null || fail "promtool missing: scripts/deps.sh installs Debian's prometheus"
for b in "$probe" "$reflector" "$dump" "$collector"; do [ -x "$b" ] || fail "$b not built"; done

work=$(mktemp -d /tmp/ps-promtool.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== the reflector links no capture stack (it runs on the cloud host)"
if ldd "$reflector" | grep -Ei 'libpcap|libtins'; then fail "pathsentry-reflector links libpcap/libtins"; fi

echo "== promtool check rules"
promtool check rules "$prom/pathsentry.rules.yml"
echo "== promtool test rules"
promtool test rules "$prom/tests/pathsentry.rules_test.yml"
echo "== promtool check config"
promtool check config "$prom/prometheus.yml"

# The URL a program logged ("metrics on http://…/metrics"), waiting up to 5 s for it.
url_in() {
  for _ in $(seq 50); do
    if u=$(grep -o 'http://[^ ]*/metrics' "$1" 2>/dev/null | head -1) && [ -n "$u" ]; then
      echo "$u"
      return 0
    fi
    sleep 0.1
  done
  cat "$1" >&2
  return 1
}

echo "== reflector and agent on loopback"
"$reflector" --allow 127.0.0.0/8 --bind 127.0.0.1 --port 0 --metrics-listen 127.0.0.1:0 \
  >"$work/reflector.out" 2>"$work/reflector.err" &
pids+=($!)
refl_url=$(url_in "$work/reflector.err") || fail "the reflector logged no metrics URL"
for _ in $(seq 50); do grep -q 'listening on' "$work/reflector.out" && break; sleep 0.1; done
stamp_port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/reflector.out" | grep -o '[0-9]*$') ||
  fail "the reflector did not say where it listens"

"$probe" --target 127.0.0.1 --proto both --stamp-port "$stamp_port" --rate 200 --duration 8 \
  --quiet --rt-priority 0 --metrics-listen 127.0.0.1:0 --tap lo:loopback:clear \
  --ttl-probe 1 --ttl-hop 127.0.0.1=loopback --ttl-rate 5 >"$work/agent.out" 2>"$work/agent.err" &
agent_pid=$!
pids+=($agent_pid)
agent_url=$(url_in "$work/agent.err") || fail "the agent logged no metrics URL"
# The agent's own figures, once each has been published: the detector confirmed the loopback
# path, the tap reported frames (once a second), STAMP probes and RTTs were counted.
want=(
  'pathsentry_active_path\{direction="forward",path="loopback",proto="icmp",target="127.0.0.1"\} 1'
  'pathsentry_tap_frames_total\{path="loopback",tap="lo"\} [1-9]'
  'pathsentry_probes_sent_total\{proto="stamp",target="127.0.0.1"\} [1-9]'
  'pathsentry_rtt_seconds_count\{fwd_path="loopback",proto="icmp",rev_path="loopback",target="127.0.0.1"\} [1-9]'
  'pathsentry_ttl_probes_sent_total\{target="127.0.0.1"\} [1-9]'
)
for _ in $(seq 60); do
  curl -sf "$agent_url" >"$work/agent.metrics" || true
  ok=1
  for w in "${want[@]}"; do grep -Eq "^$w" "$work/agent.metrics" || ok=0; done
  [ $ok -eq 1 ] && break
  sleep 0.1
done
echo "== the figures are the programs' own"
for w in "${want[@]}"; do
  grep -Eq "^$w" "$work/agent.metrics" || fail "the agent's /metrics never showed /$w/"
done
curl -sf "$refl_url" >"$work/reflector.metrics" || fail "cannot scrape the reflector"
grep -Eq '^pathsentry_reflector_replies_total [1-9]' "$work/reflector.metrics" ||
  fail "no replies counted by the reflector"
grep -Eq '^pathsentry_reflector_sessions 1' "$work/reflector.metrics" ||
  fail "the reflector does not count the agent's STAMP session"
# The collector's real /metrics, after one batch ingested over HTTP (so its per-agent series
# exist), beside the families as defined (every label the code pre-creates).
"$dump" >"$work/collector-families.metrics"
(umask 077 && echo "promtool-test-token-0123456789" >"$work/token")
"$collector" --db "$work/collector.db" --listen 127.0.0.1:0 --token-file "$work/token" \
  >"$work/collector.out" 2>"$work/collector.err" &
pids+=($!)
coll=
for _ in $(seq 100); do
  coll=$(grep -oE '127\.0\.0\.1:[0-9]+' "$work/collector.out" | head -n1 || true)
  [ -n "$coll" ] && break
  sleep 0.05
done
[ -n "$coll" ] || { cat "$work/collector.err"; fail "the collector did not start"; }
now=$(($(date +%s) * 1000000000))
printf '%s\n' \
  '{"type":"batch","agent":"promtool","run":"00000000000000aa","batch":1,"created_ns":'$now',"version":"test"}' \
  '{"type":"rollup","target":"127.0.0.1","proto":"icmp","session_id":1,"second_ns":'$now',"direction":"forward","path":"","sent":1,"received":1,"lost_forward":0,"lost_reverse":0,"lost_undetermined":0,"rtt_min_ns":1,"rtt_mean_ns":1,"rtt_p50_ns":1,"rtt_p99_ns":1,"rtt_max_ns":1,"jitter_ns":0}' \
  >"$work/batch.ndjson"
curl -sf -H "Authorization: Bearer $(cat "$work/token")" -H 'Content-Type: application/x-ndjson' \
  --data-binary @"$work/batch.ndjson" "http://$coll/api/v1/ingest" >/dev/null ||
  fail "the collector refused the test batch"
curl -sf "http://$coll/metrics" >"$work/collector.metrics" || fail "cannot scrape the collector"
grep -Eq '^pathsentry_collector_ingest_rows_total\{.*kind="rollup".*\} 1' "$work/collector.metrics" ||
  fail "the collector's /metrics does not count the ingested rollup"

for f in agent reflector collector collector-families; do
  echo "== promtool check metrics ($f)"
  out=$(promtool check metrics <"$work/$f.metrics" 2>&1) || { echo "$out"; fail "$f metrics"; }
  [ -z "$out" ] || { echo "$out"; fail "promtool found problems in the $f metrics"; }
  echo "OK: $(grep -c '^pathsentry_' "$work/$f.metrics") pathsentry series"
done

echo "== metric names used by the rules, their tests and the dashboard"
# The eta exists only while a line's health check degrades (no health check runs on lo): it
# counts when the agent registers it; tests/unit/metrics/metrics_test.cpp proves its export.
python3 "$src/tests/integration/metrics/check_names.py" \
  --conditional "pathsentry_healthcheck_eta_seconds=$src/probe/agent/src/agent_metrics.cpp" \
  "$prom/pathsentry.rules.yml" "$prom/tests/pathsentry.rules_test.yml" \
  "$src/deploy/grafana/pathsentry.json" \
  --exported "$work/agent.metrics" "$work/reflector.metrics" "$work/collector.metrics"

echo "== a configured metrics address in use: exit 3"
taken=${refl_url#http://}
taken=${taken%/metrics}
set +e
"$probe" --target 127.0.0.1 --proto icmp --duration 1 --quiet --rt-priority 0 \
  --metrics-listen "$taken" >/dev/null 2>"$work/taken.err"
rc=$?
set -e
[ "$rc" -eq 3 ] || fail "agent: status $rc for a taken --metrics-listen $taken (want 3)"
grep -q -- "--metrics-listen" "$work/taken.err" || fail "agent: the error does not name the flag"
set +e
"$reflector" --allow 127.0.0.0/8 --bind 127.0.0.1 --port 0 --metrics-listen "$taken" \
  >/dev/null 2>"$work/taken-refl.err"
rc=$?
set -e
[ "$rc" -eq 3 ] || fail "reflector: status $rc for a taken --metrics-listen $taken (want 3)"
grep -q "metrics_listen" "$work/taken-refl.err" || fail "reflector: the error does not name the key"

echo "== the default address in use: a warning, the agent runs"
# Hold 127.0.0.1:9781 (if something else already does, that serves as well) while an agent
# starts with the default address.
python3 -u -c '
import socket, sys, time
s = socket.socket()
try:
    s.bind(("127.0.0.1", 9781))
    s.listen()
    print("held")
except OSError as e:
    print("busy", e)
    sys.exit(0)
time.sleep(30)' >"$work/holder.out" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/holder.out" ] && break; sleep 0.1; done
echo "127.0.0.1:9781: $(cat "$work/holder.out")"
set +e
"$probe" --target 127.0.0.1 --proto icmp --rate 10 --duration 1 --quiet --rt-priority 0 \
  >/dev/null 2>"$work/default.err"
rc=$?
set -e
[ "$rc" -eq 0 ] || fail "agent: status $rc with the default metrics port taken (want 0): $(cat "$work/default.err")"
grep -q "metrics: cannot listen on 127.0.0.1:9781" "$work/default.err" ||
  fail "agent: no warning about the taken default port: $(cat "$work/default.err")"

wait "$agent_pid" || fail "the agent ended with status $?"
echo "PASS"
