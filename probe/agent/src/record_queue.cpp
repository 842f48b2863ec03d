#include "record_queue.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "pathsentry/common/thread_runner.h"

namespace pathsentry::probe {

namespace {

// Entries kept reserved between batches; a batch that grew past it gives its memory back.
constexpr std::size_t kKeptEntries = 4096;
// Records wake the writer once this many wait (or at its period): waking it for the first
// record of every poll cost a context switch per millisecond at any rate.
constexpr std::size_t kWakeAt = 1024;

std::size_t string_heap(const std::string& s) {
  // A string's own buffer holds up to 15 characters (libstdc++, libc++ 22): only longer ones
  // allocate, capacity + 1 bytes.
  return s.capacity() > 15 ? s.capacity() + 1 : 0;
}

std::size_t record_heap(const ProbeRecord& r) {
  std::size_t n = string_heap(r.target) + string_heap(r.fwd_path) + string_heap(r.rev_path);
  n += r.taps_down.capacity() * sizeof(std::string);
  for (const auto& t : r.taps_down) n += string_heap(t);
  return n;
}

std::size_t event_heap(const PathEvent& e) {
  return sizeof(PathEvent) + string_heap(e.target) + string_heap(e.from) + string_heap(e.to) +
         string_heap(e.fwd_path) + string_heap(e.rev_path) + string_heap(e.tap) +
         string_heap(e.path) + string_heap(e.reason) + string_heap(e.prober);
}

}  // namespace

std::size_t RecordQueue::item_bytes(const Item& item) {
  if (const auto* r = std::get_if<ProbeRecord>(&item)) return sizeof(Item) + record_heap(*r);
  const auto& e = std::get<std::unique_ptr<PathEvent>>(item);
  return sizeof(Item) + (e ? event_heap(*e) : 0);
}

std::size_t RecordQueue::capacity_for(double total_pps) {
  return static_cast<std::size_t>(
      std::clamp(2 * total_pps, 4096.0, static_cast<double>(std::size_t{1} << 21)));
}

RecordQueue::RecordQueue(std::size_t capacity, std::size_t max_bytes, RecordOutput& out,
                         std::function<void()> periodic, std::int64_t period_ns)
    : capacity_(capacity > 0 ? capacity : 1),
      max_bytes_(std::max(max_bytes, sizeof(Item))),
      out_(out),
      periodic_(std::move(periodic)),
      period_ns_(period_ns) {
  items_.reserve(std::min(capacity_, kKeptEntries));
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

bool RecordQueue::admit(Item&& item) {
  const std::size_t cost = item_bytes(item);
  // The writer only lowers bytes_, so a check under mu_ never lets it pass max_bytes_.
  if (items_.size() >= capacity_ || bytes_.load(std::memory_order_relaxed) + cost > max_bytes_) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  bytes_.fetch_add(cost, std::memory_order_relaxed);
  // An event goes out at once (the JSON writer flushes it, the shipper sends it early).
  const bool wake = !std::holds_alternative<ProbeRecord>(item) || items_.size() + 1 == kWakeAt;
  items_.push_back(std::move(item));
  queued_.fetch_add(1, std::memory_order_relaxed);
  return wake;
}

void RecordQueue::push(Item&& item) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    wake = admit(std::move(item));
  }
  if (wake) cv_.notify_one();
}

void RecordQueue::write_all(std::span<const ProbeRecord> records) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    for (const ProbeRecord& r : records) wake = admit(Item(r)) || wake;
  }
  if (wake) cv_.notify_one();
}

void RecordQueue::loop() {
  std::vector<Item> batch;
  batch.reserve(std::min(capacity_, kKeptEntries));
  auto next = std::chrono::steady_clock::now() + std::chrono::nanoseconds(period_ns_);
  for (;;) {
    bool last = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next, [this] { return stopping_ || !items_.empty(); });
      batch.swap(items_);
      last = stopping_ && batch.empty();
    }
    std::size_t written = 0;
    for (const Item& item : batch) {
      if (const auto* r = std::get_if<ProbeRecord>(&item)) {
        out_.write(*r);
      } else if (const auto& e = std::get<std::unique_ptr<PathEvent>>(item)) {
        out_.write(*e);
      }
      written += item_bytes(item);
    }
    bytes_.fetch_sub(written, std::memory_order_relaxed);
    if (batch.capacity() > kKeptEntries) {
      std::vector<Item>().swap(batch);  // a backlog's memory goes back, not kept for the next
      batch.reserve(std::min(capacity_, kKeptEntries));
    } else {
      batch.clear();
    }
    if (last || std::chrono::steady_clock::now() >= next) {
      out_.flush();
      if (periodic_) periodic_();
      next = std::chrono::steady_clock::now() + std::chrono::nanoseconds(period_ns_);
    }
    if (last) return;
  }
}

}  // namespace pathsentry::probe
