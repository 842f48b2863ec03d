#include "pathsentry/probe/attribution/ttl_crosscheck.h"

#include <catch2/catch.hpp>

using namespace pathsentry::probe;

namespace {
constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
constexpr std::int64_t kMs = 1'000'000;
const char* kTarget = "192.168.20.161";

// Tap samples every ms from `from` to `to` (ms after kT0) on `path`.
void taps(TtlCrossCheck& c, int from, int to, const char* path) {
  for (int i = from; i <= to; ++i) c.on_tap_sample(kTarget, kT0 + i * kMs, path);
}
}  // namespace

// A TTL probe whose path the taps saw around its send time agrees.
TEST_CASE("ttl cross-check: agree", "[unit]") {
  TtlCrossCheck c(20 * kMs, 3000 * kMs);
  taps(c, 0, 100, "express-connect");
  c.on_ttl(kTarget, 1, kT0 + 50 * kMs, "express-connect");
  std::vector<CrossCheckVerdict> v;
  c.poll(kT0 + 200 * kMs, v);
  REQUIRE(v.size() == 1);
  CHECK(v[0].kind == CrossCheckVerdict::Kind::Agree);
  CHECK(c.stats().agree == 1);
}

// A TTL probe naming another path than the taps' disagrees, with both paths in the verdict.
TEST_CASE("ttl cross-check: disagree", "[unit]") {
  TtlCrossCheck c(20 * kMs, 3000 * kMs);
  taps(c, 0, 100, "express-connect");
  c.on_ttl(kTarget, 7, kT0 + 50 * kMs, "ipsec");
  std::vector<CrossCheckVerdict> v;
  c.poll(kT0 + 200 * kMs, v);
  REQUIRE(v.size() == 1);
  CHECK(v[0].kind == CrossCheckVerdict::Kind::Disagree);
  CHECK(v[0].ttl_path == "ipsec");
  CHECK(v[0].tap_path == "express-connect");
  CHECK(v[0].seq == 7);
  CHECK(c.stats().disagree == 1);
}

// Two tap paths in the window (a switchover) or none at all leave the probe undecided;
// "unknown"/"none" tap samples are ignored.
TEST_CASE("ttl cross-check: undecided", "[unit]") {
  TtlCrossCheck c(20 * kMs, 3000 * kMs);
  taps(c, 0, 49, "express-connect");
  taps(c, 50, 100, "ipsec");
  taps(c, 101, 300, "unknown");
  c.on_ttl(kTarget, 1, kT0 + 50 * kMs, "ipsec");
  c.on_ttl(kTarget, 2, kT0 + 200 * kMs, "ipsec");
  std::vector<CrossCheckVerdict> v;
  c.poll(kT0 + 400 * kMs, v);
  REQUIRE(v.size() == 2);
  CHECK(v[0].kind == CrossCheckVerdict::Kind::Undecided);
  CHECK(v[1].kind == CrossCheckVerdict::Kind::Undecided);
  CHECK(c.stats().undecided == 2);
}

// TTL probes without a path are counted apart and never judged.
TEST_CASE("ttl cross-check: ttl without path is not judged", "[unit]") {
  TtlCrossCheck c;
  c.on_ttl(kTarget, 1, kT0, "none");
  c.on_ttl(kTarget, 2, kT0, "unknown");
  std::vector<CrossCheckVerdict> v;
  c.flush(v);
  CHECK(v.empty());
  CHECK(c.stats().no_ttl_path == 2);
}

// A probe waits until the taps' samples have passed its window (or the hold expires).
TEST_CASE("ttl cross-check: waits for the taps", "[unit]") {
  TtlCrossCheck c(20 * kMs, 3000 * kMs);
  taps(c, 0, 60, "express-connect");
  c.on_ttl(kTarget, 1, kT0 + 50 * kMs, "express-connect");
  std::vector<CrossCheckVerdict> v;
  c.poll(kT0 + 100 * kMs, v);
  CHECK(v.empty());  // samples up to +60 ms only; the window reaches +70 ms
  taps(c, 61, 71, "express-connect");
  c.poll(kT0 + 100 * kMs, v);
  CHECK(v.size() == 1);
  c.on_ttl(kTarget, 2, kT0 + 500 * kMs, "express-connect");
  c.poll(kT0 + 3400 * kMs, v);
  CHECK(v.size() == 1);
  c.poll(kT0 + 3500 * kMs, v);
  REQUIRE(v.size() == 2);
  CHECK(v[1].kind == CrossCheckVerdict::Kind::Undecided);  // no tap sample near +500 ms
}

// Out of order (the agent's samples: a probe lost beyond a tap is sampled when its fate is known,
// after later probes): a newer sample does not complete a window; the probe waits for the hold,
// and then sees the late samples (here the other path: a switchover in progress, undecided).
TEST_CASE("ttl cross-check: out-of-order samples wait for the hold", "[unit]") {
  TtlCrossCheck c(20 * kMs, 3000 * kMs, false);
  taps(c, 0, 10, "express-connect");
  c.on_ttl(kTarget, 1, kT0 + 15 * kMs, "ipsec");
  taps(c, 40, 60, "ipsec");  // later probes, sampled first
  std::vector<CrossCheckVerdict> v;
  c.poll(kT0 + 100 * kMs, v);
  CHECK(v.empty());          // in order, this would have judged against express-connect alone
  taps(c, 11, 39, "ipsec");  // the window's own probes, sampled late
  c.poll(kT0 + 3015 * kMs, v);
  REQUIRE(v.size() == 1);
  CHECK(v[0].kind == CrossCheckVerdict::Kind::Undecided);
}
