// bench-rtt-error: pathsentry's reported RTT versus the RTT of the same packets on the wire.
//
//   bench-rtt-error --pcap FILE --records FILE [--stamp-port N]
//
// FILE (pcap) is a capture on the agent's interface taken with nanosecond timestamps (e.g.
// `tcpdump --time-stamp-precision=nano -w`); FILE (records) is pathsentry-probe's --records
// output (JSON lines: proto, seq, tx_ns, rx_ns|null, rtt_ns, ...). Packets are matched to
// records by sequence number:
//   STAMP request: UDP to --stamp-port, sequence = payload bytes 0..3 (big-endian)
//   STAMP reply:   UDP from --stamp-port, Session-Sender sequence = payload bytes 24..27
//   ICMP echo request/reply (v4 and v6): pathsentry payload ("PSNT"), sequence = bytes 16..23
// For every answered probe: error = record rtt_ns - (pcap reply ts - pcap request ts). Also
// tx_offset = record tx_ns - pcap request ts and rx_offset = record rx_ns - pcap reply ts, which
// show which end an error comes from (all CLOCK_REALTIME). Answered records whose
// "tx_kernel_ts" is false (send time read in user space) are counted as tx_not_kernel. Prints one
// JSON object per protocol with the distributions (count, min, p1, p50, p99, max, mean; ns). Exit 1
// on unreadable input.

#include <arpa/inet.h>
#include <pcap/pcap.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench_util.h"

namespace {

using pathsentry::bench::distribution_json;

enum class Proto { Stamp, Icmp };

struct Wire {
  std::int64_t request_ns = -1;
  std::int64_t reply_ns = -1;
};

struct Capture {
  std::map<Proto, std::unordered_map<std::uint64_t, Wire>> by_proto;
  std::uint64_t packets = 0;
  std::uint64_t ignored = 0;
  std::uint64_t duplicates = 0;
};

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}
std::uint64_t be64(const std::uint8_t* p) {
  return (std::uint64_t{be32(p)} << 32) | std::uint64_t{be32(p + 4)};
}
std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

void note(Capture& cap, Proto proto, std::uint64_t seq, bool request, std::int64_t ts) {
  Wire& w = cap.by_proto[proto][seq];
  std::int64_t& slot = request ? w.request_ns : w.reply_ns;
  if (slot >= 0) {
    ++cap.duplicates;  // keep the first copy
    return;
  }
  slot = ts;
}

// Returns the L3 packet (starting at the IP header) for the link types we capture on.
std::optional<std::span<const std::uint8_t>> l3(int dlt, std::span<const std::uint8_t> f) {
  std::size_t off = 0;
  std::uint16_t ethertype = 0;
  switch (dlt) {
    case DLT_EN10MB:
      if (f.size() < 14) return std::nullopt;
      ethertype = be16(f.data() + 12);
      off = 14;
      while (ethertype == 0x8100 && f.size() >= off + 4) {  // VLAN tags
        ethertype = be16(f.data() + off + 2);
        off += 4;
      }
      break;
    case DLT_LINUX_SLL:
      if (f.size() < 16) return std::nullopt;
      ethertype = be16(f.data() + 14);
      off = 16;
      break;
    case DLT_LINUX_SLL2:
      if (f.size() < 20) return std::nullopt;
      ethertype = be16(f.data());
      off = 20;
      break;
    case DLT_RAW:
    case 101:  // LINKTYPE_RAW, as stored in files (DLT_RAW is 12 on Linux)
      return f;
    default:
      return std::nullopt;
  }
  if (ethertype != 0x0800 && ethertype != 0x86DD) return std::nullopt;
  if (f.size() < off) return std::nullopt;
  return f.subspan(off);
}

void parse_packet(Capture& cap, int dlt, std::int64_t ts, std::span<const std::uint8_t> frame,
                  std::uint16_t stamp_port) {
  ++cap.packets;
  const auto ip = l3(dlt, frame);
  if (!ip || ip->empty()) {
    ++cap.ignored;
    return;
  }
  const std::uint8_t* p = ip->data();
  const std::size_t n = ip->size();
  std::uint8_t proto = 0;
  std::size_t l4 = 0;
  const int version = p[0] >> 4;
  if (version == 4 && n >= 20) {
    l4 = static_cast<std::size_t>(p[0] & 0x0F) * 4;
    proto = p[9];
    if ((be16(p + 6) & 0x1FFF) != 0) l4 = n;  // a non-first fragment: no L4 header
  } else if (version == 6 && n >= 40) {
    l4 = 40;
    proto = p[6];  // extension headers are not expected on our own probes
  } else {
    ++cap.ignored;
    return;
  }
  if (l4 >= n) {
    ++cap.ignored;
    return;
  }
  const std::uint8_t* t = p + l4;
  const std::size_t tn = n - l4;
  if (proto == 17 && tn >= 8) {
    const std::uint16_t sport = be16(t);
    const std::uint16_t dport = be16(t + 2);
    const std::uint8_t* payload = t + 8;
    const std::size_t pn = tn - 8;
    if (dport == stamp_port && pn >= 4) {
      note(cap, Proto::Stamp, be32(payload), true, ts);
      return;
    }
    if (sport == stamp_port && pn >= 28) {
      note(cap, Proto::Stamp, be32(payload + 24), false, ts);
      return;
    }
  } else if ((proto == 1 || proto == 58) && tn >= 8 + 24) {
    const std::uint8_t type = t[0];
    const bool request = (proto == 1 && type == 8) || (proto == 58 && type == 128);
    const bool reply = (proto == 1 && type == 0) || (proto == 58 && type == 129);
    const std::uint8_t* payload = t + 8;
    if ((request || reply) && be32(payload) == 0x50534E54 /* "PSNT" */) {
      note(cap, Proto::Icmp, be64(payload + 16), request, ts);
      return;
    }
  }
  ++cap.ignored;
}

std::optional<Proto> proto_of(const std::string& s) {
  std::string l;
  for (char c : s) l.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (l == "stamp" || l == "udp") return Proto::Stamp;
  if (l == "icmp" || l == "icmp6" || l == "icmpv6") return Proto::Icmp;
  return std::nullopt;
}

const char* name_of(Proto p) {
  return p == Proto::Stamp ? "stamp" : "icmp";
}

}  // namespace

int main(int argc, char** argv) {
  std::string pcap_path;
  std::string records_path;
  std::uint16_t stamp_port = 862;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--pcap") {
      pcap_path = argv[i + 1];
    } else if (k == "--records") {
      records_path = argv[i + 1];
    } else if (k == "--stamp-port") {
      const std::string v = argv[i + 1];
      if (v.empty() || v.size() > 5 || v.find_first_not_of("0123456789") != std::string::npos ||
          std::stoul(v) == 0 || std::stoul(v) > 65535) {
        std::cerr << "bench-rtt-error: --stamp-port: '" << v << "' is not a port number\n";
        return 2;
      }
      stamp_port = static_cast<std::uint16_t>(std::stoul(v));
    } else {
      std::cerr << "bench-rtt-error: unknown option " << k << "\n";
      return 2;
    }
  }
  if (pcap_path.empty() || records_path.empty()) {
    std::cerr << "usage: bench-rtt-error --pcap FILE --records FILE [--stamp-port N]\n";
    return 2;
  }

  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* pc =
      pcap_open_offline_with_tstamp_precision(pcap_path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (pc == nullptr) {
    std::cerr << "bench-rtt-error: " << pcap_path << ": " << err << "\n";
    return 1;
  }
  const int dlt = pcap_datalink(pc);
  Capture cap;
  pcap_pkthdr* hdr = nullptr;
  const u_char* data = nullptr;
  int rc = 0;
  while ((rc = pcap_next_ex(pc, &hdr, &data)) == 1) {
    // With nanosecond precision, tv_usec holds nanoseconds.
    const std::int64_t ts = static_cast<std::int64_t>(hdr->ts.tv_sec) * 1'000'000'000 +
                            static_cast<std::int64_t>(hdr->ts.tv_usec);
    parse_packet(cap, dlt, ts, {data, hdr->caplen}, stamp_port);
  }
  if (rc == -1) {
    std::cerr << "bench-rtt-error: " << pcap_path << ": " << pcap_geterr(pc) << "\n";
    pcap_close(pc);
    return 1;
  }
  pcap_close(pc);

  std::ifstream in(records_path);
  if (!in) {
    std::cerr << "bench-rtt-error: cannot read " << records_path << "\n";
    return 1;
  }
  struct Series {
    std::vector<std::int64_t> error, abs_error, tx_offset, rx_offset, pcap_rtt, probe_rtt;
    std::uint64_t records = 0, answered = 0, unmatched = 0, tx_user = 0;
  };
  std::map<Proto, Series> series;
  std::uint64_t lines = 0;
  std::uint64_t bad_lines = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++lines;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("proto") || !j.contains("seq") ||
        !j["proto"].is_string() || !j["seq"].is_number_integer()) {
      ++bad_lines;
      continue;
    }
    const auto proto = proto_of(j["proto"].get<std::string>());
    if (!proto) {
      ++bad_lines;
      continue;
    }
    Series& s = series[*proto];
    ++s.records;
    const auto rx = j.value("rx_ns", nlohmann::json(nullptr));
    const auto tx = j.value("tx_ns", nlohmann::json(nullptr));
    if (!rx.is_number_integer() || !tx.is_number_integer()) continue;  // lost probe
    ++s.answered;
    // pathsentry marks probes whose send time is a user-space clock read (no kernel TX
    // timestamp came back): counted, since they are the ones expected to err.
    if (const auto k = j.value("tx_kernel_ts", nlohmann::json(nullptr)); k.is_boolean() && !k) {
      ++s.tx_user;
    }
    const auto rtt_field = j.value("rtt_ns", nlohmann::json(nullptr));
    const std::int64_t probe_rtt = rtt_field.is_number_integer()
                                       ? rtt_field.get<std::int64_t>()
                                       : rx.get<std::int64_t>() - tx.get<std::int64_t>();
    std::uint64_t seq = j["seq"].get<std::uint64_t>();
    if (*proto == Proto::Stamp) seq &= 0xFFFFFFFFULL;  // 32 bits on the wire
    const auto& wires = cap.by_proto[*proto];
    const auto it = wires.find(seq);
    if (it == wires.end() || it->second.request_ns < 0 || it->second.reply_ns < 0) {
      ++s.unmatched;
      continue;
    }
    const std::int64_t pcap_rtt = it->second.reply_ns - it->second.request_ns;
    const std::int64_t e = probe_rtt - pcap_rtt;
    s.error.push_back(e);
    s.abs_error.push_back(e < 0 ? -e : e);
    s.tx_offset.push_back(tx.get<std::int64_t>() - it->second.request_ns);
    s.rx_offset.push_back(rx.get<std::int64_t>() - it->second.reply_ns);
    s.pcap_rtt.push_back(pcap_rtt);
    s.probe_rtt.push_back(probe_rtt);
  }

  nlohmann::json out;
  out["pcap_packets"] = cap.packets;
  out["pcap_ignored"] = cap.ignored;
  out["pcap_duplicates"] = cap.duplicates;
  out["record_lines"] = lines;
  out["record_bad_lines"] = bad_lines;
  for (auto& [proto, s] : series) {
    nlohmann::json p;
    p["records"] = s.records;
    p["answered"] = s.answered;
    p["matched"] = s.error.size();
    p["unmatched"] = s.unmatched;
    p["tx_not_kernel"] = s.tx_user;
    p["error_ns"] = distribution_json(s.error);
    p["abs_error_ns"] = distribution_json(s.abs_error);
    p["tx_offset_ns"] = distribution_json(s.tx_offset);
    p["rx_offset_ns"] = distribution_json(s.rx_offset);
    p["pcap_rtt_ns"] = distribution_json(s.pcap_rtt);
    p["probe_rtt_ns"] = distribution_json(s.probe_rtt);
    out[name_of(proto)] = p;
  }
  std::cout << out.dump() << std::endl;
  return 0;
}
