#!/usr/bin/env bash
# Installs every Debian 12 package pathsentry needs to build, test and run its lab.
# Idempotent: installs only what is missing. Never starts the packaged daemons
# (bird, charon): the lab starts its own instances inside its namespaces.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config clang-format clang-tidy git
  clang libclang-rt-14-dev  # the libFuzzer targets (fuzz/, scripts/fuzz.sh): libFuzzer, ASan, UBSan
  libpcap-dev libtins-dev libboost-dev libboost-system-dev
  prometheus-cpp-dev libsqlite3-dev sqlite3 libspdlog-dev libfmt-dev catch2
  libtomlplusplus-dev nlohmann-json3-dev libexpected-dev
  libssl-dev openssl  # TLS for the collector and the agent's https:// shipping (docs/collector.md "TLS")
  prometheus-smokeping-prober  # bench/cpu_bench.sh: CPU per probe beside smokeping_prober (issue 14)
  wrk  # honest-client load beside bench/collector_attack.py (the collector under attack)
  prometheus  # promtool: check rules, test rules, check metrics (deploy/prometheus, tests/metrics)
  iproute2 iputils-ping nftables procps psmisc tcpdump fping python3
  bird2 strongswan-charon strongswan-swanctl libcharon-extra-plugins
  libstrongswan-standard-plugins
  chromium
  systemd  # systemd-analyze verify/security on deploy/systemd (tests/integration/agent)
  util-linux  # setpriv, prlimit: the agent run as its unit would (probe_cli_test)
)
# The status page (web/) is bundled with node and npm at build time, and its browser test drives
# Debian's chromium. node and npm are asked for only when the commands are missing: a machine
# whose nodejs comes from elsewhere (npm bundled in it) must not get Debian's npm on top.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
# Keep package post-install scripts from starting bird/charon in the root namespace.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
