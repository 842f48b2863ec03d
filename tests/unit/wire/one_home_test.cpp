// The rules sender and attributor share (issue 9 item 3): a probe's IP size and the requests a
// stateful reflector counted between two of its replies.
#include <netinet/in.h>

#include <catch2/catch.hpp>

#include "pathsentry/probe/wire/probe_wire.h"
#include "pathsentry/probe/wire/seq.h"

using pathsentry::Proto;
using pathsentry::probe::probe_ip_bytes;
using pathsentry::probe::reflector_arrivals_between;

// IP header by family, plus the UDP header for STAMP, plus what the socket was handed.
TEST_CASE("a probe's IP size", "[unit][probe_wire]") {
  CHECK(probe_ip_bytes(AF_INET, Proto::Icmp, 64) == 84u);
  CHECK(probe_ip_bytes(AF_INET6, Proto::Icmp, 64) == 104u);
  CHECK(probe_ip_bytes(AF_INET, Proto::Stamp, 44) == 72u);
  CHECK(probe_ip_bytes(AF_INET6, Proto::Stamp, 44) == 92u);
}

// Consecutive replies: nobody in between; a jump of n: n - 1 requests; across the 32-bit wrap.
TEST_CASE("reflector arrivals between two replies", "[unit][seq]") {
  CHECK(reflector_arrivals_between(7, 8) == 0u);
  CHECK(reflector_arrivals_between(7, 11) == 3u);
  CHECK(reflector_arrivals_between(0xFFFFFFFEu, 1) == 2u);
  CHECK(reflector_arrivals_between(5, 5) == 0xFFFFFFFFu);  // not a later reply: no small count
}
