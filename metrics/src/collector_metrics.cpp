#include "pathsentry/metrics/collector_metrics.h"

#include <algorithm>
#include <span>

namespace pathsentry::metrics {

namespace {

bool known(std::string_view v, std::span<const std::string_view> set) {
  return std::find(set.begin(), set.end(), v) != set.end();
}

}  // namespace

CollectorMetrics::CollectorMetrics(prometheus::Registry& registry)
    : rows_(prometheus::BuildCounter()
                .Name("pathsentry_collector_ingest_rows_total")
                .Help("Rows newly stored by ingest, by kind (probe, rollup, event)")
                .Register(registry)),
      duplicates_(prometheus::BuildCounter()
                      .Name("pathsentry_collector_ingest_duplicates_total")
                      .Help("Ingested rows already stored (a resent batch), by kind")
                      .Register(registry)),
      batches_(prometheus::BuildCounter()
                   .Name("pathsentry_collector_ingest_batches_total")
                   .Help("Ingest batches committed, by agent")
                   .Register(registry)),
      failures_(prometheus::BuildCounter()
                    .Name("pathsentry_collector_ingest_failures_total")
                    .Help("Ingest requests refused or failed, by reason")
                    .Register(registry)),
      db_size_(prometheus::BuildGauge()
                   .Name("pathsentry_collector_db_size_bytes")
                   .Help("The collector database's size on disk (main file and WAL), bytes")
                   .Register(registry)
                   .Add({})),
      last_seen_(prometheus::BuildGauge()
                     .Name("pathsentry_collector_agent_last_seen_timestamp_seconds")
                     .Help("When each agent last delivered a batch, Unix time in seconds")
                     .Register(registry)) {
  // Every kind and reason exists from the start at 0, so rate() and absent() see them.
  for (std::string_view k : kKinds) {
    kind_counter(rows_, k);
    kind_counter(duplicates_, k);
  }
  for (std::string_view r : kFailureReasons) failures_.Add({{"reason", std::string(r)}});
}

prometheus::Counter& CollectorMetrics::kind_counter(prometheus::Family<prometheus::Counter>& f,
                                                    std::string_view kind) {
  return f.Add({{"kind", std::string(kind)}});
}

void CollectorMetrics::add_batch(const std::string& agent, std::uint64_t probes,
                                 std::uint64_t rollups, std::uint64_t events,
                                 std::uint64_t dup_probes, std::uint64_t dup_rollups,
                                 std::uint64_t dup_events) {
  // Family::Add returns the existing series for labels it has: a lookup under its mutex.
  kind_counter(rows_, "probe").Increment(static_cast<double>(probes));
  kind_counter(rows_, "rollup").Increment(static_cast<double>(rollups));
  kind_counter(rows_, "event").Increment(static_cast<double>(events));
  kind_counter(duplicates_, "probe").Increment(static_cast<double>(dup_probes));
  kind_counter(duplicates_, "rollup").Increment(static_cast<double>(dup_rollups));
  kind_counter(duplicates_, "event").Increment(static_cast<double>(dup_events));
  batches_.Add({{"agent", agent}}).Increment();
}

void CollectorMetrics::add_failure(std::string_view reason) {
  const std::string r(known(reason, kFailureReasons) ? reason : std::string_view("other"));
  failures_.Add({{"reason", r}}).Increment();
}

void CollectorMetrics::set_db_size(std::uint64_t bytes) {
  db_size_.Set(static_cast<double>(bytes));
}

void CollectorMetrics::set_agent_last_seen(const std::string& agent, double unix_seconds) {
  last_seen_.Add({{"agent", agent}}).Set(unix_seconds);
}

}  // namespace pathsentry::metrics
