// The pathsentry-probe binary end to end: flags, outputs, signals and config checking.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent_process.h"
#include "engine/probe_harness.h"
#include "netns/netns.h"

using Catch::Matchers::Contains;
using pathsentry::test::NetnsPair;
namespace fs = std::filesystem;

namespace {

using pathsentry::test::probe_binary;
using pathsentry::test::slurp;
struct TempDir : pathsentry::test::ScratchDir {
  TempDir() : ScratchDir("pathsentry-probe-cli-") {}
};

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Runs the binary without a namespace (no traffic: only for config checks); returns the exit
// code and fills `out` with stdout+stderr.
int run_local(const std::vector<std::string>& args, std::string& out, const TempDir& dir) {
  std::string cmd = probe_binary();
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " >" + dir.file("out.txt") + " 2>&1";
  const int rc = std::system(cmd.c_str());
  out = slurp(dir.file("out.txt"));
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void warm_up(const NetnsPair& pair) {
  REQUIRE(NetnsPair::exec(pair.a(), "ping -c1 -W2 198.18.0.2 >/dev/null") == 0);
  REQUIRE(NetnsPair::exec(pair.a(), "ping -6 -c1 -W2 fd53::2 >/dev/null") == 0);
}

}  // namespace

// ICMP and STAMP to v4 and v6 targets for one second: exit 0, a live summary on stdout, one
// record per probe and a summary document with the contract's fields.
TEST_CASE("probe cli runs both protocols on both families", "[privileged][probe_cli]") {
  REQUIRE(geteuid() == 0);
  REQUIRE(fs::exists(probe_binary()));
  NetnsPair pair;
  warm_up(pair);
  pathsentry::test::ReflectorInNs reflector(pair.b());
  TempDir dir;
  const pid_t pid = NetnsPair::spawn(pair.a(),
                                     {probe_binary(),
                                      "--target",
                                      NetnsPair::kAddrB4,
                                      "--target",
                                      NetnsPair::kAddrB6,
                                      "--proto",
                                      "both",
                                      "--rate",
                                      "500",
                                      "--duration",
                                      "1",
                                      "--timeout-ms",
                                      "2000",
                                      "--stamp-port",
                                      std::to_string(reflector.port()),
                                      "--agent-id",
                                      "17",
                                      "--records",
                                      dir.file("rec.jsonl"),
                                      "--summary-json",
                                      dir.file("sum.json")},
                                     dir.file("log.txt"));
  REQUIRE(wait_exit(pid) == 0);
  const std::string log = slurp(dir.file("log.txt"));
  INFO(log);
  REQUIRE_THAT(log, Contains("198.18.0.2 stamp") && Contains("fd53::2 icmp") &&
                        Contains("rtt ms min/p50/p99/max"));

  const auto sum = nlohmann::json::parse(slurp(dir.file("sum.json")));
  REQUIRE(sum["duration_s"].get<double>() > 0.9);
  REQUIRE(sum["sessions"].size() == 4);
  std::uint64_t sent = 0;
  for (const auto& s : sum["sessions"]) {
    REQUIRE(s["sent"].get<std::uint64_t>() + s["missed_slots"].get<std::uint64_t>() == 500);
    REQUIRE(s["received"] == s["sent"]);
    REQUIRE(s["lost"] == 0);
    REQUIRE(s["rtt_ns"]["p50"].get<std::int64_t>() > 0);
    REQUIRE(s["rtt_ns"]["max"].get<std::int64_t>() >= s["rtt_ns"]["p99"].get<std::int64_t>());
    REQUIRE(s.contains("jitter_ns"));
    REQUIRE(s["lost_forward"].is_null() == (s["proto"] == "icmp"));
    sent += s["sent"].get<std::uint64_t>();
  }
  std::ifstream rec(dir.file("rec.jsonl"));
  std::string line;
  std::uint64_t lines = 0;
  while (std::getline(rec, line)) {
    const auto j = nlohmann::json::parse(line);
    INFO(line);
    // record_json.h's encoding.
    for (const char* k : {"type", "agent", "target", "proto", "session_id", "seq", "tx_ns", "rx_ns",
                          "rtt_ns", "late", "tx_kernel_ts", "reflector", "fwd_path", "rev_path"}) {
      REQUIRE(j.contains(k));
    }
    REQUIRE(j["agent"] == "17");
    REQUIRE(j["rx_ns"].is_number_integer());
    REQUIRE(j["reflector"].is_null() == (j["proto"] == "icmp"));
    if (j["proto"] == "stamp") REQUIRE(j["reflector"]["seq"] == j["seq"]);
    ++lines;
  }
  REQUIRE(lines == sent);
}

// SIGTERM stops sending, waits for the outstanding replies, writes the summary and exits 0;
// while running, the agent has dropped its capabilities.
TEST_CASE("probe cli stops cleanly on SIGTERM", "[privileged][probe_cli]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  TempDir dir;
  const pid_t pid = NetnsPair::spawn(pair.a(),
                                     {probe_binary(), "--target", NetnsPair::kAddrB4, "--proto",
                                      "icmp", "--rate", "1000", "--duration", "0", "--timeout-ms",
                                      "2000", "--quiet", "--summary-json", dir.file("sum.json")},
                                     dir.file("log.txt"));
  // Wait (up to 10 s) until it is probing: its start line is in the log.
  for (int i = 0; i < 1000 && slurp(dir.file("log.txt")).find("probing") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let some probes fly
  // Once its sockets are open the agent holds no capability, except CAP_SYS_NICE (bit 23) for
  // SCHED_FIFO when RLIMIT_RTPRIO cannot be raised here.
  const std::string status = slurp("/proc/" + std::to_string(pid) + "/status");
  INFO(status);
  const bool none = status.find("CapEff:\t0000000000000000") != std::string::npos;
  const bool nice_only = status.find("CapEff:\t0000000000800000") != std::string::npos &&
                         status.find("CapPrm:\t0000000000800000") != std::string::npos;
  REQUIRE((none || nice_only));
  REQUIRE_THAT(status, Contains("NoNewPrivs:\t1"));
  REQUIRE(NetnsPair::stop(pid) == 0);
  INFO(slurp(dir.file("log.txt")));
  REQUIRE_THAT(slurp(dir.file("log.txt")), Contains("SIGTERM"));
  const auto sum = nlohmann::json::parse(slurp(dir.file("sum.json")));
  const auto& s = sum["sessions"][0];
  REQUIRE(s["sent"].get<std::uint64_t>() > 100);
  REQUIRE(s["received"] == s["sent"]);  // nothing in flight was abandoned
  REQUIRE(s["lost"] == 0);
}

// A reader of --records - that goes away (here `head` after 100 bytes) does not kill the agent
// with SIGPIPE: it probes to the end, says that the records could not be written, and still
// writes its summary.
TEST_CASE("probe cli survives a closed records pipe", "[privileged][probe_cli]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  TempDir dir;
  {
    std::ofstream sh(dir.file("run.sh"));
    sh << probe_binary() << " --target " << NetnsPair::kAddrB4
       << " --proto icmp --rate 1000 --duration 2 --quiet --metrics-listen off --records -"
       << " --summary-json " << dir.file("sum.json") << " 2>" << dir.file("log.txt")
       << " | head -c 100 >/dev/null\n"
       << "echo ${PIPESTATUS[0]} >" << dir.file("rc.txt") << "\n";
  }
  REQUIRE(NetnsPair::exec(pair.a(), "bash " + dir.file("run.sh")) == 0);
  INFO(slurp(dir.file("log.txt")));
  CHECK(slurp(dir.file("rc.txt")) == "0\n");  // 141 = killed by SIGPIPE
  CHECK_THAT(slurp(dir.file("log.txt")), Contains("Broken pipe"));
  const auto sum = nlohmann::json::parse(slurp(dir.file("sum.json")));
  CHECK(sum["sessions"][0]["sent"].get<std::uint64_t>() > 1000);
}

// --check-config validates a file without sending anything; errors name file, key and value
// and exit non-zero; there is no built-in target.
TEST_CASE("probe cli check-config", "[integration][probe_cli]") {
  REQUIRE(fs::exists(probe_binary()));
  TempDir dir;
  std::ofstream(dir.file("ok.toml")) << "[[targets]]\naddress = \"198.18.0.2\"\nproto = \"icmp\"\n";
  std::ofstream(dir.file("bad.toml")) << "[[targets]]\naddress = \"198.18.0.2\"\nrate = -5\n";
  std::string out;
  REQUIRE(run_local({"--config", dir.file("ok.toml"), "--check-config"}, out, dir) == 0);
  REQUIRE_THAT(out, Contains("configuration OK: 1 session"));
  REQUIRE(run_local({"--config", dir.file("bad.toml"), "--check-config"}, out, dir) == 2);
  REQUIRE_THAT(out, Contains(dir.file("bad.toml")) && Contains("targets[0].rate = '-5'"));
  REQUIRE(run_local({"--check-config"}, out, dir) == 2);
  REQUIRE_THAT(out, Contains("no target configured"));
  REQUIRE(run_local({"--help"}, out, dir) == 0);
  REQUIRE_THAT(out, Contains("--records"));
}

namespace {

// Makes namespace b drop every echo request: every probe stays outstanding until its timeout.
void drop_echo_requests(const NetnsPair& pair, const TempDir& dir) {
  std::ofstream(dir.file("drop.nft"))
      << "table inet psdrop {\n chain in {\n  type filter hook input priority 0;\n"
      << "  icmp type echo-request drop\n }\n}\n";
  REQUIRE(NetnsPair::exec(pair.b(), "nft -f " + dir.file("drop.nft")) == 0);
}

void wait_for_log(const std::string& path, const std::string& what) {
  for (int i = 0; i < 2000 && slurp(path).find(what) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::uint64_t count_lines(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::uint64_t n = 0;
  while (std::getline(in, line)) ++n;
  return n;
}

}  // namespace

// A socket that cannot be opened (bind: EADDRNOTAVAIL, the source is no address of this host)
// is a runtime environment failure: exit status 3, which systemd retries, not 2.
TEST_CASE("probe cli exits 3 when the environment is not ready", "[integration][probe_cli]") {
  TempDir dir;
  std::string out;
  REQUIRE(run_local({"--target", "127.0.0.1", "--source", "192.0.2.77", "--proto", "stamp",
                     "--stamp-port", "40862", "--duration", "1", "--metrics-listen", "off"},
                    out, dir) == 3);
  REQUIRE_THAT(out, Contains("--source") && Contains("192.0.2.77") &&
                        Contains("Cannot assign requested address"));
  // A bad value is still a configuration error.
  REQUIRE(run_local({"--target", "127.0.0.1", "--rate", "-1"}, out, dir) == 2);
}

// A tap whose interface does not exist (not up yet at boot) is a runtime failure too.
TEST_CASE("probe cli exits 3 for a tap on a missing interface", "[privileged][probe_cli]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  TempDir dir;
  const pid_t pid = NetnsPair::spawn(
      pair.a(),
      {probe_binary(), "--target", NetnsPair::kAddrB4, "--proto", "icmp", "--duration", "1",
       "--metrics-listen", "off", "--tap", "psnotthere0:ipsec:clear"},
      dir.file("log.txt"));
  INFO(slurp(dir.file("log.txt")));
  REQUIRE(wait_exit(pid) == 3);
  REQUIRE_THAT(slurp(dir.file("log.txt")), Contains("psnotthere0"));
}

// SIGTERM waits at most --drain-ms for outstanding replies (not the hour-long timeout): the
// unanswered probes are declared lost, every record is flushed, the summary written.
TEST_CASE("probe cli caps the drain on SIGTERM", "[privileged][probe_cli]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  TempDir dir;
  drop_echo_requests(pair, dir);
  const pid_t pid = NetnsPair::spawn(pair.a(),
                                     {probe_binary(),
                                      "--target",
                                      NetnsPair::kAddrB4,
                                      "--proto",
                                      "icmp",
                                      "--rate",
                                      "200",
                                      "--duration",
                                      "0",
                                      "--timeout-ms",
                                      "3600000",
                                      "--drain-ms",
                                      "300",
                                      "--quiet",
                                      "--metrics-listen",
                                      "off",
                                      "--records",
                                      dir.file("rec.jsonl"),
                                      "--summary-json",
                                      dir.file("sum.json")},
                                     dir.file("log.txt"));
  wait_for_log(dir.file("log.txt"), "probing");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  REQUIRE(NetnsPair::stop(pid) == 0);  // without the cap this waits an hour (ctest's timeout)
  const std::string log = slurp(dir.file("log.txt"));
  INFO(log);
  REQUIRE_THAT(log, Contains("drain cap reached"));
  const auto sum = nlohmann::json::parse(slurp(dir.file("sum.json")));
  const auto& s = sum["sessions"][0];
  REQUIRE(s["sent"].get<std::uint64_t>() > 0);
  REQUIRE(s["lost"] == s["sent"]);
  REQUIRE(count_lines(dir.file("rec.jsonl")) == s["sent"].get<std::uint64_t>());
}

// With no drain cap, a second SIGTERM ends the wait at once, still flushing every record.
TEST_CASE("probe cli ends at a second SIGTERM", "[privileged][probe_cli]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  TempDir dir;
  drop_echo_requests(pair, dir);
  const pid_t pid = NetnsPair::spawn(pair.a(),
                                     {probe_binary(),
                                      "--target",
                                      NetnsPair::kAddrB4,
                                      "--proto",
                                      "icmp",
                                      "--rate",
                                      "200",
                                      "--duration",
                                      "0",
                                      "--timeout-ms",
                                      "3600000",
                                      "--drain-ms",
                                      "0",
                                      "--quiet",
                                      "--metrics-listen",
                                      "off",
                                      "--records",
                                      dir.file("rec.jsonl"),
                                      "--summary-json",
                                      dir.file("sum.json")},
                                     dir.file("log.txt"));
  wait_for_log(dir.file("log.txt"), "probing");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  REQUIRE(kill(pid, SIGTERM) == 0);
  wait_for_log(dir.file("log.txt"), "stopping");
  REQUIRE(NetnsPair::stop(pid) == 0);  // the second SIGTERM
  const std::string log = slurp(dir.file("log.txt"));
  INFO(log);
  REQUIRE_THAT(log, Contains("again: ending now") && Contains("stop forced"));
  const auto sum = nlohmann::json::parse(slurp(dir.file("sum.json")));
  const auto& s = sum["sessions"][0];
  REQUIRE(s["sent"].get<std::uint64_t>() > 0);
  REQUIRE(s["lost"] == s["sent"]);
  REQUIRE(count_lines(dir.file("rec.jsonl")) == s["sent"].get<std::uint64_t>());
}

// A --records FIFO whose reader never reads: the writes fail (EAGAIN), lines beyond the buffer
// are dropped and counted, while reception goes on: no probe lost, the agent stops as asked.
// Before, the receiver thread wrote the records itself and blocked with the pipe full.
TEST_CASE("probe cli keeps receiving while its records output is blocked",
          "[privileged][probe_cli]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  TempDir dir;
  const std::string fifo = dir.file("rec.fifo");
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // open, never read
  REQUIRE(reader >= 0);
  const pid_t pid = NetnsPair::spawn(
      pair.a(),
      {probe_binary(), "--target", NetnsPair::kAddrB4, "--proto", "icmp", "--rate", "2000",
       "--duration", "2", "--quiet", "--metrics-listen", "off", "--records", fifo,
       "--records-buffer-kb", "64", "--summary-json", dir.file("sum.json")},
      dir.file("log.txt"));
  const int rc = wait_exit(pid);
  close(reader);
  const std::string log = slurp(dir.file("log.txt"));
  INFO(log);
  REQUIRE(rc == 0);
  REQUIRE_THAT(log, Contains("line(s) dropped so far") && Contains("record(s) dropped"));
  const auto sum = nlohmann::json::parse(slurp(dir.file("sum.json")));
  const auto& s = sum["sessions"][0];
  REQUIRE(s["sent"].get<std::uint64_t>() > 1000);
  REQUIRE(s["lost"] == 0);
  REQUIRE(s["received"] == s["sent"]);
}

// A full disk under the records file is reported while running (a log line, the metric), not
// only at exit.
TEST_CASE("probe cli reports a full records disk while running", "[privileged][probe_cli]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  TempDir dir;
  const pid_t pid =
      NetnsPair::spawn(pair.a(),
                       {probe_binary(), "--target", NetnsPair::kAddrB4, "--proto", "icmp", "--rate",
                        "500", "--duration", "0", "--quiet", "--metrics-listen", "127.0.0.1:19779",
                        "--records", "/dev/full"},
                       dir.file("log.txt"));
  wait_for_log(dir.file("log.txt"), "failing");
  const std::string running = slurp(dir.file("log.txt"));
  REQUIRE(NetnsPair::exec(
              pair.a(), "curl -s http://127.0.0.1:19779/metrics >" + dir.file("metrics.txt")) == 0);
  REQUIRE(NetnsPair::stop(pid) == 0);
  INFO(slurp(dir.file("log.txt")));
  REQUIRE_THAT(running, Contains("records: writing to /dev/full failing") &&
                            Contains("No space left on device"));
  const std::string metrics = slurp(dir.file("metrics.txt"));
  INFO(metrics);
  const auto at = metrics.find("\npathsentry_records_write_errors_total ");
  REQUIRE(at != std::string::npos);
  REQUIRE(std::stod(metrics.substr(at + 39)) > 0);
}

// Log rotation: the file renamed away, SIGHUP reopens the configured name; the old file keeps
// what was written before, the new one gets the rest, and no record is lost.
TEST_CASE("probe cli reopens its records file on SIGHUP", "[privileged][probe_cli]") {
  REQUIRE(geteuid() == 0);
  NetnsPair pair;
  warm_up(pair);
  TempDir dir;
  const pid_t pid =
      NetnsPair::spawn(pair.a(),
                       {probe_binary(), "--target", NetnsPair::kAddrB4, "--proto", "icmp", "--rate",
                        "500", "--duration", "0", "--quiet", "--metrics-listen", "off", "--records",
                        dir.file("rec.jsonl"), "--summary-json", dir.file("sum.json")},
                       dir.file("log.txt"));
  wait_for_log(dir.file("log.txt"), "probing");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  fs::rename(dir.file("rec.jsonl"), dir.file("rec.1.jsonl"));
  REQUIRE(kill(pid, SIGHUP) == 0);
  wait_for_log(dir.file("log.txt"), "SIGHUP: reopened");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  REQUIRE(NetnsPair::stop(pid) == 0);
  INFO(slurp(dir.file("log.txt")));
  REQUIRE_THAT(slurp(dir.file("log.txt")), Contains("SIGHUP: reopened"));
  const auto sum = nlohmann::json::parse(slurp(dir.file("sum.json")));
  const std::uint64_t sent = sum["sessions"][0]["sent"].get<std::uint64_t>();
  const std::uint64_t before = count_lines(dir.file("rec.1.jsonl"));
  const std::uint64_t after = count_lines(dir.file("rec.jsonl"));
  REQUIRE(before > 0);
  REQUIRE(after > 0);
  REQUIRE(before + after == sent);
}
