#include "rx_control.h"

#include <netinet/in.h>

#include <cerrno>
#include <cstring>

#include "pathsentry/common/cmsg.h"

namespace pathsentry::probe {
namespace {

std::uint8_t clamp_byte(int v) {
  return static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

RxInfo parse_rx_control(const msghdr& msg) {
  RxInfo info;
  auto& m = const_cast<msghdr&>(msg);  // CMSG_NXTHDR takes a non-const header; it only reads
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_len < CMSG_LEN(0)) break;  // a header that does not hold itself
    const unsigned char* data = CMSG_DATA(c);
    const std::size_t len = cmsg_data_len(msg, c);  // never past msg_controllen
    int v = 0;
    if (c->cmsg_level == IPPROTO_IP) {
      if (c->cmsg_type == IP_TTL && len >= sizeof(int)) {
        std::memcpy(&v, data, sizeof v);
        info.ttl = clamp_byte(v);
      } else if (c->cmsg_type == IP_TOS && len >= 1) {
        info.tos = data[0];
      } else if (c->cmsg_type == IP_PKTINFO && len >= sizeof(in_pktinfo)) {
        std::memcpy(&info.v4, data, sizeof info.v4);
        info.have_v4_dst = true;
      }
    } else if (c->cmsg_level == IPPROTO_IPV6) {
      if (c->cmsg_type == IPV6_HOPLIMIT && len >= sizeof(int)) {
        std::memcpy(&v, data, sizeof v);
        info.ttl = clamp_byte(v);
      } else if (c->cmsg_type == IPV6_TCLASS && len >= sizeof(int)) {
        std::memcpy(&v, data, sizeof v);
        info.tos = clamp_byte(v);
      } else if (c->cmsg_type == IPV6_PKTINFO && len >= sizeof(in6_pktinfo)) {
        std::memcpy(&info.v6, data, sizeof info.v6);
        info.have_v6_dst = true;
      }
    }
  }
  return info;
}

SendFailure classify_send_failure(int e, int full_waits) {
  if (e == EINTR) return SendFailure::Retry;
  if (e == EPERM || e == EACCES) return SendFailure::Denied;
  if ((e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) && full_waits < kMaxFullWaits) {
    return SendFailure::WaitForRoom;
  }
  return SendFailure::Drop;
}

}  // namespace pathsentry::probe
