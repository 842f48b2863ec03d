// open_file reads a plain pcap file's records in place (issue 14: libpcap's two fread calls per
// frame were a sixth of the offline attribution); at the first irregular record libpcap takes
// over. Every file here is read both ways, through open_file and through libpcap directly (what
// open_file did before): the same frames, timestamps, lengths, link type, and the same end or
// error, for both byte orders and timestamp resolutions and for damaged files.

#include <pcap/pcap.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "capture/pcap_builder.h"
#include "capture/pcap_read_both.h"
#include "pathsentry/probe/capture/packet_source.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

struct Record {
  std::uint32_t sec = 0;
  std::uint32_t frac = 0;
  std::uint32_t incl = 0;  // the header's captured length
  std::uint32_t orig = 0;
  std::size_t present = SIZE_MAX;  // bytes of data actually written (cut short when smaller)
  bool header_cut = false;         // only the first 8 bytes of the record header
};

struct FileSpec {
  bool nano = true;
  bool swapped = false;
  std::uint32_t snaplen = 262144;
  std::uint32_t link = 1;
  std::uint16_t minor = 4;
};

void put32(std::string& out, std::uint32_t v, bool swapped) {
  if (swapped) v = __builtin_bswap32(v);
  out.append(reinterpret_cast<const char*>(&v), 4);
}
void put16(std::string& out, std::uint16_t v, bool swapped) {
  if (swapped) v = __builtin_bswap16(v);
  out.append(reinterpret_cast<const char*>(&v), 2);
}

void write(const std::string& path, const FileSpec& f, const std::vector<Record>& recs) {
  std::string b;
  put32(b, f.nano ? 0xa1b23c4d : 0xa1b2c3d4, f.swapped);
  put16(b, 2, f.swapped);
  put16(b, f.minor, f.swapped);
  put32(b, 0, f.swapped);
  put32(b, 0, f.swapped);
  put32(b, f.snaplen, f.swapped);
  put32(b, f.link, f.swapped);
  std::uint8_t fill = 1;
  for (const auto& r : recs) {
    std::string h;
    put32(h, r.sec, f.swapped);
    put32(h, r.frac, f.swapped);
    put32(h, r.incl, f.swapped);
    put32(h, r.orig, f.swapped);
    b += r.header_cut ? h.substr(0, 8) : h;
    if (r.header_cut) break;
    const std::size_t n = std::min<std::size_t>(r.present, r.incl);
    for (std::size_t i = 0; i < n; ++i) b.push_back(static_cast<char>(fill++));
  }
  std::FILE* out = std::fopen(path.c_str(), "wb");
  REQUIRE(out != nullptr);
  REQUIRE(std::fwrite(b.data(), 1, b.size(), out) == b.size());
  std::fclose(out);
}

/// libpcap directly, as open_file's source did before; both must accept the file.
test::PcapRead by_libpcap(const std::string& path) {
  test::PcapRead r = test::read_by_libpcap(path);
  REQUIRE(r.opened);
  return r;
}

/// open_file; a file never times out.
test::PcapRead by_open_file(const std::string& path) {
  test::PcapRead r = test::read_by_open_file(path);
  REQUIRE(r.opened);
  REQUIRE(r.end != "timeout");
  return r;
}

void expect_same(const std::string& path, std::size_t frames, const std::string& end = "end") {
  const test::PcapRead want = by_libpcap(path);
  const test::PcapRead got = by_open_file(path);
  CHECK(want.frames.size() == frames);
  CHECK(got.frames.size() == want.frames.size());
  for (std::size_t i = 0; i < std::min(got.frames.size(), want.frames.size()); ++i) {
    INFO("frame " << i);
    CHECK(got.frames[i].ts_ns == want.frames[i].ts_ns);
    CHECK(got.frames[i].bytes.size() == want.frames[i].bytes.size());
    CHECK(got.frames[i].wire_len == want.frames[i].wire_len);
    CHECK(got.frames[i].link == want.frames[i].link);
  }
  CHECK(got.frames == want.frames);
  CHECK(got.end == want.end);
  if (end == "end") {
    CHECK(got.end == "end");
  } else {
    CHECK(got.end.find(end) != std::string::npos);
  }
}

std::vector<Record> three() {
  // Seconds and a fraction past 2^31: libpcap reads them signed or not by the file's byte order.
  return {{1'700'000'000, 5, 60, 60},
          {1'700'000'000, 999'999'999, 1, 1500},
          {4'000'000'000u, 0, 300, 300},
          {7, 3'000'000'000u, 0, 0}};
}

}  // namespace

TEST_CASE("pcap file: in-place reading gives libpcap's frames", "[integration][tap]") {
  test::TempDir dir;
  const auto path = dir.file("f.pcap");
  for (const bool nano : {true, false}) {
    for (const bool swapped : {false, true}) {
      FileSpec f;
      f.nano = nano;
      f.swapped = swapped;
      INFO("nano " << nano << " swapped " << swapped);
      auto recs = three();
      if (!nano) recs[1].frac = 999'999;
      write(path, f, recs);
      expect_same(path, 4);
      write(path, f, {});  // a header and no record
      expect_same(path, 0);
    }
  }
  FileSpec raw;
  raw.link = 101;  // LINKTYPE_RAW: reported as DLT_RAW
  write(path, raw, three());
  expect_same(path, 4);
  CHECK(by_open_file(path).frames[0].link == DLT_RAW);
  FileSpec old;
  old.minor = 3;  // libpcap's own quirks: read by libpcap throughout
  write(path, old, three());
  expect_same(path, 4);
}

TEST_CASE("pcap file: damaged records go to libpcap", "[integration][tap]") {
  test::TempDir dir;
  const auto path = dir.file("d.pcap");
  for (const bool swapped : {false, true}) {
    FileSpec f;
    f.swapped = swapped;
    auto recs = three();
    recs.push_back({1, 2, 100, 100, 40});  // data cut short at the end
    write(path, f, recs);
    expect_same(path, 4, "truncated");
    recs.back() = Record{1, 2, 100, 100, SIZE_MAX, true};  // record header cut short
    write(path, f, recs);
    expect_same(path, 4, "truncated");
    recs.back() = Record{1, 2, 1'000'000, 1'000'000, 0};  // longer than any snap length
    write(path, f, recs);
    expect_same(path, 4, "capture length");
    // Longer than the file's snap length, then regular records: libpcap's handling of the
    // long one, and libpcap reads on from there.
    f.snaplen = 128;
    recs = three();
    recs[2].incl = 200;
    recs.push_back({7, 8, 64, 64});
    write(path, f, recs);
    const test::PcapRead want = by_libpcap(path);
    const test::PcapRead got = by_open_file(path);
    CHECK(got.frames == want.frames);
    CHECK(got.end == want.end);
  }
}

TEST_CASE("pcap file: many records of random sizes", "[integration][tap]") {
  test::TempDir dir;
  const auto path = dir.file("m.pcap");
  std::mt19937 rng(14);
  std::vector<Record> recs;
  for (std::uint32_t i = 0; i < 5000; ++i) {
    const auto n = static_cast<std::uint32_t>(rng() % 300);
    recs.push_back({1'700'000'000 + i / 1000, static_cast<std::uint32_t>(rng() % 1'000'000'000), n,
                    n + static_cast<std::uint32_t>(rng() % 3)});
  }
  FileSpec f;
  f.snaplen = 300;
  write(path, f, recs);
  expect_same(path, 5000);
}
