#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pathsentry/common/ip.h"

namespace pathsentry::test {

/// Builds packets byte by byte (with correct checksums) and writes pcap files, so tap and
/// attribution tests run on real capture files made from constructed packets.
using Bytes = std::vector<std::uint8_t>;

/// Parses an address literal; throws std::invalid_argument when malformed (test input).
IpAddress addr(const char* text);

/// IPv4 (20-byte header) or IPv6 (40-byte header) packet around `payload`, by `src`'s family.
/// `proto` is the IPv4 protocol / IPv6 next header. `frag` is IPv4's flags+offset field.
Bytes ip_packet(const IpAddress& src, const IpAddress& dst, std::uint8_t proto,
                std::span<const std::uint8_t> payload, std::uint16_t frag = 0);

/// ICMP (v4) / ICMPv6 echo with our PSNT payload, padded with zeros so the whole IP packet is
/// `ip_bytes` long (at least the minimum). Request when `request`, reply otherwise.
Bytes icmp_probe(const IpAddress& src, const IpAddress& dst, bool request, std::uint32_t agent_id,
                 std::uint32_t session_id, std::uint64_t seq, std::int64_t tx_ns,
                 std::size_t ip_bytes = 0);

/// UDP datagram in an IP packet (checksum included).
Bytes udp_packet(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                 std::uint16_t dport, std::span<const std::uint8_t> payload);

/// STAMP Session-Sender packet (to `dport`), padded so the IP packet is `ip_bytes` long.
Bytes stamp_request(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                    std::uint16_t dport, std::uint32_t seq, std::uint16_t ssid,
                    std::size_t ip_bytes = 0);
/// STAMP Session-Reflector packet (from `sport`) answering `sender_seq`.
Bytes stamp_reply(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                  std::uint16_t dport, std::uint32_t reflector_seq, std::uint32_t sender_seq,
                  std::uint16_t ssid, std::size_t ip_bytes = 0);

/// ESP packet whose ESP part (SPI to the end) is `esp_len` bytes (random-looking filler), either
/// as IP protocol 50 or inside UDP 4500 → 4500.
Bytes esp_packet(const IpAddress& src, const IpAddress& dst, std::uint32_t spi,
                 std::uint32_t esp_seq, std::uint32_t esp_len, bool udp_encap);
/// IKE message on UDP 4500 (non-ESP marker), `ike_len` bytes after the marker.
Bytes ike_packet(const IpAddress& src, const IpAddress& dst, std::size_t ike_len = 80);

/// Ethernet II frame around an IP packet, optionally with one 802.1Q tag.
Bytes ethernet(std::span<const std::uint8_t> ip, std::optional<std::uint16_t> vlan = {});
/// Linux cooked (SLL v1) frame around an IP packet.
Bytes linux_sll(std::span<const std::uint8_t> ip);

/// A nanosecond pcap file being written. Frames longer than `snaplen` are cut (orig_len kept).
class PcapFile {
 public:
  PcapFile(std::string path, int linktype = 1, std::uint32_t snaplen = 65535);
  ~PcapFile();
  PcapFile(const PcapFile&) = delete;
  PcapFile& operator=(const PcapFile&) = delete;
  void add(std::int64_t ts_ns, std::span<const std::uint8_t> frame);
  /// Flushes and closes; further add() throws.
  void close();
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::uint32_t snaplen_;
  std::FILE* f_ = nullptr;
};

/// A private temporary directory, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] std::string file(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

}  // namespace pathsentry::test
