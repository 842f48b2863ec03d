#include "pathsentry/probe/engine/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace pathsentry::probe {

// Layout: buckets 0..127 hold 0..127 exactly. For a value with highest set bit e >= 7, the
// 64 buckets of octave e each span 2^(e-6) values: index 128 + (e-7)*64 + (v >> (e-6)) - 64.
std::size_t LogHistogram::bucket_of(std::uint64_t v) {
  if (v < 128) return static_cast<std::size_t>(v);
  const unsigned e = 63U - static_cast<unsigned>(std::countl_zero(v));
  return 128 + (e - 7) * 64 + static_cast<std::size_t>((v >> (e - 6)) - 64);
}

std::uint64_t LogHistogram::bucket_lower(std::size_t i) {
  if (i < 128) return i;
  const std::size_t e = (i - 128) / 64 + 7;
  const std::uint64_t m = (i - 128) % 64 + 64;
  return m << (e - 6);
}

std::uint64_t LogHistogram::bucket_upper(std::size_t i) {
  if (i < 128) return i;
  const std::size_t e = (i - 128) / 64 + 7;
  return bucket_lower(i) + ((std::uint64_t{1} << (e - 6)) - 1);
}

void LogHistogram::add(std::int64_t v) {
  if (v < 0) v = 0;
  ++buckets_[bucket_of(static_cast<std::uint64_t>(v))];
  ++count_;
  min_ = std::min(min_, v);
  max_ = std::max(max_, v);
  sum_ += static_cast<long double>(v);
}

void LogHistogram::merge(const LogHistogram& other) {
  if (other.count_ == 0) return;
  for (std::size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void LogHistogram::clear() {
  *this = LogHistogram();
}

double LogHistogram::mean() const {
  return count_ ? static_cast<double>(sum_ / static_cast<long double>(count_)) : 0.0;
}

std::int64_t LogHistogram::quantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      const std::uint64_t lo = bucket_lower(i);
      const auto mid = static_cast<std::int64_t>(lo + (bucket_upper(i) - lo) / 2);
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

}  // namespace pathsentry::probe
