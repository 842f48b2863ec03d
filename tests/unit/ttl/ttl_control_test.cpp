// The TTL socket's error-queue parser against hand-built buffers: a whole ICMP error, and
// truncated ones that claim less than they need (issue 13: the sock_extended_err was copied
// without checking cmsg_len).
#include "ttl_control.h"

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>  // struct timespec, which linux/errqueue.h uses without including it

#include <catch2/catch.hpp>
#include <cstring>

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

struct ErrorControl {
  alignas(cmsghdr) unsigned char buf[512]{};
  msghdr msg{};
  // One IP_RECVERR from the ICMP layer (time exceeded) with its offender 10.1.0.1, claiming
  // cmsg_len = CMSG_LEN(claimed) (default: all of it), then an SCM_TIMESTAMPNS.
  explicit ErrorControl(std::size_t claimed = sizeof(sock_extended_err) + sizeof(sockaddr_in),
                        std::size_t ts_claimed = sizeof(timespec)) {
    sock_extended_err ee{};
    ee.ee_origin = SO_EE_ORIGIN_ICMP;
    ee.ee_type = 11;
    ee.ee_code = 0;
    sockaddr_in off{};
    off.sin_family = AF_INET;
    off.sin_addr.s_addr = htonl(0x0A010001);
    auto* c = reinterpret_cast<cmsghdr*>(buf);
    c->cmsg_level = SOL_IP;
    c->cmsg_type = IP_RECVERR;
    c->cmsg_len = CMSG_LEN(claimed);
    std::memcpy(CMSG_DATA(c), &ee, sizeof ee);
    std::memcpy(CMSG_DATA(c) + sizeof ee, &off, sizeof off);
    std::size_t used = CMSG_SPACE(sizeof ee + sizeof off);
    auto* t = reinterpret_cast<cmsghdr*>(buf + used);
    t->cmsg_level = SOL_SOCKET;
    t->cmsg_type = SCM_TIMESTAMPNS;
    t->cmsg_len = CMSG_LEN(ts_claimed);
    const timespec ts{1'767'225'600, 5};
    std::memcpy(CMSG_DATA(t), &ts, sizeof ts);
    used += CMSG_SPACE(sizeof ts);
    msg.msg_control = buf;
    msg.msg_controllen = used;
  }
};

}  // namespace

TEST_CASE("ttl control: a whole ICMP error", "[unit][ttl]") {
  const ErrorControl c;
  const auto e = parse_ttl_error_control(c.msg);
  REQUIRE(e.has_value());
  CHECK(e->offender == *IpAddress::parse("10.1.0.1"));
  CHECK(e->icmp_type == 11);
  CHECK_FALSE(e->icmp6);
  CHECK(e->rx_ns == 1'767'225'600'000'000'005);
}

TEST_CASE("ttl control: an error shorter than a sock_extended_err is no error", "[unit][ttl]") {
  const ErrorControl c(sizeof(sock_extended_err) - 4);
  REQUIRE_FALSE(parse_ttl_error_control(c.msg).has_value());
}

TEST_CASE("ttl control: an error without room for its offender has none", "[unit][ttl]") {
  const ErrorControl c(sizeof(sock_extended_err));
  REQUIRE_FALSE(parse_ttl_error_control(c.msg).has_value());
}

TEST_CASE("ttl control: a truncated timestamp is not read", "[unit][ttl]") {
  const ErrorControl c(sizeof(sock_extended_err) + sizeof(sockaddr_in), sizeof(timespec) - 8);
  const auto e = parse_ttl_error_control(c.msg);
  REQUIRE(e.has_value());
  CHECK(e->rx_ns == 0);
}

// Found by fuzz/control_fuzz.cpp: the first message's cmsg_len was trusted past the end of the
// control buffer, so the sock_extended_err was read beyond it.
TEST_CASE("ttl control: an error claiming more than the buffer holds is not read", "[unit][ttl]") {
  ErrorControl c;
  c.msg.msg_controllen = CMSG_LEN(sizeof(sock_extended_err) - 4);  // cmsg_len claims it all
  REQUIRE_FALSE(parse_ttl_error_control(c.msg).has_value());
}

// Found by fuzz/control_fuzz.cpp (UBSan): tv_sec * 1e9 overflowed for a time no clock gives.
TEST_CASE("ttl control: a timestamp out of range is none", "[unit][ttl]") {
  for (const timespec bad :
       {timespec{INT64_MAX / 1000, 0}, timespec{5, 1'000'000'000}, timespec{-1, 0}}) {
    ErrorControl c;
    auto* t = reinterpret_cast<cmsghdr*>(
        c.buf + CMSG_SPACE(sizeof(sock_extended_err) + sizeof(sockaddr_in)));
    std::memcpy(CMSG_DATA(t), &bad, sizeof bad);
    const auto e = parse_ttl_error_control(c.msg);
    REQUIRE(e.has_value());
    CHECK(e->rx_ns == 0);
  }
}
