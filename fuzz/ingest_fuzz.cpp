// The collector's ingest body (collector/src/ingest.cpp parse_ingest_body): NDJSON from any
// client that holds a token. Never throws; the error names a line.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pathsentry/collector/ingest.h"

using namespace pathsentry;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const auto batch = collector::parse_ingest_body(body);
  if (!batch && batch.error().empty()) __builtin_trap();
  return 0;
}
