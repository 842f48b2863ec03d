#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <tl/expected.hpp>

namespace pathsentry::probe::stamp {

/// STAMP (RFC 8762 §4.2/§4.3, unauthenticated mode, with the RFC 8972 SSID field) wire codec.
/// All integers are big-endian on the wire. Timestamps are NTP 64-bit (RFC 5905: seconds since
/// 1900 in the upper 32 bits, binary fraction in the lower 32) unless the error estimate's Z
/// flag says PTPv2 (seconds since 1970 / nanoseconds).

inline constexpr std::size_t kBasePacketSize = 44;  ///< both packet kinds, unauthenticated
inline constexpr std::uint16_t kDefaultPort = 862;  ///< IANA port for STAMP

/// Error Estimate (RFC 4656 §4.1.2 / RFC 8186): S (synchronized), Z (0 = NTP, 1 = PTP),
/// Scale (6 bits) and Multiplier (8 bits). The estimate is Multiplier * 2^(-32) * 2^Scale s.
struct ErrorEstimate {
  bool synchronized = false;
  bool ptp = false;
  std::uint8_t scale = 0;       ///< 0..63
  std::uint8_t multiplier = 1;  ///< must not be 0 (RFC 4656)
  [[nodiscard]] std::uint16_t encode() const;
  [[nodiscard]] static ErrorEstimate decode(std::uint16_t raw);
  friend bool operator==(const ErrorEstimate&, const ErrorEstimate&) = default;
};

/// Session-Sender test packet, unauthenticated (RFC 8762 Figure 1 + RFC 8972 SSID).
struct SenderPacket {
  std::uint32_t sequence = 0;
  std::uint64_t timestamp = 0;  ///< wire format (NTP or PTP per error.ptp)
  ErrorEstimate error;
  std::uint16_t ssid = 0;  ///< RFC 8972 Session-Sender Identifier; 0 = not used
  friend bool operator==(const SenderPacket&, const SenderPacket&) = default;
};

/// Session-Reflector test packet, unauthenticated (RFC 8762 Figure 3 + RFC 8972 SSID).
struct ReflectorPacket {
  std::uint32_t sequence = 0;   ///< reflector's own sequence (stateful) or the sender's
  std::uint64_t timestamp = 0;  ///< when the reflector sent this reply
  ErrorEstimate error;
  std::uint16_t ssid = 0;
  std::uint64_t receive_timestamp = 0;  ///< when the reflector received the request
  std::uint32_t sender_sequence = 0;
  std::uint64_t sender_timestamp = 0;
  ErrorEstimate sender_error;
  std::uint8_t sender_ttl = 0;  ///< TTL/Hop Limit of the request as received
  friend bool operator==(const ReflectorPacket&, const ReflectorPacket&) = default;
};

enum class DecodeError { Truncated, BadErrorEstimate };

/// Writes the 44-byte packet into `out` (which must hold at least kBasePacketSize bytes; the
/// rest of `out`, if any, is left alone: it is the caller's padding). Returns bytes written.
std::size_t encode(const SenderPacket& p, std::span<std::uint8_t> out);
std::size_t encode(const ReflectorPacket& p, std::span<std::uint8_t> out);

/// Parses the first 44 bytes; trailing bytes (padding, RFC 8972 TLVs) are ignored. Untrusted
/// input: never throws, never reads past `in`.
[[nodiscard]] tl::expected<SenderPacket, DecodeError> decode_sender(
    std::span<const std::uint8_t> in);
[[nodiscard]] tl::expected<ReflectorPacket, DecodeError> decode_reflector(
    std::span<const std::uint8_t> in);

/// CLOCK_REALTIME ns since 1970 <-> NTP 64-bit timestamp. Round trip is exact to within 1 ns.
[[nodiscard]] std::uint64_t ns_to_ntp(std::int64_t unix_ns);
[[nodiscard]] std::int64_t ntp_to_ns(std::uint64_t ntp);
/// Same for the PTPv2 truncated format (seconds since 1970 : nanoseconds).
[[nodiscard]] std::uint64_t ns_to_ptp(std::int64_t unix_ns);
[[nodiscard]] std::int64_t ptp_to_ns(std::uint64_t ptp);
/// Converts a wire timestamp according to its error estimate's Z flag.
[[nodiscard]] std::int64_t timestamp_to_ns(std::uint64_t ts, const ErrorEstimate& e);

}  // namespace pathsentry::probe::stamp
