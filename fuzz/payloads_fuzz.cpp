// The payloads that identify a probe: the ICMP echo payload (probe/wire icmp_payload.h), which
// taps and replies carry, and the TTL probe's UDP payload (probe/ttl), which ICMP errors quote.
// Whatever decodes encodes back to the same bytes' meaning.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pathsentry/probe/ttl/ttl_probe.h"
#include "pathsentry/probe/wire/icmp_payload.h"

using namespace pathsentry::probe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  if (const auto p = icmp::decode(in)) {
    std::array<std::uint8_t, icmp::kPayloadSize> buf{};
    if (icmp::encode(*p, buf) != icmp::kPayloadSize) __builtin_trap();
    const auto again = icmp::decode(buf);
    if (!again || !(*again == *p)) __builtin_trap();
  }
  if (const auto t = decode_ttl_payload(in)) {
    if (size < kTtlPayloadSize) __builtin_trap();
    std::array<std::uint8_t, kTtlPayloadSize> buf{};
    encode_ttl_payload(*t, buf);
    const auto again = decode_ttl_payload(buf);
    if (!again || !(*again == *t)) __builtin_trap();
  }
  return 0;
}
