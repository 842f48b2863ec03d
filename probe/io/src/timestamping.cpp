#include "pathsentry/probe/io/timestamping.h"

#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "pathsentry/common/cmsg.h"

namespace pathsentry::probe::io {
namespace {

// The software timestamp of an SCM_TIMESTAMPING control message: ts[0] (ts[2] is the raw
// hardware one); nullopt for another kind of message, or one cut short of its three times.
std::optional<timespec> scm_software(const msghdr& msg, const cmsghdr* c) {
  if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPING ||
      cmsg_data_len(msg, c) < sizeof(scm_timestamping)) {
    return std::nullopt;
  }
  scm_timestamping ts{};
  std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
  return ts.ts[0];
}

std::optional<std::int64_t> software_ts(const msghdr& msg) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), c)) {
    const auto ts = scm_software(msg, c);
    if (ts && (ts->tv_sec != 0 || ts->tv_nsec != 0)) return timespec_ns(*ts);
  }
  return std::nullopt;
}

}  // namespace

tl::expected<void, std::error_code> enable_timestamping(int fd, TimestampingOptions opts) {
  unsigned flags = SOF_TIMESTAMPING_SOFTWARE;
  if (opts.rx) flags |= SOF_TIMESTAMPING_RX_SOFTWARE;
  if (opts.tx) {
    flags |= SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) != 0) {
    return tl::unexpected(std::error_code(errno, std::system_category()));
  }
  return {};
}

std::optional<std::int64_t> rx_timestamp_ns(const msghdr& msg) {
  if ((msg.msg_flags & MSG_CTRUNC) != 0 && msg.msg_controllen == 0) return std::nullopt;
  return software_ts(msg);
}

std::optional<TxTimestamp> parse_tx_timestamp(const msghdr& msg) {
  std::optional<std::int64_t> ns;
  std::optional<std::uint32_t> id;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), c)) {
    if (const auto ts = scm_software(msg, c)) {
      ns = timespec_ns(*ts);
    } else if (((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
                (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) &&
               cmsg_data_len(msg, c) >= sizeof(sock_extended_err)) {
      sock_extended_err err{};
      std::memcpy(&err, CMSG_DATA(c), sizeof err);
      if (err.ee_errno == ENOMSG && err.ee_origin == SO_EE_ORIGIN_TIMESTAMPING) {
        id = err.ee_data;
      }
    }
  }
  if (!ns || !id) return std::nullopt;
  return TxTimestamp{*id, *ns};
}

tl::expected<std::size_t, std::error_code> drain_tx_timestamps(int fd, std::span<TxTimestamp> out) {
  constexpr std::size_t kBatch = 64;
  std::array<mmsghdr, kBatch> msgs{};
  std::array<std::array<char, kControlSize>, kBatch> controls;
  std::size_t stored = 0;
  while (stored < out.size()) {
    const std::size_t want = std::min(kBatch, out.size() - stored);
    for (std::size_t i = 0; i < want; ++i) {
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_control = controls[i].data();
      msgs[i].msg_hdr.msg_controllen = controls[i].size();
    }
    const int n = recvmmsg(fd, msgs.data(), static_cast<unsigned>(want),
                           MSG_ERRQUEUE | MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      return tl::unexpected(std::error_code(errno, std::system_category()));
    }
    if (n == 0) break;
    for (int i = 0; i < n && stored < out.size(); ++i) {
      if (auto ts = parse_tx_timestamp(msgs[static_cast<std::size_t>(i)].msg_hdr)) {
        out[stored++] = *ts;
      }
    }
    if (static_cast<std::size_t>(n) < want) break;
  }
  return stored;
}

}  // namespace pathsentry::probe::io
