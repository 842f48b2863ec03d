// Capture files (probe/capture open_file): the agent reads plain pcap files' records in place
// and hands over to libpcap at the first irregular one (issue 14). The input is a whole file;
// it is read both ways, through open_file and through libpcap directly, and any difference in
// the frames (time, bytes, lengths, link type) or in how the file ends is a crash.

#include <pcap/pcap.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "pathsentry/probe/capture/packet_source.h"

using namespace pathsentry::probe;

namespace {

struct Got {
  std::int64_t ts_ns;
  std::vector<std::uint8_t> bytes;
  std::uint32_t wire_len;
  int link;
  friend bool operator==(const Got&, const Got&) = default;
};

struct Read {
  bool opened = false;
  std::vector<Got> frames;
  bool clean_end = false;  // the file ended, as opposed to a read error
};

Read by_libpcap(const std::string& path) {
  Read r;
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (p == nullptr) return r;
  r.opened = true;
  pcap_pkthdr* h = nullptr;
  const u_char* d = nullptr;
  int rc = 0;
  while ((rc = pcap_next_ex(p, &h, &d)) == 1) {
    r.frames.push_back({std::int64_t{h->ts.tv_sec} * 1'000'000'000 + h->ts.tv_usec,
                        std::vector<std::uint8_t>(d, d + h->caplen), h->len, pcap_datalink(p)});
  }
  r.clean_end = rc == PCAP_ERROR_BREAK;
  pcap_close(p);
  return r;
}

Read by_open_file(const std::string& path) {
  Read r;
  auto src = open_file(path);
  if (!src) return r;
  r.opened = true;
  Frame f;
  for (;;) {
    const auto st = (*src)->next(f);
    if (!st) break;
    if (*st == ReadStatus::End) {
      r.clean_end = true;
      break;
    }
    if (*st == ReadStatus::Timeout) std::abort();  // a file never times out
    r.frames.push_back({f.ts_ns, std::vector<std::uint8_t>(f.bytes.begin(), f.bytes.end()),
                        f.wire_len, f.linktype});
  }
  return r;
}

// The one scratch file of this process, removed at exit.
struct Scratch {
  std::string path = "/tmp/pathsentry-fuzz-pcap-" + std::to_string(getpid());
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::remove(path.c_str()); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Scratch scratch;
  const std::string& path = scratch.path;
  std::FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) return 0;
  const bool written = std::fwrite(data, 1, size, out) == size;
  std::fclose(out);
  if (!written) return 0;
  const Read want = by_libpcap(path);
  const Read got = by_open_file(path);
  // open_file may refuse a link type the decoder does not take; a file libpcap refuses it must
  // refuse too. What both read must be the same, frame for frame, and end the same way.
  if (got.opened && !want.opened) std::abort();
  if (got.opened && (got.frames != want.frames || got.clean_end != want.clean_end)) std::abort();
  return 0;
}
