#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "pathsentry/common/record.h"
#include "pathsentry/common/rollup.h"

namespace pathsentry::collector {

/// Path values of DirState::path that are not a tap's label.
inline constexpr const char* kPathDown = "down";                  ///< all lost, proven here
inline constexpr const char* kPathUndetermined = "undetermined";  ///< all lost, direction unknown

/// One direction of a target in one second (the API's DIR object, docs/collector.md).
struct DirState {
  /// The path most of the second's probes took in this direction (those that got through it:
  /// received, plus lost on the way back for forward); kPathDown when none got through and
  /// all were proven lost in this direction; kPathUndetermined when none got through and the
  /// direction of (some of) the losses is not known; "" when the agent attributes nothing.
  std::string path;
  std::optional<std::int64_t> since_ns;  ///< the second `path` began; nullopt = not seen
  std::uint64_t sent = 0, received = 0, lost_forward = 0, lost_reverse = 0, lost_undetermined = 0;
  /// Received-weighted means over the second's rows; nullopt when nothing was received.
  std::optional<std::int64_t> rtt_p50_ns, rtt_mean_ns, jitter_ns;
  [[nodiscard]] std::uint64_t lost() const {
    return lost_forward + lost_reverse + lost_undetermined;
  }
};

/// A target's state: its latest complete second (`/api/v1/targets` "state", the stream's
/// "state" messages).
struct TargetState {
  std::string agent;
  std::string target;
  Proto proto = Proto::Icmp;
  std::uint32_t session_id = 0;
  std::int64_t second_ns = 0;
  std::optional<DirState> forward, reverse;  ///< nullopt: no rollup for that direction
};

/// The live per-target state, fed by the rollups of committed batches. The agent ships a
/// second's rollups once the second is closed (the fate of all its probes known), so the
/// seconds in a committed batch are complete; rows of a second that arrive in a later batch
/// are merged into it (a resent row replaces itself: rows are keyed by direction and path).
/// Seconds older than a stream's latest are ignored. Thread-safe.
class LiveState {
 public:
  /// Applies one committed batch's rollups; returns the new state of each stream whose
  /// latest second changed (one per stream: its latest second).
  std::vector<TargetState> apply(const std::string& agent, const std::vector<Rollup>& rollups);

  [[nodiscard]] std::optional<TargetState> get(const std::string& agent, const std::string& target,
                                               Proto proto) const;
  [[nodiscard]] std::vector<TargetState> all() const;
  [[nodiscard]] std::size_t size() const;

 private:
  using Key = std::tuple<std::string, std::string, Proto>;  // agent, target, proto
  using RowKey = std::pair<Direction, std::string>;
  struct Stream {
    std::uint32_t session_id = 0;
    std::int64_t second_ns = 0;
    std::map<RowKey, Rollup> rows;  // the latest second's rows
    TargetState state;
    std::optional<TargetState> before;  // the state of the second before (for since_ns)
  };
  static void recompute(Stream& s, const TargetState* previous);

  mutable std::mutex mutex_;
  std::map<Key, Stream> streams_;
};

/// The DIR of one direction from its rows of one second (without since_ns).
[[nodiscard]] DirState dir_state(Direction d, const std::vector<const Rollup*>& rows);

}  // namespace pathsentry::collector
