#pragma once

#include <cstdint>

#include "pathsentry/common/record.h"

namespace pathsentry::probe {

/// A probe that left: announced on the engine's receiver thread shortly after it was sent
/// (within one receiver wake-up, a few ms) and always before its record. Probes the kernel
/// refused at send time are not announced (and get no record).
struct SentNotice {
  std::uint32_t session_id = 0;
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;        ///< CLOCK_REALTIME read next to the send (not the kernel's)
  std::uint32_t wire_bytes = 0;  ///< IP total length of the request (IP header included)
};

/// Where finished probe records leave the engine: one call per probe when it is answered or
/// declared lost, and one more (with `late` set) if a reply arrives after it was declared lost.
/// The attributor plugs in here as a sink that completes fwd_path/rev_path and forwards.
/// Called on the engine's receiver thread; the record is only valid during the call. An
/// implementation must not block for long (it delays matching) and must not throw.
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual void on_record(const ProbeRecord& record) = 0;
  /// A probe left (for sinks that need every probe early, such as the attributor's ESP
  /// correlation). Default: ignored.
  virtual void on_sent(const SentNotice& /*sent*/) {}
};

/// A sink that forwards every record to several sinks in order.
class RecordFanout final : public RecordSink {
 public:
  /// Adds a sink (not owned; it must outlive this fanout).
  void add(RecordSink& sink) {
    if (count_ < kMax) sinks_[count_++] = &sink;
  }
  void on_record(const ProbeRecord& record) override {
    for (std::size_t i = 0; i < count_; ++i) sinks_[i]->on_record(record);
  }
  void on_sent(const SentNotice& sent) override {
    for (std::size_t i = 0; i < count_; ++i) sinks_[i]->on_sent(sent);
  }

 private:
  static constexpr std::size_t kMax = 8;
  RecordSink* sinks_[kMax] = {};
  std::size_t count_ = 0;
};

}  // namespace pathsentry::probe
