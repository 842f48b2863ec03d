#pragma once

// ESP lanes: per ESP tap and direction, the ESP packets seen and the lengths learned.
// Part of Attributor::Impl (attributor_impl.h); docs/attribution.md §2–3 has the rules.

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "esp_learner.h"
#include "pathsentry/common/ring.h"
#include "pathsentry/probe/capture/tap.h"

namespace pathsentry::probe::attr {

inline constexpr std::size_t kMaxEspTaps = 4;

/// A probe's window on an ESP tap, in capture time: forward [tx + lo, tx + hi] after the probe
/// left, reverse [rx - hi, rx - lo] before its reply arrived (`anchor_ns`: tx or rx).
struct Window {
  std::int64_t from_ns = 0;
  std::int64_t to_ns = 0;
};
[[nodiscard]] inline Window window_of(const TapSpec& tap, Direction d, std::int64_t anchor_ns) {
  if (d == Direction::Forward) return {anchor_ns + tap.lo_ns(d), anchor_ns + tap.hi_ns(d)};
  return {anchor_ns - tap.hi_ns(d), anchor_ns - tap.lo_ns(d)};
}

struct EspObs {
  std::int64_t ts_ns = 0;
  std::uint32_t len = 0;
  std::uint16_t claims = 0;      // probes with this length whose window holds it
  std::uint16_t any_claims = 0;  // probes of any length whose window holds it (learning)
  bool attributed = false;
  std::uint32_t spi = 0;
  std::uint32_t seq = 0;  // the ESP sequence number: the order the gateway sent it in
};

/// One ESP tap in one direction: its observations and what was learned about lengths.
struct EspLane {
  Ring<EspObs> obs;
  std::int64_t evicted_through_ns = std::numeric_limits<std::int64_t>::min();
  struct Sa {
    std::uint32_t spi = 0;
    std::uint32_t last_seq = 0;
    bool used = false;
  };
  std::array<Sa, 8> sas{};
  std::size_t next_sa = 0;
  struct Learned {
    std::uint32_t wire = 0;
    std::uint32_t len = 0;
    std::uint32_t count = 0;
    bool learned = false;
  };
  std::vector<Learned> learned;
  // The transform learned from the lengths seen (docs/attribution.md §2).
  EspLearner learner;
  std::int64_t first_esp_ns = 0;  // capture time of the first ESP packet (0: none yet)
  bool mismatch_counted = false;  // the learned transform disagreed with the configured one
  std::uint64_t windows_learned = 0;
  // Order (see order_rescue): the packet of the last probe attributed here, and the expected
  // lengths of the probes decided since without one.
  bool has_last = false;
  EspObs last{};
  std::array<std::uint32_t, 64> pending{};
  std::size_t npending = 0;
  bool pending_overflow = false;
};

/// Per ESP tap, what happened since the last silent-tap check (the warning's evidence).
struct SilentPeriod {
  std::int64_t start_ns = 0;
  std::uint64_t esp = 0;        // ESP packets seen
  std::uint64_t matched = 0;    // attributed
  std::uint64_t ambiguous = 0;  // probe-directions with no clear sighting: several candidates
  std::uint64_t no_cand = 0;    // ESP in the window, none of the expected length
  std::uint64_t unlearned = 0;  // ESP in the window, no expected length known
  std::uint64_t collapsed = 0;  // ambiguous under a learned TFC padding
  bool warned = false;          // the last period warned (the next says "still")
};

}  // namespace pathsentry::probe::attr
