// One JSON line (common/record_json parse_json_line): what the collector reads from agents and
// tools read from --records. A line that parses, written back with append_json, parses to the
// same line again.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "pathsentry/common/record_json.h"

using namespace pathsentry;

namespace {

std::string written(const probe::JsonLine& l) {
  std::string s;
  std::visit([&](const auto& x) { probe::append_json(x, s); }, l);
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const auto parsed = probe::parse_json_line(line);
  if (!parsed) return 0;
  const std::string once = written(*parsed);
  const auto again = probe::parse_json_line(once);
  if (!again) __builtin_trap();  // what we write, we read
  if (written(*again) != once) __builtin_trap();
  return 0;
}
