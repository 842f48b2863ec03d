#include "pathsentry/probe/wire/stamp.h"

#include <array>
#include <catch2/catch.hpp>
#include <vector>

namespace st = pathsentry::probe::stamp;

// A Session-Sender packet lands at RFC 8762 Figure 1 offsets, MBZ zeroed, and decodes back.
TEST_CASE("stamp sender packet layout", "[unit][stamp]") {
  st::SenderPacket p;
  p.sequence = 0x01020304;
  p.timestamp = 0x1112131415161718ULL;
  p.error = {true, false, 0x3F, 0x7F};
  p.ssid = 0xABCD;
  std::array<std::uint8_t, 60> buf;
  buf.fill(0xEE);
  REQUIRE(st::encode(p, buf) == 44);
  const std::array<std::uint8_t, 16> head = {0x01, 0x02, 0x03, 0x04, 0x11, 0x12, 0x13, 0x14,
                                             0x15, 0x16, 0x17, 0x18, 0xBF, 0x7F, 0xAB, 0xCD};
  for (std::size_t i = 0; i < head.size(); ++i) REQUIRE(buf[i] == head[i]);
  for (std::size_t i = 16; i < 44; ++i) REQUIRE(buf[i] == 0);
  REQUIRE(buf[44] == 0xEE);  // padding untouched
  REQUIRE(st::decode_sender(buf).value() == p);
}

// A Session-Reflector packet lands at RFC 8762 Figure 3 offsets and decodes back.
TEST_CASE("stamp reflector packet layout", "[unit][stamp]") {
  st::ReflectorPacket p;
  p.sequence = 7;
  p.timestamp = 0xA0A1A2A3A4A5A6A7ULL;
  p.error = {false, true, 1, 2};
  p.ssid = 0x0102;
  p.receive_timestamp = 0xB0B1B2B3B4B5B6B7ULL;
  p.sender_sequence = 0xC0C1C2C3;
  p.sender_timestamp = 0xD0D1D2D3D4D5D6D7ULL;
  p.sender_error = {true, false, 0, 1};
  p.sender_ttl = 63;
  std::array<std::uint8_t, 44> buf{};
  REQUIRE(st::encode(p, buf) == 44);
  REQUIRE(buf[3] == 7);
  REQUIRE(buf[4] == 0xA0);
  REQUIRE(buf[12] == 0x41);
  REQUIRE(buf[13] == 0x02);
  REQUIRE(buf[16] == 0xB0);
  REQUIRE(buf[24] == 0xC0);
  REQUIRE(buf[28] == 0xD0);
  REQUIRE(buf[36] == 0x80);
  REQUIRE(buf[37] == 0x01);
  REQUIRE(buf[38] == 0);
  REQUIRE(buf[39] == 0);
  REQUIRE(buf[40] == 63);
  REQUIRE(buf[41] == 0);
  REQUIRE(buf[43] == 0);
  REQUIRE(st::decode_reflector(buf).value() == p);
}

// Truncated input is an error, never a read past the end.
TEST_CASE("stamp decode refuses truncated packets", "[unit][stamp]") {
  std::vector<std::uint8_t> buf(43, 0xFF);
  REQUIRE(st::decode_sender(buf).error() == st::DecodeError::Truncated);
  REQUIRE(st::decode_reflector(buf).error() == st::DecodeError::Truncated);
  REQUIRE_FALSE(st::decode_sender(std::span<const std::uint8_t>{}));
  std::array<std::uint8_t, 10> small{};
  REQUIRE(st::encode(st::SenderPacket{}, small) == 0);
}

// NTP and PTP conversions round-trip to the nanosecond.
TEST_CASE("stamp timestamp conversions", "[unit][stamp]") {
  const std::int64_t t = 1'764'000'000'123'456'789LL;
  REQUIRE(st::ntp_to_ns(st::ns_to_ntp(t)) == t);
  REQUIRE(st::ptp_to_ns(st::ns_to_ptp(t)) == t);
  REQUIRE((st::ns_to_ntp(0) >> 32) == 2'208'988'800ULL);
  REQUIRE(st::timestamp_to_ns(st::ns_to_ptp(t), {false, true, 0, 1}) == t);
  for (std::int64_t ns = 0; ns < 2000; ++ns) {
    REQUIRE(st::ntp_to_ns(st::ns_to_ntp(t + ns)) == t + ns);
  }
}
