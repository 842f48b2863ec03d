#pragma once

// Small helpers shared by the bench programs (header-only: the bench has no library).

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

namespace pathsentry::bench {

/// CLOCK_REALTIME (the clock kernel software timestamps use) in ns.
inline std::int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// CLOCK_MONOTONIC in ns (pacing, durations).
inline std::int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// Nearest-rank percentile `p` (0..100) of an already sorted vector; 0 when empty.
inline std::int64_t percentile_sorted(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const auto idx = static_cast<std::size_t>(std::max(1.0, rank)) - 1;
  return sorted[std::min(idx, sorted.size() - 1)];
}

/// {count, min, p1, p50, p99, max, mean} of `values` (sorted in place), in the values' unit.
/// With no values every figure is null, so a consumer cannot mistake "nothing" for 0.
inline nlohmann::json distribution_json(std::vector<std::int64_t>& values) {
  nlohmann::json j;
  j["count"] = values.size();
  if (values.empty()) {
    for (const char* k : {"min", "p1", "p50", "p99", "max", "mean"}) j[k] = nullptr;
    return j;
  }
  std::sort(values.begin(), values.end());
  j["min"] = values.front();
  j["p1"] = percentile_sorted(values, 1);
  j["p50"] = percentile_sorted(values, 50);
  j["p99"] = percentile_sorted(values, 99);
  j["max"] = values.back();
  const long double sum = std::accumulate(values.begin(), values.end(), 0.0L);
  j["mean"] = static_cast<double>(sum / static_cast<long double>(values.size()));
  return j;
}

}  // namespace pathsentry::bench
