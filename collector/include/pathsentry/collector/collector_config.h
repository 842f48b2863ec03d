#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pathsentry/collector/auth_throttle.h"
#include "pathsentry/collector/server.h"
#include "pathsentry/db/store.h"

namespace pathsentry::collector {

/// Everything pathsentry-collector is configured with (TOML file, then flags); the keys are in
/// docs/collector.md "Configuration"; defaults are the values below and ServerConfig's.
struct CollectorConfig {
  ServerConfig server;
  std::vector<std::string> tokens;  ///< [ingest] token, tokens and the token_file's lines
  std::string token_file;           ///< [ingest] token_file ("" = none)
  /// [ingest] auth_fail_limit (0 = no limit), auth_fail_window_s
  AuthThrottle::Options auth_throttle;
  db::StoreConfig store{.path = "/var/lib/pathsentry/collector.db"};
  std::int64_t retention_interval_ns = 60'000'000'000;  ///< how often retention runs
  std::string log_level = "info";
  /// Not errors, said at start and by --check-config (a world-readable token file, a short
  /// token).
  std::vector<std::string> warnings;
};

/// The command line of pathsentry-collector, parsed.
struct CollectorCommandLine {
  std::optional<std::string> config_path;  ///< --config FILE
  bool check_config = false;               ///< --check-config
  bool help = false;                       ///< --help
  bool version = false;                    ///< --version
  /// The flags that override the file, as (flag, value) pairs in command-line order.
  std::vector<std::pair<std::string, std::string>> overrides;
};

/// Parses argv[1..]. Throws ConfigError naming the flag on an unknown flag or a missing value.
[[nodiscard]] CollectorCommandLine parse_collector_args(std::span<const std::string_view> args);

/// Parses a config file's text (`file` names it in errors) over the defaults, without reading
/// the token file or validating. Throws ConfigError naming file, key and value.
[[nodiscard]] CollectorConfig parse_collector_config(std::string_view toml_text,
                                                     const std::string& file);

/// Loads the config file if any, applies the flags, reads the token file, validates (at least
/// one token; the database's directory exists). Throws ConfigError naming file, key and value.
[[nodiscard]] CollectorConfig resolve_collector_config(const CollectorCommandLine& cli);

/// The tokens of a token file: one per line, blank lines and '#' comments skipped. Appends a
/// warning when the file is readable by every user. Throws ConfigError when it cannot be read
/// or holds no token.
[[nodiscard]] std::vector<std::string> read_token_file(const std::string& path,
                                                       std::vector<std::string>& warnings);

/// The usage text printed by --help.
[[nodiscard]] std::string collector_usage();
/// A one-line summary (no secrets) for logs and --check-config.
[[nodiscard]] std::string describe(const CollectorConfig& config);

/// pathsentry-collector's main: flags and config, logging, the store, the server, signals.
/// Exit status: 0 stopped by a signal; 2 a configuration error (or a database that a restart
/// cannot fix: newer schema, corrupt); 1 any other failure.
int collector_main(int argc, char** argv);

}  // namespace pathsentry::collector
