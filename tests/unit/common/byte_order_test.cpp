#include "pathsentry/common/byte_order.h"

#include <array>
#include <catch2/catch.hpp>
#include <cstdint>

// Fields are written and read most significant byte first.
TEST_CASE("big-endian fields", "[unit][byte_order]") {
  std::array<std::uint8_t, 8> b{};
  pathsentry::be::put16(b.data(), 0x1234);
  CHECK(b[0] == 0x12);
  CHECK(b[1] == 0x34);
  CHECK(pathsentry::be::get16(b.data()) == 0x1234);
  pathsentry::be::put32(b.data(), 0x89ABCDEFu);
  CHECK(b[0] == 0x89);
  CHECK(b[3] == 0xEF);
  CHECK(pathsentry::be::get32(b.data()) == 0x89ABCDEFu);
  pathsentry::be::put64(b.data(), 0x0102030405060708ull);
  CHECK(b[0] == 0x01);
  CHECK(b[7] == 0x08);
  CHECK(pathsentry::be::get64(b.data()) == 0x0102030405060708ull);
  pathsentry::be::put64(b.data(), 0xFFFFFFFF00000001ull);
  CHECK(pathsentry::be::get64(b.data()) == 0xFFFFFFFF00000001ull);
}
