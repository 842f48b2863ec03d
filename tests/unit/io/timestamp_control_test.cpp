// The timestamp parsers (probe/io timestamping.h) against hand-built control buffers: whole,
// cut short by the buffer, and out of range (found by fuzz/control_fuzz.cpp: the first
// message's cmsg_len was trusted past the buffer, and tv_sec * 1e9 could overflow).
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>  // struct timespec, which linux/errqueue.h uses without including it

#include "pathsentry/probe/io/timestamping.h"
//
#include <linux/errqueue.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>

using namespace pathsentry::probe::io;

namespace {

// An SCM_TIMESTAMPING (software time `ts`) and, for TX, the IP_RECVERR that carries its id.
struct TsControl {
  alignas(cmsghdr) unsigned char buf[512]{};
  msghdr msg{};
  std::size_t ts_space = 0;
  explicit TsControl(timespec ts, bool tx) {
    auto* c = reinterpret_cast<cmsghdr*>(buf);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_TIMESTAMPING;
    c->cmsg_len = CMSG_LEN(sizeof(scm_timestamping));
    scm_timestamping s{};
    s.ts[0] = ts;
    std::memcpy(CMSG_DATA(c), &s, sizeof s);
    ts_space = CMSG_SPACE(sizeof s);
    std::size_t used = ts_space;
    if (tx) {
      auto* e = reinterpret_cast<cmsghdr*>(buf + used);
      e->cmsg_level = SOL_IP;
      e->cmsg_type = IP_RECVERR;
      e->cmsg_len = CMSG_LEN(sizeof(sock_extended_err));
      sock_extended_err ee{};
      ee.ee_errno = ENOMSG;
      ee.ee_origin = SO_EE_ORIGIN_TIMESTAMPING;
      ee.ee_data = 7;
      std::memcpy(CMSG_DATA(e), &ee, sizeof ee);
      used += CMSG_SPACE(sizeof ee);
    }
    msg.msg_control = buf;
    msg.msg_controllen = used;
  }
};

}  // namespace

TEST_CASE("timestamp control: whole messages are read", "[unit][io]") {
  const TsControl rx({1'767'225'600, 5}, false);
  CHECK(rx_timestamp_ns(rx.msg) == 1'767'225'600'000'000'005);
  const TsControl tx({1'767'225'600, 9}, true);
  const auto t = parse_tx_timestamp(tx.msg);
  REQUIRE(t.has_value());
  CHECK(t->id == 7);
  CHECK(t->ns == 1'767'225'600'000'000'009);
}

TEST_CASE("timestamp control: a message cut by the buffer is not read", "[unit][io]") {
  TsControl rx({1'767'225'600, 5}, false);
  rx.msg.msg_controllen = CMSG_LEN(sizeof(timespec));  // cmsg_len still claims three times
  CHECK_FALSE(rx_timestamp_ns(rx.msg).has_value());
  rx.msg.msg_flags = MSG_CTRUNC;
  CHECK_FALSE(rx_timestamp_ns(rx.msg).has_value());
}

TEST_CASE("timestamp control: a time out of range is none", "[unit][io]") {
  for (const timespec bad :
       {timespec{INT64_MAX / 1000, 0}, timespec{5, 1'000'000'000}, timespec{-1, 0}}) {
    const TsControl rx(bad, false);
    CHECK_FALSE(rx_timestamp_ns(rx.msg).has_value());
    const TsControl tx(bad, true);
    CHECK_FALSE(parse_tx_timestamp(tx.msg).has_value());
  }
}
