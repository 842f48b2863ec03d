// The spool on disk: names, order across a restart, the bound (raw probe lines first, never
// rollups or events), torn and foreign files.
#include "pathsentry/probe/ship/spool.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "agent/agent_process.h"
#include "common/sample_records.h"
#include "pathsentry/probe/ship/batch.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using Catch::Matchers::Contains;
using pathsentry::test::ScratchDir;
using pathsentry::test::slurp;
namespace fs = std::filesystem;
namespace sample = pathsentry::test::sample_records;

namespace {

BatchHeader header(const std::string& run, std::uint64_t batch, std::int64_t created) {
  return BatchHeader{"dc1", run, batch, created, "0.1.0"};
}

// A batch of one rollup, one event and `probes` probe records.
std::string body(const BatchHeader& h, int probes) {
  Rollup r;
  r.target = "192.0.2.1";
  r.second_ns = 1'700'000'000'000'000'000;
  r.sent = 1;
  PathEvent e = sample::switchover();
  e.event_id = h.batch;
  std::vector<ProbeRecord> recs;
  for (int i = 0; i < probes; ++i) {
    ProbeRecord p = sample::stamp_record();
    p.seq = static_cast<std::uint64_t>(i);
    recs.push_back(p);
  }
  return encode_batch(h, std::vector<Rollup>{r}, std::vector<PathEvent>{e}, recs);
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

struct Logs {
  std::vector<std::string> lines;
  std::function<void(const std::string&)> fn() {
    return [this](const std::string& l) { lines.push_back(l); };
  }
  [[nodiscard]] std::string all() const {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
  }
};

// The queue's names front to back, acknowledging each (pop_front deletes the file).
std::vector<std::string> queued(Spool& s) {
  std::vector<std::string> names;
  while (!s.empty()) {
    names.push_back(s.front().name);
    s.pop_front();
  }
  return names;
}

}  // namespace

TEST_CASE(
    "spool: one fsync'd file per batch, named by run and batch, sent in order, "
    "and after a restart the earlier runs' files first, oldest batch first",
    "[integration]") {
  ScratchDir dir("pathsentry-spool-");
  const std::string d = dir.file("spool");
  {
    Spool s(SpoolOptions{d, 1 << 20, {}});
    CHECK(fs::is_directory(d + "/rejected"));
    // Run "bbbb…" began before run "aaaa…": the header's creation time orders them, not names.
    REQUIRE(
        s.add(header("bbbbbbbbbbbbbbbb", 1, 1000), body(header("bbbbbbbbbbbbbbbb", 1, 1000), 2)));
    REQUIRE(
        s.add(header("bbbbbbbbbbbbbbbb", 2, 2000), body(header("bbbbbbbbbbbbbbbb", 2, 2000), 2)));
    REQUIRE(
        s.add(header("aaaaaaaaaaaaaaaa", 1, 3000), body(header("aaaaaaaaaaaaaaaa", 1, 3000), 2)));
    CHECK(s.stats().files == 3);
    CHECK(s.stats().written == 3);
    CHECK(s.front().name == "bbbbbbbbbbbbbbbb-000000000001.ndjson");
    // Exactly the body, under its final name; no temporary left.
    CHECK(slurp(d + "/bbbbbbbbbbbbbbbb-000000000002.ndjson") ==
          body(header("bbbbbbbbbbbbbbbb", 2, 2000), 2));
    for (const auto& e : fs::directory_iterator(d)) {
      CHECK_FALSE(e.path().filename().string().starts_with(".tmp-"));
    }
    auto front = s.read_front();
    REQUIRE(front);
    CHECK(*front == body(header("bbbbbbbbbbbbbbbb", 1, 1000), 2));
  }
  // A new process: the three files are queued again, by their headers' creation time.
  Spool s(SpoolOptions{d, 1 << 20, {}});
  CHECK(s.stats().files == 3);
  CHECK(s.stats().bytes == fs::file_size(d + "/aaaaaaaaaaaaaaaa-000000000001.ndjson") * 3);
  REQUIRE(s.add(header("0000000000000000", 1, 10), body(header("0000000000000000", 1, 10), 1)));
  const auto names = queued(s);
  CHECK(names == std::vector<std::string>{"bbbbbbbbbbbbbbbb-000000000001.ndjson",
                                          "bbbbbbbbbbbbbbbb-000000000002.ndjson",
                                          "aaaaaaaaaaaaaaaa-000000000001.ndjson",
                                          "0000000000000000-000000000001.ndjson"});
  CHECK(s.stats().files == 0);
  CHECK(s.stats().bytes == 0);
  std::size_t left = 0;
  for (const auto& e : fs::directory_iterator(d)) left += e.is_regular_file() ? 1 : 0;
  CHECK(left == 0);  // pop_front deleted them
}

TEST_CASE("spool bound: the oldest files lose their probe lines first, rollups and events never",
          "[integration]") {
  ScratchDir dir("pathsentry-spool-");
  const std::string d = dir.file("spool");
  const std::string run = "cccccccccccccccc";
  const std::size_t one = body(header(run, 1, 1), 10).size();
  const std::size_t stripped = [&] {
    std::uint64_t n = 0;
    return strip_probe_lines(body(header(run, 1, 1), 10), n).size();
  }();
  REQUIRE(stripped < one / 3);
  Logs logs;
  // Room for two and a half whole batches.
  Spool s(SpoolOptions{d, one * 5 / 2, logs.fn()});
  REQUIRE(s.add(header(run, 1, 1), body(header(run, 1, 1), 10)));
  REQUIRE(s.add(header(run, 2, 2), body(header(run, 2, 2), 10)));
  CHECK(s.stats().dropped_raw_records == 0);
  REQUIRE(s.add(header(run, 3, 3), body(header(run, 3, 3), 10)));
  // Over by half a batch: batch 1 (the oldest) loses its 10 probe lines, nothing else.
  CHECK(s.stats().dropped_raw_records == 10);
  const std::string f1 = slurp(d + "/" + Spool::file_name(run, 1));
  CHECK(count(f1, "\"type\":\"probe\"") == 0);
  CHECK(count(f1, "\"type\":\"rollup\"") == 1);
  CHECK(count(f1, "\"type\":\"event\"") == 1);
  CHECK(count(f1, "\"type\":\"batch\"") == 1);
  CHECK(count(slurp(d + "/" + Spool::file_name(run, 2)), "\"type\":\"probe\"") == 10);
  CHECK(s.stats().bytes == stripped + 2 * one);
  CHECK(s.stats().over_bound == 0);
  CHECK_THAT(logs.all(),
             Contains("dropped the 10 raw probe record(s) of " + Spool::file_name(run, 1)));

  // A tighter spool: after stripping every file it is still over; it keeps them and says so.
  Logs logs2;
  Spool tight(SpoolOptions{dir.file("tight"), stripped * 2, logs2.fn()});
  for (std::uint64_t b = 1; b <= 4; ++b)
    REQUIRE(tight.add(header(run, b, 1), body(header(run, b, 1), 10)));
  CHECK(tight.stats().dropped_raw_records == 40);
  CHECK(tight.stats().files == 4);
  CHECK(tight.stats().bytes == 4 * stripped);
  CHECK(tight.stats().over_bound > 0);
  CHECK_THAT(logs2.all(), Contains("STILL OVER ITS BOUND"));
  for (std::uint64_t b = 1; b <= 4; ++b) {
    const std::string f = slurp(dir.file("tight") + "/" + Spool::file_name(run, b));
    CHECK(count(f, "\"type\":\"rollup\"") == 1);
    CHECK(count(f, "\"type\":\"event\"") == 1);
  }
  // The loud line comes once per crossing, not per add.
  CHECK(count(logs2.all(), "STILL OVER ITS BOUND") == 1);
}

TEST_CASE("spool at start: torn or foreign batch files go to rejected/ with a log line, once",
          "[integration]") {
  ScratchDir dir("pathsentry-spool-");
  const std::string d = dir.file("spool");
  fs::create_directories(d);
  const std::string run = "dddddddddddddddd";
  const std::string good = body(header(run, 3, 3), 2);
  std::ofstream(d + "/" + Spool::file_name(run, 3)) << good;
  // A crash between write and rename: the temporary, cut short.
  std::ofstream(d + "/.tmp-" + Spool::file_name(run, 4)) << good.substr(0, good.size() / 2);
  // A file without its final newline (cut short under its final name: a bad disk, a copy).
  std::ofstream(d + "/" + Spool::file_name(run, 1)) << good.substr(0, good.size() - 1);
  // A file whose first line is no batch line.
  std::ofstream(d + "/" + Spool::file_name(run, 2)) << "{\"type\":\"probe\"}\n";
  std::ofstream(d + "/README") << "not ours\n";
  Logs logs;
  Spool s(SpoolOptions{d, 1 << 20, logs.fn()});
  CHECK(s.stats().files == 1);
  CHECK(s.front().name == Spool::file_name(run, 3));
  CHECK(s.stats().rejected == 3);
  CHECK(fs::exists(d + "/rejected/.tmp-" + Spool::file_name(run, 4)));
  CHECK(fs::exists(d + "/rejected/" + Spool::file_name(run, 1)));
  CHECK(fs::exists(d + "/rejected/" + Spool::file_name(run, 2)));
  CHECK(fs::exists(d + "/README"));
  CHECK(count(logs.all(), "REJECTED") == 3);
  CHECK_THAT(logs.all(), Contains("an unfinished write"));
  CHECK_THAT(logs.all(), Contains("incomplete (no final newline)"));
  CHECK_THAT(logs.all(), Contains("not a batch: line 1"));
  // Not again at the next start.
  Logs again;
  Spool s2(SpoolOptions{d, 1 << 20, again.fn()});
  CHECK(s2.stats().files == 1);
  CHECK(s2.stats().rejected == 0);

  // Refused for good at send time: moved aside, out of the queue; a second one of the same name
  // does not overwrite the first.
  s2.reject_front("HTTP 400 line 3: bad");
  CHECK(s2.empty());
  CHECK(fs::exists(d + "/rejected/" + Spool::file_name(run, 3)));
  std::ofstream(d + "/" + Spool::file_name(run, 3)) << good;
  Spool s3(SpoolOptions{d, 1 << 20, {}});
  s3.reject_front("again");
  CHECK(fs::exists(d + "/rejected/" + Spool::file_name(run, 3) + ".1"));
}

TEST_CASE("spool: a directory that cannot be made is an error saying which", "[integration]") {
  ScratchDir dir("pathsentry-spool-");
  std::ofstream(dir.file("file")) << "x";
  try {
    Spool s(SpoolOptions{dir.file("file") + "/spool", 1 << 20, {}});
    FAIL("no error");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(), Contains("cannot create " + dir.file("file") + "/spool"));
  }
}
