#pragma once
// The ESP transform learner of one ESP tap in one direction (internal to the attributor;
// docs/attribution.md §2 "Learning the transform").
//
// Evidence, per probe window: the set of ESP lengths the window holds, kept per probe size
// (how many windows of that size held a packet of each length), and how many ESP packets of
// each length were seen at all. A candidate transform (the presets routers and strongSwan
// negotiate, each with the strongSwan/kernel TFC padding it may add) fits when, for every probe
// size in use, nearly every window of that size holds a packet of the length it predicts, AND
// as many packets of each predicted length were seen as it predicts. The first alone does not
// tell a transform from one predicting the next size's length (the next probes are in the
// window too); the count does: with cycled sizes, the largest size's successor length is never
// seen, and lengths two TFC-padded sizes share are seen twice as often. The fitting candidates
// are grouped by their predictions for the sizes in use: exactly one group locks it in.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pathsentry/probe/capture/tap.h"

namespace pathsentry::probe {

/// Fixed-capacity length → count table: no allocation after construction. Keys stay in the
/// order they were first added (key_at); a small open-addressing index finds a key in O(1)
/// (add/get run once per ESP length per probe window, the attributor's hottest loop).
class CountTable {
 public:
  static constexpr std::size_t kCap = 64;
  void add(std::uint32_t key);
  [[nodiscard]] std::uint32_t get(std::uint32_t key) const;
  void halve();
  [[nodiscard]] std::size_t size() const { return n_; }
  [[nodiscard]] std::uint32_t key_at(std::size_t i) const { return keys_[i]; }

 private:
  static constexpr std::size_t kSlots = 2 * kCap;  // a power of two, at most half full
  static std::size_t home(std::uint32_t key) {
    return (key * 2654435761u) >> 25;  // Fibonacci hashing onto 7 bits (kSlots = 128)
  }
  /// The index slot holding `key`, or the empty slot where it would go.
  [[nodiscard]] std::size_t find_slot(std::uint32_t key) const;
  void rebuild_index();

  std::array<std::uint32_t, kCap> keys_{};
  std::array<std::uint32_t, kCap> vals_{};
  std::array<std::uint8_t, kSlots> index_{};  // position in keys_ + 1; 0 = empty
  std::size_t n_ = 0;
};

/// One candidate transform and how it is called in logs.
struct EspModel {
  EspTransform transform{};
  std::string name;  ///< e.g. "aes-cbc-sha256", "aes-gcm-16 + TFC padding to 300"
};

class EspLearner {
 public:
  EspLearner();

  /// An ESP packet of `len` bytes was seen (any window or none).
  void on_packet(std::uint32_t len);
  /// A probe window of a probe of IP size `wire`: the distinct ESP lengths it holds
  /// (`lens[0..n)`). Windows holding no ESP are not evidence (the probe took another path).
  void on_window(std::uint32_t wire, const std::uint32_t* lens, std::size_t n);
  /// A window that held ESP but that thinning did not learn (EspLanes::learn_window): counted
  /// for the packet-count test, the aging and the re-evaluation as before; the shares of
  /// windows holding a length are taken over the windows learned.
  void on_window_skipped(std::uint32_t wire);

  /// What evaluate() concluded.
  enum class Change : std::uint8_t { None, Learned, Relearned };
  /// Tests the candidates against the evidence (call every so many windows). Locks the one
  /// group that fits; a locked transform is only replaced when it no longer fits and exactly
  /// one other group does.
  Change evaluate();
  [[nodiscard]] std::uint64_t windows_since_eval() const { return since_eval_; }
  /// The largest thinning stride that keeps every size tracked judged (kMinWindows learned
  /// windows) between two agings.
  [[nodiscard]] std::uint32_t max_stride() const;

  [[nodiscard]] const std::optional<EspModel>& model() const { return model_; }
  /// Why nothing is locked (or the locked one is in doubt), for the warning log line.
  [[nodiscard]] std::string diagnosis() const;
  /// Whether the locked model (or `t`) predicts the same lengths as `t` for the sizes in use.
  [[nodiscard]] bool agrees_with(const EspTransform& t) const;
  [[nodiscard]] bool locked_fits() const { return locked_fits_; }

 private:
  struct Size {
    std::uint32_t wire = 0;
    std::uint32_t windows = 0;  // windows holding ESP, learned or not (the count test)
    std::uint32_t learned = 0;  // of those, the ones learned: `hits` counts in these
    CountTable hits;
  };
  /// The size's evidence (added when new; null when kMaxSizes sizes are already tracked).
  Size* size_of(std::uint32_t wire);
  void counted();  // a window counted: ages and schedules the re-evaluation
  [[nodiscard]] bool fits(const EspTransform& t, const std::vector<const Size*>& use,
                          const std::vector<const Size*>& counted) const;
  [[nodiscard]] std::optional<EspModel> candidate(const EspModel& base,
                                                  const std::vector<const Size*>& use) const;
  /// Of several groups that fit, the one whose predicted lengths are the fewest background
  /// lengths (seen far more often than the probes predicting them: other traffic's), when
  /// only one is.
  [[nodiscard]] std::optional<std::size_t> specific_group(
      const std::vector<std::vector<std::uint32_t>>& groups,
      const std::vector<const Size*>& use) const;
  void age();

  std::vector<Size> sizes_;          // reserved once: at most kMaxSizes
  std::vector<std::uint32_t> seen_;  // packets by length (65536 entries), allocated once
  std::uint64_t windows_ = 0;        // since the last aging
  std::uint64_t since_eval_ = 0;
  std::optional<EspModel> model_;
  bool locked_fits_ = false;
  // The last evaluation, for diagnosis().
  std::size_t last_groups_ = 0;
  std::string last_group_names_;
  std::size_t last_sizes_ = 0;
  std::uint32_t last_distinct_lengths_ = 0;
  std::uint32_t min_wire_ = 0, max_wire_ = 0, min_len_ = 0, max_len_ = 0;
};

}  // namespace pathsentry::probe
