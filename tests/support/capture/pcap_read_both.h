#pragma once
// A capture file read two ways: through open_file (the agent's offline reader, records read in
// place up to the first irregular one) and through libpcap directly. Used by the integration
// test and the pcap_file fuzz target, which both require the two to agree.

#include <pcap/pcap.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pathsentry/probe/capture/packet_source.h"

namespace pathsentry::test {

struct PcapFrame {
  std::int64_t ts_ns;
  std::vector<std::uint8_t> bytes;
  std::uint32_t wire_len;
  int link;
  friend bool operator==(const PcapFrame&, const PcapFrame&) = default;
};

struct PcapRead {
  bool opened = false;  ///< the file was accepted
  std::vector<PcapFrame> frames;
  std::string end;  ///< "end", "timeout" (a file must never time out) or the read error
};

/// libpcap directly, as open_file's source did before it read records in place.
inline PcapRead read_by_libpcap(const std::string& path) {
  PcapRead r;
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (p == nullptr) {
    r.end = err;
    return r;
  }
  r.opened = true;
  pcap_pkthdr* h = nullptr;
  const u_char* d = nullptr;
  int rc = 0;
  while ((rc = pcap_next_ex(p, &h, &d)) == 1) {
    r.frames.push_back({std::int64_t{h->ts.tv_sec} * 1'000'000'000 + h->ts.tv_usec,
                        std::vector<std::uint8_t>(d, d + h->caplen), h->len, pcap_datalink(p)});
  }
  r.end = rc == PCAP_ERROR_BREAK ? "end" : std::string("pcap read: ") + pcap_geterr(p);
  pcap_close(p);
  return r;
}

/// The agent's reader.
inline PcapRead read_by_open_file(const std::string& path) {
  PcapRead r;
  auto src = probe::open_file(path);
  if (!src) {
    r.end = src.error();
    return r;
  }
  r.opened = true;
  probe::Frame f;
  for (;;) {
    const auto st = (*src)->next(f);
    if (!st) {
      r.end = st.error();
      break;
    }
    if (*st != probe::ReadStatus::Frame) {
      r.end = *st == probe::ReadStatus::End ? "end" : "timeout";
      break;
    }
    r.frames.push_back({f.ts_ns, std::vector<std::uint8_t>(f.bytes.begin(), f.bytes.end()),
                        f.wire_len, f.linktype});
  }
  return r;
}

}  // namespace pathsentry::test
