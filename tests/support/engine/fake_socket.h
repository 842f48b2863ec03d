#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <system_error>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/record.h"
#include "pathsentry/probe/engine/record_sink.h"
#include "pathsentry/probe/io/datagram_socket.h"
#include "pathsentry/probe/wire/probe_wire.h"

namespace pathsentry::test {

/// An in-memory DatagramSocket for probe-session tests. Everything sent is kept in `sent`;
/// the test decides what comes back and when: deliver() queues a datagram for the next
/// receive() (so tests can drop, duplicate, reorder and delay replies at will). TX timestamps
/// are queued at send time, stamped with the clock's system time plus `tx_delay_ns`, unless
/// `tx_timestamps` is false. Pollable like a real socket: native_handle() is an eventfd that is
/// readable while a datagram or a TX timestamp is waiting, so the engine's receiver waits on it
/// as on any other. Thread-safe (the engine sends and receives on two threads); `sent` and the
/// knobs are for the test to read and set while no engine thread runs.
class FakeSocket final : public probe::DatagramSocket {
 public:
  struct Sent {
    std::vector<std::uint8_t> bytes;
    std::uint32_t ts_id = 0;
    std::int64_t tx_ns = 0;           ///< the TX timestamp the fake reported
    std::int64_t launch_mono_ns = 0;  ///< the launch time it was handed with (0 = none)
  };

  explicit FakeSocket(const Clock& clock);
  ~FakeSocket() override;
  FakeSocket(const FakeSocket&) = delete;
  FakeSocket& operator=(const FakeSocket&) = delete;

  std::deque<Sent> sent;
  bool tx_timestamps = true;
  std::int64_t tx_delay_ns = 1'000;
  /// Launch times (enable_launch_time): `launch_time` = the socket takes SO_TXTIME;
  /// `qdisc_holds` = its qdisc holds each datagram until its launch time (fq): the TX timestamp
  /// is then the launch time (plus tx_delay_ns), else the send time, as noqueue does.
  bool launch_time = true;
  bool qdisc_holds = true;
  /// The next `fail_sends` datagrams are refused with `fail_code`.
  int fail_sends = 0;
  std::errc fail_code = std::errc::no_buffer_space;

  /// Queues `bytes` to be received with kernel RX timestamp `rx_ns`.
  void deliver(std::vector<std::uint8_t> bytes, std::int64_t rx_ns);
  /// Datagrams waiting to be received.
  [[nodiscard]] std::size_t pending() const;

  tl::expected<std::size_t, std::error_code> send(std::span<const probe::TxDatagram> b) override;
  tl::expected<std::size_t, std::error_code> receive(std::span<probe::RxDatagram> b) override;
  tl::expected<std::size_t, std::error_code> read_tx_timestamps(
      std::span<probe::io::TxTimestamp> out) override;
  tl::expected<void, std::error_code> enable_launch_time() override;
  int native_handle() const override { return event_fd_; }

 private:
  /// Makes the eventfd readable iff something is waiting (mu_ held).
  void update_readiness();

  const Clock& clock_;
  int event_fd_ = -1;
  mutable std::mutex mu_;
  std::deque<std::pair<std::vector<std::uint8_t>, std::int64_t>> inbox_;
  std::deque<probe::io::TxTimestamp> tx_queue_;
  bool launch_enabled_ = false;
};

/// The echo reply a host would send to ICMP echo `request` (as our session built it): type
/// swapped, same identifier, sequence and payload; with a 20-byte IPv4 header in front when
/// `wf` is a raw IPv4 socket (which receives the IP header).
std::vector<std::uint8_t> icmp_echo_reply(const probe::WireFormat& wf,
                                          std::span<const std::uint8_t> request);

/// The reply a stateful STAMP reflector would send to `request`, numbered `reflector_seq`,
/// received at t2 and sent at t3 (CLOCK_REALTIME ns).
std::vector<std::uint8_t> stamp_reply(std::span<const std::uint8_t> request,
                                      std::uint32_t reflector_seq, std::int64_t t2_ns,
                                      std::int64_t t3_ns);

/// A RecordSink that keeps copies of every record.
class CollectingSink final : public probe::RecordSink {
 public:
  std::vector<ProbeRecord> records;
  std::vector<probe::SentNotice> sent;
  /// For each record, how many probes had been announced when it came.
  std::vector<std::size_t> announced_at_record;
  void on_record(const ProbeRecord& r) override {
    records.push_back(r);
    announced_at_record.push_back(sent.size());
  }
  void on_sent(const probe::SentNotice& s) override { sent.push_back(s); }
  /// Records for `seq`, in emission order.
  [[nodiscard]] std::vector<ProbeRecord> for_seq(std::uint64_t seq) const;
};

}  // namespace pathsentry::test
