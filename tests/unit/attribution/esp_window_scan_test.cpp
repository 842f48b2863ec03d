// The ESP window scans' two shortcuts (esp_lanes.h, issue 14 session 9): the window's first
// packet found from the previous window's (EspLanes::lower_bound_from) instead of a binary
// search, and the window's distinct lengths gathered in a set that is never cleared
// (DistinctLens). Both compared with what they replaced, on random rings and windows: the same
// index, the same lengths in the same order.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "esp_lanes.h"

using pathsentry::Ring;
using pathsentry::probe::attr::DistinctLens;
using pathsentry::probe::attr::EspLanes;
using pathsentry::probe::attr::EspObs;

namespace {

// The window's distinct lengths as learn_window gathered them before: first seen, at most 64.
std::vector<std::uint32_t> distinct_reference(const std::vector<std::uint32_t>& in) {
  std::vector<std::uint32_t> out;
  for (std::uint32_t v : in) {
    if (out.size() == DistinctLens::kCap) break;
    bool seen = false;
    for (std::uint32_t o : out) seen = seen || o == v;
    if (!seen) out.push_back(v);
  }
  return out;
}

std::vector<std::uint32_t> distinct_fast(DistinctLens& set, const std::vector<std::uint32_t>& in) {
  set.start();
  for (std::size_t i = 0; i < in.size() && !set.full(); ++i) set.add(in[i]);
  return {set.data(), set.data() + set.size()};
}

}  // namespace

TEST_CASE("esp window scan: lower_bound_from finds lower_bound's packet from any hint",
          "[unit][esp]") {
  std::mt19937_64 rng(14);
  for (int round = 0; round < 200; ++round) {
    Ring<EspObs> r;
    std::int64_t ts = 1'000'000;
    const int n = static_cast<int>(rng() % 300);
    for (int i = 0; i < n; ++i) {
      ts += static_cast<std::int64_t>(rng() % 3 == 0 ? 0 : rng() % 5000);  // equal times too
      r.push_back(EspObs{ts, 100, 0, 0, false, 1, static_cast<std::uint32_t>(i)});
    }
    const int evict = n == 0 ? 0 : static_cast<int>(rng() % (n / 2 + 1));
    for (int i = 0; i < evict; ++i) r.pop_front();
    std::uint64_t hint = 0;
    std::int64_t from = 900'000;
    for (int w = 0; w < 400; ++w) {
      // Mostly increasing windows (anchor order), sometimes far ahead, back or off the ring.
      const auto kind = rng() % 10;
      if (kind < 6) {
        from += static_cast<std::int64_t>(rng() % 3000);
      } else if (kind == 6) {
        from -= static_cast<std::int64_t>(rng() % 20000);
      } else if (kind == 7) {
        from += static_cast<std::int64_t>(rng() % 200000);
      } else if (kind == 8 && !r.empty()) {
        from = r.at(r.begin_abs() + rng() % r.size()).ts_ns;  // exactly a packet's time
      }
      std::uint64_t h = hint;
      if (rng() % 17 == 0) h = rng() % (r.end_abs() + 10);  // a stale or wild hint
      if (rng() % 31 == 0) h = std::numeric_limits<std::uint64_t>::max();
      const std::uint64_t want = EspLanes::lower_bound(r, from);
      const std::uint64_t got = EspLanes::lower_bound_from(r, from, h);
      INFO("round " << round << " window " << w << " from " << from << " hint " << h);
      REQUIRE(got == want);
      hint = got;
    }
  }
}

TEST_CASE("esp window scan: a packet inserted before the hint is found", "[unit][esp]") {
  // add_esp sorts a late capture back into place: the previous window's index then points one
  // past the packet the next window must start at.
  Ring<EspObs> r;
  for (std::int64_t t : {100, 200, 300, 400}) r.push_back(EspObs{t, 1, 0, 0, false, 1, 0});
  const std::uint64_t hint = EspLanes::lower_bound_from(r, 250, 0);
  REQUIRE(hint == 2);
  // Insert 240 in time order (as add_esp does): 100 200 240 300 400.
  r.push_back(EspObs{240, 1, 0, 0, false, 1, 0});
  for (std::uint64_t i = r.end_abs() - 1; i > r.begin_abs() && r.at(i - 1).ts_ns > r.at(i).ts_ns;
       --i) {
    std::swap(r.at(i - 1), r.at(i));
  }
  CHECK(EspLanes::lower_bound_from(r, 230, hint) == 2);
  CHECK(EspLanes::lower_bound(r, 230) == 2);
}

TEST_CASE("esp window scan: distinct lengths as the cleared set gave them", "[unit][esp]") {
  std::mt19937 rng(5);
  DistinctLens set;
  for (int w = 0; w < 3000; ++w) {
    std::vector<std::uint32_t> in(rng() % 150);
    const std::uint32_t spread = 1 + rng() % 120;  // few lengths, or more than 64
    for (auto& v : in) v = rng() % 4 == 0 ? rng() : 60 + rng() % spread;
    if (w % 7 == 0 && !in.empty()) in[0] = std::numeric_limits<std::uint32_t>::max();
    if (w % 11 == 0 && !in.empty()) in.back() = 0;
    INFO("window " << w);
    REQUIRE(distinct_fast(set, in) == distinct_reference(in));
  }
}

TEST_CASE("esp window scan: distinct lengths across the stamp's wrap-around", "[unit][esp]") {
  // Stamps left by the windows before the wrap must not count as the new windows' entries.
  DistinctLens set(std::numeric_limits<std::uint32_t>::max() - 3);
  const std::vector<std::vector<std::uint32_t>> windows = {
      {100, 116, 100}, {116, 132}, {100, 132, 148}, {0, 100},
      {116, 116, 116}, {100},      {132, 100},      {148, 164, 100}};
  for (std::size_t w = 0; w < windows.size(); ++w) {
    INFO("window " << w);
    REQUIRE(distinct_fast(set, windows[w]) == distinct_reference(windows[w]));
  }
}

// Thinning's choice (learn_pick): one window in `stride`, spread over the probes whatever their
// spacing and size cycle (a choice by probe count would meet one size of a cycle of `stride`
// sizes every time, and leave the others without evidence).
TEST_CASE("esp learning thinning picks one window in the stride for every size", "[unit][esp]") {
  using pathsentry::probe::attr::learn_pick;
  constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
  for (std::uint32_t n = 0; n < 1000; ++n) REQUIRE(learn_pick(kT0 + n * 1000, 1));
  for (const std::uint32_t stride : {2u, 5u, 8u, 41u, 64u}) {
    for (const std::int64_t spacing : {1'000, 10'000, 500'000, 1'000'000}) {
      const std::uint32_t cycle = stride;  // the worst case for a count-based choice
      std::vector<std::uint32_t> per_size(cycle, 0);
      constexpr std::uint32_t kWindows = 200'000;
      std::uint32_t picked = 0;
      for (std::uint32_t k = 0; k < kWindows; ++k) {
        if (!learn_pick(kT0 + static_cast<std::int64_t>(k) * spacing, stride)) continue;
        ++picked;
        ++per_size[k % cycle];
      }
      INFO("stride " << stride << ", spacing " << spacing << " ns: " << picked << " picked");
      const double want = static_cast<double>(kWindows) / stride;
      CHECK(std::abs(static_cast<double>(picked) - want) <= 0.05 * want);
      // Each size near its share (Poisson: within 5 standard deviations, at least 40 %).
      const double share = want / cycle;
      for (const auto c : per_size) {
        CHECK(static_cast<double>(c) >= std::max(0.4 * share, share - 5 * std::sqrt(share)));
      }
    }
  }
}
