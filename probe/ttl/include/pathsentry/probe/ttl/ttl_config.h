#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pathsentry/common/ip.h"

namespace pathsentry::probe {

/// One configured hop: a router whose ICMP time-exceeded source address names a path.
struct TtlHop {
  IpAddress address{};
  std::string path;  ///< a path label ("express-connect", "ipsec", …)
  std::string key;   ///< where it came from ("ttl.hops.10.1.0.1" or "--ttl-hop"), for errors
};

/// The mirror-free path method (docs/ttl.md): per target, UDP probes sent with a small IP TTL
/// that expires at the first router past the DC gateway; that router's time-exceeded source
/// address, looked up in `hops`, names the forward path. [ttl] in the TOML file; --ttl-probe,
/// --ttl-hop, --ttl-rate, --ttl-port, --ttl-timeout-ms on the command line (flags override the
/// file; --ttl-hop flags replace the file's hops). The agent's option table
/// (agent_config.cpp) reads them.
struct TtlSettings {
  std::uint8_t ttl = 0;  ///< 0 = off
  std::vector<TtlHop> hops;
  /// Probes per second per target. The default suits real routers, which police ICMP errors
  /// (Linux: icmp_ratelimit 1000 ms per destination, burst 6).
  double rate_pps = 1.0;
  std::uint16_t port = 33434;  ///< UDP destination port (traceroute's; nothing should listen)
  std::int64_t timeout_ns = 1'000'000'000;  ///< a probe unanswered this long is "none"
  std::string ttl_key = "--ttl-probe";      ///< where ttl came from, for errors
  std::string file;                         ///< the config file the [ttl] table came from
  bool hops_from_flags = false;             ///< a --ttl-hop replaced the file's hops
};

}  // namespace pathsentry::probe
