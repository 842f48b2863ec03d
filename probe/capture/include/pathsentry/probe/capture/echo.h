#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "pathsentry/common/ip.h"

namespace pathsentry::probe {

/// Any ICMP / ICMPv6 echo request or reply, whatever its payload: what a clear tap shows of
/// third-party pings such as the cloud's health check of the line (issue 12).
struct EchoFrame {
  std::int64_t ts_ns = 0;  ///< capture time
  IpAddress src{};
  IpAddress dst{};
  bool request = true;  ///< echo request (true) or echo reply
  std::uint16_t id = 0;
  std::uint16_t seq = 0;
};

/// Decodes a frame of link type `link` as an ICMP(v6) echo; nullopt for anything else
/// (truncated, fragment, not an echo). Pure: never throws, never reads past `bytes`.
[[nodiscard]] std::optional<EchoFrame> decode_echo(std::int64_t ts_ns, int link,
                                                   std::span<const std::uint8_t> bytes);

}  // namespace pathsentry::probe
