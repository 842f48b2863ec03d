#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <variant>
#include <vector>

#include "pathsentry/common/record.h"
#include "pathsentry/probe/attribution/pipeline.h"
#include "pathsentry/probe/engine/record_sink.h"

namespace pathsentry::probe {

/// The bounded hand-off between the threads that finish records (the engine's SCHED_FIFO
/// receiver without taps, the pipeline's worker with them) and the outputs (JSON lines, the
/// shipper), which run on the queue's own "writer" thread. Records wake the writer 1024 at a
/// time or at its period, events at once. Pushing never blocks: a full queue
/// drops the record or event and counts it, so a blocked output (a --records FIFO nobody reads,
/// a stuck disk) costs records, never reception. The writer thread calls `out.flush()` and
/// `periodic()` every `period_ns` (and once more at stop()), e.g. to report write failures and
/// to reopen the records file after SIGHUP.
///
/// Full means `capacity` entries or `max_bytes` of memory, whichever comes first. The bytes are
/// those the entries hold (item_bytes: the entry itself and what its strings allocate) from
/// the push until the writer has written them, so a writer that falls behind costs at most
/// `max_bytes` of memory (plus one batch's vector), and the memory of a large batch is given
/// back once it is written.
class RecordQueue final : public RecordSink, public RecordOutput {
 public:
  RecordQueue(std::size_t capacity, std::size_t max_bytes, RecordOutput& out,
              std::function<void()> periodic, std::int64_t period_ns = 200'000'000);
  ~RecordQueue() override;
  RecordQueue(const RecordQueue&) = delete;
  RecordQueue& operator=(const RecordQueue&) = delete;

  /// The agent's capacity for `total_pps` probes/s of all sessions: two seconds of records, at
  /// least 4096 entries.
  [[nodiscard]] static std::size_t capacity_for(double total_pps);

  /// Starts the writer thread (start_thread: a failure there ends the process).
  void start();
  /// Writes out everything queued, flushes, runs `periodic` once more, joins. Idempotent.
  void stop();

  // Producers (any thread; never block on the output).
  void on_record(const ProbeRecord& r) override { push(Item(r)); }
  void write(const ProbeRecord& r) override { push(Item(r)); }
  void write(const PathEvent& e) override { push(Item(std::make_unique<PathEvent>(e))); }
  /// A poll's records under one lock; those past the bounds are dropped and counted.
  void write_all(std::span<const ProbeRecord> records) override;
  /// The writer thread flushes on its own period.
  void flush() override {}

  [[nodiscard]] std::uint64_t queued() const { return queued_.load(); }
  /// Records and events refused because the queue was full.
  [[nodiscard]] std::uint64_t dropped() const { return dropped_.load(); }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }
  [[nodiscard]] std::size_t max_bytes() const { return max_bytes_; }
  /// Memory held by entries pushed and not yet written (item_bytes).
  [[nodiscard]] std::size_t bytes() const { return bytes_.load(); }

  /// An entry: events are rare and large (440 bytes), so they are boxed and a record entry
  /// costs a record's size, not the largest alternative's.
  using Item = std::variant<ProbeRecord, std::unique_ptr<PathEvent>>;
  /// The memory one entry holds: its own size and its heap (strings past their small buffer,
  /// the boxed event, taps_down).
  [[nodiscard]] static std::size_t item_bytes(const Item& item);

 private:
  void push(Item&& item);
  /// Under mu_: takes `item` if it fits, else counts it dropped. True: wake the writer.
  bool admit(Item&& item);
  void loop();

  const std::size_t capacity_;
  const std::size_t max_bytes_;
  RecordOutput& out_;
  std::function<void()> periodic_;
  const std::int64_t period_ns_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Item> items_;  // guarded by mu_
  bool stopping_ = false;    // guarded by mu_
  std::atomic<std::uint64_t> queued_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::size_t> bytes_{0};  // changed under mu_ (push) or by the writer (after writing)
  std::thread thread_;
  bool started_ = false;
};

}  // namespace pathsentry::probe
