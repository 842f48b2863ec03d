// The collector's query parameters (collector/src/query.h): the query string of every GET, the
// times and counts in it. The input is split at the first two '\n' into the query string and
// the values handed to parse_time_ns and parse_unsigned.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "query.h"

using namespace pathsentry::collector;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view parts[3];
  for (int i = 0; i < 2; ++i) {
    const auto nl = in.find('\n');
    parts[i] = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view{} : in.substr(nl + 1);
  }
  parts[2] = in;
  if (const auto q = parse_query(parts[0], {"from", "to", "limit", "path", "target", "kind"})) {
    for (const auto& [name, value] : *q) {
      (void)parse_time_ns(value);
      (void)parse_unsigned(value, 1, 10000);
    }
  }
  (void)parse_time_ns(parts[1]);
  if (const auto n = parse_unsigned(parts[2], 5, 500)) {
    if (*n < 5 || *n > 500) __builtin_trap();
  }
  return 0;
}
