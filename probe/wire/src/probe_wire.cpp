#include "pathsentry/probe/wire/probe_wire.h"

#include <sys/timex.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "pathsentry/common/byte_order.h"
#include "pathsentry/probe/wire/icmp_payload.h"
#include "pathsentry/probe/wire/seq.h"

namespace pathsentry::probe {
namespace {

using be::get16;
using be::put16;
using icmp::kEchoReply4;
using icmp::kEchoReply6;
using icmp::kEchoRequest4;
using icmp::kEchoRequest6;

std::optional<ParsedReply> parse_icmp(const WireFormat& wf, std::span<const std::uint8_t> in,
                                      std::uint64_t newest_seq) {
  if (wf.family == AF_INET && wf.icmp_raw) {
    // Raw IPv4 sockets deliver the IP header too.
    if (in.size() < 20 || (in[0] >> 4) != 4) return std::nullopt;
    const std::size_t ihl = static_cast<std::size_t>(in[0] & 0x0F) * 4;
    if (ihl < 20 || in.size() < ihl) return std::nullopt;
    in = in.subspan(ihl);
  }
  if (in.size() < kIcmpHeaderSize) return std::nullopt;
  const std::uint8_t want = wf.family == AF_INET ? kEchoReply4 : kEchoReply6;
  if (in[0] != want || in[1] != 0) return std::nullopt;
  // Ping sockets only deliver replies carrying their own identifier (the kernel's choice).
  if (wf.icmp_raw && get16(in.data() + 4) != wf.echo_id) return std::nullopt;
  ParsedReply r;
  if (auto p = icmp::decode(in.subspan(kIcmpHeaderSize))) {
    if (p->agent_id != wf.agent_id || p->session_id != wf.session_id) return std::nullopt;
    if (p->seq > newest_seq) return std::nullopt;
    r.seq = p->seq;
    r.sender_tx_ns = p->tx_ns;
    r.has_sender_tx = true;
    return r;
  }
  // A reply that lost our payload (truncated by a middlebox) still has the 16-bit header
  // sequence; only trust it when the identifier is ours (raw) or the kernel's (ping socket).
  if (in.size() - kIcmpHeaderSize >= icmp::kPayloadSize) return std::nullopt;  // not ours
  const auto seq = unwrap_seq(get16(in.data() + 6), 16, newest_seq);
  if (!seq) return std::nullopt;
  r.seq = *seq;
  return r;
}

std::optional<ParsedReply> parse_stamp(const WireFormat& wf, std::span<const std::uint8_t> in,
                                       std::uint64_t newest_seq, ReplyReject& why) {
  auto p = stamp::decode_reflector(in);
  if (!p) return std::nullopt;
  // RFC 8972 reflectors echo the SSID; plain RFC 8762 ones leave the field zero (MBZ).
  if (p->ssid != stamp_ssid(wf) && p->ssid != 0) {
    why = ReplyReject::ForeignSsid;
    return std::nullopt;
  }
  const auto seq = unwrap_seq(p->sender_sequence, 32, newest_seq);
  if (!seq) return std::nullopt;
  ParsedReply r;
  r.seq = *seq;
  r.ssid = p->ssid;
  r.sender_timestamp = p->sender_timestamp;
  r.has_sender_tx = true;
  r.sender_tx_ns = stamp::timestamp_to_ns(p->sender_timestamp, p->sender_error);
  r.reflector_seq = p->sequence;
  r.reflector_rx_ns = stamp::timestamp_to_ns(p->receive_timestamp, p->error);
  r.reflector_tx_ns = stamp::timestamp_to_ns(p->timestamp, p->error);
  r.reflector_synced = p->error.synchronized;
  return r;
}

}  // namespace

std::size_t min_ip_payload(Proto proto) {
  return proto == Proto::Icmp ? kIcmpHeaderSize + icmp::kPayloadSize
                              : kUdpHeaderSize + stamp::kBasePacketSize;
}

std::size_t datagram_size_for(Proto proto, std::size_t ip_payload) {
  const std::size_t ip = std::max(ip_payload, min_ip_payload(proto));
  return proto == Proto::Icmp ? ip : ip - kUdpHeaderSize;
}

std::uint32_t probe_ip_bytes(int family, Proto proto, std::size_t datagram_size) {
  const std::size_t ip_header = family == AF_INET ? 20 : 40;
  return static_cast<std::uint32_t>(ip_header + datagram_size +
                                    (proto == Proto::Stamp ? kUdpHeaderSize : 0));
}

std::uint16_t internet_checksum(std::span<const std::uint8_t> data) {
  std::uint32_t sum = 0;
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) sum += get16(data.data() + i);
  if (i < data.size()) sum += static_cast<std::uint32_t>(data[i]) << 8;
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

std::size_t build_request(const WireFormat& wf, std::uint64_t seq, std::int64_t tx_ns,
                          std::span<std::uint8_t> out) {
  return build_request(wf, seq, tx_ns, out, wf.datagram_size);
}

std::size_t build_request(const WireFormat& wf, std::uint64_t seq, std::int64_t tx_ns,
                          std::span<std::uint8_t> out, std::size_t datagram_size) {
  const std::size_t n = datagram_size;
  if (out.size() < n) return 0;
  std::uint8_t* b = out.data();
  if (wf.proto == Proto::Icmp) {
    if (n < kIcmpHeaderSize + icmp::kPayloadSize) return 0;
    b[0] = wf.family == AF_INET ? kEchoRequest4 : kEchoRequest6;
    b[1] = 0;
    put16(b + 2, 0);
    put16(b + 4, wf.echo_id);
    put16(b + 6, static_cast<std::uint16_t>(seq));
    icmp::encode({wf.agent_id, wf.session_id, seq, tx_ns}, out.subspan(kIcmpHeaderSize));
    std::memset(b + kIcmpHeaderSize + icmp::kPayloadSize, 0,
                n - kIcmpHeaderSize - icmp::kPayloadSize);
    // ICMPv6 checksums cover a pseudo-header: the kernel fills them in on raw ICMPv6 sockets.
    // Ping sockets compute the checksum themselves.
    if (wf.family == AF_INET && wf.icmp_raw) {
      put16(b + 2, internet_checksum(out.subspan(0, n)));
    }
    return n;
  }
  if (n < stamp::kBasePacketSize) return 0;
  stamp::SenderPacket p;
  p.sequence = static_cast<std::uint32_t>(seq);
  p.timestamp = stamp::ns_to_ntp(tx_ns);
  p.error = wf.stamp_error;
  p.ssid = stamp_ssid(wf);
  stamp::encode(p, out.subspan(0, n));
  std::memset(b + stamp::kBasePacketSize, 0, n - stamp::kBasePacketSize);
  return n;
}

std::optional<ParsedReply> parse_reply(const WireFormat& wf, std::span<const std::uint8_t> in,
                                       std::uint64_t newest_seq, ReplyReject* why) {
  ReplyReject reason = ReplyReject::NotOurs;
  auto r = wf.proto == Proto::Icmp ? parse_icmp(wf, in, newest_seq)
                                   : parse_stamp(wf, in, newest_seq, reason);
  if (!r && why != nullptr) *why = reason;
  return r;
}

stamp::ErrorEstimate local_error_estimate() {
  stamp::ErrorEstimate e;
  timex tx{};
  const int state = adjtimex(&tx);
  e.synchronized = state >= 0 && state != TIME_ERROR && (tx.status & STA_UNSYNC) == 0;
  // Error = multiplier * 2^(scale-32) s; esterror is in microseconds. Pick the smallest scale
  // whose multiplier fits in 8 bits (RFC 4656 §4.1.2).
  const double err_s = state >= 0 ? static_cast<double>(tx.esterror) * 1e-6 : 1.0;
  e.scale = 0;
  e.multiplier = 1;
  for (int scale = 0; scale < 64; ++scale) {
    const double m = std::ceil(err_s * std::ldexp(1.0, 32 - scale));
    if (m <= 255) {
      e.scale = static_cast<std::uint8_t>(scale);
      e.multiplier = static_cast<std::uint8_t>(std::max(1.0, m));
      break;
    }
  }
  return e;
}

}  // namespace pathsentry::probe
