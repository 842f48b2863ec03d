#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pathsentry/common/record.h"
#include "pathsentry/common/rollup.h"

namespace pathsentry::probe {

/// What a rollup needs of one probe record (ProbeStat: a record without its reflector fields,
/// the strings borrowed).
struct RollupInput {
  std::uint32_t session_id = 0;
  std::string_view target;
  Proto proto = Proto::Icmp;
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;
  bool received = false;
  std::int64_t rtt_ns = 0;
  /// Where a lost probe was lost; None for a lost probe counts as undetermined.
  LossDirection loss = LossDirection::None;
  bool late = false;  ///< a second record of a probe already counted as lost: not counted again
  std::string_view fwd_path;
  std::string_view rev_path;

  [[nodiscard]] static RollupInput of(const ProbeRecord& r);
};

/// Counters of a RollupBuilder.
struct RollupStats {
  std::uint64_t probes = 0;        ///< records counted in a rollup
  std::uint64_t late_ignored = 0;  ///< late records (their probe was counted as lost)
  std::uint64_t after_close = 0;   ///< records for a second already emitted: not counted
  std::uint64_t rollups = 0;       ///< rows emitted
};

/// Builds the per-second rollups of common/rollup.h from probe records: per session, per
/// second of tx_ns, per direction, per path. Every probe is counted once per direction, in the
/// row of its path in that direction (fwd_path / rev_path). RTT min/mean/p50/p99/max of the
/// answered probes of the row (p50/p99 nearest-rank: the value of rank ceil(p/100 × n) in
/// ascending order; mean truncated to whole ns); jitter = the mean |ΔRTT| of the row's
/// consecutive answered probes ordered by sequence (0 with fewer than two).
///
/// Records of a session arrive in roughly sequence order (a lost probe's record comes a timeout
/// after later probes' answers, and under load the attribution can hold one back for many
/// seconds). Every sent probe yields one record and a session's sequences rise with tx_ns, so
/// second S of a session is complete, and its rows are emitted, as soon as every sequence up to
/// one sent at or after S + 1 s has arrived (exact, whatever the load). The grace is only a
/// backstop for a sequence whose record never comes (a send that failed): S is also closed once
/// a record with tx_ns ≥ S + 1 s + grace has arrived. And at flush(). A second is never emitted
/// twice: a record for a closed second is counted in `after_close` and left out.
/// Not thread-safe (the shipper's thread owns it).
class RollupBuilder {
 public:
  /// `grace_ns`: the backstop: how long after a second's end a missing sequence is waited for
  /// before the second is closed without it (the agent uses at least 30 s).
  explicit RollupBuilder(std::int64_t grace_ns) : grace_ns_(grace_ns) {}

  /// Counts one record; appends the rows of every second this closes to `closed`.
  void add(const RollupInput& in, std::vector<Rollup>& closed);
  void add(const ProbeRecord& r, std::vector<Rollup>& closed) { add(RollupInput::of(r), closed); }
  /// Closes every open second (stop, or a flush of everything).
  void flush(std::vector<Rollup>& closed);

  [[nodiscard]] const RollupStats& stats() const { return stats_; }
  /// Seconds still open, all sessions together.
  [[nodiscard]] std::size_t open_seconds() const;

 private:
  struct Row {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::uint64_t lost[3] = {0, 0, 0};                         // forward, reverse, undetermined
    std::vector<std::pair<std::uint64_t, std::int64_t>> rtts;  // (seq, rtt) of the answered
  };
  struct Second {
    std::map<std::string, Row, std::less<>> rows[2];  // [direction][path]
  };
  struct Session {
    std::string target;
    Proto proto = Proto::Icmp;
    std::int64_t closed_before = INT64_MIN;  // seconds (index) below this are emitted
    std::map<std::int64_t, Second> open;     // by second index
    // Sequences 0 .. contiguous-1 have all arrived; contiguous_tx is the tx_ns of the last of
    // them; ahead holds (seq, tx_ns) of those that arrived beyond a gap.
    std::uint64_t contiguous = 0;
    std::int64_t contiguous_tx = INT64_MIN;
    std::map<std::uint64_t, std::int64_t> ahead;
  };

  void close_until(std::uint32_t id, Session& s, std::int64_t below, std::vector<Rollup>& out);
  void emit(std::uint32_t id, const Session& s, std::int64_t second, Second& sec,
            std::vector<Rollup>& out);

  std::int64_t grace_ns_;
  std::map<std::uint32_t, Session> sessions_;
  RollupStats stats_;
};

/// Nearest-rank percentile `p` (0 < p ≤ 100) of ascending `sorted` (not empty).
[[nodiscard]] std::int64_t nearest_rank(const std::vector<std::int64_t>& sorted, unsigned p);

}  // namespace pathsentry::probe
