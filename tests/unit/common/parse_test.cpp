#include "pathsentry/common/parse.h"

#include <catch2/catch.hpp>
#include <cstdint>

using pathsentry::parse_number;

// Whole-string numbers parse; empty, trailing junk and out-of-range text do not.
TEST_CASE("parse_number takes whole strings only", "[unit][common]") {
  REQUIRE(parse_number<int>("862") == 862);
  REQUIRE(parse_number<std::int64_t>("-200") == -200);
  REQUIRE(parse_number<double>("2.5") == 2.5);
  REQUIRE_FALSE(parse_number<int>(""));
  REQUIRE_FALSE(parse_number<int>("12x"));
  REQUIRE_FALSE(parse_number<int>(" 12"));
  REQUIRE_FALSE(parse_number<std::uint8_t>("256"));
  REQUIRE_FALSE(parse_number<double>("1.5e"));
}
