#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <string>
#include <string_view>
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
/// file; --ttl-hop flags replace the file's hops).
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

/// Reads the `[ttl]` table of a parsed config file into `out` (keys: ttl, hops = {ADDR =
/// PATH, …}, rate, port, timeout_ms). Throws ConfigError naming file, key and value.
void read_ttl_table(const toml::table& root, const std::string& file, TtlSettings& out);

/// True for the flags apply_ttl_flag() takes.
[[nodiscard]] bool is_ttl_flag(std::string_view flag);

/// A parsed TTL flag, applied after the config file has been read.
struct TtlFlag {
  std::string flag;
  std::string text;
};

/// Parses and checks one TTL flag's value (throws ConfigError naming the flag and the value).
[[nodiscard]] TtlFlag parse_ttl_flag(const std::string& flag, const std::string& text);

/// Applies a parsed flag over the file's settings (the first --ttl-hop drops the file's hops).
void apply_ttl_flag(TtlSettings& out, const TtlFlag& flag);

/// Checks the settings as a whole: hops without a TTL or a TTL without hops, duplicate hop
/// addresses, and (when taps are configured) hop paths that no tap carries, since the
/// cross-check compares labels. `tap_paths` may be empty (no taps).
void check_ttl(const TtlSettings& s, const std::vector<std::string>& tap_paths);

/// The --help lines for the TTL flags.
[[nodiscard]] std::string ttl_usage();

}  // namespace pathsentry::probe
