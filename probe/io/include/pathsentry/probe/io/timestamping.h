#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <span>
#include <system_error>
#include <tl/expected.hpp>

namespace pathsentry::probe::io {

/// Kernel software timestamps (SO_TIMESTAMPING, Documentation/networking/timestamping.rst).
/// All times are CLOCK_REALTIME ns. These functions only wrap syscalls and parse control
/// messages; they hold no state and are safe to call from any thread on distinct sockets.

/// Which timestamps to ask for on a socket.
struct TimestampingOptions {
  bool rx = true;  ///< software RX timestamp on every received datagram (cmsg)
  bool tx = true;  ///< software TX timestamp of every sent datagram, on the error queue, with a
                   ///< per-socket counter id (OPT_ID, first send = 0) and no payload (OPT_TSONLY)
};

/// Enables the requested timestamps on `fd`. Errors: the setsockopt errno.
[[nodiscard]] tl::expected<void, std::error_code> enable_timestamping(int fd,
                                                                      TimestampingOptions opts);

/// The control-message buffer size that holds every cmsg these sockets produce.
inline constexpr std::size_t kControlSize = 256;

/// The software RX timestamp in a received message's control data; nullopt when absent
/// (timestamping not enabled or the cmsg buffer was truncated).
[[nodiscard]] std::optional<std::int64_t> rx_timestamp_ns(const msghdr& msg);

/// One TX timestamp from the error queue.
struct TxTimestamp {
  std::uint32_t id = 0;  ///< OPT_ID counter: the n-th datagram sent on the socket (from 0)
  std::int64_t ns = 0;
};

/// Parses one error-queue message into a TX timestamp; nullopt when it holds something else
/// (e.g. an ICMP error from the network).
[[nodiscard]] std::optional<TxTimestamp> parse_tx_timestamp(const msghdr& msg);

/// Reads pending TX timestamps from `fd`'s error queue without blocking (recvmmsg with
/// MSG_ERRQUEUE|MSG_DONTWAIT) into `out`; returns how many were stored (0 when none are
/// pending). Error-queue messages that are not timestamps are skipped. Never throws.
[[nodiscard]] tl::expected<std::size_t, std::error_code> drain_tx_timestamps(
    int fd, std::span<TxTimestamp> out);

}  // namespace pathsentry::probe::io
