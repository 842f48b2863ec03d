#include "engine/probe_harness.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <future>
#include <stdexcept>

#include "engine/fake_socket.h"
#include "netns/netns.h"
#include "pathsentry/probe/engine/engine.h"
#include "pathsentry/probe/engine/open_session.h"

namespace pathsentry::test {

std::vector<ProbeRecord> EngineRun::of(std::size_t i, std::uint64_t seq) const {
  std::vector<ProbeRecord> out;
  for (const auto& r : records) {
    if (r.session_id == configs.at(i).session_id && r.seq == seq) out.push_back(r);
  }
  return out;
}

probe::SessionConfig test_session(const std::string& target, Proto proto, std::uint32_t id) {
  probe::SessionConfig c;
  c.target = *IpAddress::parse(target);
  c.proto = proto;
  c.rate_pps = 1000;
  c.timeout_ns = 2'000'000'000;  // generous: a busy test machine must not turn delay into loss
  c.agent_id = 5;
  c.session_id = id;
  return c;
}

EngineRun run_engine_in(const std::string& ns, std::vector<probe::SessionConfig> sessions,
                        std::int64_t duration_ns, probe::io::IcmpSocketMode mode) {
  EngineRun out;
  out.configs = sessions;
  CollectingSink sink;
  SystemClock clock;
  probe::EngineOptions eo;
  eo.duration_ns = duration_ns;
  eo.rt_priority = 10;
  probe::Engine engine(clock, eo);
  NetnsPair::in_ns(ns, [&] {
    for (const auto& c : sessions) {
      auto s = probe::open_probe_session(c, mode, sink);
      if (!s) throw std::runtime_error("open socket: " + s.error().message());
      engine.add_session(std::move(s->session));
    }
  });
  engine.run();  // sockets keep the namespace they were opened in
  for (const auto& s : engine.sessions()) out.summaries.push_back(s->summary());
  out.records = std::move(sink.records);
  return out;
}

ReflectorInNs::ReflectorInNs(const std::string& ns) {
  probe::ReflectorConfig cfg;
  cfg.allow = {*IpPrefix::parse("198.18.0.0/24"), *IpPrefix::parse("fd53::/64")};
  cfg.port = 0;
  cfg.rate_limit.pps = 1'000'000;
  cfg.rate_limit.burst = 100'000;
  cfg.stats_interval_ns = 3'600'000'000'000;
  auto started = ready_.get_future();
  thread_ = std::thread([this, ns, cfg] {
    try {
      NetnsPair::in_ns(ns, [&] {
        server_ = std::make_unique<probe::ReflectorServer>(cfg, clock_);
        port_ = server_->port();
        ready_.set_value();
        server_->run();
      });
    } catch (...) {
      try {
        ready_.set_exception(std::current_exception());
      } catch (const std::future_error&) {
      }
    }
  });
  started.get();
}

ReflectorInNs::~ReflectorInNs() {
  if (server_) server_->stop();
  thread_.join();
}

void nft_in(const std::string& ns, const std::string& ruleset) {
  char path[] = "/tmp/pathsentry-nft-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  close(fd);
  std::ofstream(path) << ruleset;
  const std::string cmd = "ip netns exec " + ns + " nft -f " + path;
  const int rc = std::system(cmd.c_str());
  unlink(path);
  if (rc != 0) throw std::runtime_error("nft failed: " + ruleset);
}

}  // namespace pathsentry::test
