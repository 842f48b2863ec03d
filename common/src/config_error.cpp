#include "pathsentry/common/config_error.h"

namespace pathsentry {
namespace {
std::string compose(const std::string& file, const std::string& key, const std::string& value,
                    const std::string& why) {
  std::string m = file.empty() ? std::string("command line") : file;
  m += ": " + key;
  if (!value.empty()) m += " = '" + value + "'";
  m += ": " + why;
  return m;
}
}  // namespace

ConfigError::ConfigError(const std::string& file, const std::string& key, const std::string& value,
                         const std::string& why)
    : std::runtime_error(compose(file, key, value, why)) {}

}  // namespace pathsentry
