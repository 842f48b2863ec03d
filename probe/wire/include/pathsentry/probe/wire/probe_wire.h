#pragma once

#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "pathsentry/common/record.h"
#include "pathsentry/probe/wire/stamp.h"

namespace pathsentry::probe {

/// How one session's probes look on its socket. Sizes count what is handed to the socket: the
/// whole ICMP message (header + payload) or the UDP payload (the STAMP packet + padding).
struct WireFormat {
  Proto proto = Proto::Icmp;
  int family = AF_INET;
  /// ICMP over a raw socket: we write the ICMPv4 checksum and the identifier, and IPv4 replies
  /// arrive with their IP header. False for ping (SOCK_DGRAM) sockets, where the kernel owns
  /// the identifier and the checksum.
  bool icmp_raw = true;
  std::uint16_t echo_id = 0;  ///< ICMP identifier (raw sockets)
  std::uint32_t agent_id = 0;
  std::uint32_t session_id = 0;
  std::size_t datagram_size = 0;     ///< bytes per probe handed to the socket
  stamp::ErrorEstimate stamp_error;  ///< STAMP: our clock's error estimate, sent in requests
  /// STAMP: the RFC 8972 SSID sent in requests and required in replies; 0 = the low 16 bits
  /// of session_id (tests). The agent draws a random non-zero one per session, so an off-path
  /// sender cannot derive it from the session's index.
  std::uint16_t ssid = 0;
};

/// The STAMP SSID of `wf`'s requests (see WireFormat::ssid).
[[nodiscard]] constexpr std::uint16_t stamp_ssid(const WireFormat& wf) {
  return wf.ssid != 0 ? wf.ssid : static_cast<std::uint16_t>(wf.session_id & 0xFFFF);
}

/// Our clock's STAMP error estimate from the kernel (adjtimex): S set when NTP says the clock is
/// synchronized, scale/multiplier from its estimated error.
[[nodiscard]] stamp::ErrorEstimate local_error_estimate();

inline constexpr std::size_t kIcmpHeaderSize = 8;
inline constexpr std::size_t kUdpHeaderSize = 8;

/// Smallest IP payload (ICMP message, or UDP header + STAMP packet) a probe can have.
[[nodiscard]] std::size_t min_ip_payload(Proto proto);
/// Bytes handed to the socket for a probe whose IP payload is `ip_payload` bytes
/// (0 = the minimum).
[[nodiscard]] std::size_t datagram_size_for(Proto proto, std::size_t ip_payload);
/// A probe's size at the IP layer, what a tap sees and what ESP lengths are computed from: the
/// IP header of `family` (AF_INET: 20, AF_INET6: 40), the UDP header for STAMP, and the
/// `datagram_size` bytes handed to the socket. The one place this size is computed.
[[nodiscard]] std::uint32_t probe_ip_bytes(int family, Proto proto, std::size_t datagram_size);

/// Writes the request with sequence `seq`, sent at `tx_ns` (CLOCK_REALTIME), into `out`
/// (at least wf.datagram_size bytes); returns wf.datagram_size, or 0 if `out` is too small.
std::size_t build_request(const WireFormat& wf, std::uint64_t seq, std::int64_t tx_ns,
                          std::span<std::uint8_t> out);
/// The same request padded (with zeros) to `datagram_size` bytes instead of wf.datagram_size
/// (size cycling); returns `datagram_size`, or 0 if `out` is too small or `datagram_size` is
/// below the protocol's minimum.
std::size_t build_request(const WireFormat& wf, std::uint64_t seq, std::int64_t tx_ns,
                          std::span<std::uint8_t> out, std::size_t datagram_size);

/// What a reply to one of our probes says.
struct ParsedReply {
  std::uint64_t seq = 0;          ///< the probe's 64-bit sequence
  std::int64_t sender_tx_ns = 0;  ///< send time the probe carried (0 if the reply lost it)
  /// The reply echoed a send time (false only for an ICMP reply truncated before our payload).
  bool has_sender_tx = false;
  std::uint16_t ssid = 0;  ///< STAMP: the SSID the reply carried (ours, or 0 = not echoed)
  std::uint64_t sender_timestamp = 0;          ///< STAMP: the echoed t1 exactly as on the wire
  std::optional<std::uint32_t> reflector_seq;  ///< STAMP: the reflector's own sequence
  std::int64_t reflector_rx_ns = 0;            ///< STAMP t2
  std::int64_t reflector_tx_ns = 0;            ///< STAMP t3
  bool reflector_synced = false;               ///< STAMP: the reflector's S bit
};

/// Why parse_reply() refused a datagram.
enum class ReplyReject : std::uint8_t {
  NotOurs,      ///< wrong type, identity, size, or a sequence never sent
  ForeignSsid,  ///< a well-formed STAMP reply carrying another session's (non-zero) SSID
};

/// Parses a received datagram. nullopt when it is not a reply to this session (wrong type,
/// identity, SSID or size), or when it names a sequence after `newest_seq`, the newest one
/// sent; `why`, when given, says which. Truncated ICMP echo replies without our payload fall
/// back to the 16-bit header sequence, unwrapped against `newest_seq`. A STAMP reply with SSID
/// 0 is accepted here (plain RFC 8762 reflectors do not echo it); the session decides.
/// Untrusted input: never throws, never reads past `in`.
[[nodiscard]] std::optional<ParsedReply> parse_reply(const WireFormat& wf,
                                                     std::span<const std::uint8_t> in,
                                                     std::uint64_t newest_seq,
                                                     ReplyReject* why = nullptr);

/// The RFC 1071 Internet checksum of `data`.
[[nodiscard]] std::uint16_t internet_checksum(std::span<const std::uint8_t> data);

}  // namespace pathsentry::probe
