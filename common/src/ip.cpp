#include "pathsentry/common/ip.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace pathsentry {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, text.data(), text.size());
  IpAddress a;
  if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* sa) {
  IpAddress a;
  if (sa->sa_family == AF_INET) {
    sockaddr_in sin{};
    std::memcpy(&sin, sa, sizeof sin);
    std::memcpy(a.bytes.data(), &sin.sin_addr, 4);
    a.family = AF_INET;
    return a;
  }
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, sa, sizeof sin6);
    // Treat v4-mapped addresses as IPv4, so a dual-stack socket still matches v4 prefixes.
    if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
      std::memcpy(a.bytes.data(), &sin6.sin6_addr.s6_addr[12], 4);
      a.family = AF_INET;
    } else {
      std::memcpy(a.bytes.data(), &sin6.sin6_addr, 16);
      a.family = AF_INET6;
    }
    return a;
  }
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), buf, sizeof buf);
  return buf;
}

socklen_t IpAddress::to_sockaddr(std::uint16_t port, sockaddr_storage& out) const {
  std::memset(&out, 0, sizeof out);
  if (family == AF_INET) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    std::memcpy(&sin.sin_addr, bytes.data(), 4);
    std::memcpy(&out, &sin, sizeof sin);
    return sizeof sin;
  }
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  std::memcpy(&sin6.sin6_addr, bytes.data(), 16);
  std::memcpy(&out, &sin6, sizeof sin6);
  return sizeof sin6;
}

std::optional<IpPrefix> IpPrefix::parse(std::string_view text) {
  const auto slash = text.find('/');
  const auto addr = IpAddress::parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  IpPrefix p{*addr, static_cast<int>(addr->length() * 8)};
  if (slash != std::string_view::npos) {
    const auto len = text.substr(slash + 1);
    int v = -1;
    const auto [ptr, ec] = std::from_chars(len.data(), len.data() + len.size(), v);
    if (len.empty() || ec != std::errc{} || ptr != len.data() + len.size() || v < 0 ||
        v > static_cast<int>(addr->length() * 8)) {
      return std::nullopt;
    }
    p.length = v;
  }
  return p;
}

bool IpPrefix::contains(const IpAddress& a) const {
  if (a.family != base.family) return false;
  const int full = length / 8;
  if (std::memcmp(a.bytes.data(), base.bytes.data(), static_cast<std::size_t>(full)) != 0) {
    return false;
  }
  const int rest = length % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (a.bytes[static_cast<std::size_t>(full)] & mask) ==
         (base.bytes[static_cast<std::size_t>(full)] & mask);
}

std::string IpPrefix::to_string() const {
  return base.to_string() + "/" + std::to_string(length);
}

}  // namespace pathsentry
