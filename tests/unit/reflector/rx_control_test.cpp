// The reflector's control-message parser against hand-built buffers: whole, truncated and
// hostile lengths (issue 13: control messages were read without checking cmsg_len).
#include "rx_control.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>

using namespace pathsentry::probe;

namespace {

struct Control {
  alignas(cmsghdr) unsigned char buf[512]{};
  msghdr msg{};
  std::size_t used = 0;
  Control() {
    msg.msg_control = buf;
    msg.msg_controllen = sizeof buf;
  }
  // Appends a message of `level`/`type` with `data`, claiming cmsg_len = CMSG_LEN(claimed).
  void add(int level, int type, const void* data, std::size_t size, std::size_t claimed) {
    auto* c = reinterpret_cast<cmsghdr*>(buf + used);
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(claimed);
    std::memcpy(CMSG_DATA(c), data, size);
    used += CMSG_SPACE(size);
    msg.msg_controllen = used;
  }
};

}  // namespace

TEST_CASE("rx control: TTL, TOS and destination read when whole", "[unit][reflector]") {
  Control c;
  const int ttl = 61;
  const unsigned char tos = 0xB9;
  in_pktinfo pi{};
  pi.ipi_addr.s_addr = htonl(0xC6120002);
  c.add(IPPROTO_IP, IP_TTL, &ttl, sizeof ttl, sizeof ttl);
  c.add(IPPROTO_IP, IP_TOS, &tos, 1, 1);
  c.add(IPPROTO_IP, IP_PKTINFO, &pi, sizeof pi, sizeof pi);
  const RxInfo info = parse_rx_control(c.msg);
  REQUIRE(info.ttl == 61);
  REQUIRE(info.tos == 0xB9);
  REQUIRE(info.have_v4_dst);
  REQUIRE(info.v4.ipi_addr.s_addr == htonl(0xC6120002));
}

TEST_CASE("rx control: a message shorter than its type is ignored", "[unit][reflector]") {
  Control c;
  const int ttl = 61;
  in6_pktinfo pi{};
  c.add(IPPROTO_IP, IP_TTL, &ttl, sizeof ttl, 2);  // claims 2 bytes of an int
  c.add(IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof pi, sizeof pi - 4);
  const RxInfo info = parse_rx_control(c.msg);
  REQUIRE_FALSE(info.ttl.has_value());
  REQUIRE_FALSE(info.have_v6_dst);
}

TEST_CASE("rx control: a header shorter than itself ends the walk", "[unit][reflector]") {
  Control c;
  const int ttl = 61;
  c.add(IPPROTO_IP, IP_TTL, &ttl, sizeof ttl, sizeof ttl);
  reinterpret_cast<cmsghdr*>(c.buf)->cmsg_len = 4;  // less than a cmsghdr
  const RxInfo info = parse_rx_control(c.msg);
  REQUIRE_FALSE(info.ttl.has_value());
  // An empty control buffer (MSG_CTRUNC with nothing) is no message at all.
  c.msg.msg_controllen = 0;
  REQUIRE_FALSE(parse_rx_control(c.msg).ttl.has_value());
}

// Issue 13: EPERM/EACCES from sendmmsg (a firewall rule or policy) is final for that reply:
// dropped and counted as denied, never waited on or retried; a full buffer is waited on a few
// times, EINTR retried.
TEST_CASE("reflector send failures are classified", "[unit][reflector]") {
  REQUIRE(classify_send_failure(EPERM, 0) == SendFailure::Denied);
  REQUIRE(classify_send_failure(EACCES, 0) == SendFailure::Denied);
  REQUIRE(classify_send_failure(EINTR, 0) == SendFailure::Retry);
  REQUIRE(classify_send_failure(EAGAIN, 0) == SendFailure::WaitForRoom);
  REQUIRE(classify_send_failure(ENOBUFS, kMaxFullWaits - 1) == SendFailure::WaitForRoom);
  REQUIRE(classify_send_failure(ENOBUFS, kMaxFullWaits) == SendFailure::Drop);
  REQUIRE(classify_send_failure(EMSGSIZE, 0) == SendFailure::Drop);
}

// Found by fuzz/control_fuzz.cpp: the first message's cmsg_len was trusted past the end of the
// control buffer (CMSG_FIRSTHDR does not check it), so a short buffer was read beyond its end.
TEST_CASE("rx control: a message claiming more than the buffer holds is read to its end only",
          "[unit][reflector]") {
  Control c;
  const int ttl = 61;
  c.add(IPPROTO_IP, IP_TTL, &ttl, sizeof ttl, sizeof ttl);  // the int lies in buf...
  c.msg.msg_controllen = CMSG_LEN(2);                       // ...but past the buffer handed in
  REQUIRE_FALSE(parse_rx_control(c.msg).ttl.has_value());
  c.msg.msg_controllen = CMSG_LEN(sizeof ttl);  // the same message whole is read
  REQUIRE(parse_rx_control(c.msg).ttl == 61);
}
