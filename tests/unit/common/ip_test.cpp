#include "pathsentry/common/ip.h"

#include <catch2/catch.hpp>

using pathsentry::IpAddress;
using pathsentry::IpPrefix;

// Addresses of both families parse and print back; junk is refused.
TEST_CASE("ip address parse and print", "[unit][common]") {
  REQUIRE(IpAddress::parse("192.168.20.161")->to_string() == "192.168.20.161");
  REQUIRE(IpAddress::parse("2001:db8::1")->family == AF_INET6);
  REQUIRE_FALSE(IpAddress::parse(""));
  REQUIRE_FALSE(IpAddress::parse("300.1.1.1"));
  REQUIRE_FALSE(IpAddress::parse("not-an-address"));
  REQUIRE_FALSE(IpAddress::parse(std::string(100, '1')));
}

// Prefix membership respects length and family, including non-octet lengths.
TEST_CASE("ip prefix contains", "[unit][common]") {
  const auto dc = *IpPrefix::parse("172.16.0.0/16");
  REQUIRE(dc.contains(*IpAddress::parse("172.16.1.188")));
  REQUIRE_FALSE(dc.contains(*IpAddress::parse("172.17.0.1")));
  REQUIRE_FALSE(dc.contains(*IpAddress::parse("::1")));
  const auto odd = *IpPrefix::parse("10.1.0.0/30");
  REQUIRE(odd.contains(*IpAddress::parse("10.1.0.3")));
  REQUIRE_FALSE(odd.contains(*IpAddress::parse("10.1.0.4")));
  REQUIRE(IpPrefix::parse("192.168.20.161")->length == 32);
  REQUIRE(IpPrefix::parse("0.0.0.0/0")->contains(*IpAddress::parse("8.8.8.8")));
  SECTION("malformed prefixes are refused") {
    REQUIRE_FALSE(IpPrefix::parse("10.0.0.0/33"));
    REQUIRE_FALSE(IpPrefix::parse("10.0.0.0/"));
    REQUIRE_FALSE(IpPrefix::parse("10.0.0.0/8x"));
    REQUIRE_FALSE(IpPrefix::parse("2001:db8::/129"));
  }
}
