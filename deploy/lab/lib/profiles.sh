# shellcheck shell=bash
# shellcheck disable=SC2034 # variables used by the scripts that source this file
# Timing profiles. "realistic" reproduces the guide's defaults where it gives them (CEN health
# check: a probe every 2 s, 8 lost in a row moves the return route); "fast" detects in well
# under a second so tests stay short. Every value can be overridden by the env var of its name.

load_profile() {
  case "$1" in
    fast)
      : "${BGP_BFD:=on}"             # BFD on the Express Connect BGP session
      : "${BFD_INTERVAL_MS:=100}"    # BFD tx/rx interval
      : "${BFD_MULT:=3}"             # BFD detect multiplier
      : "${BGP_HOLD:=3}"             # BGP hold time, s
      : "${BGP_KEEPALIVE:=1}"        # BGP keepalive, s
      : "${BGP_CONNECT_RETRY:=1}"    # BIRD connect retry time, s
      : "${BGP_ERROR_WAIT:=1, 4}"    # BIRD error wait time min, max, s
      : "${HC_INTERVAL_MS:=200}"     # CEN health check probe interval
      : "${HC_FALL:=3}"              # lost in a row -> return route moves to the VPN
      : "${HC_RISE:=3}"              # answered in a row -> return route back to the VBR
      : "${DPD_DELAY:=2}"            # IKE dead peer detection, s
      : "${STREAM_INTERVAL_MS:=5}"   # drills' ground-truth ping stream period
      : "${DRILL_HOLD_S:=1}"         # time kept in the failed state after convergence
      : "${DRILL_SETTLE_S:=1}"       # time recorded after recovery
      : "${DRILL_TIMEOUT_S:=20}"     # longest wait for convergence
      : "${FLAP_CYCLES:=3}"
      : "${FLAP_DOWN_S:=1}"
      : "${FLAP_UP_S:=3}"
      ;;
    realistic)
      : "${BGP_BFD:=off}"
      : "${BFD_INTERVAL_MS:=100}"
      : "${BFD_MULT:=3}"
      : "${BGP_HOLD:=90}"
      : "${BGP_KEEPALIVE:=30}"
      : "${BGP_CONNECT_RETRY:=5}"
      : "${BGP_ERROR_WAIT:=5, 60}"
      : "${HC_INTERVAL_MS:=2000}"
      : "${HC_FALL:=8}"
      : "${HC_RISE:=3}"
      : "${DPD_DELAY:=10}"
      : "${STREAM_INTERVAL_MS:=10}"
      : "${DRILL_HOLD_S:=3}"
      : "${DRILL_SETTLE_S:=3}"
      : "${DRILL_TIMEOUT_S:=150}"
      : "${FLAP_CYCLES:=3}"
      : "${FLAP_DOWN_S:=5}"
      : "${FLAP_UP_S:=20}"
      ;;
    *)
      echo "lab: unknown profile '$1' (fast|realistic)" >&2
      return 2
      ;;
  esac
  # The ground-truth streams' ICMP payload sizes (DC->ECS and ECS->DC): distinct, so their ESP
  # lengths differ; lab.env gives both ESP lengths so the agent's probes can avoid them.
  : "${STREAM_SIZE:=1000}"
  : "${STREAM_REV_SIZE:=1100}"
  PROFILE=$1
}

# Names of the profile variables, for writing them to the state dir.
PROFILE_VARS=(PROFILE BGP_BFD BFD_INTERVAL_MS BFD_MULT BGP_HOLD BGP_KEEPALIVE BGP_CONNECT_RETRY
  BGP_ERROR_WAIT HC_INTERVAL_MS HC_FALL HC_RISE DPD_DELAY STREAM_INTERVAL_MS STREAM_SIZE
  STREAM_REV_SIZE   DRILL_HOLD_S DRILL_SETTLE_S DRILL_TIMEOUT_S FLAP_CYCLES FLAP_DOWN_S FLAP_UP_S)
