// Launch-time pacing against the real kernel (issue 14, docs/probe.md "Pacing"): the socket
// takes SO_TXTIME and the per-datagram launch time beside the TX timestamp id, and on a qdisc
// that sends at once (loopback's noqueue) the TX timestamps show it and the session falls back.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "engine/fake_socket.h"
#include "pathsentry/probe/engine/probe_session.h"
#include "pathsentry/probe/io/probe_sockets.h"

using namespace pathsentry;
using namespace pathsentry::probe;

TEST_CASE("launch times on a qdisc that ignores them: sent, seen early, turned off",
          "[integration][session]") {
  // A UDP sink on loopback to send to (nothing answers: only the TX timestamps matter).
  const int sink_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(sink_fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(sink_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(sink_fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);

  io::ProbeSocketOptions o;
  o.target = *IpAddress::parse("127.0.0.1");
  o.port = ntohs(addr.sin_port);
  auto opened = io::open_udp_socket(o);
  REQUIRE(opened.has_value());
  const int fd = opened->socket->native_handle();

  SessionConfig c;
  c.target = o.target;
  c.proto = Proto::Stamp;
  c.rate_pps = 1000;
  c.timeout_ns = 1'000'000'000;
  c.session_id = 0x51;
  WireFormat wf;
  wf.proto = Proto::Stamp;
  wf.family = AF_INET;
  wf.session_id = c.session_id;
  wf.datagram_size = datagram_size_for(Proto::Stamp, 0);
  test::CollectingSink sink;
  SystemClock clock;
  ProbeSession s(c, wf, std::move(opened->socket), sink);
  s.start(clock.monotonic_ns(), 1'000'000, 8'000'000);
  REQUIRE(s.launch_time() == ProbeSession::LaunchTime::Trial);  // SO_TXTIME taken
  // Slot 0 now and slot 1 handed over 1 ms ahead: the kernel takes both cmsgs.
  REQUIRE(s.send_due(clock) == 2);
  REQUIRE(s.summary().counters.send_errors == 0);
  for (int tries = 0; tries < 200 && s.launch_time() == ProbeSession::LaunchTime::Trial; ++tries) {
    pollfd p{fd, 0, 0};
    poll(&p, 1, 10);  // POLLERR: a TX timestamp waits
    s.service_io(clock);
  }
  // noqueue sent slot 1 at once, ~1 ms before its launch time.
  REQUIRE(s.launch_time() == ProbeSession::LaunchTime::Off);
  CHECK_THAT(s.launch_time_note(), Catch::Contains("before its launch time"));
  close(sink_fd);
}
