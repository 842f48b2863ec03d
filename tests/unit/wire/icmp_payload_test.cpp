#include "pathsentry/probe/wire/icmp_payload.h"

#include <array>
#include <catch2/catch.hpp>

namespace icmp = pathsentry::probe::icmp;

// The payload round-trips and sits at its documented offsets.
TEST_CASE("icmp payload round trip", "[unit][icmp]") {
  icmp::Payload p{0xA1B2C3D4, 7, 0x0102030405060708ULL, 1'764'000'000'000'000'001LL};
  std::array<std::uint8_t, 40> buf{};
  REQUIRE(icmp::encode(p, buf) == icmp::kPayloadSize);
  REQUIRE(buf[0] == 'P');
  REQUIRE(buf[3] == 'T');
  REQUIRE(buf[8] == 0xA1);
  REQUIRE(buf[15] == 7);
  REQUIRE(buf[23] == 0x08);
  REQUIRE(icmp::decode(buf) == p);
}

// Foreign or short payloads are not ours.
TEST_CASE("icmp payload rejects foreign data", "[unit][icmp]") {
  std::array<std::uint8_t, 40> buf{};
  REQUIRE_FALSE(icmp::decode(buf));
  icmp::encode(icmp::Payload{}, buf);
  REQUIRE_FALSE(icmp::decode(std::span(buf).first(31)));
  buf[4] = 2;  // unknown version
  REQUIRE_FALSE(icmp::decode(buf));
}
