# shellcheck shell=bash
# Drills: each runs two steady ping streams (fping, DC host -> ECS and ECS -> DC host), captures the DC gateway's two
# SPAN mirrors and both end hosts, watches every router's routes, acts, waits for the network to
# converge, restores, and prints the ground truth computed from the captures (deploy/lab/groundtruth).

DRILLS=(baseline ec-port bgp-kill both-down ipsec-down flap blackhole hc-blocked hc-off)

drill_help() {
  cat <<'H'
drills (each prints progress, then the ground-truth timeline; results in $PS_LAB_RESULTS):
  baseline    no action: the steady state (both directions on Express Connect)
  ec-port     shut the DC gateway's Express Connect port, then bring it back (the guide's test)
  bgp-kill    shut the gateway's BGP session to the VBR (birdc disable), then re-enable it
  both-down   shut both gateway uplinks (Express Connect and internet), then restore them
  ipsec-down  tear the IPsec tunnel down while the line is up (no effect expected), re-initiate
  flap        Express Connect port down/up FLAP_CYCLES times (FLAP_DOWN_S down, FLAP_UP_S up)
  blackhole   the line silently drops everything, both directions, links stay up; heals once
              the routes moved and both ends' BGP sessions are down (timers, BFD)
  hc-blocked  only the health check fails: the gateway has no route back to the prober (a
              blackhole route), the line stays up; the cloud moves the return path anyway
  hc-off      the health check is switched off (its prober paused) while the line works; then on
H
}

DRILL_PIDS=()

# act TEXT CMD...: logs the action with its time, then runs it.
act() {
  local what=$1 t0 rc=0
  shift
  t0=$EPOCHREALTIME
  "$@" || rc=$?
  local took=$(( ${EPOCHREALTIME/./} - ${t0/./} ))
  echo "$t0 $what (took $((took / 1000)).$((took / 100 % 10)) ms)" >>"$DRILL_DIR/actions.log"
  say "ACTION $what"
  return "$rc"
}

tunnel_gone() { ! tunnel_installed; }
wait_tunnel() {
  if wait_for "$DRILL_TIMEOUT_S" "the IPsec tunnel" tunnel_installed 2>/dev/null; then
    say "tunnel: CHILD_SA installed"
  else
    say "tunnel: NOT re-established within $DRILL_TIMEOUT_S s"
  fi
}

# observe FWD REV TIMEOUT: waits until the routers send both directions on the given paths.
observe() {
  local t0 d
  t0=$(now_us)
  if wait_for "$3" "forward on $1 and reverse on $2" paths_are "$1" "$2" 2>/dev/null; then
    d=$(($(now_us) - t0))
    say "routes: forward on $1, reverse on $2 (after $((d / 1000)) ms)"
  else
    say "routes: NOT converged within $3 s: forward on $(fwd_path), reverse on $(rev_path)"
    return 1
  fi
}

# start_rec NAME NODE OUTFILE CMD...: a recorder (capture, route monitor) for this drill.
start_rec() {
  local name=$1 node=$2 out=$3
  shift 3
  ip netns exec "$(ns "$node")" "$@" >"$out" 2>"$DRILL_DIR/$name.err" </dev/null 9>&- &
  record_pid "drill-$name" $! "$node"
  DRILL_PIDS+=("$! drill-$name")
}

stop_recs() {
  local entry pid name st
  for entry in "${DRILL_PIDS[@]}"; do
    read -r pid name <<<"$entry"
    st=$(proc_starttime "$pid") || continue
    stop_pid "$name" "$pid" "$st"
    wait "$pid" 2>/dev/null || true
  done
  DRILL_PIDS=()
}

capture() { # NAME NODE IFACE [FILTER...]
  local name=$1 node=$2 ifc=$3
  shift 3
  start_rec "cap-$name" "$node" "$DRILL_DIR/cap-$name.pcap" \
    tcpdump -i "$ifc" -n -s 128 -B 16384 -U --immediate-mode --time-stamp-precision=nano -w - "$@"
}

# A pathsentry agent's probes between the DC host and the ECS: ICMP echo carrying the agent's
# payload (magic "PSNT" right after the ICMP header) and STAMP to/from the reflector port.
probe_filter() {
  echo "host $DC_HOST and host $ECS and ((icmp and icmp[8:4] = 0x50534e54) or udp port $PROBE_STAMP_PORT)"
}

start_recorders() {
  local node name caps=(tap-ec tap-inet dc ecs probes-dc probes-ecs probes-cen-ec probes-cen-ipsec)
  capture tap-ec dc "$TAP_EC"
  capture tap-inet dc "$TAP_INET"
  # the ground-truth streams (an agent's ICMP probes are captured apart, below)
  capture dc dc eth0 icmp and host "$ECS" and not icmp[8:4] = 0x50534e54
  capture ecs ecs eth0 icmp and host "$DC_HOST" and not icmp[8:4] = 0x50534e54
  # Per-probe ground truth of an agent's own probes (deploy/lab/probetruth): both end hosts, and
  # the cloud router, where both paths are in clear: Express Connect arrives from the VBR, IPsec
  # from the VPN gateway (decrypted), and each reply leaves towards one of them.
  capture probes-dc dc eth0 "$(probe_filter)"
  capture probes-ecs ecs eth0 "$(probe_filter)"
  capture probes-cen-ec cen "$CEN_EC_IF" "$(probe_filter)"
  capture probes-cen-ipsec cen "$CEN_VPN_IF" "$(probe_filter)"
  for node in "${LAB_ROUTERS[@]}"; do
    start_rec "routes-$node" "$node" "$DRILL_DIR/routes-$node.log" ip -ts -o monitor route link
  done
  for name in "${caps[@]}"; do
    wait_for 5 "tcpdump on $name" grep -q "listening on" "$DRILL_DIR/cap-$name.err" ||
      die "tcpdump on $name did not start: $(cat "$DRILL_DIR/cap-$name.err")"
  done
}

# Two independent ping streams, one per direction, so each direction is measured by packets
# sent in that direction (a reply can only show the return path while the forward one works).
start_streams() {
  start_rec stream-fwd dc "$DRILL_DIR/stream-fwd.out" fping -l -p "$STREAM_INTERVAL_MS" -i 1 \
    -b "$STREAM_SIZE" -S "$DC_HOST" "$ECS"
  STREAM_PIDS=$!
  start_rec stream-rev ecs "$DRILL_DIR/stream-rev.out" fping -l -p "$STREAM_INTERVAL_MS" -i 1 \
    -b "$STREAM_REV_SIZE" -S "$ECS" "$DC_HOST"
  STREAM_PIDS+=" $!"
  T_STREAM_START=$EPOCHREALTIME
}

stop_streams() {
  local st pid
  for pid in $STREAM_PIDS; do
    st=$(proc_starttime "$pid") && stop_pid stream "$pid" "$st"
  done
  T_STREAM_END=$EPOCHREALTIME
}

# Puts the lab back in its normal state whatever a drill changed. Idempotent.
drill_restore() {
  ip -n "$(ns gw)" link set ec up 2>/dev/null || true
  ip -n "$(ns gw)" link set inet up 2>/dev/null || true
  line_connect 2>/dev/null || true
  birdc_n gw enable vbr >/dev/null 2>&1 || true
  ip -n "$(ns gw)" route del blackhole "$HC_SRC/32" 2>/dev/null || true
  hc_resume 2>/dev/null || true
  tunnel_installed || swanctl_n gw --initiate --child dc-vpc --timeout 5 >/dev/null 2>&1 || true
}

DRILL_DONE=0
# On Ctrl-C or any failure before the drill finished: repair what it broke, stop its recorders.
drill_exit() {
  local rc=$?
  [ "$DRILL_DONE" = 1 ] && return
  trap - EXIT INT TERM
  echo "lab: drill stopped (exit $rc); restoring the lab and stopping the drill's recorders" >&2
  drill_restore
  stop_recs
  echo "lab: partial drill data kept in $DRILL_DIR" >&2
  [ "$rc" -ne 0 ] || rc=1
  exit "$rc"
}

# ---------------------------------------------------------------------------------- the drills

drill_baseline() {
  sleep $((DRILL_HOLD_S + DRILL_SETTLE_S))
}

drill_ec_port() {
  act "gw: shut the Express Connect port (ip link set ec down)" ip -n "$(ns gw)" link set ec down
  observe ipsec ipsec "$DRILL_TIMEOUT_S" || true
  sleep "$DRILL_HOLD_S"
  act "gw: Express Connect port back up (ip link set ec up)" ip -n "$(ns gw)" link set ec up
  observe ec ec "$DRILL_TIMEOUT_S" || true
  sleep "$DRILL_SETTLE_S"
}

drill_bgp_kill() {
  act "gw: BGP session to the VBR shut down (birdc disable vbr)" birdc_n gw disable vbr
  observe ipsec ipsec "$DRILL_TIMEOUT_S" || true
  sleep "$DRILL_HOLD_S"
  act "gw: BGP session to the VBR re-enabled (birdc enable vbr)" birdc_n gw enable vbr
  observe ec ec "$DRILL_TIMEOUT_S" || true
  sleep "$DRILL_SETTLE_S"
}

# both ports in one netlink batch, microseconds apart
both_down() { printf 'link set ec down\nlink set inet down\n' | ip -n "$(ns gw)" -batch -; }
both_up() { printf 'link set ec up\nlink set inet up\n' | ip -n "$(ns gw)" -batch -; }

drill_both_down() {
  act "gw: shut both uplinks (ec and inet down)" both_down
  # Routing still points at the tunnel (ipsec0 stays up); nothing gets through.
  observe ipsec ipsec "$DRILL_TIMEOUT_S" || true
  sleep "$DRILL_HOLD_S"
  act "gw: both uplinks back up" both_up
  observe ec ec "$DRILL_TIMEOUT_S" || true
  wait_tunnel
  sleep "$DRILL_SETTLE_S"
}

drill_ipsec_down() {
  act "gw: IPsec tunnel torn down (swanctl --terminate --ike dc-vpn)" \
    swanctl_n gw --terminate --ike dc-vpn --timeout 5 >/dev/null
  if wait_for 5 "the tunnel to go" tunnel_gone; then say "tunnel: down"; else say "tunnel: still up"; fi
  sleep $((DRILL_HOLD_S * 2))
  act "gw: IPsec tunnel initiated again (swanctl --initiate --child dc-vpc)" \
    swanctl_n gw --initiate --child dc-vpc --timeout 10 >/dev/null
  wait_tunnel
  sleep "$DRILL_SETTLE_S"
}

drill_flap() {
  local i
  for i in $(seq "$FLAP_CYCLES"); do
    act "gw: Express Connect port down (flap $i/$FLAP_CYCLES)" ip -n "$(ns gw)" link set ec down
    sleep "$FLAP_DOWN_S"
    act "gw: Express Connect port up (flap $i/$FLAP_CYCLES)" ip -n "$(ns gw)" link set ec up
    sleep "$FLAP_UP_S"
  done
  observe ec ec "$DRILL_TIMEOUT_S" || true
  sleep "$DRILL_SETTLE_S"
}

# Each end of the line's BGP session times out on its own hold timer (with BFD both go within
# milliseconds; without, up to one keepalive interval apart). Healed before the VBR's expires,
# the cloud router's return route would come back over the line when the health check rises,
# leave again when the VBR's session drops, and return with BGP: a real sequence, but not the
# one drill the expectations describe, and which one ran would be down to timer phases.
vbr_session_down() { ! bgp_established vbr dcgw; }

drill_blackhole() {
  local t0
  act "line: silent black hole in both directions (ports keep their link)" line_blackhole
  observe ipsec ipsec "$DRILL_TIMEOUT_S" || true
  t0=$(now_us)
  if wait_for "$DRILL_TIMEOUT_S" "the VBR's BGP session to the gateway to go" vbr_session_down; then
    say "vbr: BGP session to the gateway down (after $((($(now_us) - t0) / 1000)) ms more)"
  else
    say "vbr: BGP session to the gateway still up after $DRILL_TIMEOUT_S s"
  fi
  sleep "$DRILL_HOLD_S"
  act "line: carries traffic again" line_connect
  observe ec ec "$DRILL_TIMEOUT_S" || true
  sleep "$DRILL_SETTLE_S"
}

# The health check alone: the gateway answers the prober no more (no route back, as when the
# guide's host route via the line is missing), while the line carries everything else.
drill_hc_blocked() {
  act "gw: no route back to the health check's prober (blackhole $HC_SRC/32)" \
    ip -n "$(ns gw)" route add blackhole "$HC_SRC/32"
  # the cloud moves the return path after HC_FALL probes: a false switchover
  observe ec ipsec "$DRILL_TIMEOUT_S" || true
  sleep "$DRILL_HOLD_S"
  act "gw: route back to the prober restored" ip -n "$(ns gw)" route del blackhole "$HC_SRC/32"
  observe ec ec "$DRILL_TIMEOUT_S" || true
  sleep "$DRILL_SETTLE_S"
}

# The health check's prober (the `hc` daemon in cen), paused and resumed: no probe, no decision.
hc_pid() { awk '$1 == "hc" { p = $2 } END { print p }' "$STATE/pids"; }
hc_pause() { kill -STOP "$(hc_pid)"; }
hc_resume() { kill -CONT "$(hc_pid)"; }

drill_hc_off() {
  act "cen: health check switched off (prober paused)" hc_pause
  # more than 3 intervals without a probe, then as long again
  sleep "$(awk -v ms="$HC_INTERVAL_MS" -v h="$DRILL_HOLD_S" 'BEGIN { printf "%.3f", ms * 6 / 1000 + h }')"
  act "cen: health check switched on again (prober resumed)" hc_resume
  sleep "$(awk -v ms="$HC_INTERVAL_MS" -v s="$DRILL_SETTLE_S" 'BEGIN { printf "%.3f", ms * 3 / 1000 + s }')"
}

# --------------------------------------------------------------------------------- the command

cmd_drill() {
  local name='' profile='' arg
  while [ $# -gt 0 ]; do
    case "$1" in
      --profile) profile=${2:?--profile needs fast or realistic}; shift 2 ;;
      --profile=*) profile=${1#*=}; shift ;;
      -h | --help) drill_help; return 0 ;;
      -*) die "drill: unknown option '$1'" ;;
      *) [ -z "$name" ] || die "drill: one drill at a time"; name=$1; shift ;;
    esac
  done
  [ -n "$name" ] || { drill_help; exit 2; }
  [[ " ${DRILLS[*]} " == *" $name "* ]] || { drill_help >&2; die "unknown drill '$name'"; }
  require_root
  check_tools
  if [ -n "$profile" ]; then
    cmd_up --profile "$profile"
  elif ! lab_is_up; then
    cmd_up
  fi
  # the running lab's timings
  # shellcheck disable=SC1091
  source "$STATE/profile.env"

  # Every drill starts from the normal state (BGP up, both directions on the line, tunnel up,
  # health check up): a session that flapped just before (BFD on a loaded machine) is waited
  # for instead of being recorded as the drill's doing.
  if ! wait_for "$DRILL_TIMEOUT_S" "the lab's normal state" converged; then
    warn "drill $name starts while the lab is not in its normal state (forward $(fwd_path), reverse $(rev_path))"
  fi
  DRILL_DIR="$RESULTS/$(date -u +%Y%m%dT%H%M%SZ)-$name-$PROFILE-${PREFIX%-}"
  mkdir -p "$DRILL_DIR"
  echo "$DRILL_DIR" >"$STATE/last-drill"
  : >"$DRILL_DIR/actions.log"
  DRILL_DONE=0
  trap drill_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  say "drill $name (profile $PROFILE): recording into $DRILL_DIR"
  start_recorders
  start_streams
  say "streams: ping every $STREAM_INTERVAL_MS ms, $DC_HOST -> $ECS ($STREAM_SIZE-byte payload)" \
    "and $ECS -> $DC_HOST ($STREAM_REV_SIZE bytes)"
  sleep "$DRILL_SETTLE_S"
  # A flap while settling (recorded: the captures run) is waited out before acting.
  if ! converged; then
    warn "drill $name: the lab left its normal state before the action (forward $(fwd_path), reverse $(rev_path)); waiting for it"
    if wait_for "$DRILL_TIMEOUT_S" "the lab's normal state" converged; then
      sleep "$DRILL_SETTLE_S"
    else
      warn "drill $name acts while forward is on $(fwd_path), reverse on $(rev_path)"
    fi
  fi
  "drill_${name//-/_}"
  stop_streams
  sleep 0.3 # the last packets
  stop_recs
  DRILL_DONE=1
  trap - EXIT INT TERM
  cp "$STATE/cen/hc.log" "$DRILL_DIR/hc.log" 2>/dev/null || true
  for arg in gw vbr cen; do cp "$STATE/$arg/bird.log" "$DRILL_DIR/bird-$arg.log" 2>/dev/null || true; done
  for arg in gw vpn; do cp "$STATE/$arg/run/charon.log" "$DRILL_DIR/charon-$arg.log" 2>/dev/null || true; done
  {
    echo "DRILL=$name"
    echo "PREFIX=$PREFIX"
    echo "DC_HOST=$DC_HOST"
    echo "ECS=$ECS"
    echo "GW_PUB=$GW_PUB"
    echo "VPN_PUB=$VPN_PUB"
    echo "STREAM_ESP_LEN=$(esp_len_for_inner $((STREAM_SIZE + 28)))"
    echo "STREAM_REV_ESP_LEN=$(esp_len_for_inner $((STREAM_REV_SIZE + 28)))"
    echo "EC_VBR=$EC_VBR"
    echo "VBR_CEN=$VBR_CEN"
    echo "VPN_VPC2=$VPN_VPC2"
    echo "DC_NET=$DC_NET"
    echo "VPC1_NET=$VPC1_NET"
    echo "T_STREAM_START=$T_STREAM_START"
    echo "T_STREAM_END=$T_STREAM_END"
    echo "PROBE_STAMP_PORT=$PROBE_STAMP_PORT"
    cat "$STATE/profile.env"
  } >"$DRILL_DIR/meta.env"
  say "drill $name done; computing the ground truth from the captures"
  echo
  python3 "$LAB_DIR/groundtruth" "$DRILL_DIR" --json "$DRILL_DIR/result.json" |
    tee "$DRILL_DIR/timeline.txt"
  # an agent's probes, if one ran: per-probe ground truth and the events it implies
  if [ "$(stat -c %s "$DRILL_DIR/cap-probes-dc.pcap" 2>/dev/null || echo 0)" -gt 24 ]; then
    echo
    python3 "$LAB_DIR/probetruth" "$DRILL_DIR" --json "$DRILL_DIR/probes.json" \
      --stamp-port "$PROBE_STAMP_PORT" | tee "$DRILL_DIR/probes.txt" || warn "probetruth failed"
  fi
  echo
  echo "results: $DRILL_DIR (timeline.txt, result.json, probes.json if an agent ran, captures)"
  [ "$(fwd_path)/$(rev_path)" = ec/ec ] || warn "the lab did not return to Express Connect (forward $(fwd_path), reverse $(rev_path))"
}
