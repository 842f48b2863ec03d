#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <tl/expected.hpp>

#include "pathsentry/common/ip.h"
#include "pathsentry/probe/io/datagram_socket.h"

namespace pathsentry::probe::io {

/// Which kind of ICMP socket to open.
enum class IcmpSocketMode {
  Auto,   ///< raw; if that is not permitted (EPERM/EACCES), an unprivileged ping socket
  Raw,    ///< SOCK_RAW only (needs CAP_NET_RAW)
  Dgram,  ///< SOCK_DGRAM/IPPROTO_ICMP only (needs net.ipv4.ping_group_range to include us)
};

/// Where and how a probe socket sends.
struct ProbeSocketOptions {
  IpAddress target;
  std::uint16_t port = 0;           ///< UDP destination port (STAMP); unused for ICMP
  std::optional<IpAddress> source;  ///< bind() to this local address (the probe's source)
  std::string interface;            ///< SO_BINDTODEVICE; empty = none
  std::uint8_t dscp = 0;            ///< IP_TOS / IPV6_TCLASS = dscp << 2
  int buffer_bytes = 4 << 20;       ///< SO_RCVBUF/SO_SNDBUF (forced when privileged)
};

/// A socket ready for a session, and what the session must know about it.
struct OpenedSocket {
  std::unique_ptr<DatagramSocket> socket;
  bool icmp_raw = false;      ///< ICMP: a raw socket (else a ping socket)
  std::uint16_t echo_id = 0;  ///< ICMP identifier to put in requests (raw sockets)
  std::string note;           ///< something worth logging (e.g. "fell back to a ping socket")
};

/// Why a socket could not be opened: the step that failed ("socket", "bind", "connect",
/// "SO_BINDTODEVICE", ...), the option it concerns ("source", "interface", "dscp", ""), and
/// the errno.
struct OpenError {
  std::string step;
  std::string option;
  std::error_code code;
  [[nodiscard]] std::string message() const;
};

/// Opens, configures and connects an ICMP echo socket to `opts.target` with kernel RX/TX
/// timestamps. `echo_id` is the identifier raw sockets will use (ping sockets get one from the
/// kernel). Never throws.
[[nodiscard]] tl::expected<OpenedSocket, OpenError> open_icmp_socket(const ProbeSocketOptions& opts,
                                                                     IcmpSocketMode mode,
                                                                     std::uint16_t echo_id);

/// Opens, configures and connects a UDP socket to `opts.target`:`opts.port` with kernel RX/TX
/// timestamps. Never throws.
[[nodiscard]] tl::expected<OpenedSocket, OpenError> open_udp_socket(const ProbeSocketOptions& opts);

}  // namespace pathsentry::probe::io
