#pragma once

#include <cstdint>
#include <optional>

namespace pathsentry::probe {

/// Extends a sequence number that was truncated to its low `bits` bits on the wire (ICMP header:
/// 16, STAMP: 32) back to the session's 64-bit sequence. A reply can only answer a probe that
/// was already sent, so the result is the largest value <= `newest` (the newest sequence sent)
/// whose low `bits` bits equal `low`. nullopt when no such value exists (`newest` is smaller
/// than every candidate). `bits` is 1..63. Pure; never throws.
[[nodiscard]] constexpr std::optional<std::uint64_t> unwrap_seq(std::uint64_t low, unsigned bits,
                                                                std::uint64_t newest) {
  const std::uint64_t mask = (std::uint64_t{1} << bits) - 1;
  const std::uint64_t back = (newest - low) & mask;  // distance from newest back to a match
  if (back > newest) return std::nullopt;
  return newest - back;
}

/// Extends a truncated counter to the 64-bit value nearest to `reference`, ahead or behind
/// (for counters that may run ahead of what we know, such as a reflector's own sequence).
/// Ties go forward. Values that would be negative are taken forward. Pure; never throws.
[[nodiscard]] constexpr std::uint64_t unwrap_nearest(std::uint64_t low, unsigned bits,
                                                     std::uint64_t reference) {
  const std::uint64_t span = std::uint64_t{1} << bits;
  const std::uint64_t mask = span - 1;
  const std::uint64_t ahead = (low - reference) & mask;
  if (ahead <= span / 2 || reference < span - ahead) return reference + ahead;
  return reference - (span - ahead);
}

/// A stateful STAMP reflector (RFC 8762) numbers the requests it receives. Between two of its
/// replies numbered `prev` and `cur` (`cur` the later), the requests that reached it in between
/// and whose replies are not these two: the jump minus one, modulo 2^32 (the counter's width).
/// The one home of this rule: the sender counts reverse gaps with it, the attributor splits a
/// loss gap's probes into those that arrived and those that did not. Pure; never throws.
[[nodiscard]] constexpr std::uint64_t reflector_arrivals_between(std::uint32_t prev,
                                                                 std::uint32_t cur) {
  return static_cast<std::uint32_t>(cur - prev - 1);
}

}  // namespace pathsentry::probe
