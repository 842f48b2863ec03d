#include "capture/pcap_builder.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "pathsentry/probe/wire/icmp_payload.h"
#include "pathsentry/probe/wire/stamp.h"

namespace pathsentry::test {
namespace {

void put16(Bytes& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}
void put32(Bytes& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

std::uint32_t sum16(std::span<const std::uint8_t> d, std::uint32_t acc = 0) {
  for (std::size_t i = 0; i + 1 < d.size(); i += 2) acc += (std::uint32_t{d[i]} << 8) | d[i + 1];
  if (d.size() % 2 != 0) acc += std::uint32_t{d.back()} << 8;
  return acc;
}
std::uint16_t fold(std::uint32_t acc) {
  while ((acc >> 16) != 0) acc = (acc & 0xFFFF) + (acc >> 16);
  return static_cast<std::uint16_t>(~acc & 0xFFFF);
}
/// Transport checksum with the IPv4/IPv6 pseudo-header.
std::uint16_t l4_checksum(const IpAddress& src, const IpAddress& dst, std::uint8_t proto,
                          std::span<const std::uint8_t> l4) {
  std::uint32_t acc = sum16(std::span(src.bytes.data(), src.length()));
  acc = sum16(std::span(dst.bytes.data(), dst.length()), acc);
  acc += proto;
  acc +=
      static_cast<std::uint32_t>(l4.size() & 0xFFFF) + static_cast<std::uint32_t>(l4.size() >> 16);
  return fold(sum16(l4, acc));
}

std::size_t ip_header_len(const IpAddress& a) {
  return a.family == AF_INET6 ? 40 : 20;
}

}  // namespace

IpAddress addr(const char* text) {
  auto a = IpAddress::parse(text);
  if (!a) throw std::invalid_argument(std::string("bad address ") + text);
  return *a;
}

Bytes ip_packet(const IpAddress& src, const IpAddress& dst, std::uint8_t proto,
                std::span<const std::uint8_t> payload, std::uint16_t frag) {
  if (src.family == AF_INET6) {
    Bytes b(40 + payload.size());
    b[0] = 0x60;
    put16(b, 4, static_cast<std::uint16_t>(payload.size()));
    b[6] = proto;
    b[7] = 64;
    std::copy_n(src.bytes.data(), 16, b.data() + 8);
    std::copy_n(dst.bytes.data(), 16, b.data() + 24);
    std::copy(payload.begin(), payload.end(), b.begin() + 40);
    return b;
  }
  Bytes b(20 + payload.size());
  b[0] = 0x45;
  put16(b, 2, static_cast<std::uint16_t>(b.size()));
  put16(b, 4, 0x1234);
  put16(b, 6, frag);
  b[8] = 64;
  b[9] = proto;
  std::copy_n(src.bytes.data(), 4, b.data() + 12);
  std::copy_n(dst.bytes.data(), 4, b.data() + 16);
  put16(b, 10, fold(sum16(std::span(b.data(), 20))));
  std::copy(payload.begin(), payload.end(), b.begin() + 20);
  return b;
}

Bytes icmp_probe(const IpAddress& src, const IpAddress& dst, bool request, std::uint32_t agent_id,
                 std::uint32_t session_id, std::uint64_t seq, std::int64_t tx_ns,
                 std::size_t ip_bytes) {
  const bool v6 = src.family == AF_INET6;
  const std::size_t min = ip_header_len(src) + 8 + probe::icmp::kPayloadSize;
  Bytes icmp(std::max(ip_bytes, min) - ip_header_len(src), 0);
  icmp[0] = v6 ? (request ? 128 : 129) : (request ? 8 : 0);
  put16(icmp, 4, static_cast<std::uint16_t>(session_id));
  put16(icmp, 6, static_cast<std::uint16_t>(seq));
  probe::icmp::encode({agent_id, session_id, seq, tx_ns},
                      std::span(icmp.data() + 8, probe::icmp::kPayloadSize));
  const std::uint16_t ck = v6 ? l4_checksum(src, dst, 58, icmp) : fold(sum16(icmp));
  put16(icmp, 2, ck);
  return ip_packet(src, dst, v6 ? 58 : 1, icmp);
}

Bytes udp_packet(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                 std::uint16_t dport, std::span<const std::uint8_t> payload) {
  Bytes u(8 + payload.size());
  put16(u, 0, sport);
  put16(u, 2, dport);
  put16(u, 4, static_cast<std::uint16_t>(u.size()));
  std::copy(payload.begin(), payload.end(), u.begin() + 8);
  std::uint16_t ck = l4_checksum(src, dst, 17, u);
  if (ck == 0) ck = 0xFFFF;
  put16(u, 6, ck);
  return ip_packet(src, dst, 17, u);
}

Bytes stamp_request(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                    std::uint16_t dport, std::uint32_t seq, std::uint16_t ssid,
                    std::size_t ip_bytes) {
  const std::size_t hdr = ip_header_len(src) + 8;
  Bytes p(std::max(ip_bytes, hdr + probe::stamp::kBasePacketSize) - hdr, 0);
  probe::stamp::SenderPacket s;
  s.sequence = seq;
  s.timestamp = probe::stamp::ns_to_ntp(1'700'000'000'000'000'000);
  s.ssid = ssid;
  probe::stamp::encode(s, p);
  return udp_packet(src, dst, sport, dport, p);
}

Bytes stamp_reply(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                  std::uint16_t dport, std::uint32_t reflector_seq, std::uint32_t sender_seq,
                  std::uint16_t ssid, std::size_t ip_bytes) {
  const std::size_t hdr = ip_header_len(src) + 8;
  Bytes p(std::max(ip_bytes, hdr + probe::stamp::kBasePacketSize) - hdr, 0);
  probe::stamp::ReflectorPacket r;
  r.sequence = reflector_seq;
  r.sender_sequence = sender_seq;
  r.ssid = ssid;
  r.sender_ttl = 63;
  probe::stamp::encode(r, p);
  return udp_packet(src, dst, sport, dport, p);
}

Bytes esp_packet(const IpAddress& src, const IpAddress& dst, std::uint32_t spi,
                 std::uint32_t esp_seq, std::uint32_t esp_len, bool udp_encap) {
  Bytes e(std::max<std::uint32_t>(esp_len, 8));
  put32(e, 0, spi);
  put32(e, 4, esp_seq);
  std::uint32_t x = spi ^ (esp_seq * 2654435761u);
  for (std::size_t i = 8; i < e.size(); ++i) {
    x = x * 1103515245u + 12345u;
    e[i] = static_cast<std::uint8_t>(x >> 16);
  }
  if (udp_encap) return udp_packet(src, dst, 4500, 4500, e);
  return ip_packet(src, dst, 50, e);
}

Bytes ike_packet(const IpAddress& src, const IpAddress& dst, std::size_t ike_len) {
  Bytes p(4 + ike_len, 0x2E);
  put32(p, 0, 0);  // non-ESP marker
  return udp_packet(src, dst, 4500, 4500, p);
}

Bytes ethernet(std::span<const std::uint8_t> ip, std::optional<std::uint16_t> vlan) {
  const std::size_t hdr = vlan ? 18 : 14;
  Bytes f(hdr + ip.size());
  const std::uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 0x02};
  const std::uint8_t smac[6] = {0x02, 0, 0, 0, 0, 0x01};
  std::copy_n(dmac, 6, f.data());
  std::copy_n(smac, 6, f.data() + 6);
  const std::uint16_t type = !ip.empty() && (ip[0] >> 4) == 6 ? 0x86DD : 0x0800;
  if (vlan) {
    put16(f, 12, 0x8100);
    put16(f, 14, *vlan);
    put16(f, 16, type);
  } else {
    put16(f, 12, type);
  }
  std::copy(ip.begin(), ip.end(), f.begin() + static_cast<std::ptrdiff_t>(hdr));
  // Ethernet minimum frame (60 bytes without FCS): short frames carry trailing padding.
  if (f.size() < 60) f.resize(60, 0);
  return f;
}

Bytes linux_sll(std::span<const std::uint8_t> ip) {
  Bytes f(16 + ip.size(), 0);
  put16(f, 0, 4);  // packet type: sent by us
  put16(f, 2, 1);  // ARPHRD_ETHER
  put16(f, 4, 6);
  put16(f, 14, !ip.empty() && (ip[0] >> 4) == 6 ? 0x86DD : 0x0800);
  std::copy(ip.begin(), ip.end(), f.begin() + 16);
  return f;
}

PcapFile::PcapFile(std::string path, int linktype, std::uint32_t snaplen)
    : path_(std::move(path)), snaplen_(snaplen), f_(std::fopen(path_.c_str(), "wb")) {
  if (f_ == nullptr) throw std::runtime_error("cannot create " + path_);
  // Nanosecond-resolution pcap header (magic 0xa1b23c4d), host byte order.
  const std::uint32_t magic = 0xa1b23c4d;
  const std::uint16_t major = 2;
  const std::uint16_t minor = 4;
  const std::int32_t zone = 0;
  const std::uint32_t sigfigs = 0;
  const auto link = static_cast<std::uint32_t>(linktype);
  std::fwrite(&magic, 4, 1, f_);
  std::fwrite(&major, 2, 1, f_);
  std::fwrite(&minor, 2, 1, f_);
  std::fwrite(&zone, 4, 1, f_);
  std::fwrite(&sigfigs, 4, 1, f_);
  std::fwrite(&snaplen_, 4, 1, f_);
  std::fwrite(&link, 4, 1, f_);
}

PcapFile::~PcapFile() {
  if (f_ != nullptr) std::fclose(f_);
}

void PcapFile::add(std::int64_t ts_ns, std::span<const std::uint8_t> frame) {
  if (f_ == nullptr) throw std::logic_error("pcap file already closed");
  const auto sec = static_cast<std::uint32_t>(ts_ns / 1'000'000'000);
  const auto nsec = static_cast<std::uint32_t>(ts_ns % 1'000'000'000);
  const auto orig = static_cast<std::uint32_t>(frame.size());
  const std::uint32_t cap = std::min(orig, snaplen_);
  std::fwrite(&sec, 4, 1, f_);
  std::fwrite(&nsec, 4, 1, f_);
  std::fwrite(&cap, 4, 1, f_);
  std::fwrite(&orig, 4, 1, f_);
  std::fwrite(frame.data(), 1, cap, f_);
}

void PcapFile::close() {
  if (f_ != nullptr && std::fclose(f_) != 0) {
    f_ = nullptr;
    throw std::runtime_error("cannot write " + path_);
  }
  f_ = nullptr;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl =
      std::string(base != nullptr && *base != 0 ? base : "/tmp") + "/pathsentry-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace pathsentry::test
