// The ESP learner's length → count table (esp_learner.h): indexed since issue 14 (it ran a linear
// search per ESP length per probe window, ~12 % of the offline attribution's time). Compared
// operation by operation with the plain linear table it replaced: same counts, same key order
// (the learner's TFC search walks key_at() in order), same capacity behaviour, across halvings.

#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

#include "esp_learner.h"
#include "slot_table.h"

using pathsentry::probe::CountTable;

namespace {

// The table as it was before: insertion-ordered arrays, linear search.
struct LinearTable {
  std::vector<std::uint32_t> keys, vals;
  void add(std::uint32_t k) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == k) {
        ++vals[i];
        return;
      }
    }
    if (keys.size() == CountTable::kCap) return;
    keys.push_back(k);
    vals.push_back(1);
  }
  [[nodiscard]] std::uint32_t get(std::uint32_t k) const {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == k) return vals[i];
    }
    return 0;
  }
  void halve() {
    std::vector<std::uint32_t> nk, nv;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (vals[i] / 2 == 0) continue;
      nk.push_back(keys[i]);
      nv.push_back(vals[i] / 2);
    }
    keys = nk;
    vals = nv;
  }
};

void check_same(const CountTable& t, const LinearTable& ref, std::uint32_t max_key) {
  REQUIRE(t.size() == ref.keys.size());
  for (std::size_t i = 0; i < ref.keys.size(); ++i) REQUIRE(t.key_at(i) == ref.keys[i]);
  for (std::uint32_t k = 0; k <= max_key; ++k) REQUIRE(t.get(k) == ref.get(k));
}

}  // namespace

TEST_CASE("count table: same counts and key order as a linear table", "[unit][esp]") {
  // Key spaces below, at and above the capacity (64): ESP lengths are spaced 4 or 16 apart,
  // and colliding hashes must not confuse keys.
  for (const std::uint32_t keys : {20u, 64u, 300u}) {
    for (const std::uint32_t spacing : {1u, 4u, 16u, 128u}) {
      std::mt19937 rng(keys * 131 + spacing);
      std::uniform_int_distribution<std::uint32_t> pick(0, keys - 1);
      CountTable t;
      LinearTable ref;
      for (int op = 0; op < 5000; ++op) {
        if (op % 997 == 996) {
          t.halve();
          ref.halve();
        } else {
          const std::uint32_t k = 60 + spacing * pick(rng);
          t.add(k);
          ref.add(k);
        }
        if (op % 250 == 0) check_same(t, ref, 60 + spacing * keys);
      }
      check_same(t, ref, 60 + spacing * keys);
    }
  }
}

TEST_CASE("count table: full, halved to nothing, refilled", "[unit][esp]") {
  CountTable t;
  LinearTable ref;
  for (std::uint32_t k = 0; k < 100; ++k) {  // 36 beyond the capacity are not tracked
    t.add(k * 16);
    ref.add(k * 16);
  }
  check_same(t, ref, 1600);
  CHECK(t.size() == CountTable::kCap);
  CHECK(t.get(64 * 16) == 0);
  t.halve();  // every count was 1: all gone
  ref.halve();
  CHECK(t.size() == 0);
  check_same(t, ref, 1600);
  for (std::uint32_t k = 99; k > 50; --k) {  // a new order after the aging
    t.add(k * 16);
    ref.add(k * 16);
  }
  check_same(t, ref, 1600);
  CHECK(t.key_at(0) == 99 * 16);
}

// The slot table's initial size (issue 14 goal 6: it was sized for timeout + record_grace_ns +
// 0.25 s with a 1.25 margin, 2 x 12 MiB at 100 000 probes/s in two sessions). It must still
// cover the sender's late-answer horizon (its ring: 2 x rate x timeout, at least 1024).
TEST_CASE("slot table: initial size covers the sender's late horizon, no more", "[unit][slots]") {
  using pathsentry::probe::SessionSpec;
  using pathsentry::probe::attr::ring_size_for;
  SessionSpec s;
  s.rate_pps = 50'000;
  s.timeout_ns = 500'000'000;
  CHECK(ring_size_for(s) == 65'536);   // was 131 072
  s.timeout_ns = 1'000'000'000;        // the default timeout
  CHECK(ring_size_for(s) == 131'072);  // was 262 144
  for (const double rate : {1.0, 100.0, 1000.0, 20'000.0, 150'000.0}) {
    for (const std::int64_t timeout_ms : {100, 500, 1000, 5000}) {
      s.rate_pps = rate;
      s.timeout_ns = timeout_ms * 1'000'000;
      const double sender = 2 * rate * static_cast<double>(timeout_ms) / 1000 + 64;
      CHECK(static_cast<double>(ring_size_for(s)) >= std::min(sender, 8'388'608.0));
      CHECK(ring_size_for(s) >= 1024);
    }
  }
}
