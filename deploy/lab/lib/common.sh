# shellcheck shell=bash
# Helpers shared by the lab's commands: naming, process records, polling.

T_START_US=${EPOCHREALTIME/./}

now_us() { echo "${EPOCHREALTIME/./}"; }
# Seconds since the command started, 3 decimals.
elapsed() {
  local d=$(($(now_us) - T_START_US))
  printf '%d.%03d' $((d / 1000000)) $((d / 1000 % 1000))
}
say() { printf '[%7ss] %s\n' "$(elapsed)" "$*"; }
warn() { printf 'lab: warning: %s\n' "$*" >&2; }
die() {
  printf 'lab: error: %s\n' "$*" >&2
  exit 1
}

ns() { echo "${PREFIX}$1"; }
nx() {
  local node=$1
  shift
  ip netns exec "${PREFIX}${node}" "$@"
}
ns_exists() { [ -e "/run/netns/${PREFIX}$1" ]; }

require_root() { [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces); run with sudo"; }

# Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), so a recorded
# PID is never confused with a later process that reuses the number.
proc_starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  # after "comm) " the fields start at 3 (state); starttime is field 22
  set -- $stat
  echo "${20}"
}

# record_pid NAME PID NODE
record_pid() {
  local st
  st=$(proc_starttime "$2") || st=0
  echo "$1 $2 $st $3" >>"$STATE/pids"
}

# pid_is_ours PID STARTTIME: the process still runs (not a zombie waiting to be reaped by its
# new parent) and is the one we started.
pid_is_ours() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  set -- "$2" $stat
  [ "$2" != Z ] && [ "$2" != X ] && [ "${21}" = "$1" ]
}

# start_daemon NAME NODE CMD...: runs CMD in NODE's namespace (NODE `host`: the machine's own) in
# the background, its output in logs/NAME.out; `ip netns exec` execs CMD, so $! is the daemon's
# own PID.
start_daemon() {
  local name=$1 node=$2
  shift 2
  # (fd 9, the lab's lock, is not inherited: a daemon must not hold it)
  if [ "$node" = host ]; then
    "$@" >"$STATE/logs/$name.out" 2>&1 </dev/null 9>&- &
  else
    ip netns exec "${PREFIX}${node}" "$@" >"$STATE/logs/$name.out" 2>&1 </dev/null 9>&- &
  fi
  record_pid "$name" $! "$node"
  # shellcheck disable=SC2034 # read by callers
  LAST_PID=$!
}

# pid_of NAME: the recorded PID of a daemon, if it still runs.
pid_of() {
  local name pid st node
  [ -f "$STATE/pids" ] || return 1
  while read -r name pid st node; do
    if [ "$name" = "$1" ] && pid_is_ours "$pid" "$st"; then
      echo "$pid"
      return 0
    fi
  done <"$STATE/pids"
  return 1
}

# stop_pid NAME PID STARTTIME: TERM, then KILL after 3 s; only if it is still our process.
stop_pid() {
  local name=$1 pid=$2 st=$3
  pid_is_ours "$pid" "$st" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 60); do
    pid_is_ours "$pid" "$st" || return 0
    sleep 0.05
  done
  warn "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# wait_for TIMEOUT_S DESCRIPTION CMD...: polls CMD every 50 ms until it succeeds.
wait_for() {
  local timeout_us=$(($1 * 1000000)) what=$2 t0
  shift 2
  t0=$(now_us)
  until "$@" >/dev/null 2>&1; do
    if [ $(($(now_us) - t0)) -gt "$timeout_us" ]; then
      echo "lab: timed out after $((timeout_us / 1000000)) s waiting for $what" >&2
      return 1
    fi
    sleep 0.05
  done
}

birdc_n() { # NODE CMD...: birdc on a node's BIRD
  local node=$1
  shift
  birdc -s "$STATE/$node/bird.ctl" "$@"
}
swanctl_n() { # NODE COMMAND [ARGS...]: swanctl on a node's charon
  local node=$1 cmd=$2
  shift 2
  STRONGSWAN_CONF="$STATE/$node/run/strongswan.conf" \
    swanctl "$cmd" --uri "unix://$STATE/$node/run/charon.vici" "$@"
}

# Which path the gateway's routing sends DC->ECS traffic on: ec | ipsec | none.
fwd_path() {
  local r
  r=$(ip -n "${PREFIX}gw" route get "$ECS" 2>/dev/null) || {
    echo none
    return
  }
  case "$r" in
    *" dev ec "*) echo ec ;;
    *" dev ipsec0 "*) echo ipsec ;;
    *) echo none ;;
  esac
}
# Which path the cloud router sends ECS->DC traffic on: ec (via the VBR) | ipsec (via VPC2) | none.
rev_path() {
  local r
  r=$(ip -n "${PREFIX}cen" route get "$DC_HOST" 2>/dev/null) || {
    echo none
    return
  }
  case "$r" in
    *" via $VBR_CEN "*) echo ec ;;
    *" via $VPN_VPC2 "*) echo ipsec ;;
    *) echo none ;;
  esac
}
paths_are() { [ "$(fwd_path)" = "$1" ] && [ "$(rev_path)" = "$2" ]; }

# (outputs are captured before matching: with pipefail, `cmd | grep -q` fails when grep's early
# exit kills cmd with SIGPIPE)
bgp_established() { # NODE PROTO
  local out
  out=$(birdc_n "$1" show protocols "$2" 2>/dev/null) || return 1
  [[ $out == *Established* ]]
}
tunnel_installed() {
  local out
  out=$(swanctl_n gw --list-sas 2>/dev/null) || return 1
  [[ $out == *INSTALLED* ]]
}
