// The bounded hand-off between the receiver/pipeline threads and the writer thread.
#include "record_queue.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

using pathsentry::PathEvent;
using pathsentry::ProbeRecord;
using pathsentry::probe::RecordOutput;
using pathsentry::probe::RecordQueue;

namespace {

// An output whose first write blocks until released, as a records FIFO nobody reads.
class StuckOutput final : public RecordOutput {
 public:
  void write(const ProbeRecord& r) override {
    std::unique_lock lock(mu_);
    ++records_;
    last_seq_ = r.seq;
    cv_.notify_all();
    cv_.wait(lock, [this] { return released_; });
  }
  void write(const PathEvent&) override {
    std::lock_guard lock(mu_);
    ++events_;
  }
  void flush() override {
    std::lock_guard lock(mu_);
    ++flushes_;
  }
  void wait_first() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return records_ > 0; });
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  int records() {
    std::lock_guard lock(mu_);
    return records_;
  }
  int events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  int flushes() {
    std::lock_guard lock(mu_);
    return flushes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  int records_ = 0;
  int events_ = 0;
  int flushes_ = 0;
  std::uint64_t last_seq_ = 0;
};

ProbeRecord record(std::uint64_t seq) {
  ProbeRecord r;
  r.seq = seq;
  return r;
}

}  // namespace

TEST_CASE("record queue: a stuck output costs records, never blocks the producer", "[unit]") {
  StuckOutput out;
  int periods = 0;
  RecordQueue q(4, std::size_t{1} << 20, out, [&] { ++periods; });
  q.start();
  q.on_record(record(0));
  out.wait_first();  // the writer thread is stuck inside the output with record 0
  for (std::uint64_t i = 1; i <= 7; ++i) q.on_record(record(i));  // 4 fit, 3 are dropped
  q.write(PathEvent{});                                           // full: dropped too
  REQUIRE(q.dropped() == 4);
  REQUIRE(q.queued() == 5);
  out.release();
  q.stop();
  REQUIRE(out.records() == 5);
  REQUIRE(out.events() == 0);
  REQUIRE(out.flushes() >= 1);  // flushed at the end
  REQUIRE(periods >= 1);        // and the periodic report ran at the end
}

TEST_CASE("record queue: stop writes out everything queued", "[unit]") {
  StuckOutput out;
  out.release();
  RecordQueue q(100, std::size_t{1} << 20, out, nullptr);
  for (std::uint64_t i = 0; i < 50; ++i) q.write(record(i));  // queued before the thread runs
  q.write(PathEvent{});
  q.start();
  q.stop();
  q.stop();  // idempotent
  REQUIRE(out.records() == 50);
  REQUIRE(out.events() == 1);
  REQUIRE(q.dropped() == 0);
}

TEST_CASE("record queue: a writer that falls behind holds at most max_bytes", "[unit]") {
  StuckOutput out;
  const std::size_t per_record = RecordQueue::item_bytes(RecordQueue::Item(record(0)));
  REQUIRE(per_record >= sizeof(ProbeRecord));
  // Room for 10 short records' memory, 1000 entries: the memory bound comes first.
  RecordQueue q(1000, 10 * per_record, out, nullptr);
  q.start();
  q.on_record(record(0));
  out.wait_first();  // record 0 is being written: it still holds its memory
  for (std::uint64_t i = 1; i <= 20; ++i) q.on_record(record(i));
  REQUIRE(q.queued() == 10);  // record 0 and 9 more
  REQUIRE(q.dropped() == 11);
  REQUIRE(q.bytes() == 10 * per_record);

  // A record whose strings allocate costs more: the target's 200 characters count.
  ProbeRecord big = record(99);
  big.target.assign(200, 'x');
  const std::size_t big_bytes = RecordQueue::item_bytes(RecordQueue::Item(big));
  REQUIRE(big_bytes >= per_record + 200);
  // An event is boxed: its entry is a record's size plus the event's own.
  PathEvent ev;
  ev.reason.assign(100, 'r');
  REQUIRE(RecordQueue::item_bytes(RecordQueue::Item(std::make_unique<PathEvent>(ev))) >=
          sizeof(RecordQueue::Item) + sizeof(PathEvent) + 100);
  REQUIRE(sizeof(RecordQueue::Item) < sizeof(PathEvent));

  out.release();
  q.stop();
  REQUIRE(out.records() == 10);
  REQUIRE(q.bytes() == 0);  // all written: nothing held
}

TEST_CASE("record queue: room comes back as the writer catches up", "[unit]") {
  StuckOutput out;
  out.release();
  const std::size_t per_record = RecordQueue::item_bytes(RecordQueue::Item(record(0)));
  RecordQueue q(1000, 4 * per_record, out, nullptr, 1'000'000);
  q.start();
  std::uint64_t pushed = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 4; ++i) q.on_record(record(pushed++));
    // Wait until the writer has written this round: its memory is released after writing (a
    // generous bound, so a leak fails rather than hangs).
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (q.bytes() != 0 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    REQUIRE(q.bytes() == 0);
  }
  q.stop();
  REQUIRE(q.dropped() == 0);
  REQUIRE(out.records() == 200);
}

TEST_CASE("record queue: records wake the writer 1024 at a time, events at once", "[unit]") {
  StuckOutput out;
  out.release();
  // A period far longer than the test: whatever is written before it was woken for.
  RecordQueue q(100'000, std::size_t{1} << 28, out, nullptr, 600'000'000'000);
  q.start();
  const auto written = [&](int records, int events) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while ((out.records() < records || out.events() < events) &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return out.records() == records && out.events() == events;
  };
  q.write(PathEvent{});
  REQUIRE(written(0, 1));  // an event at once
  // The writer is back waiting; one record alone does not wake it (a wake-up per poll cost a
  // context switch per millisecond).
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  q.on_record(record(0));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  REQUIRE(out.records() == 0);
  // A poll's records in one call; the 1024th waiting record wakes it.
  std::vector<ProbeRecord> poll;
  for (std::uint64_t i = 1; i < 1023; ++i) poll.push_back(record(i));
  q.write_all(poll);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  REQUIRE(out.records() == 0);
  q.write_all(std::vector<ProbeRecord>{record(1023)});
  REQUIRE(written(1024, 1));
  // stop() writes what waits, without a wake-up.
  q.on_record(record(1024));
  q.stop();
  REQUIRE(out.records() == 1025);
  REQUIRE(q.queued() == 1026);
  REQUIRE(q.dropped() == 0);
}

TEST_CASE("record queue: a poll's records past the bounds are dropped one by one", "[unit]") {
  StuckOutput out;
  const std::size_t per_record = RecordQueue::item_bytes(RecordQueue::Item(record(0)));
  RecordQueue q(1000, 3 * per_record, out, nullptr);
  ProbeRecord big = record(1);
  big.target.assign(3 * per_record, 'x');  // does not fit beside a short record
  q.write_all(std::vector<ProbeRecord>{record(0), big, record(2), record(3), record(4)});
  out.release();             // before any REQUIRE: a failed one stops the queue, which writes out
  REQUIRE(q.queued() == 3);  // 0, 2, 3: the big one dropped, the short ones after it taken
  REQUIRE(q.dropped() == 2);
  q.start();
  q.stop();
  REQUIRE(out.records() == 3);
}
