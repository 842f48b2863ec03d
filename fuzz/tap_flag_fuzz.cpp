// The agent's --tap value (probe/agent tap_config.cpp parse_tap_flag, then check_taps):
// `IFACE:PATH:clear` or `IFACE:PATH:esp:LOCAL:REMOTE[:TRANSFORM[:LO:HI[:REV_LO:REV_HI]]]`.
// A bad value is a ConfigError; any other exception or a crash is a bug.

#include <cstddef>
#include <cstdint>
#include <string>

#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/agent/tap_config.h"

using namespace pathsentry;
using namespace pathsentry::probe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    TapSettings s;
    s.taps.push_back(parse_tap_flag("--tap", text));
    s.tap_keys.emplace_back("--tap");
    check_taps("", s);
  } catch (const ConfigError&) {
  }
  return 0;
}
