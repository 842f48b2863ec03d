#pragma once

#include <array>
#include <cstdint>
#include <limits>

namespace pathsentry::probe {

/// Log-linear histogram of non-negative integers (RTTs in ns): exact below 128, then 64
/// buckets per power of two, so any quantile is within 1/64 (1.6 %) of the true value. Min,
/// max, count and sum are exact. Fixed size (about 30 KiB), no allocation. Not thread-safe.
class LogHistogram {
 public:
  static constexpr std::size_t kBuckets = 128 + 57 * 64;

  /// Records one value; negative values count as 0.
  void add(std::int64_t v);
  /// Adds every value of `other`.
  void merge(const LogHistogram& other);
  void clear();

  [[nodiscard]] std::uint64_t count() const { return count_; }
  [[nodiscard]] std::int64_t min() const { return count_ ? min_ : 0; }
  [[nodiscard]] std::int64_t max() const { return count_ ? max_ : 0; }
  /// Mean, or 0 when empty.
  [[nodiscard]] double mean() const;
  /// The q-quantile (0 <= q <= 1): the midpoint of the bucket holding the ceil(q*count)-th
  /// smallest value, clamped to [min, max]. 0 when empty.
  [[nodiscard]] std::int64_t quantile(double q) const;

  /// Bucket index of `v` and the bounds [lower, upper] of bucket `i` (exposed for tests).
  [[nodiscard]] static std::size_t bucket_of(std::uint64_t v);
  [[nodiscard]] static std::uint64_t bucket_lower(std::size_t i);
  [[nodiscard]] static std::uint64_t bucket_upper(std::size_t i);

 private:
  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
  std::int64_t min_ = std::numeric_limits<std::int64_t>::max();
  std::int64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace pathsentry::probe
