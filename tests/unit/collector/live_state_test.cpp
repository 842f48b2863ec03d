// The live per-target state: the path of a direction from a second's rollups, since_ns,
// rows of a second arriving in two batches, older seconds ignored.
#include "pathsentry/collector/live_state.h"

#include <catch2/catch.hpp>

#include "collector/ingest_bodies.h"

namespace pathsentry::collector {

using test::kT0;
using test::rollup;
constexpr std::int64_t kSec = 1'000'000'000;

TEST_CASE("dir_state: the path most probes got through, down, undetermined", "[unit]") {
  const auto a = rollup(kT0, Direction::Forward, "express-connect", 10, 9, 1);
  const auto b = rollup(kT0, Direction::Forward, "ipsec", 2, 2);
  auto s = dir_state(Direction::Forward, {&a, &b});
  CHECK(s.path == "express-connect");
  CHECK(s.sent == 12);
  CHECK(s.received == 11);
  CHECK(s.lost() == 1);
  CHECK(s.rtt_p50_ns == 5'000'000);

  // Forward: probes lost on the way back got through forward.
  const auto back = rollup(kT0, Direction::Forward, "ipsec", 5, 0, 0, 5);
  CHECK(dir_state(Direction::Forward, {&back}).path == "ipsec");
  CHECK_FALSE(dir_state(Direction::Forward, {&back}).rtt_p50_ns);
  // Reverse with every probe lost forward: nothing reached the target, so nothing tells the
  // reverse path, yet nothing is proven lost in reverse: undetermined, not down.
  const auto fwd_lost = rollup(kT0, Direction::Reverse, "none", 4, 0, 4);
  CHECK(dir_state(Direction::Reverse, {&fwd_lost}).path == kPathUndetermined);
  const auto rev_lost = rollup(kT0, Direction::Reverse, "none", 4, 0, 0, 4);
  CHECK(dir_state(Direction::Reverse, {&rev_lost}).path == kPathDown);
  const auto all_fwd = rollup(kT0, Direction::Forward, "none", 4, 0, 4);
  CHECK(dir_state(Direction::Forward, {&all_fwd}).path == kPathDown);
  const auto und = rollup(kT0, Direction::Forward, "express-connect", 4, 0, 0, 0, 4);
  CHECK(dir_state(Direction::Forward, {&und}).path == kPathUndetermined);
  const auto unattributed = rollup(kT0, Direction::Forward, "", 4, 4);
  CHECK(dir_state(Direction::Forward, {&unattributed}).path.empty());
}

TEST_CASE("live state: since_ns is the second the path last changed", "[unit]") {
  LiveState live;
  auto changed = live.apply("dc1", {rollup(kT0, Direction::Forward, "express-connect", 1, 1)});
  REQUIRE(changed.size() == 1);
  CHECK(changed[0].forward->path == "express-connect");
  CHECK_FALSE(changed[0].forward->since_ns);  // first seen: not known when it began
  CHECK_FALSE(changed[0].reverse);

  live.apply("dc1", {rollup(kT0 + kSec, Direction::Forward, "express-connect", 1, 1)});
  CHECK_FALSE(live.get("dc1", "192.0.2.10", Proto::Stamp)->forward->since_ns);
  live.apply("dc1", {rollup(kT0 + 2 * kSec, Direction::Forward, "ipsec", 1, 1)});
  CHECK(live.get("dc1", "192.0.2.10", Proto::Stamp)->forward->since_ns == kT0 + 2 * kSec);
  live.apply("dc1", {rollup(kT0 + 3 * kSec, Direction::Forward, "ipsec", 1, 1)});
  const auto s = live.get("dc1", "192.0.2.10", Proto::Stamp);
  CHECK(s->second_ns == kT0 + 3 * kSec);
  CHECK(s->forward->since_ns == kT0 + 2 * kSec);

  // An older second is ignored; another agent is another stream.
  CHECK(live.apply("dc1", {rollup(kT0, Direction::Forward, "x", 1, 1)}).empty());
  CHECK(live.get("dc1", "192.0.2.10", Proto::Stamp)->second_ns == kT0 + 3 * kSec);
  live.apply("dc2", {rollup(kT0, Direction::Forward, "x", 1, 1)});
  CHECK(live.size() == 2);
}

TEST_CASE("live state: a second's rows in two batches merge; a resent row replaces itself",
          "[unit]") {
  LiveState live;
  live.apply("dc1", {rollup(kT0, Direction::Forward, "express-connect", 5, 5)});
  live.apply("dc1", {rollup(kT0 + kSec, Direction::Forward, "ipsec", 3, 3)});
  live.apply("dc1", {rollup(kT0 + kSec, Direction::Forward, "express-connect", 1, 1)});
  live.apply("dc1", {rollup(kT0 + kSec, Direction::Forward, "express-connect", 1, 1)});
  const auto s = live.get("dc1", "192.0.2.10", Proto::Stamp);
  CHECK(s->forward->sent == 4);
  CHECK(s->forward->path == "ipsec");
  CHECK(s->forward->since_ns == kT0 + kSec);  // still against the second before
  // One batch holding several seconds reports the latest once.
  const auto many = live.apply("dc1", {rollup(kT0 + 2 * kSec, Direction::Forward, "ipsec", 1, 1),
                                       rollup(kT0 + 3 * kSec, Direction::Forward, "ipsec", 1, 1)});
  REQUIRE(many.size() == 1);
  CHECK(many[0].second_ns == kT0 + 3 * kSec);
  CHECK(many[0].forward->since_ns == kT0 + kSec);
}

}  // namespace pathsentry::collector
