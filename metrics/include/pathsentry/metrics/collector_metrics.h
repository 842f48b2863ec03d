#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace pathsentry::metrics {

/// The collector's metric families (docs/metrics.md "Collector"), registered in the registry the
/// collector serves at GET /metrics on its own port (serialize()). The collector's ingest handler
/// calls these after each request; all methods are thread-safe (prometheus-cpp's counters and
/// gauges are atomic; a labelled series is looked up under its family's mutex, a few per
/// request).
class CollectorMetrics {
 public:
  /// The kinds of ingested rows (label `kind`), as the ingest answer counts them.
  static constexpr std::string_view kKinds[] = {"probe", "rollup", "event"};
  /// Why an ingest request failed (label `reason`): bad_request (400), unauthorized (401),
  /// throttled (429: too many wrong tokens from its address), too_large (413), store_busy /
  /// store_full / store_readonly / store_corrupt / store_io (503).
  static constexpr std::string_view kFailureReasons[] = {
      "bad_request", "unauthorized",   "throttled",     "too_large", "store_busy",
      "store_full",  "store_readonly", "store_corrupt", "store_io"};

  explicit CollectorMetrics(prometheus::Registry& registry);

  /// One committed batch of `agent`: rows newly stored and rows that were already stored, per
  /// kind (the ingest answer's "accepted" and "duplicates").
  void add_batch(const std::string& agent, std::uint64_t probes, std::uint64_t rollups,
                 std::uint64_t events, std::uint64_t dup_probes, std::uint64_t dup_rollups,
                 std::uint64_t dup_events);
  /// A refused or failed ingest request; `reason` one of kFailureReasons (else "other").
  void add_failure(std::string_view reason);
  /// The database's size on disk (main file + WAL), bytes.
  void set_db_size(std::uint64_t bytes);
  /// When `agent` last delivered a batch (Unix seconds; CLOCK_REALTIME ns / 1e9).
  void set_agent_last_seen(const std::string& agent, double unix_seconds);

 private:
  prometheus::Counter& kind_counter(prometheus::Family<prometheus::Counter>& f,
                                    std::string_view kind);

  prometheus::Family<prometheus::Counter>& rows_;
  prometheus::Family<prometheus::Counter>& duplicates_;
  prometheus::Family<prometheus::Counter>& batches_;
  prometheus::Family<prometheus::Counter>& failures_;
  prometheus::Gauge& db_size_;
  prometheus::Family<prometheus::Gauge>& last_seen_;
};

}  // namespace pathsentry::metrics
