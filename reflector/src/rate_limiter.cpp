#include "pathsentry/reflector/rate_limiter.h"

namespace pathsentry::probe {
namespace {

constexpr std::int64_t kNano = 1'000'000'000;

constexpr std::uint64_t mix(std::uint64_t x) {  // splitmix64 finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

std::uint64_t keyed_hash(const void* data, std::size_t size, std::uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = mix(seed ^ (0x9e3779b97f4a7c15ULL * (size + 1)));
  while (size >= 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, p, 8);
    h = mix(h ^ w) + seed;
    p += 8;
    size -= 8;
  }
  if (size > 0) {
    std::uint64_t w = 0;
    std::memcpy(&w, p, size);
    h = mix(h ^ w ^ (static_cast<std::uint64_t>(size) << 56)) + seed;
  }
  return mix(h);
}

bool TokenBucket::try_take(const RateLimit& limit, std::int64_t now_ns) {
  const auto cap = static_cast<std::int64_t>(limit.burst) * kNano;
  if (nano_tokens_ < 0) {
    nano_tokens_ = cap;
  } else {
    const std::int64_t elapsed = now_ns > last_ns_ ? now_ns - last_ns_ : 0;
    // Below refill_ns the product stays under cap + pps: no overflow for valid limits.
    if (elapsed >= SourceRateLimiter::refill_ns(limit)) {
      nano_tokens_ = cap;
    } else {
      nano_tokens_ += elapsed * static_cast<std::int64_t>(limit.pps);
      if (nano_tokens_ > cap) nano_tokens_ = cap;
    }
  }
  if (now_ns > last_ns_) last_ns_ = now_ns;
  if (nano_tokens_ < kNano) return false;
  nano_tokens_ -= kNano;
  return true;
}

SourceRateLimiter::SourceRateLimiter(RateLimit limit, std::size_t max_sources, std::uint64_t seed)
    : limit_(limit), table_(max_sources, refill_ns(limit), seed) {}

std::int64_t SourceRateLimiter::refill_ns(const RateLimit& limit) {
  const auto cap = static_cast<std::int64_t>(limit.burst) * kNano;
  const auto pps = static_cast<std::int64_t>(limit.pps);
  return (cap + pps - 1) / pps;
}

bool SourceRateLimiter::allow(const IpAddress& source, std::int64_t now_ns) {
  return table_.find_or_insert(source, now_ns).value->try_take(limit_, now_ns);
}

}  // namespace pathsentry::probe
