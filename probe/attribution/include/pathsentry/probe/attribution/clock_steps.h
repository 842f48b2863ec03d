#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "pathsentry/common/clock.h"

namespace pathsentry::probe {

/// The pipeline's step-free timeline (docs/design.md "Clocks"). Packet and send timestamps are
/// CLOCK_REALTIME (the kernel's), which steps; the attributor and the detector compare them with
/// "now" to decide expiry, so they run on an internal timeline instead: CLOCK_MONOTONIC plus
/// the realtime-monotonic offset at construction (equal to realtime until the first step).
///
/// Every reading of the clock notices a step (the offset moved by more than step_threshold_ns)
/// and starts an epoch: from that internal instant on, realtime = internal + the new shift.
/// to_internal() maps a realtime timestamp into the epoch it fits (the newest whose span,
/// widened by edge_slack_ns, holds the result, and not after now): a timestamp taken before a
/// step maps to the old epoch even when it arrives after the step (a record's send time), one
/// taken after it to the new one. to_real() maps back for the reported timestamps, so records
/// and events carry the realtime they were stamped with. Only timestamps stamped in the moment
/// between a step and its detection (a few ms) may map to the wrong epoch; steps below the
/// threshold are ignored (NTP slews both clocks alike, so the offset does not drift).
/// Thread-safe.
class ClockSteps {
 public:
  explicit ClockSteps(const Clock& clock, std::int64_t step_threshold_ns = 10'000'000,
                      std::int64_t edge_slack_ns = 50'000'000);

  /// Reads the clock (noticing a step): the internal now.
  [[nodiscard]] std::int64_t now();
  /// A realtime timestamp on the internal timeline (reads the clock first).
  [[nodiscard]] std::int64_t to_internal(std::int64_t real_ns);
  /// As to_internal(), with the internal now of a recent now() call (no clock read: a batch).
  [[nodiscard]] std::int64_t to_internal(std::int64_t real_ns, std::int64_t now_ns) const;
  /// An internal instant as the realtime it was (or is) then.
  [[nodiscard]] std::int64_t to_real(std::int64_t internal_ns) const;
  /// Steps noticed so far.
  [[nodiscard]] std::uint64_t steps() const;

 private:
  struct Epoch {
    std::int64_t start_ns;  // internal instant the step was noticed (INT64_MIN: the first)
    std::int64_t shift_ns;  // realtime - internal from then on
  };
  std::int64_t sample_locked();
  [[nodiscard]] std::int64_t map_locked(std::int64_t real_ns, std::int64_t now_ns) const;

  const Clock& clock_;
  std::int64_t threshold_ns_;
  std::int64_t slack_ns_;
  std::int64_t offset0_ns_;  // realtime - monotonic at construction
  mutable std::mutex mu_;
  std::vector<Epoch> epochs_;  // oldest first; at most kMaxEpochs
  std::uint64_t steps_ = 0;
};

}  // namespace pathsentry::probe
