#pragma once

// ESP lanes: per ESP tap and direction, the ESP packets seen, per-SA sequence gaps, the lengths
// and transforms learned, the silent-tap warning. docs/attribution.md §2–3 has the rules.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "esp_learner.h"
#include "pathsentry/common/ring.h"
#include "pathsentry/probe/attribution/attributor.h"
#include "pathsentry/probe/capture/tap.h"
#include "setup.h"

namespace pathsentry::probe::attr {

inline constexpr std::size_t kMaxEspTaps = 4;
/// Learning's thinning (EspLanes::learn_window): the ESP packets a learned window should cost on
/// average, and the largest stride (one window in kMaxLearnStride learned).
inline constexpr std::uint32_t kLearnTargetPackets = 4;
inline constexpr std::uint32_t kMaxLearnStride = 64;

/// Whether the window anchored at `anchor_ns` is one of those learned at `stride` (1: all): a
/// hash of the anchor, so the choice is as good as random whatever the probes' size cycle and
/// spacing (a stride in probe order could meet the same size every time), and the same for the
/// same input.
[[nodiscard]] inline bool learn_pick(std::int64_t anchor_ns, std::uint32_t stride) {
  if (stride <= 1) return true;
  auto z = static_cast<std::uint64_t>(anchor_ns) + 0x9E3779B97F4A7C15ull;  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z % stride == 0;
}

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
  // Where the last learning and claim windows started (absolute indices): windows are taken in
  // anchor order, so the next one starts at or a little after (lower_bound_from).
  std::uint64_t learn_hint = 0;
  std::uint64_t claim_hint = 0;
  // The transform learned from the lengths seen (docs/attribution.md §2).
  EspLearner learner;
  std::int64_t first_esp_ns = 0;  // capture time of the first ESP packet (0: none yet)
  bool mismatch_counted = false;  // the learned transform disagreed with the configured one
  // Thinning (learn_window): once a transform is locked, a window holding ESP is learned with
  // probability 1/learn_stride (else only counted), the stride set from the last learned
  // window's ESP packets so that a window costs about kLearnTargetPackets packets on average.
  std::uint32_t learn_stride = 1;
  // Order (see order_rescue): the packet of the last probe attributed here, and the expected
  // lengths of the probes decided since without one.
  bool has_last = false;
  EspObs last{};
  std::array<std::uint32_t, 1024> pending{};
  std::size_t npending = 0;
  bool pending_overflow = false;
  // Forward: the probes attributed here, in decision (= anchor) order, with their packet's
  // capture time: how far the tunnel has caught up (LossInference::late_span).
  struct Progress {
    std::int64_t anchor_ns = 0;
    std::int64_t ts_ns = 0;
  };
  Ring<Progress> progress;
};

/// Per ESP tap and direction, what happened since the last silent-tap check (the warning's
/// evidence).
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

/// The distinct ESP lengths of one window, in the order first seen (at most kCap), through a
/// small open-addressing set that is never cleared: a slot belongs to the current window when
/// its stamp is the window's (a dense window holds dozens of packets; clearing the set per
/// window was a third of the learning's time).
class DistinctLens {
 public:
  static constexpr std::size_t kCap = 64;
  /// Starts a window (`gen`: the first window's stamp, for the wrap-around test).
  explicit DistinctLens(std::uint32_t gen = 0) : gen_(gen) {}
  void start() {
    n_ = 0;
    if (++gen_ == 0) {  // wrapped: no slot may carry a stale stamp equal to the new one
      stamp_.fill(0);
      gen_ = 1;
    }
  }
  [[nodiscard]] bool full() const { return n_ == kCap; }
  void add(std::uint32_t len) {
    std::size_t h = (len * 2654435761u) >> 25;  // 7 bits: 128 slots
    while (stamp_[h] == gen_ && key_[h] != len) h = (h + 1) & (kSlots - 1);
    if (stamp_[h] == gen_) return;
    stamp_[h] = gen_;
    key_[h] = len;
    lens_[n_++] = len;
  }
  [[nodiscard]] const std::uint32_t* data() const { return lens_.data(); }
  [[nodiscard]] std::size_t size() const { return n_; }

 private:
  static constexpr std::size_t kSlots = 2 * kCap;
  std::array<std::uint32_t, kSlots> stamp_{};
  std::array<std::uint32_t, kSlots> key_{};
  std::array<std::uint32_t, kCap> lens_{};
  std::size_t n_ = 0;
  std::uint32_t gen_ = 0;
};

/// The ESP lanes: one per ESP tap (Setup::lane_tap), each with a forward and a reverse EspLane.
/// Reads the setup; writes its lanes, the taps' ESP counters and learned transforms in `stats`,
/// and the learners' and silent-tap notes in `notes`. Not thread-safe.
class EspLanes {
 public:
  EspLanes(const Setup& setup, AttributorStats& stats, std::vector<std::string>& notes);

  [[nodiscard]] std::size_t size() const { return lanes_.size(); }
  [[nodiscard]] bool empty() const { return lanes_.empty(); }
  EspLane& lane(std::size_t lane, Direction d) { return lanes_[lane][static_cast<std::size_t>(d)]; }
  [[nodiscard]] const EspLane& lane(std::size_t lane, Direction d) const {
    return lanes_[lane][static_cast<std::size_t>(d)];
  }
  /// What happened on a lane in one direction since its last silent-tap check (claim/decide
  /// counts outcomes).
  SilentPeriod& silent(std::size_t lane, Direction d) {
    return silent_[lane][static_cast<std::size_t>(d)];
  }

  /// The ESP length a probe of IP size `wire` has on this lane: configured, learned by the
  /// learner, or learned from lone probes; none while unknown.
  [[nodiscard]] std::optional<std::uint32_t> expected_len(std::size_t lane, Direction d,
                                                          std::uint32_t wire) const;
  /// A lone probe's window held one ESP packet of `len` bytes (the fallback learning).
  void learn(std::size_t lane, Direction d, std::uint32_t wire, std::uint32_t len);
  /// Gives the learner of one direction a probe window (anchored at `anchor_ns`, a probe of IP
  /// size `wire`): the distinct ESP lengths it holds.
  void learn_window(Direction d, std::int64_t anchor_ns, std::uint32_t wire);
  /// Runs the learners that have new evidence; notes what they locked in.
  void evaluate_learners();
  /// How much later windows are claimed now: learn_hold_ns while a tap without a transform has
  /// seen ESP but not learned it yet (for at most learn_hold_ns after its first ESP packet).
  [[nodiscard]] std::int64_t learn_hold(std::int64_t now) const;
  /// Warns about an ESP tap that saw ESP but attributed nothing while probes went unexplained,
  /// in both directions or in one (the other attributing), with the likely cause, every
  /// silent_warn_ns it lasts.
  void check_silent(std::int64_t now);
  /// An ESP packet on ESP tap `tap` (`last_now`: the attributor's latest poll, for `late`).
  void add_esp(std::size_t tap, const Observation& o, std::int64_t last_now);
  /// Drops the packets no window can claim any more (older than `before_ns`).
  void evict_older(std::int64_t before_ns);
  /// The first packet at or after `ts` (absolute index).
  static std::uint64_t lower_bound(const Ring<EspObs>& r, std::int64_t ts) {
    return partition_point(r, [ts](const EspObs& o) { return o.ts_ns < ts; });
  }
  /// lower_bound(r, ts), starting from `hint` (a previous result for an earlier `ts`): a few
  /// steps forward from it when it is still at or before the answer, else the binary search.
  /// The ring is in time order (add_esp), so the result is lower_bound's whatever the hint.
  static std::uint64_t lower_bound_from(const Ring<EspObs>& r, std::int64_t ts,
                                        std::uint64_t hint) {
    std::uint64_t i = std::max(hint, r.begin_abs());
    if (i > r.end_abs() || (i > r.begin_abs() && r.at(i - 1).ts_ns >= ts)) {
      return lower_bound(r, ts);
    }
    for (int step = 0; step < 16; ++step, ++i) {
      if (i == r.end_abs() || r.at(i).ts_ns >= ts) return i;
    }
    return lower_bound(r, ts);
  }
  /// The first entry (absolute index) for which `before` is false, in a ring ordered so that
  /// `before` holds for a prefix of it.
  template <class T, class Before>
  static std::uint64_t partition_point(const Ring<T>& r, Before before) {
    std::uint64_t lo = r.begin_abs();
    std::uint64_t hi = r.end_abs();
    while (lo < hi) {
      const std::uint64_t mid = lo + (hi - lo) / 2;
      if (before(r.at(mid))) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

 private:
  void evict_front(std::size_t tap, EspLane& ln, bool overflow);

  const Setup& setup_;
  AttributorStats& stats_;
  std::vector<std::string>& notes_;
  std::vector<std::array<EspLane, 2>> lanes_;        // [lane][direction]
  std::vector<std::array<SilentPeriod, 2>> silent_;  // [lane][direction]
  DistinctLens window_lens_;                         // learn_window's scratch
};

}  // namespace pathsentry::probe::attr
