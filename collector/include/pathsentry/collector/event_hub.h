#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pathsentry::collector {

/// One Server-Sent Events message, as it goes on the wire ("id: …\nevent: …\ndata: …\n\n").
struct StreamMessage {
  std::int64_t event_id = 0;  ///< the store's row id of an event message; 0 for the others
  std::string text;
};

/// One subscriber's bounded queue (one per /api/v1/stream client). The hub pushes from the
/// ingest threads; the client's connection takes from it. A full queue drops the
/// subscription (the client reconnects with Last-Event-ID and catches up from the store):
/// a slow client never holds back ingest nor grows without bound. Thread-safe.
class Subscription {
 public:
  explicit Subscription(std::size_t capacity) : capacity_(capacity) {}

  /// Called after a message was queued or the subscription dropped, on the publishing
  /// thread, outside the queue's lock; must not block (the server posts to its connection).
  void set_wake(std::function<void()> wake);

  /// Queues one message; false (and the subscription is dropped) when the queue is full.
  bool push(StreamMessage message);

  struct Taken {
    std::vector<StreamMessage> messages;
    bool dropped = false;  ///< the queue overflowed: close the stream
  };
  /// Takes everything queued.
  [[nodiscard]] Taken take();

  /// Event messages with an id up to `id` are skipped from now on (they were sent already:
  /// the catch-up after a Last-Event-ID replayed them from the store).
  void skip_events_through(std::int64_t id);

  [[nodiscard]] bool dropped() const;
  [[nodiscard]] std::size_t capacity() const { return capacity_; }

 private:
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<StreamMessage> queue_;
  bool dropped_ = false;
  std::int64_t skip_through_ = 0;
  std::function<void()> wake_;
};

/// Fans stream messages out to every live subscription. Thread-safe.
class EventHub {
 public:
  /// `queue_capacity`: messages a subscriber may have pending before it is dropped.
  explicit EventHub(std::size_t queue_capacity = 4096) : capacity_(queue_capacity) {}

  /// A new subscription; it lives as long as its holder keeps it.
  [[nodiscard]] std::shared_ptr<Subscription> subscribe();
  /// Queues `message` for every live subscription (dropping those that are full).
  void publish(const StreamMessage& message);

  [[nodiscard]] std::size_t subscribers() const;
  /// Subscriptions dropped because their queue was full, since start.
  [[nodiscard]] std::uint64_t dropped_total() const;

 private:
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::vector<std::weak_ptr<Subscription>> subs_;
  std::uint64_t dropped_ = 0;
};

}  // namespace pathsentry::collector
