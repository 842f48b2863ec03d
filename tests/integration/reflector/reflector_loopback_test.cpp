#include <sched.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/ip.h"
#include "pathsentry/reflector/reflector.h"
#include "reflector_client.h"

using pathsentry::IpAddress;
using pathsentry::IpPrefix;
using pathsentry::probe::ReflectorConfig;
using pathsentry::test::Child;
using pathsentry::test::eventually;
using pathsentry::test::realtime_ns;
using pathsentry::test::reflector_binary;
using pathsentry::test::RunningReflector;
using pathsentry::test::StampClient;
namespace stamp = pathsentry::probe::stamp;

namespace {

ReflectorConfig loopback_config() {
  ReflectorConfig c;
  c.allow = {*IpPrefix::parse("127.0.0.0/8"), *IpPrefix::parse("::1/128")};
  c.bind = {*IpAddress::parse("127.0.0.1"), *IpAddress::parse("::1")};
  c.port = 0;
  return c;
}

}  // namespace

// Over loopback v4 and v6: same-size replies with zeroed padding from the address asked,
// the sender's sequence echoed, the reflector's counting from 0, t_tx <= t2 <= t3 <= t_rx,
// the request's TTL reported and its DSCP copied (ECN cleared).
TEST_CASE("reflector answers on loopback over IPv4 and IPv6", "[integration][reflector]") {
  RunningReflector r(loopback_config());
  const auto port = r.server.port();
  REQUIRE(port != 0);
  REQUIRE(r.server.endpoints() == std::vector<std::string>{"127.0.0.1:" + std::to_string(port),
                                                           "[::1]:" + std::to_string(port)});
  for (const char* target : {"127.0.0.1", "::1"}) {
    INFO(target);
    StampClient client(target, port);
    client.set_ttl_tos(77, 0xB9);
    for (std::uint32_t i = 0; i < 5; ++i) {
      const std::int64_t tx = realtime_ns();
      const std::size_t size = 44 + 100 * i;
      REQUIRE(client.send(1000 + i, 7, size, tx) == static_cast<ssize_t>(size));
      const auto reply = client.receive(2000);
      REQUIRE(reply.has_value());
      REQUIRE(reply->bytes.size() == size);
      for (std::size_t k = 44; k < size; ++k) REQUIRE(reply->bytes[k] == 0);
      REQUIRE(reply->from == *IpAddress::parse(target));
      REQUIRE(reply->from_port == port);
      const auto& p = reply->packet;
      REQUIRE(p.sender_sequence == 1000 + i);
      REQUIRE(p.sequence == i);
      REQUIRE(p.ssid == 7);
      REQUIRE(p.sender_ttl == 77);
      REQUIRE(stamp::ntp_to_ns(p.sender_timestamp) == tx);
      const auto t2 = stamp::ntp_to_ns(p.receive_timestamp);
      const auto t3 = stamp::ntp_to_ns(p.timestamp);
      REQUIRE(tx <= t2);
      REQUIRE(t2 <= t3);
      REQUIRE(t3 <= reply->rx_ns);
      REQUIRE(reply->tos == 0xB8);
    }
  }
  REQUIRE(eventually([&] { return r.server.counters().replied == 10; }));
  REQUIRE(r.server.counters().received == 10);
}

// A long run through the recvmmsg/sendmmsg batches: every request is answered exactly once,
// and the reflector's sequence numbers are exactly 0..N-1.
TEST_CASE("reflector answers a long batched run without loss or duplicates",
          "[integration][reflector]") {
  auto config = loopback_config();
  // Both limits lifted: a fast machine runs this window above the global default (200 000/s).
  config.rate_limit = {100'000'000, 1'000'000};
  config.global_rate_limit = {100'000'000, 1'000'000};
  RunningReflector r(config);
  StampClient client("127.0.0.1", r.server.port());
  constexpr std::uint32_t kCount = 100'000;
  constexpr std::uint32_t kWindow = 256;
  std::vector<std::uint8_t> seen_sender(kCount, 0);
  std::vector<std::uint8_t> seen_reflector(kCount, 0);
  std::uint32_t sent = 0;
  std::uint32_t received = 0;
  while (received < kCount) {
    while (sent < kCount && sent - received < kWindow) {
      REQUIRE(client.send(sent, 1) == 44);
      ++sent;
    }
    const auto reply = client.receive(2000);
    if (!reply) {
      const auto c = r.server.counters();
      INFO("sent " << sent << ", received " << received << "; the reflector received " << c.received
                   << ", replied " << c.replied << ", global-rate-limited "
                   << c.dropped_global_rate_limited << ", rate-limited " << c.dropped_rate_limited);
      REQUIRE(reply.has_value());
    }
    const auto s = reply->packet.sender_sequence;
    const auto q = reply->packet.sequence;
    REQUIRE(s < kCount);
    REQUIRE(q < kCount);
    REQUIRE(seen_sender[s]++ == 0);
    REQUIRE(seen_reflector[q]++ == 0);
    ++received;
  }
  REQUIRE(eventually([&] { return r.server.counters().replied == kCount; }));
  const auto c = r.server.counters();
  REQUIRE(c.received == kCount);
  REQUIRE(c.send_errors == 0);
}

// The binary refuses to start without an allowlist: exit status 2 and an error naming it.
TEST_CASE("reflector binary refuses an empty allowlist", "[integration][reflector]") {
  REQUIRE(std::filesystem::exists(reflector_binary()));
  char tmpl[] = "/tmp/pathsentry-reflector-stderr-XXXXXX";
  const int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  Child child({reflector_binary(), "--port", "0"}, tmpl);
  REQUIRE(child.wait() == 2);
  std::ifstream err(tmpl);
  const std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  std::remove(tmpl);
  REQUIRE_THAT(text, Catch::Contains("allow") && Catch::Contains("empty"));
}

// --check-config validates, prints the configuration and exits 0 without binding anything.
TEST_CASE("reflector binary --check-config", "[integration][reflector]") {
  REQUIRE(std::filesystem::exists(reflector_binary()));
  Child child({reflector_binary(), "--allow", "127.0.0.0/8", "--port", "862", "--check-config"});
  const auto line = child.wait_line("config OK:");
  REQUIRE(line.has_value());
  REQUIRE_THAT(*line, Catch::Contains("allow=[127.0.0.0/8]") && Catch::Contains("port=862"));
  REQUIRE(child.wait() == 0);
}

// The binary prints its readiness line, answers, and on SIGTERM exits 0 printing counters.
TEST_CASE("reflector binary serves on loopback and exits cleanly", "[integration][reflector]") {
  REQUIRE(std::filesystem::exists(reflector_binary()));
  Child child({reflector_binary(), "--allow", "127.0.0.1/32", "--bind", "127.0.0.1", "--port", "0",
               "--log-level", "warn"});
  const auto ready = child.wait_line("reflector listening on ");
  REQUIRE(ready.has_value());
  const auto port = pathsentry::test::port_of_ready_line(*ready);
  REQUIRE(*ready == "reflector listening on 127.0.0.1:" + std::to_string(port));
  StampClient client("127.0.0.1", port);
  for (std::uint32_t i = 0; i < 3; ++i) {
    REQUIRE(client.send(i) == 44);
    const auto reply = client.receive(2000);
    REQUIRE(reply.has_value());
    REQUIRE(reply->packet.sequence == i);
  }
  REQUIRE(child.stop() == 0);
  REQUIRE_THAT(child.rest(), Catch::Contains("reflector counters: received=3 replied=3 "));
}

// A socket that cannot be bound stops startup with an error naming the address and port, an
// EnvironmentError (exit status 3, retried by the unit), not a configuration error.
TEST_CASE("reflector server reports bind failures", "[integration][reflector]") {
  pathsentry::SystemClock clock;
  SECTION("port in use") {
    RunningReflector first(loopback_config());
    auto c = loopback_config();
    c.port = first.server.port();
    REQUIRE_THROWS_WITH(pathsentry::probe::ReflectorServer(c, clock),
                        Catch::Contains("cannot listen on 127.0.0.1:" + std::to_string(c.port)) &&
                            Catch::Contains("in use"));
    REQUIRE_THROWS_AS(pathsentry::probe::ReflectorServer(c, clock), pathsentry::EnvironmentError);
  }
  SECTION("address not on this host") {
    auto c = loopback_config();
    c.bind = {*IpAddress::parse("192.0.2.1")};  // TEST-NET-1: bind only, nothing is sent
    REQUIRE_THROWS_WITH(pathsentry::probe::ReflectorServer(c, clock),
                        Catch::Contains("cannot listen on 192.0.2.1:") &&
                            Catch::Contains("not an address of this host"));
    REQUIRE_THROWS_AS(pathsentry::probe::ReflectorServer(c, clock), pathsentry::EnvironmentError);
  }
}

namespace {

/// A thread's scheduling policy and real-time priority, from /proc/PID/task/TID/stat (fields 41
/// and 40, counted after the command name in parentheses, which may hold spaces).
std::pair<int, int> policy_of(pid_t pid, const std::string& tid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + tid + "/stat");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return {-1, -1};
  std::istringstream rest(text.substr(close + 2));
  std::vector<std::string> fields;
  for (std::string s; rest >> s;) fields.push_back(s);
  // fields[0] is field 3 (state): field N is fields[N - 3].
  if (fields.size() < 39) return {-1, -1};
  return {std::stoi(fields[41 - 3]), std::stoi(fields[40 - 3])};
}

}  // namespace

// rt_priority: the answering thread (the main one) runs SCHED_FIFO at the priority asked, the
// metrics server's threads keep the default policy; 0 leaves every thread alone. Needs root
// (or RLIMIT_RTPRIO).
TEST_CASE("reflector binary answers at SCHED_FIFO with --rt-priority", "[privileged]") {
  REQUIRE(std::filesystem::exists(reflector_binary()));
  for (const int prio : {0, 7}) {
    INFO("--rt-priority " << prio);
    Child child({reflector_binary(), "--allow", "127.0.0.1/32", "--bind", "127.0.0.1", "--port",
                 "0", "--metrics-listen", "127.0.0.1:0", "--rt-priority", std::to_string(prio)});
    const auto ready = child.wait_line("reflector listening on ");
    REQUIRE(ready.has_value());
    const std::string main_tid = std::to_string(child.pid());
    const int want_policy = prio > 0 ? SCHED_FIFO : SCHED_OTHER;
    REQUIRE(eventually([&] { return policy_of(child.pid(), main_tid).first == want_policy; }));
    CHECK(policy_of(child.pid(), main_tid).second == prio);
    std::size_t others = 0;
    for (const auto& t : std::filesystem::directory_iterator("/proc/" + main_tid + "/task")) {
      const std::string tid = t.path().filename().string();
      if (tid == main_tid) continue;
      ++others;
      INFO("thread " << tid);
      CHECK(policy_of(child.pid(), tid).first == SCHED_OTHER);
    }
    CHECK(others >= 1);  // the metrics server's
    // It still answers.
    const auto port = pathsentry::test::port_of_ready_line(*ready);
    StampClient client("127.0.0.1", port);
    REQUIRE(client.send(1) == 44);
    REQUIRE(client.receive(2000).has_value());
    REQUIRE(child.stop() == 0);
  }
}
