// Prints the collector's metric families (metrics::CollectorMetrics) in the Prometheus text
// format, every family with a series, as the collector's /metrics would: the promtool test
// checks it and takes the collector's metric names from it (tests/integration/metrics/).
#include <prometheus/registry.h>

#include <cstdio>

#include "pathsentry/metrics/collector_metrics.h"
#include "pathsentry/metrics/metrics.h"

int main() {
  prometheus::Registry registry;
  pathsentry::metrics::CollectorMetrics m(registry);
  m.add_batch("dc-agent", 1000, 10, 2, 5, 0, 1);
  m.add_failure("store_full");
  m.set_db_size(1 << 20);
  m.set_agent_last_seen("dc-agent", 1.7e9);
  std::fputs(pathsentry::metrics::serialize(registry).c_str(), stdout);
  return 0;
}
