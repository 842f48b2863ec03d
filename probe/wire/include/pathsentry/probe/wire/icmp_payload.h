#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace pathsentry::probe::icmp {

/// Payload that pathsentry puts in every ICMP echo request, after the 8-byte ICMP header.
/// The header's identifier/sequence fields only carry the low 16 bits; the payload carries the
/// full identity, so replies, mirrored copies and taps can be matched exactly:
///
///   0  magic "PSNT" (4)   4  version=1 (1)   5  flags (1)   6  reserved (2)
///   8  agent id (4)      12  session id (4) 16  sequence (8)  24  tx time, CLOCK_REALTIME ns (8)
///  32  padding up to the configured probe size (zeros)
///
/// Big-endian. The echo reply carries the payload back unchanged.
inline constexpr std::size_t kPayloadSize = 32;
/// ICMP types of an echo request and its reply: ICMPv4 (RFC 792), ICMPv6 (RFC 4443).
inline constexpr std::uint8_t kEchoRequest4 = 8;
inline constexpr std::uint8_t kEchoReply4 = 0;
inline constexpr std::uint8_t kEchoRequest6 = 128;
inline constexpr std::uint8_t kEchoReply6 = 129;
inline constexpr std::uint32_t kMagic = 0x50534E54;  // "PSNT"

struct Payload {
  std::uint32_t agent_id = 0;
  std::uint32_t session_id = 0;
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;
  friend bool operator==(const Payload&, const Payload&) = default;
};

/// Writes kPayloadSize bytes; returns 0 if `out` is too small.
std::size_t encode(const Payload& p, std::span<std::uint8_t> out);
/// Parses an ICMP payload (the bytes after the ICMP header). nullopt when it is too short or
/// not ours (magic/version). Untrusted input: never throws.
[[nodiscard]] std::optional<Payload> decode(std::span<const std::uint8_t> in);

}  // namespace pathsentry::probe::icmp
