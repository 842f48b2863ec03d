#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pathsentry {

/// An IPv4 or IPv6 address (IPv4 is stored as such, not v4-mapped).
struct IpAddress {
  int family = AF_INET;  ///< AF_INET or AF_INET6
  std::array<std::uint8_t, 16> bytes{};

  /// Parses dotted-quad or RFC 5952 text; nullopt on anything else. Never throws.
  [[nodiscard]] static std::optional<IpAddress> parse(std::string_view text);
  /// From a sockaddr_in / sockaddr_in6; nullopt for other families.
  [[nodiscard]] static std::optional<IpAddress> from_sockaddr(const sockaddr* sa);
  [[nodiscard]] std::string to_string() const;
  [[nodiscard]] std::size_t length() const { return family == AF_INET ? 4 : 16; }
  /// Fills a sockaddr_storage with this address and `port`; returns its length.
  socklen_t to_sockaddr(std::uint16_t port, sockaddr_storage& out) const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

/// A CIDR prefix such as 172.16.0.0/16 or 2001:db8::/32.
struct IpPrefix {
  IpAddress base;
  int length = 0;

  /// Parses "addr/len" (a bare address means a host prefix); nullopt when malformed or when
  /// the length is out of range. Never throws.
  [[nodiscard]] static std::optional<IpPrefix> parse(std::string_view text);
  /// True when `a` is of the same family and inside this prefix.
  [[nodiscard]] bool contains(const IpAddress& a) const;
  [[nodiscard]] std::string to_string() const;
};

}  // namespace pathsentry
