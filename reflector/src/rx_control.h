#pragma once
// The control messages of one datagram the reflector received (reflector_socket.cpp), parsed
// apart from the socket so that tests can hand it truncated and hostile buffers.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>

namespace pathsentry::probe {

// What the control messages of one received datagram say besides the timestamp.
struct RxInfo {
  std::optional<std::uint8_t> ttl;
  std::optional<std::uint8_t> tos;
  bool have_v4_dst = false;
  in_pktinfo v4{};
  bool have_v6_dst = false;
  in6_pktinfo v6{};
};

/// Reads TTL / hop limit, TOS / traffic class and the destination (IP_PKTINFO/IPV6_PKTINFO)
/// from `msg`'s control messages. A message shorter than its type needs is ignored; one whose
/// cmsg_len is shorter than a header ends the walk. Never reads past msg_controllen.
[[nodiscard]] RxInfo parse_rx_control(const msghdr& msg);

/// What the send loop does when sendmmsg fails on its first message with errno `e` after
/// `full_waits` waits for room in this batch.
enum class SendFailure : std::uint8_t {
  Retry,        ///< EINTR: call again at once
  WaitForRoom,  ///< the send buffer is full: wait briefly (at most kMaxFullWaits times)
  Drop,         ///< drop this reply (counted in send_errors), go on with the next
  Denied,       ///< EPERM/EACCES (a firewall or policy refused it): final, drop and count it
};
inline constexpr int kMaxFullWaits = 4;
[[nodiscard]] SendFailure classify_send_failure(int e, int full_waits);

}  // namespace pathsentry::probe
