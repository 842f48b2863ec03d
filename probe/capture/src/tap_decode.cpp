// Frame decoding for taps: link layer → IPv4/IPv6 → our ICMP echo, STAMP, or ESP.
// Untrusted input: every read is bounds-checked, nothing throws or allocates.

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "pathsentry/common/byte_order.h"
#include "pathsentry/probe/capture/echo.h"
#include "pathsentry/probe/capture/tap.h"
#include "pathsentry/probe/wire/icmp_payload.h"
#include "pathsentry/probe/wire/stamp.h"

namespace pathsentry::probe {
namespace {

using be::get16;
using be::get32;

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;
constexpr std::uint16_t kEtherVlan = 0x8100;
constexpr std::uint16_t kEtherQinQ = 0x88A8;
constexpr std::uint16_t kEtherQinQOld = 0x9100;
constexpr std::uint8_t kProtoIcmp = 1;
constexpr std::uint8_t kProtoUdp = 17;
constexpr std::uint8_t kProtoEsp = 50;
constexpr std::uint8_t kProtoIcmpv6 = 58;
constexpr std::uint16_t kNatTPort = 4500;

using Result = tl::expected<Observation, DropReason>;

/// Network-layer view of a frame.
struct L3 {
  std::uint16_t ethertype = 0;
  std::span<const std::uint8_t> ip;  // from the IP header on, captured bytes
};

tl::expected<L3, DropReason> strip_link(int link, std::span<const std::uint8_t> b) {
  L3 out;
  switch (link) {
    case linktype::kEthernet: {
      if (b.size() < 14) return tl::unexpected(DropReason::Truncated);
      std::size_t off = 12;
      std::uint16_t type = get16(b.data() + off);
      // Up to two VLAN tags (802.1Q, 802.1ad QinQ): a SPAN session may keep them.
      for (int tags = 0;
           tags < 2 && (type == kEtherVlan || type == kEtherQinQ || type == kEtherQinQOld);
           ++tags) {
        off += 4;
        if (b.size() < off + 2) return tl::unexpected(DropReason::Truncated);
        type = get16(b.data() + off);
      }
      out.ethertype = type;
      out.ip = b.subspan(off + 2);
      return out;
    }
    case linktype::kLinuxSll:
      if (b.size() < 16) return tl::unexpected(DropReason::Truncated);
      out.ethertype = get16(b.data() + 14);
      out.ip = b.subspan(16);
      return out;
    case linktype::kLinuxSll2:
      if (b.size() < 20) return tl::unexpected(DropReason::Truncated);
      out.ethertype = get16(b.data());
      out.ip = b.subspan(20);
      return out;
    case linktype::kRaw:
    case linktype::kRawBsd:
    case linktype::kRawFile:
      if (b.empty()) return tl::unexpected(DropReason::Truncated);
      out.ethertype = (b[0] >> 4) == 6 ? kEtherIpv6 : kEtherIpv4;
      out.ip = b;
      return out;
    case linktype::kNull: {
      if (b.size() < 4) return tl::unexpected(DropReason::Truncated);
      std::uint32_t family = 0;
      std::memcpy(&family, b.data(), 4);  // host byte order by definition of DLT_NULL
      if (family == AF_INET) {
        out.ethertype = kEtherIpv4;
      } else if (family == 10 || family == 24 || family == 28 || family == 30) {
        out.ethertype = kEtherIpv6;  // Linux, NetBSD/OpenBSD, FreeBSD, macOS values of AF_INET6
      } else {
        out.ethertype = 0;
      }
      out.ip = b.subspan(4);
      return out;
    }
    default:
      return tl::unexpected(DropReason::UnsupportedLink);
  }
}

/// Transport-layer view: protocol, addresses, the captured L4 bytes and the L4 length on the wire.
struct L4 {
  std::uint8_t proto = 0;
  IpAddress src;
  IpAddress dst;
  std::span<const std::uint8_t> data;  // captured, trimmed to the IP packet
  std::uint32_t wire_len = 0;          // from the IP length fields
};

tl::expected<L4, DropReason> strip_ip(const L3& l3) {
  L4 out;
  const auto ip = l3.ip;
  if (l3.ethertype == kEtherIpv4) {
    if (ip.size() < 20) return tl::unexpected(DropReason::Truncated);
    if ((ip[0] >> 4) != 4) return tl::unexpected(DropReason::BadIpHeader);
    const std::size_t ihl = static_cast<std::size_t>(ip[0] & 0x0F) * 4;
    const std::size_t total = get16(ip.data() + 2);
    if (ihl < 20 || total < ihl) return tl::unexpected(DropReason::BadIpHeader);
    if (ip.size() < ihl) return tl::unexpected(DropReason::Truncated);
    if ((get16(ip.data() + 6) & 0x3FFF) != 0) return tl::unexpected(DropReason::Fragment);
    out.proto = ip[9];
    out.src.family = AF_INET;
    out.dst.family = AF_INET;
    std::memcpy(out.src.bytes.data(), ip.data() + 12, 4);
    std::memcpy(out.dst.bytes.data(), ip.data() + 16, 4);
    // Ethernet pads short frames: trust the IP length, not the captured length.
    out.data = ip.subspan(ihl, std::min(ip.size(), total) - ihl);
    out.wire_len = static_cast<std::uint32_t>(total - ihl);
    return out;
  }
  if (l3.ethertype == kEtherIpv6) {
    if (ip.size() < 40) return tl::unexpected(DropReason::Truncated);
    if ((ip[0] >> 4) != 6) return tl::unexpected(DropReason::BadIpHeader);
    const std::size_t payload = get16(ip.data() + 4);
    if (payload == 0) return tl::unexpected(DropReason::BadIpHeader);  // jumbogram: not ours
    out.src.family = AF_INET6;
    out.dst.family = AF_INET6;
    std::memcpy(out.src.bytes.data(), ip.data() + 8, 16);
    std::memcpy(out.dst.bytes.data(), ip.data() + 24, 16);
    std::uint8_t next = ip[6];
    std::size_t off = 40;
    const std::size_t end = 40 + payload;
    // Skip extension headers (hop-by-hop, routing, destination options); fragments are dropped.
    for (int hops = 0; hops < 8 && (next == 0 || next == 43 || next == 60 || next == 44); ++hops) {
      if (next == 44) return tl::unexpected(DropReason::Fragment);
      if (ip.size() < off + 2) return tl::unexpected(DropReason::Truncated);
      const std::size_t len = (static_cast<std::size_t>(ip[off + 1]) + 1) * 8;
      next = ip[off];
      off += len;
      if (off > end) return tl::unexpected(DropReason::BadIpHeader);
    }
    if (next == 0 || next == 43 || next == 60) return tl::unexpected(DropReason::NotProbe);
    if (ip.size() < off) return tl::unexpected(DropReason::Truncated);
    out.proto = next;
    out.data = ip.subspan(off, std::min(ip.size(), end) - off);
    out.wire_len = static_cast<std::uint32_t>(end - off);
    return out;
  }
  return tl::unexpected(DropReason::NotIp);
}

Result decode_esp(const TapSpec& tap, std::int64_t ts, const L4& l4,
                  std::span<const std::uint8_t> esp, std::uint32_t esp_wire_len, bool udp) {
  if (esp.size() < 8) return tl::unexpected(DropReason::Truncated);
  Observation o;
  o.ts_ns = ts;
  o.kind = ObsKind::Esp;
  if (l4.src == tap.local_endpoint && l4.dst == tap.remote_endpoint) {
    o.dir = Direction::Forward;
  } else if (l4.src == tap.remote_endpoint && l4.dst == tap.local_endpoint) {
    o.dir = Direction::Reverse;
  } else {
    return tl::unexpected(DropReason::WrongEndpoints);
  }
  o.spi = get32(esp.data());
  o.esp_seq = get32(esp.data() + 4);
  if (o.spi == 0) return tl::unexpected(DropReason::NotProbe);  // SPI 0 is reserved (RFC 4303)
  o.esp_len = esp_wire_len;
  o.udp_encap = udp;
  return o;
}

Result decode_icmp(const DecodeContext& ctx, std::int64_t ts, const L4& l4, bool v6) {
  if (l4.data.size() < 8) return tl::unexpected(DropReason::Truncated);
  const std::uint8_t type = l4.data[0];
  const std::uint8_t request = v6 ? icmp::kEchoRequest6 : icmp::kEchoRequest4;
  const std::uint8_t reply = v6 ? icmp::kEchoReply6 : icmp::kEchoReply4;
  if ((type != request && type != reply) || l4.data[1] != 0) {
    return tl::unexpected(DropReason::NotProbe);
  }
  const auto payload = l4.data.subspan(8);
  if (payload.size() < icmp::kPayloadSize && l4.wire_len >= 8 + icmp::kPayloadSize) {
    return tl::unexpected(DropReason::Truncated);  // ours maybe, but the snap length cut it
  }
  const auto p = icmp::decode(payload);
  if (!p) return tl::unexpected(DropReason::NotProbe);
  if (p->agent_id != ctx.agent_id) return tl::unexpected(DropReason::ForeignProbe);
  Observation o;
  o.ts_ns = ts;
  o.kind = ObsKind::Icmp;
  o.dir = type == request ? Direction::Forward : Direction::Reverse;
  o.target = o.dir == Direction::Forward ? l4.dst : l4.src;
  o.session_id = p->session_id;
  o.seq = p->seq;
  return o;
}

Result decode_stamp(std::int64_t ts, const L4& l4, std::span<const std::uint8_t> udp_payload,
                    bool forward) {
  Observation o;
  o.ts_ns = ts;
  o.kind = ObsKind::Stamp;
  o.dir = forward ? Direction::Forward : Direction::Reverse;
  o.target = forward ? l4.dst : l4.src;
  if (forward) {
    const auto p = stamp::decode_sender(udp_payload);
    if (!p) return tl::unexpected(DropReason::Truncated);
    o.seq = p->sequence;
    o.ssid = p->ssid;
  } else {
    const auto p = stamp::decode_reflector(udp_payload);
    if (!p) return tl::unexpected(DropReason::Truncated);
    o.seq = p->sender_sequence;
    o.ssid = p->ssid;
    o.reflector_seq = p->sequence;
  }
  return o;
}

}  // namespace

const char* to_string(DropReason r) {
  switch (r) {
    case DropReason::Truncated:
      return "truncated";
    case DropReason::UnsupportedLink:
      return "unsupported_link";
    case DropReason::NotIp:
      return "not_ip";
    case DropReason::BadIpHeader:
      return "bad_ip_header";
    case DropReason::Fragment:
      return "fragment";
    case DropReason::NotProbe:
      return "not_probe";
    case DropReason::ForeignProbe:
      return "foreign_probe";
    case DropReason::WrongEncap:
      return "wrong_encap";
    case DropReason::Ike:
      return "ike";
    case DropReason::WrongEndpoints:
      return "wrong_endpoints";
  }
  return "unknown";
}

std::optional<EspTransform> EspTransform::preset(std::string_view name) {
  if (name == "aes-gcm-16") return EspTransform{8, 4, 16, 0};
  if (name == "aes-gcm-12") return EspTransform{8, 4, 12, 0};
  if (name == "aes-gcm-8") return EspTransform{8, 4, 8, 0};
  if (name == "aes-cbc-sha1") return EspTransform{16, 16, 12, 0};
  if (name == "aes-cbc-sha256") return EspTransform{16, 16, 16, 0};
  if (name == "aes-cbc-sha384") return EspTransform{16, 16, 24, 0};
  if (name == "aes-cbc-sha512") return EspTransform{16, 16, 32, 0};
  if (name == "null-sha256") return EspTransform{0, 4, 16, 0};
  return std::nullopt;
}

std::uint32_t EspTransform::esp_length(std::uint32_t inner_ip_bytes) const {
  const std::uint32_t inner = std::max(inner_ip_bytes, tfc_pad_to);
  const std::uint32_t align = std::max<std::uint32_t>(block_bytes, 4);
  const std::uint32_t padded = (inner + 2 + align - 1) / align * align;
  return 8 + iv_bytes + padded + icv_bytes;
}

std::optional<EchoFrame> decode_echo(std::int64_t ts_ns, int link,
                                     std::span<const std::uint8_t> bytes) {
  const auto l3 = strip_link(link, bytes);
  if (!l3) return std::nullopt;
  const auto l4 = strip_ip(*l3);
  if (!l4) return std::nullopt;
  const bool v6 = l4->src.family == AF_INET6;
  if (!((l4->proto == kProtoIcmp && !v6) || (l4->proto == kProtoIcmpv6 && v6))) {
    return std::nullopt;
  }
  if (l4->data.size() < 8 || l4->data[1] != 0) return std::nullopt;
  const std::uint8_t type = l4->data[0];
  const std::uint8_t request = v6 ? icmp::kEchoRequest6 : icmp::kEchoRequest4;
  const std::uint8_t reply = v6 ? icmp::kEchoReply6 : icmp::kEchoReply4;
  if (type != request && type != reply) return std::nullopt;
  EchoFrame f;
  f.ts_ns = ts_ns;
  f.src = l4->src;
  f.dst = l4->dst;
  f.request = type == request;
  f.id = get16(l4->data.data() + 4);
  f.seq = get16(l4->data.data() + 6);
  return f;
}

tl::expected<Observation, DropReason> decode_frame(const TapSpec& tap, const DecodeContext& ctx,
                                                   std::int64_t ts_ns, int link,
                                                   std::span<const std::uint8_t> bytes) {
  const auto l3 = strip_link(link, bytes);
  if (!l3) return tl::unexpected(l3.error());
  const auto l4 = strip_ip(*l3);
  if (!l4) return tl::unexpected(l4.error());
  const bool esp_tap = tap.encap == Encap::Esp;
  const bool v6 = l4->src.family == AF_INET6;

  if (l4->proto == kProtoEsp) {
    if (!esp_tap) return tl::unexpected(DropReason::WrongEncap);
    return decode_esp(tap, ts_ns, *l4, l4->data, l4->wire_len, false);
  }
  if ((l4->proto == kProtoIcmp && !v6) || (l4->proto == kProtoIcmpv6 && v6)) {
    auto o = decode_icmp(ctx, ts_ns, *l4, v6);
    if (o && esp_tap) return tl::unexpected(DropReason::WrongEncap);
    return o;
  }
  if (l4->proto != kProtoUdp) return tl::unexpected(DropReason::NotProbe);

  if (l4->data.size() < 8) return tl::unexpected(DropReason::Truncated);
  const std::uint16_t sport = get16(l4->data.data());
  const std::uint16_t dport = get16(l4->data.data() + 2);
  const std::uint16_t ulen = get16(l4->data.data() + 4);
  if (ulen < 8 || ulen > l4->wire_len) return tl::unexpected(DropReason::BadIpHeader);
  const auto payload = l4->data.subspan(8, std::min<std::size_t>(l4->data.size(), ulen) - 8);
  const std::uint32_t payload_wire = ulen - 8u;

  if (sport == kNatTPort || dport == kNatTPort) {
    if (!esp_tap) return tl::unexpected(DropReason::WrongEncap);
    // RFC 3948: a single 0xFF byte is a NAT-keepalive; a zero 4-byte marker precedes IKE.
    if (payload_wire == 1) {
      if (payload.empty()) return tl::unexpected(DropReason::Truncated);
      return tl::unexpected(payload[0] == 0xFF ? DropReason::Ike : DropReason::NotProbe);
    }
    if (payload.size() < 4) return tl::unexpected(DropReason::Truncated);
    if (get32(payload.data()) == 0) return tl::unexpected(DropReason::Ike);
    return decode_esp(tap, ts_ns, *l4, payload, payload_wire, true);
  }
  if (dport == ctx.stamp_port || sport == ctx.stamp_port) {
    if (esp_tap) return tl::unexpected(DropReason::WrongEncap);
    if (payload.size() < stamp::kBasePacketSize && payload_wire >= stamp::kBasePacketSize) {
      return tl::unexpected(DropReason::Truncated);
    }
    if (payload_wire < stamp::kBasePacketSize) return tl::unexpected(DropReason::NotProbe);
    return decode_stamp(ts_ns, *l4, payload, dport == ctx.stamp_port);
  }
  return tl::unexpected(DropReason::NotProbe);
}

}  // namespace pathsentry::probe
