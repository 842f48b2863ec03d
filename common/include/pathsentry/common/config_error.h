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

}  // namespace pathsentry
