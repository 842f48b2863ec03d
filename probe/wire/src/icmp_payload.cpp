#include "pathsentry/probe/wire/icmp_payload.h"

#include <cstring>

namespace pathsentry::probe::icmp {
namespace {
void put(std::uint8_t* p, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * (n - 1 - i)));
}
std::uint64_t get(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}
constexpr std::uint8_t kVersion = 1;
}  // namespace

std::size_t encode(const Payload& p, std::span<std::uint8_t> out) {
  if (out.size() < kPayloadSize) return 0;
  std::uint8_t* b = out.data();
  std::memset(b, 0, kPayloadSize);
  put(b, kMagic, 4);
  b[4] = kVersion;
  put(b + 8, p.agent_id, 4);
  put(b + 12, p.session_id, 4);
  put(b + 16, p.seq, 8);
  put(b + 24, static_cast<std::uint64_t>(p.tx_ns), 8);
  return kPayloadSize;
}

std::optional<Payload> decode(std::span<const std::uint8_t> in) {
  if (in.size() < kPayloadSize) return std::nullopt;
  const std::uint8_t* b = in.data();
  if (get(b, 4) != kMagic || b[4] != kVersion) return std::nullopt;
  Payload p;
  p.agent_id = static_cast<std::uint32_t>(get(b + 8, 4));
  p.session_id = static_cast<std::uint32_t>(get(b + 12, 4));
  p.seq = get(b + 16, 8);
  p.tx_ns = static_cast<std::int64_t>(get(b + 24, 8));
  return p;
}

}  // namespace pathsentry::probe::icmp
