#pragma once

// The attributor's setup: what construction derives from its configuration (path ids, the ESP
// lanes' taps, the claim and decide delays). Read-only afterwards; every part reads it.
// docs/attribution.md §2–3 has the rules.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pathsentry/probe/attribution/attributor.h"

namespace pathsentry::probe::attr {

inline constexpr std::size_t kMaxPaths = 30;  // path ids index a 32-bit mask
inline constexpr std::int64_t kRetentionMarginNs = 10'000'000;
inline constexpr std::int64_t kRttWindowNs = 1'000'000'000;  // recent-RTT window for early losses

struct Setup {
  /// Checks the taps and times (ConfigError naming `taps[i]...`) and derives the rest.
  explicit Setup(AttributorConfig c);

  AttributorConfig cfg;
  std::vector<std::string> labels;    // path ids → label, then unknown, none
  std::vector<std::int8_t> tap_path;  // tap → path id
  std::vector<int> tap_lane;          // tap → ESP lane index, -1 for clear taps
  std::vector<std::size_t> lane_tap;  // ESP lane → tap
  std::int8_t unknown_id = 0;
  std::int8_t none_id = 0;
  std::int64_t fwd_claim_delay = 0;
  std::int64_t fwd_decide_delay = 0;
  std::int64_t rev_claim_delay = 0;
  std::int64_t rev_decide_delay = 0;
  std::int64_t retention = 0;  // how long an ESP packet stays claimable
  // A probe seen nowhere is "none" this long after it left at the earliest (later while an ESP
  // tap carrying probes has not caught up with it: LossInference::unseen_due).
  std::int64_t fwd_none_delay = 0;
  // PATHSENTRY_EXPLAIN_UNKNOWN=1: a note per probe-direction an ESP tap leaves unexplained,
  // saying why (issue 8 item 3: where each unknown comes from).
  bool explain = false;

  [[nodiscard]] const TapSpec& lane_spec(std::size_t lane) const {
    return cfg.taps[lane_tap[lane]];
  }
  [[nodiscard]] std::int64_t claim_delay(Direction d) const {
    return d == Direction::Forward ? fwd_claim_delay : rev_claim_delay;
  }
  [[nodiscard]] std::int64_t decide_delay(Direction d) const {
    return d == Direction::Forward ? fwd_decide_delay : rev_decide_delay;
  }
};

}  // namespace pathsentry::probe::attr
