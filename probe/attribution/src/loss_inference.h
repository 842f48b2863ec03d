#pragma once

// Loss inference: which way a lost probe was lost, from the evidence (taps, the reflector's
// counter over a loss gap, late ESP packets, taps that were down).
// Part of Attributor::Impl (attributor_impl.h); docs/attribution.md §2–3 has the rules.

#include <bit>
#include <cstdint>

#include "slot_table.h"

namespace pathsentry::probe::attr {

/// What is known of a lost probe in a reflector gap before the counter is applied.
enum class GapClass : std::uint8_t { Arrived, NotLeft, Open };

/// Exact clear evidence first, then the ESP verdict. Pure.
inline std::int8_t evidence(std::uint32_t clear, std::int8_t esp) {
  if (clear != 0) {
    if (std::popcount(clear) > 1) return kAmbiguous;
    return static_cast<std::int8_t>(std::countr_zero(clear));
  }
  return esp;
}

/// A stateful STAMP reflector's counter can tell this session's losses apart.
inline bool counts(const Session& s) {
  return s.spec.proto == Proto::Stamp && s.spec.stateful_reflector;
}
}  // namespace pathsentry::probe::attr
