#include "record_queue.h"

#include <chrono>
#include <utility>

#include "pathsentry/common/thread_runner.h"

namespace pathsentry::probe {

RecordQueue::RecordQueue(std::size_t capacity, RecordOutput& out, std::function<void()> periodic,
                         std::int64_t period_ns)
    : capacity_(capacity > 0 ? capacity : 1),
      out_(out),
      periodic_(std::move(periodic)),
      period_ns_(period_ns) {
  items_.reserve(capacity_);
}

RecordQueue::~RecordQueue() {
  stop();
}

void RecordQueue::start() {
  if (started_) return;
  started_ = true;
  thread_ = start_thread("writer", [this] { loop(); });
}

void RecordQueue::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) {
    thread_.join();
  } else {
    loop();  // never started: write out what was queued on this thread
  }
}

void RecordQueue::push(Item&& item) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (items_.size() >= capacity_) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    wake = items_.empty();
    items_.push_back(std::move(item));
  }
  queued_.fetch_add(1, std::memory_order_relaxed);
  if (wake) cv_.notify_one();
}

void RecordQueue::loop() {
  std::vector<Item> batch;
  batch.reserve(capacity_);
  auto next = std::chrono::steady_clock::now() + std::chrono::nanoseconds(period_ns_);
  for (;;) {
    bool last = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next, [this] { return stopping_ || !items_.empty(); });
      batch.swap(items_);
      last = stopping_ && batch.empty();
    }
    for (const Item& item : batch) {
      std::visit([this](const auto& v) { out_.write(v); }, item);
    }
    batch.clear();
    if (last || std::chrono::steady_clock::now() >= next) {
      out_.flush();
      if (periodic_) periodic_();
      next = std::chrono::steady_clock::now() + std::chrono::nanoseconds(period_ns_);
    }
    if (last) return;
  }
}

}  // namespace pathsentry::probe
