// Capture files (probe/capture open_file): the agent reads plain pcap files' records in place
// and hands over to libpcap at the first irregular one (issue 14). The input is a whole file;
// it is read both ways, through open_file and through libpcap directly, and any difference in
// the frames (time, bytes, lengths, link type) or in how the file ends is a crash.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "capture/pcap_read_both.h"

using namespace pathsentry;

namespace {

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
  const test::PcapRead want = test::read_by_libpcap(path);
  const test::PcapRead got = test::read_by_open_file(path);
  // open_file may refuse a link type the decoder does not take; a file libpcap refuses it must
  // refuse too. What both read must be the same, frame for frame, and end the same way.
  if (got.opened && !want.opened) std::abort();
  if (got.end == "timeout") std::abort();  // a file never times out
  const bool want_clean = want.end == "end";
  const bool got_clean = got.end == "end";
  if (got.opened && (got.frames != want.frames || got_clean != want_clean)) std::abort();
  return 0;
}
