#pragma once
// Reading control messages (ancillary data) of a received message: the checks every parser of
// them makes before it reads (probe/io timestamping, probe/ttl ttl_control, reflector
// rx_control). Untrusted bytes as far as the parsers go: fuzz/control_fuzz.cpp feeds them
// arbitrary buffers.

#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace pathsentry {

/// How many bytes of control message `c`'s data can be read: its cmsg_len minus the header,
/// cut to what is left of `msg`'s control buffer (CMSG_FIRSTHDR does not check the first
/// message's cmsg_len against msg_controllen; the kernel never writes a longer one, even on
/// MSG_CTRUNC). 0 when cmsg_len is shorter than a header.
[[nodiscard]] inline std::size_t cmsg_data_len(const msghdr& msg, const cmsghdr* c) {
  const auto* base = static_cast<const unsigned char*>(msg.msg_control);
  const auto* end = base + msg.msg_controllen;
  const auto* data = reinterpret_cast<const unsigned char*>(CMSG_DATA(c));
  if (c->cmsg_len < CMSG_LEN(0) || data > end) return 0;
  return std::min<std::size_t>(c->cmsg_len - CMSG_LEN(0), static_cast<std::size_t>(end - data));
}

/// A timestamp from a control message as ns since the epoch; nullopt when it is none a clock
/// gives (negative, tv_nsec outside [0, 1e9), or beyond what int64 ns hold).
[[nodiscard]] inline std::optional<std::int64_t> timespec_ns(const timespec& ts) {
  constexpr std::int64_t kNs = 1'000'000'000;
  if (ts.tv_sec < 0 || ts.tv_nsec < 0 || ts.tv_nsec >= kNs) return std::nullopt;
  if (ts.tv_sec > (INT64_MAX - ts.tv_nsec) / kNs) return std::nullopt;
  return static_cast<std::int64_t>(ts.tv_sec) * kNs + ts.tv_nsec;
}

}  // namespace pathsentry
