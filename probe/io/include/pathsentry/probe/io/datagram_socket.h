#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>
#include <tl/expected.hpp>

#include "pathsentry/probe/io/timestamping.h"

namespace pathsentry::probe {

/// One datagram to send to the socket's peer.
struct TxDatagram {
  std::span<const std::uint8_t> bytes;
  /// Id that the kernel TX timestamp of this datagram will carry (TxTimestamp::id).
  std::uint32_t ts_id = 0;
  /// When to leave (CLOCK_MONOTONIC ns): after enable_launch_time() the kernel's qdisc may hold
  /// the datagram until then (SO_TXTIME). 0, or a time already past, = at once.
  std::int64_t launch_mono_ns = 0;
};

/// One received datagram. The caller provides `buffer`; receive() fills the rest.
struct RxDatagram {
  std::span<std::uint8_t> buffer;
  std::size_t size = 0;    ///< bytes stored in `buffer`
  bool truncated = false;  ///< the datagram was larger than `buffer`
  std::int64_t rx_ns = 0;  ///< kernel software RX timestamp (CLOCK_REALTIME ns); 0 if none
};

/// The socket seam of a probe session (architecture.md §4): a datagram socket connected to one
/// peer, with kernel RX timestamps on receive and TX timestamps read back by id. The real one
/// wraps a raw/ping ICMP or UDP socket (io/probe_sockets.h); tests use an in-memory fake.
/// Calls never block and never throw. send() is called by the sender thread, receive() and
/// read_tx_timestamps() by the receiver thread, concurrently.
class DatagramSocket {
 public:
  virtual ~DatagramSocket() = default;

  /// Sends the datagrams in order. Returns how many were sent (the first ones); when that is
  /// fewer than asked, the next one failed. An error means none was sent.
  [[nodiscard]] virtual tl::expected<std::size_t, std::error_code> send(
      std::span<const TxDatagram> batch) = 0;

  /// Receives up to batch.size() pending datagrams; 0 when none are pending.
  [[nodiscard]] virtual tl::expected<std::size_t, std::error_code> receive(
      std::span<RxDatagram> batch) = 0;

  /// Reads pending TX timestamps; each carries the ts_id its datagram was sent with.
  [[nodiscard]] virtual tl::expected<std::size_t, std::error_code> read_tx_timestamps(
      std::span<io::TxTimestamp> out) = 0;

  /// Asks the kernel to honour TxDatagram::launch_mono_ns (SO_TXTIME, CLOCK_MONOTONIC). Only
  /// a qdisc that schedules by launch time (fq, etf) holds a datagram until then; others send
  /// it at once, which the caller sees in the TX timestamps. Call before the first send().
  [[nodiscard]] virtual tl::expected<void, std::error_code> enable_launch_time() {
    return tl::unexpected(std::make_error_code(std::errc::operation_not_supported));
  }

  /// File descriptor to wait on (readable: datagrams; error: TX timestamps). A fake gives one
  /// too (an eventfd), so every socket is waited on the same way.
  [[nodiscard]] virtual int native_handle() const = 0;
};

}  // namespace pathsentry::probe
