// pathsentry-probe shipping for real: ICMP to 127.0.0.1 (a raw socket: root), a fake collector on
// loopback; a record and the rollups of every probe arrive; after a SIGTERM with the collector
// away, the next start sends what the first run spooled, first.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent_process.h"
#include "pathsentry/common/record_json.h"
#include "ship/fake_collector.h"
#include "ship/ship_check.h"

using namespace pathsentry;
using Catch::Matchers::Contains;
using pathsentry::test::FakeCollector;
using pathsentry::test::probe_binary;
using pathsentry::test::Received;
using pathsentry::test::ScratchDir;
using pathsentry::test::slurp;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    (void)std::freopen("/dev/null", "w", stdout);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The records of a --records file (probes only).
std::vector<ProbeRecord> records_of(const std::string& path) {
  std::vector<ProbeRecord> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto p = probe::parse_json_line(line);
    REQUIRE(p);
    if (const auto* r = std::get_if<ProbeRecord>(&*p)) out.push_back(*r);
  }
  return out;
}

std::vector<std::string> agent_args(const ScratchDir& dir, const std::string& url,
                                    const std::string& records, const std::string& duration) {
  return {probe_binary(),
          "--target",
          "127.0.0.1",
          "--proto",
          "icmp",
          "--rate",
          "200",
          "--duration",
          duration,
          "--timeout-ms",
          "300",
          "--quiet",
          "--rt-priority",
          "0",
          "--records",
          dir.file(records),
          "--collector-url",
          url,
          "--collector-token-file",
          dir.file("token"),
          "--spool-dir",
          dir.file("spool"),
          "--agent-name",
          "lab-agent"};
}

// Every record of the file arrived once (by run, session, seq); the rollups count each probe
// once per direction. Returns the run.
std::string check_all_arrived(const Received& r, const std::vector<ProbeRecord>& recs) {
  REQUIRE_FALSE(recs.empty());
  REQUIRE_FALSE(r.batches.empty());
  std::string run;
  for (const auto& b : r.batches) {
    CHECK(b.agent == "lab-agent");
    if (run.empty() && r.probes.count(std::make_tuple(b.run, recs[0].session_id, recs[0].seq))) {
      run = b.run;
    }
  }
  REQUIRE_FALSE(run.empty());
  std::uint64_t counted = 0;
  for (const ProbeRecord& p : recs) {
    INFO("seq " << p.seq);
    const auto it = r.probes.find(std::make_tuple(run, p.session_id, p.seq));
    REQUIRE(it != r.probes.end());
    if (!p.late) {
      CHECK(it->second == 1);
      ++counted;
    }
  }
  CHECK(r.sent(run, recs[0].session_id, Direction::Forward) == counted);
  CHECK(r.sent(run, recs[0].session_id, Direction::Reverse) == counted);
  CHECK(r.duplicate_rollups == 0);
  return run;
}

}  // namespace

TEST_CASE("agent ships a record and the rollups of every probe to the collector", "[privileged]") {
  REQUIRE(geteuid() == 0);
  REQUIRE(fs::exists(probe_binary()));
  FakeCollector collector;
  ScratchDir dir("pathsentry-ship-agent-");
  std::ofstream(dir.file("token")) << "lab-token\n";
  const pid_t pid =
      spawn(agent_args(dir, collector.url(), "records.jsonl", "2"), dir.file("agent.log"));
  REQUIRE(wait_exit(pid) == 0);
  const std::string log = slurp(dir.file("agent.log"));
  INFO(log);
  const auto recs = records_of(dir.file("records.jsonl"));
  CHECK(recs.size() >= 300);  // 2 s at 200/s, a few slots may be missed on a loaded machine
  Received r;
  for (const auto& b : collector.accepted()) r.add(b);
  r.check_order();
  check_all_arrived(r, recs);
  for (const auto& req : collector.requests()) {
    CHECK(req.headers.at("authorization") == "Bearer lab-token");
  }
  CHECK_THAT(log, Contains("shipping to " + collector.url() + " as agent lab-agent"));
  CHECK_THAT(log, Contains("raw records dropped 0"));
  CHECK_THAT(log, Contains("0 file(s), 0 bytes left"));
}

TEST_CASE(
    "agent stopped by SIGTERM with the collector away keeps its batches, then the next start "
    "sends them first",
    "[privileged]") {
  REQUIRE(geteuid() == 0);
  ScratchDir dir("pathsentry-ship-agent-");
  std::ofstream(dir.file("token")) << "lab-token\n";
  std::string gone;
  {
    FakeCollector c;  // its port is free again once it is gone
    gone = c.url();
  }
  const pid_t pid = spawn(agent_args(dir, gone, "run1.jsonl", "0"), dir.file("run1.log"));
  std::this_thread::sleep_for(1500ms);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(kill(pid, SIGTERM) == 0);
  REQUIRE(wait_exit(pid) == 0);
  // Outstanding replies (300 ms), the pipeline's drain, then at most 2 s of sending.
  CHECK(std::chrono::steady_clock::now() - t0 < 4s);
  const std::string log1 = slurp(dir.file("run1.log"));
  INFO(log1);
  CHECK_THAT(log1, Contains("Connection refused"));
  CHECK_THAT(log1, Contains("for the next start"));
  std::size_t spooled = 0;
  for (const auto& e : fs::directory_iterator(dir.file("spool"))) {
    spooled += e.is_regular_file() ? 1 : 0;
  }
  CHECK(spooled >= 1);

  FakeCollector collector;
  const pid_t pid2 =
      spawn(agent_args(dir, collector.url(), "run2.jsonl", "1"), dir.file("run2.log"));
  REQUIRE(wait_exit(pid2) == 0);
  Received r;
  for (const auto& b : collector.accepted()) r.add(b);
  r.check_order();
  const std::string run1 = check_all_arrived(r, records_of(dir.file("run1.jsonl")));
  const std::string run2 = check_all_arrived(r, records_of(dir.file("run2.jsonl")));
  CHECK(run1 != run2);
  CHECK(r.batches.front().run == run1);
  bool seen2 = false;
  for (const auto& b : r.batches) {
    seen2 = seen2 || b.run == run2;
    if (seen2) CHECK(b.run == run2);
  }
  CHECK(collector.requests().size() == r.batches.size());
}
