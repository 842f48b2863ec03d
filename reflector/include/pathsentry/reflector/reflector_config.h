#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/common/ip.h"
#include "pathsentry/reflector/rate_limiter.h"

namespace pathsentry::probe {

/// Everything pathsentry-reflector is configured with (TOML file, then command-line flags).
/// See docs/reflector.md for the keys; defaults are the values below.
struct ReflectorConfig {
  /// Source prefixes that get answers. Never empty once validated: an empty allowlist would
  /// answer nobody, so it is refused at startup.
  std::vector<IpPrefix> allow;
  /// Local addresses to listen on; empty means all (0.0.0.0 and ::, one socket each).
  std::vector<IpAddress> bind;
  /// UDP port (0 picks a free one; every socket then shares the port the first one got).
  std::uint16_t port = 862;
  /// Per-source rate limit (token bucket). The default lets one agent host probe this
  /// reflector at the agent's documented top rate (100 000 probes/s, all its sessions
  /// together: they share one source address) with a 100 ms stall's worth of burst.
  RateLimit rate_limit{kDefaultSourcePps, kDefaultSourceBurst};
  static constexpr std::uint64_t kDefaultSourcePps = 100'000;
  static constexpr std::uint64_t kDefaultSourceBurst = 10'000;
  /// Replies per second over all sources together (token bucket): what the reflector sends at
  /// most, however many sources (or spoofed ones) ask.
  RateLimit global_rate_limit{kDefaultGlobalPps, kDefaultGlobalBurst};
  static constexpr std::uint64_t kDefaultGlobalPps = 200'000;
  static constexpr std::uint64_t kDefaultGlobalBurst = 20'000;
  /// Live sessions one source address may hold; its next new session is refused (an agent
  /// has one session per target and protocol; restarts leave idle ones for session_timeout).
  std::size_t max_sessions_per_source = 1024;
  /// Allow prefixes shorter than /8 (either family), /0 included: refused unless set.
  bool allow_broad = false;
  /// Bound of the per-source rate-limit table (distinct sources remembered).
  std::size_t max_sources = 65'536;
  /// Bound of the session table ((sender address, port, SSID) -> reflector sequence).
  std::size_t max_sessions = 65'536;
  /// A session idle for this long is forgotten: its next request starts at sequence 0.
  std::int64_t session_timeout_ns = 300'000'000'000;
  /// IPv4 TOS / IPv6 Traffic Class of replies; nullopt = copy the request's DSCP (ECN bits 0).
  std::optional<std::uint8_t> reply_tos;
  /// Sets the S (synchronized) bit of the reply's error estimate.
  bool clock_synchronized = false;
  /// The error estimate advertised in replies, in ns (encoded as the nearest not-smaller
  /// Scale/Multiplier pair).
  std::int64_t clock_error_ns = 1'000'000;
  /// How often the counters are logged.
  std::int64_t stats_interval_ns = 10'000'000'000;
  /// spdlog level name (trace, debug, info, warn, error, critical, off).
  std::string log_level = "info";
  /// SCHED_FIFO priority of the thread that answers (1..99); 0 = the default policy. A
  /// reflector on a busy host (or beside a SCHED_FIFO agent on one machine) that waits for a
  /// CPU drops requests in its socket: losses the agent reports as forward loss.
  int rt_priority = 0;
  /// Prometheus /metrics endpoint ("ADDR:PORT" or "off", docs/metrics.md).
  std::string metrics_listen = "127.0.0.1:9782";
  /// Set by the file or a flag: then an address that cannot be bound is an error (exit 2);
  /// the default one in use only warns.
  bool metrics_listen_configured = false;
};

/// Parses the TOML text of a reflector config file (`file` names it in errors). Keys not
/// given keep their defaults. Throws ConfigError naming file, key and value on a syntax
/// error, an unknown key, a wrong type or an out-of-range value. Does not check that the
/// allowlist is non-empty (flags may still add to it): see validate_reflector_config().
[[nodiscard]] ReflectorConfig parse_reflector_config(std::string_view toml_text,
                                                     const std::string& file);
/// Reads and parses `path`. Throws ConfigError when it cannot be read or parsed.
[[nodiscard]] ReflectorConfig load_reflector_config(const std::string& path);

/// Allow prefixes shorter than these are refused unless allow_broad is set.
inline constexpr int kMinIpv4Prefix = 8;
inline constexpr int kMinIpv6Prefix = 8;
/// True for a prefix shorter than kMinIpv4Prefix / kMinIpv6Prefix (/0 included).
[[nodiscard]] bool broad_prefix(const IpPrefix& p);

/// Checks what only makes sense for the final configuration (non-empty allowlist, no broad
/// prefix unless allow_broad, bind and allow families that can meet). Throws ConfigError;
/// `file` is the config file or "".
void validate_reflector_config(const ReflectorConfig& config, const std::string& file);

/// The command line of pathsentry-reflector, parsed.
struct ReflectorCommandLine {
  std::optional<std::string> config_path;  ///< --config FILE
  bool check_config = false;               ///< --check-config
  bool help = false;                       ///< --help
  bool version = false;                    ///< --version
  /// The flags that override the file, as (flag, value) pairs in command-line order.
  std::vector<std::pair<std::string, std::string>> overrides;
};

/// Parses argv[1..] (`--flag VALUE` or `--flag=VALUE`). Throws ConfigError naming the flag
/// on an unknown flag or a missing value. Values are checked by resolve_reflector_config().
[[nodiscard]] ReflectorCommandLine parse_reflector_args(std::span<const std::string_view> args);

/// Loads the config file if any, applies the flag overrides (a repeated --allow or --bind
/// replaces the file's list with the flags' values), then validates. Throws ConfigError.
[[nodiscard]] ReflectorConfig resolve_reflector_config(const ReflectorCommandLine& cli);

/// The usage text printed by --help.
[[nodiscard]] std::string reflector_usage();

/// A one-line human summary of the configuration (for logs and --check-config).
[[nodiscard]] std::string describe(const ReflectorConfig& config);

}  // namespace pathsentry::probe
