#include "pathsentry/probe/wire/stamp.h"

#include <cstring>

#include "pathsentry/common/byte_order.h"

namespace pathsentry::probe::stamp {
namespace {

using be::get16;
using be::get32;
using be::get64;
using be::put16;
using be::put32;
using be::put64;

constexpr std::int64_t kNtpUnixOffsetS = 2'208'988'800;  // 1900-01-01 to 1970-01-01
constexpr std::int64_t kNs = 1'000'000'000;

}  // namespace

std::uint16_t ErrorEstimate::encode() const {
  return static_cast<std::uint16_t>((synchronized ? 0x8000 : 0) | (ptp ? 0x4000 : 0) |
                                    ((scale & 0x3F) << 8) | multiplier);
}

ErrorEstimate ErrorEstimate::decode(std::uint16_t raw) {
  ErrorEstimate e;
  e.synchronized = (raw & 0x8000) != 0;
  e.ptp = (raw & 0x4000) != 0;
  e.scale = static_cast<std::uint8_t>((raw >> 8) & 0x3F);
  e.multiplier = static_cast<std::uint8_t>(raw & 0xFF);
  return e;
}

namespace {

// Bytes 0-15 of both test packets: sequence, timestamp, error estimate, SSID (RFC 8762 §4.2.1
// and §4.3.1, the SSID of RFC 8972). Everything after them up to kBasePacketSize is zeroed (MBZ).
template <class Packet>
void put_head(const Packet& p, std::uint8_t* b) {
  std::memset(b, 0, kBasePacketSize);
  put32(b + 0, p.sequence);
  put64(b + 4, p.timestamp);
  put16(b + 12, p.error.encode());
  put16(b + 14, p.ssid);
}

template <class Packet>
void get_head(const std::uint8_t* b, Packet& p) {
  p.sequence = get32(b);
  p.timestamp = get64(b + 4);
  p.error = ErrorEstimate::decode(get16(b + 12));
  p.ssid = get16(b + 14);
}

}  // namespace

std::size_t encode(const SenderPacket& p, std::span<std::uint8_t> out) {
  if (out.size() < kBasePacketSize) return 0;
  put_head(p, out.data());
  return kBasePacketSize;
}

std::size_t encode(const ReflectorPacket& p, std::span<std::uint8_t> out) {
  if (out.size() < kBasePacketSize) return 0;
  std::uint8_t* b = out.data();
  put_head(p, b);
  put64(b + 16, p.receive_timestamp);
  put32(b + 24, p.sender_sequence);
  put64(b + 28, p.sender_timestamp);
  put16(b + 36, p.sender_error.encode());
  // b[38..39] MBZ
  b[40] = p.sender_ttl;
  // b[41..43] MBZ
  return kBasePacketSize;
}

tl::expected<SenderPacket, DecodeError> decode_sender(std::span<const std::uint8_t> in) {
  if (in.size() < kBasePacketSize) return tl::unexpected(DecodeError::Truncated);
  SenderPacket p;
  get_head(in.data(), p);
  return p;
}

tl::expected<ReflectorPacket, DecodeError> decode_reflector(std::span<const std::uint8_t> in) {
  if (in.size() < kBasePacketSize) return tl::unexpected(DecodeError::Truncated);
  const std::uint8_t* b = in.data();
  ReflectorPacket p;
  get_head(b, p);
  p.receive_timestamp = get64(b + 16);
  p.sender_sequence = get32(b + 24);
  p.sender_timestamp = get64(b + 28);
  p.sender_error = ErrorEstimate::decode(get16(b + 36));
  p.sender_ttl = b[40];
  return p;
}

std::uint64_t ns_to_ntp(std::int64_t unix_ns) {
  const std::int64_t secs = unix_ns / kNs;
  const std::int64_t rem = unix_ns % kNs;
  // Round to nearest so that ntp_to_ns(ns_to_ntp(x)) == x (2^32 units/s > 1e9).
  const auto frac =
      ((static_cast<std::uint64_t>(rem) << 32) + kNs / 2) / kNs;  // rem < 2^30: no overflow
  return (static_cast<std::uint64_t>(secs + kNtpUnixOffsetS) << 32) | (frac & 0xFFFFFFFFu);
}

std::int64_t ntp_to_ns(std::uint64_t ntp) {
  const auto secs = static_cast<std::int64_t>(ntp >> 32) - kNtpUnixOffsetS;
  const std::uint64_t frac = ntp & 0xFFFFFFFFu;
  const auto ns = static_cast<std::int64_t>((frac * kNs + (std::uint64_t{1} << 31)) >> 32);
  return secs * kNs + ns;
}

std::uint64_t ns_to_ptp(std::int64_t unix_ns) {
  return (static_cast<std::uint64_t>(unix_ns / kNs) << 32) |
         static_cast<std::uint64_t>(unix_ns % kNs);
}

std::int64_t ptp_to_ns(std::uint64_t ptp) {
  return static_cast<std::int64_t>(ptp >> 32) * kNs + static_cast<std::int64_t>(ptp & 0xFFFFFFFFu);
}

std::int64_t timestamp_to_ns(std::uint64_t ts, const ErrorEstimate& e) {
  return e.ptp ? ptp_to_ns(ts) : ntp_to_ns(ts);
}

}  // namespace pathsentry::probe::stamp
