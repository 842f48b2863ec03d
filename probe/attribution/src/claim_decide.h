#pragma once

// Claim and decide: the probe logs whose windows claim ESP packets, then decide.
// Part of Attributor::Impl (attributor_impl.h); docs/attribution.md §2–3 has the rules.

#include <array>
#include <cstdint>

#include "esp_lane.h"

namespace pathsentry::probe::attr {

/// A probe-direction's claim on one ESP lane: the packets in its window.
struct Claim {
  std::uint16_t cand = 0;
  std::uint16_t any = 0;
  std::uint64_t cand_idx = 0;
  std::uint64_t any_idx = 0;
  bool incomplete = false;
};

/// A probe waiting for its window to be claimed and decided (forward: by tx; reverse: by rx).
struct LogEntry {
  std::int64_t anchor_ns = 0;
  std::uint32_t session = 0;
  std::uint64_t seq = 0;
  std::uint32_t wire = 0;
  std::array<Claim, kMaxEspTaps> claims{};
};

/// A probe seen by no tap whose forward sample waits for fwd_unseen_wait_ns.
struct Unseen {
  std::int64_t due_ns = 0;
  std::uint32_t session = 0;
  std::uint64_t seq = 0;
};

}  // namespace pathsentry::probe::attr
