// The reflector's config file (reflector/src/reflector_config.cpp): TOML text, parsed then
// validated. A bad file is a ConfigError naming it; any other exception or a crash is a bug.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pathsentry/common/config_error.h"
#include "pathsentry/reflector/reflector_config.h"

using namespace pathsentry;
using namespace pathsentry::probe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto cfg = parse_reflector_config(text, "fuzz.toml");
    validate_reflector_config(cfg, "fuzz.toml");
  } catch (const ConfigError&) {
  }
  return 0;
}
