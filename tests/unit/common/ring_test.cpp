#include "pathsentry/common/ring.h"

#include <catch2/catch.hpp>
#include <cstdint>

using pathsentry::Ring;

// Elements keep their absolute index from push to pop; the ring is FIFO.
TEST_CASE("ring addresses elements by absolute index", "[unit][ring]") {
  Ring<int, 4> r;
  CHECK(r.empty());
  CHECK(r.begin_abs() == 0);
  CHECK(r.end_abs() == 0);
  for (int i = 0; i < 3; ++i) r.push_back(i * 10);
  CHECK(r.size() == 3);
  CHECK(r.front() == 0);
  CHECK(r.back() == 20);
  CHECK(r.at(1) == 10);
  r.pop_front();
  CHECK(r.begin_abs() == 1);
  CHECK(r.end_abs() == 3);
  CHECK(r.front() == 10);
  CHECK(r.at(2) == 20);
  r.at(2) = 21;
  CHECK(r.back() == 21);
}

// Growing while wrapped around keeps order and indices.
TEST_CASE("ring grows by doubling across the wrap", "[unit][ring]") {
  Ring<std::uint64_t, 4> r;
  std::uint64_t next = 0;
  for (int i = 0; i < 3; ++i) r.push_back(next++);
  r.pop_front();
  r.pop_front();  // head is now mid-buffer
  for (int i = 0; i < 20; ++i) r.push_back(next++);
  REQUIRE(r.size() == 21);
  CHECK(r.begin_abs() == 2);
  for (std::uint64_t a = r.begin_abs(); a < r.end_abs(); ++a) CHECK(r.at(a) == a);
  std::uint64_t expect = 2;
  while (!r.empty()) {
    CHECK(r.front() == expect++);
    r.pop_front();
  }
  CHECK(r.begin_abs() == next);
}

// A ring in steady state (push one, pop one) reuses its storage indefinitely.
TEST_CASE("ring steady state wraps many times", "[unit][ring]") {
  Ring<int, 8> r;
  for (int i = 0; i < 5; ++i) r.push_back(i);
  for (int i = 5; i < 1000; ++i) {
    r.push_back(i);
    CHECK(r.front() == i - 5);
    r.pop_front();
  }
  CHECK(r.size() == 5);
  CHECK(r.at(997) == 997);
}
