#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "capture/pcap_builder.h"
#include "common/sample_records.h"
#include "pathsentry/common/record_json.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace pathsentry::test::sample_records;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

// Records wait in the buffer for flush(); an event goes out at once and takes them along.
TEST_CASE("json lines writer to a file", "[integration][record_json]") {
  test::TempDir dir;
  const auto path = dir.file("out.jsonl");
  {
    JsonLinesWriter w(path, "dc1");
    w.write(stamp_record());
    CHECK(slurp(path).empty());
    w.write(switchover());
    const auto text = slurp(path);
    CHECK(std::count(text.begin(), text.end(), '\n') == 2);
    w.write(lost_icmp());
    REQUIRE(w.flush());
    CHECK(w.lines() == 3);
  }
  {
    JsonLinesWriter again(path);  // appends
    again.write(lost_icmp());
  }
  std::ifstream f(path);
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    INFO(line);
    REQUIRE(parse_json_line(line));
    ++n;
  }
  CHECK(n == 4);
  CHECK_THROWS_WITH(JsonLinesWriter(dir.file("no/such/dir/out.jsonl")),
                    Catch::Contains("no/such/dir"));
}

// A stuck output keeps lines pending (nothing lost, nothing doubled) and drops only beyond the
// buffer bound, counting what it dropped.
TEST_CASE("json lines writer with a stuck output", "[integration][record_json]") {
  int fds[2];
  REQUIRE(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
  REQUIRE(fcntl(fds[1], F_SETPIPE_SZ, 4096) >= 0);
  std::string got;
  auto drain = [&] {
    char b[65536];
    ssize_t n;
    while ((n = read(fds[0], b, sizeof b)) > 0) got.append(b, static_cast<std::size_t>(n));
  };
  {
    JsonLinesWriter w(fds[1], "");
    w.set_max_buffer_bytes(64 * 1024);
    int written = 0;
    for (int i = 0; i < 200; ++i, ++written) w.write(stamp_record());
    const auto r = w.flush();
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::resource_unavailable_try_again);
    CHECK(w.pending_bytes() > 0);
    for (int i = 0; i < 2000; ++i) w.write(stamp_record());
    CHECK(w.dropped_lines() > 0);
    while (w.pending_bytes() > 0) {
      drain();
      (void)w.flush();
    }
    drain();
    const auto lines = static_cast<std::uint64_t>(std::count(got.begin(), got.end(), '\n'));
    CHECK(lines == w.lines());
    CHECK(lines + w.dropped_lines() == 2200);
  }
  close(fds[0]);
  close(fds[1]);
  std::istringstream in(got);
  std::string line;
  while (std::getline(in, line)) REQUIRE(parse_json_line(line));
}
