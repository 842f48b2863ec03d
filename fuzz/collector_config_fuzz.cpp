// The collector's config file (collector/src/collector_config.cpp parse_collector_config): TOML
// text. A bad file is a ConfigError naming it; any other exception or a crash is a bug.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pathsentry/collector/collector_config.h"
#include "pathsentry/common/config_error.h"

using namespace pathsentry;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)collector::parse_collector_config(text, "fuzz.toml");
  } catch (const ConfigError&) {
  }
  return 0;
}
