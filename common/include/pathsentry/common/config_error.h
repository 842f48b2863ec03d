#pragma once

#include <stdexcept>
#include <string>

namespace pathsentry {

/// A configuration or startup error. Its message names the file, the key and the bad value, so
/// `main` can print it as is and exit non-zero.
class ConfigError : public std::runtime_error {
 public:
  /// `file` may be empty for command-line flags ("--flag" then goes in `key`).
  ConfigError(const std::string& file, const std::string& key, const std::string& value,
              const std::string& why);
  explicit ConfigError(const std::string& message) : std::runtime_error(message) {}
};

/// Exit statuses shared by the three programs (docs/probe.md "Exit status"): a configuration
/// error is final (the units say RestartPreventExitStatus=2), a runtime environment failure is
/// worth retrying (systemd's Restart=on-failure does, after RestartSec).
inline constexpr int kExitFailure = 1;      ///< a failure while running
inline constexpr int kExitConfig = 2;       ///< bad configuration: retrying cannot help
inline constexpr int kExitEnvironment = 3;  ///< the environment is not ready: retry later

/// A startup failure of the environment rather than of the configuration: a socket that will
/// not open, an address not (yet) on the host (EADDRNOTAVAIL), an interface not up yet at boot.
/// Same message shape as ConfigError (it is one, so existing handlers still catch it); `main`
/// catches it first and exits with kExitEnvironment.
class EnvironmentError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

}  // namespace pathsentry
