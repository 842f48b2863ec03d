#include "ttl_control.h"

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <time.h>  // struct timespec, which linux/errqueue.h uses without including it

#include <algorithm>
#include <cstring>

#include "pathsentry/common/cmsg.h"

namespace pathsentry::probe {

std::optional<TtlIcmpError> parse_ttl_error_control(const msghdr& msg) {
  TtlIcmpError e;
  bool icmp = false;
  auto& m = const_cast<msghdr&>(msg);  // CMSG_NXTHDR takes a non-const header; it only reads
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_len < CMSG_LEN(0)) break;           // a header that does not hold itself
    const std::size_t len = cmsg_data_len(msg, c);  // never past msg_controllen
    if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
        (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
      sock_extended_err ee{};
      if (len < sizeof ee) continue;
      std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
      if (ee.ee_origin != SO_EE_ORIGIN_ICMP && ee.ee_origin != SO_EE_ORIGIN_ICMP6) continue;
      // SO_EE_OFFENDER: the sockaddr right after the sock_extended_err (as much as is there).
      sockaddr_storage off{};
      const std::size_t room = len - sizeof ee;
      std::memcpy(&off, CMSG_DATA(c) + sizeof ee, std::min(room, sizeof off));
      auto a = IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&off));
      if (!a) continue;
      e.offender = *a;
      e.icmp6 = ee.ee_origin == SO_EE_ORIGIN_ICMP6;
      e.icmp_type = ee.ee_type;
      e.icmp_code = ee.ee_code;
      icmp = true;
    } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
               len >= sizeof(timespec)) {
      timespec ts{};
      std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
      e.rx_ns = timespec_ns(ts).value_or(0);  // 0: none (a time no clock gives is none)
    }
  }
  if (!icmp) return std::nullopt;
  return e;
}

}  // namespace pathsentry::probe
