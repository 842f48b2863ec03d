#include "pathsentry/collector/event_hub.h"

#include <algorithm>

namespace pathsentry::collector {

void Subscription::set_wake(std::function<void()> wake) {
  const std::lock_guard lock(mutex_);
  wake_ = std::move(wake);
}

bool Subscription::push(StreamMessage message) {
  std::function<void()> wake;
  bool ok = true;
  {
    const std::lock_guard lock(mutex_);
    if (dropped_) return false;
    if (message.event_id != 0 && message.event_id <= skip_through_) return true;
    if (queue_.size() >= capacity_) {
      dropped_ = true;
      queue_.clear();
      ok = false;
    } else {
      queue_.push_back(std::move(message));
    }
    wake = wake_;
  }
  if (wake) wake();
  return ok;
}

Subscription::Taken Subscription::take() {
  const std::lock_guard lock(mutex_);
  Taken t;
  t.dropped = dropped_;
  t.messages.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  return t;
}

void Subscription::skip_events_through(std::int64_t id) {
  const std::lock_guard lock(mutex_);
  skip_through_ = id;
  std::erase_if(queue_,
                [id](const StreamMessage& m) { return m.event_id != 0 && m.event_id <= id; });
}

bool Subscription::dropped() const {
  const std::lock_guard lock(mutex_);
  return dropped_;
}

std::shared_ptr<Subscription> EventHub::subscribe() {
  auto s = std::make_shared<Subscription>(capacity_);
  const std::lock_guard lock(mutex_);
  subs_.push_back(s);
  return s;
}

void EventHub::publish(const StreamMessage& message) {
  // Pushed under the hub's lock so every subscriber sees messages in one order; a push only
  // takes the subscriber's own lock and posts its wake-up, never waits on its connection.
  const std::lock_guard lock(mutex_);
  std::erase_if(subs_, [](const auto& w) { return w.expired(); });
  for (const auto& w : subs_) {
    if (auto s = w.lock(); s && !s->dropped()) {
      if (!s->push(message)) ++dropped_;
    }
  }
}

std::size_t EventHub::subscribers() const {
  const std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(
      std::count_if(subs_.begin(), subs_.end(), [](const auto& w) { return !w.expired(); }));
}

std::uint64_t EventHub::dropped_total() const {
  const std::lock_guard lock(mutex_);
  return dropped_;
}

}  // namespace pathsentry::collector
