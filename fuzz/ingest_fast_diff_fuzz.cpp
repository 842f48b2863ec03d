// Differential: the collector's fast path for probe lines (parse_canonical_probe_line) against
// the general parser (parse_json_line). Where the fast path gives a record, the general parser
// must give the same one; the fast path must take every line append_json writes for a probe.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "pathsentry/collector/ingest.h"
#include "pathsentry/common/record_json.h"

using namespace pathsentry;

namespace {

std::string line_of(const ProbeRecord& r) {
  std::string s;
  probe::append_json(r, s);
  s.pop_back();  // the '\n'
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const auto fast = collector::parse_canonical_probe_line(line);
  const auto general = probe::parse_json_line(line);
  if (fast) {
    if (!general) __builtin_trap();  // the fast path took a line the general parser refuses
    const auto* r = std::get_if<ProbeRecord>(&*general);
    if (r == nullptr) __builtin_trap();
    if (line_of(*fast) != line_of(*r)) __builtin_trap();  // different records
  }
  if (general) {
    if (const auto* r = std::get_if<ProbeRecord>(&*general)) {
      // The canonical form of any probe the general parser reads goes through the fast path,
      // when its strings are printable ASCII without escapes.
      const std::string canon = line_of(*r);
      const auto f = collector::parse_canonical_probe_line(canon);
      bool plain = true;
      for (const char c : canon) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x80 || c == '\\') plain = false;
      }
      if (plain && !f) __builtin_trap();
      if (f && line_of(*f) != canon) __builtin_trap();
    }
  }
  return 0;
}
