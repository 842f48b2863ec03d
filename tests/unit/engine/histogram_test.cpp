#include "pathsentry/probe/engine/histogram.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

using pathsentry::probe::LogHistogram;

// Buckets tile the number line with no gap or overlap, and each value lands in its bucket.
TEST_CASE("histogram buckets are contiguous", "[unit][histogram]") {
  for (std::size_t i = 1; i < LogHistogram::kBuckets; ++i) {
    REQUIRE(LogHistogram::bucket_lower(i) == LogHistogram::bucket_upper(i - 1) + 1);
  }
  for (std::uint64_t v : {0ULL, 127ULL, 128ULL, 129ULL, 1000ULL, 123456789ULL, ~0ULL}) {
    const auto b = LogHistogram::bucket_of(v);
    REQUIRE(LogHistogram::bucket_lower(b) <= v);
    REQUIRE(v <= LogHistogram::bucket_upper(b));
  }
}

// p50/p99 of a skewed sample are within 1/64 of the exact order statistics; min, max and
// mean are exact.
TEST_CASE("histogram quantiles are within bucket precision", "[unit][histogram]") {
  auto h = std::make_unique<LogHistogram>();
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> d(11.0, 1.0);  // ~60 us median, long tail
  std::vector<std::int64_t> v;
  long double sum = 0;
  for (int i = 0; i < 100'000; ++i) {
    const auto x = static_cast<std::int64_t>(d(rng));
    v.push_back(x);
    h->add(x);
    sum += x;
  }
  std::sort(v.begin(), v.end());
  auto exact = [&](double q) { return v[static_cast<std::size_t>(std::ceil(q * v.size())) - 1]; };
  for (double q : {0.5, 0.99}) {
    const double e = static_cast<double>(exact(q));
    REQUIRE(std::abs(static_cast<double>(h->quantile(q)) - e) <= e / 64.0 + 1);
  }
  REQUIRE(h->min() == v.front());
  REQUIRE(h->max() == v.back());
  REQUIRE(h->mean() == Approx(static_cast<double>(sum / v.size())));
  REQUIRE(h->count() == v.size());
}

// Small values are exact; an empty histogram reports zeros; merge adds counts.
TEST_CASE("histogram small values and empty and merge", "[unit][histogram]") {
  auto a = std::make_unique<LogHistogram>();
  auto b = std::make_unique<LogHistogram>();
  REQUIRE(a->quantile(0.5) == 0);
  REQUIRE(a->max() == 0);
  for (int i = 1; i <= 100; ++i) a->add(i);
  REQUIRE(a->quantile(0.5) == 50);
  REQUIRE(a->quantile(0.99) == 99);
  b->add(1'000'000);
  a->merge(*b);
  REQUIRE(a->count() == 101);
  REQUIRE(a->max() == 1'000'000);
  a->clear();
  REQUIRE(a->count() == 0);
}
