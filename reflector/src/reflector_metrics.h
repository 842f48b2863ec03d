#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cstddef>
#include <cstdint>

#include "pathsentry/reflector/reflector.h"

namespace pathsentry::probe {

/// The reflector's Prometheus metrics (docs/metrics.md "Reflector"): copied from its counters
/// when scraped (metrics::refreshing), so the packet loop never touches them.
class ReflectorMetrics {
 public:
  explicit ReflectorMetrics(prometheus::Registry& registry);
  /// Brings the families up to `c` and the active session count. One thread at a time.
  void update(const ReflectorCounters& c, std::size_t active_sessions);

 private:
  prometheus::Counter& requests_;
  prometheus::Counter& replies_;
  prometheus::Counter& not_allowed_;
  prometheus::Counter& rate_limited_;
  prometheus::Counter& global_rate_limited_;
  prometheus::Counter& low_port_;
  prometheus::Counter& malformed_;
  prometheus::Counter& table_full_;
  prometheus::Counter& per_source_;
  prometheus::Counter& send_errors_;
  prometheus::Counter& send_denied_;
  prometheus::Counter& source_evictions_;
  prometheus::Gauge& sessions_;
  ReflectorCounters last_;
};

}  // namespace pathsentry::probe
