// The bounded hand-off between the receiver/pipeline threads and the writer thread.
#include "record_queue.h"

#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>

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
  RecordQueue q(4, out, [&] { ++periods; });
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
  RecordQueue q(100, out, nullptr);
  for (std::uint64_t i = 0; i < 50; ++i) q.write(record(i));  // queued before the thread runs
  q.write(PathEvent{});
  q.start();
  q.stop();
  q.stop();  // idempotent
  REQUIRE(out.records() == 50);
  REQUIRE(out.events() == 1);
  REQUIRE(q.dropped() == 0);
}
