#pragma once

#include <cstdint>
#include <string>

#include "pathsentry/common/record.h"

namespace pathsentry {

/// One second of one probe session in one direction on one path: what the agent ships to the
/// collector beside the raw records (architecture.md §3 "Shipping", docs/collector.md).
///
/// Every probe sent in the second (by its tx_ns) is counted exactly once per direction, in the
/// row of the path it took in that direction: the record's fwd_path for Forward, rev_path for
/// Reverse (a tap's label, "unknown", "none", or "" when the agent attributes nothing). So the
/// rows of one (session, second, direction) add up to the probes sent in that second.
struct Rollup {
  std::string target;  ///< target address as text
  Proto proto = Proto::Icmp;
  std::uint32_t session_id = 0;
  std::int64_t second_ns = 0;  ///< start of the second, CLOCK_REALTIME ns, a multiple of 1e9
  Direction direction = Direction::Forward;
  std::string path;  ///< the path in this direction, as in the records

  std::uint64_t sent = 0;      ///< probes of this second whose path in this direction is `path`
  std::uint64_t received = 0;  ///< of those, answered
  /// Of those, lost, by where (record `loss`): forward / reverse / undetermined.
  std::uint64_t lost_forward = 0;
  std::uint64_t lost_reverse = 0;
  std::uint64_t lost_undetermined = 0;
  /// RTT of the answered ones, ns (all 0 when received == 0). p50/p99 are nearest-rank.
  std::int64_t rtt_min_ns = 0;
  std::int64_t rtt_mean_ns = 0;
  std::int64_t rtt_p50_ns = 0;
  std::int64_t rtt_p99_ns = 0;
  std::int64_t rtt_max_ns = 0;
  /// Mean absolute difference of the RTTs of consecutive answered probes (by sequence), ns.
  std::int64_t jitter_ns = 0;

  friend bool operator==(const Rollup&, const Rollup&) = default;
};

/// The first line of every ingest body and spool file: who sends it. `run` is a random id the
/// agent draws at start (hex), so session ids and sequences, which restart with the process,
/// stay unique per (agent, run). `batch` counts the agent's batches within the run from 1.
struct BatchHeader {
  std::string agent;  ///< the agent's name (config `agent.name`, default the host name)
  std::string run;    ///< 16 hex digits, drawn at agent start
  std::uint64_t batch = 0;
  std::int64_t created_ns = 0;  ///< when the agent closed the batch (CLOCK_REALTIME)
  std::string version;          ///< the agent's version, e.g. "0.1.0"

  friend bool operator==(const BatchHeader&, const BatchHeader&) = default;
};

}  // namespace pathsentry
