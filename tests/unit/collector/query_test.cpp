// Query strings and times of the GET endpoints; the ingest body parser's edges; the
// constant-time comparison.
#include "query.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

#include "collector/ingest_bodies.h"
#include "pathsentry/collector/ingest.h"

namespace pathsentry::collector {

TEST_CASE("parse_query decodes and refuses unknown, repeated and badly encoded names", "[unit]") {
  const auto q =
      parse_query("target=192.0.2.1&kind=switch%6Fver&&agent=a+b", {"target", "kind", "agent"});
  REQUIRE(q);
  CHECK(q->at("target") == "192.0.2.1");
  CHECK(q->at("kind") == "switchover");
  CHECK(q->at("agent") == "a+b");
  CHECK(parse_query("", {})->empty());
  CHECK(parse_query("x=1", {"y"}).error() ==
        "unknown query parameter 'x' (this endpoint takes: y)");
  CHECK(parse_query("y=1&y=2", {"y"}).error() == "query parameter 'y' given twice");
  CHECK(parse_query("y=%4", {"y"}).error() == "bad percent-encoding in the query");
  CHECK(parse_query("y=%g1", {"y"}).error() == "bad percent-encoding in the query");
}

TEST_CASE("parse_time_ns takes integer ns and RFC 3339", "[unit]") {
  CHECK(parse_time_ns("1700000000000000000") == 1'700'000'000'000'000'000);
  CHECK(parse_time_ns("2023-11-14T22:13:20Z") == 1'700'000'000'000'000'000);
  CHECK(parse_time_ns("2023-11-14T22:13:20.5Z") == 1'700'000'000'500'000'000);
  CHECK(parse_time_ns("2023-11-14T22:13:20.000000001z") == 1'700'000'000'000'000'001);
  CHECK(parse_time_ns("2023-11-14T23:13:20+01:00") == 1'700'000'000'000'000'000);
  CHECK(parse_time_ns("2023-11-14 21:13:20-01:00") == 1'700'000'000'000'000'000);
  CHECK(parse_time_ns("1970-01-01T00:00:00Z") == 0);
  for (const char* bad : {"", "-5", "yesterday", "2023-11-14", "2023-11-14T22:13:20",
                          "2023-13-14T22:13:20Z", "2023-11-31T22:13:20Z", "2023-11-14T22:13:20.Z",
                          "2023-11-14T22:13:20+0100", "2023-11-14T22:13:20Zjunk", "1e9"}) {
    INFO(bad);
    CHECK_FALSE(parse_time_ns(bad));
  }
}

// Found by fuzz/query_fuzz.cpp (UBSan): a year after 2262 overflowed secs * 1e9.
TEST_CASE("parse_time_ns: RFC 3339 times beyond int64 ns are refused", "[unit]") {
  CHECK(parse_time_ns("2262-04-11T23:47:16.854775807Z") == INT64_MAX);
  CHECK_FALSE(parse_time_ns("2262-04-11T23:47:16.854775808Z"));
  CHECK_FALSE(parse_time_ns("2262-04-11T23:47:17Z"));
  const auto far = parse_time_ns("3026-01-02T03:04:05.123Z");
  REQUIRE_FALSE(far);
  CHECK(far.error().find("1970 to 2262") != std::string::npos);
  CHECK_FALSE(parse_time_ns("9999-12-31T23:59:60-23:59"));
}

TEST_CASE("parse_unsigned bounds", "[unit]") {
  CHECK(parse_unsigned("5", 1, 10) == 5u);
  CHECK(parse_unsigned("0", 1, 10).error() == "is out of range 1..10");
  CHECK(parse_unsigned("-1", 1, 10).error() == "is not an unsigned integer");
  CHECK(parse_unsigned("", 1, 10).error() == "is not an unsigned integer");
}

TEST_CASE("parse_ingest_body: a body's lines in order, CRLF taken", "[unit]") {
  test::Body b;
  b.add(test::probe_at(1, test::kT0)).add(test::rollup(test::kT0, Direction::Forward, "x", 1, 1));
  b.add(test::switchover_event(3, test::kT0));
  auto parsed = parse_ingest_body(b.text);
  REQUIRE(parsed);
  CHECK(parsed->header == test::FakeStore::header());
  CHECK(parsed->probes.size() == 1);
  CHECK(parsed->rollups.size() == 1);
  REQUIRE(parsed->events.size() == 1);
  CHECK(parsed->events[0].event_id == 3);
  // The same agent named on a line is fine; a rollup off a whole second is not.
  std::string same;
  probe::append_json(test::probe_at(2, test::kT0), same, "dc1");
  CHECK(parse_ingest_body(test::Body().line(same.substr(0, same.size() - 1)).text));
  auto off = test::rollup(test::kT0 + 1, Direction::Forward, "x", 1, 1);
  CHECK(parse_ingest_body(test::Body().add(off).text).error() ==
        "line 2: field 'second_ns' is not a whole second");
  std::string crlf = b.text;
  for (std::size_t p = crlf.find('\n'); p != std::string::npos; p = crlf.find('\n', p + 2))
    crlf.insert(p, "\r");
  CHECK(parse_ingest_body(crlf));
}

TEST_CASE("constant_time_equal", "[unit]") {
  CHECK(constant_time_equal("abcdef", "abcdef"));
  CHECK_FALSE(constant_time_equal("abcdeg", "abcdef"));
  CHECK_FALSE(constant_time_equal("abc", "abcdef"));
  CHECK_FALSE(constant_time_equal("abcdefg", "abcdef"));
  CHECK_FALSE(constant_time_equal("", "abcdef"));
  CHECK_FALSE(constant_time_equal("", ""));  // no empty secret ever matches
}

}  // namespace pathsentry::collector
