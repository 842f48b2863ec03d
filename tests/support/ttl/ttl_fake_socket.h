#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "pathsentry/probe/ttl/ttl_probe.h"

namespace pathsentry::test {

/// An in-memory TtlSocket: every datagram sent is answered at once by an ICMP time-exceeded
/// from `offender` quoting `quote` bytes of it (unless `offender` is nullopt: no answer).
/// Thread-safe (the prober's thread sends and reads, the test changes the offender).
/// Pollable like the real one: native_handle() is an eventfd, readable (poll_events() POLLIN)
/// while an answer is queued.
class TtlFakeSocket final : public probe::TtlSocket {
 public:
  TtlFakeSocket() : event_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (event_fd_ < 0) throw std::system_error(errno, std::system_category(), "eventfd");
  }
  ~TtlFakeSocket() override { ::close(event_fd_); }
  TtlFakeSocket(const TtlFakeSocket&) = delete;
  TtlFakeSocket& operator=(const TtlFakeSocket&) = delete;

  void answer_from(std::optional<IpAddress> offender, std::uint8_t type = 11) {
    std::lock_guard lock(mu_);
    offender_ = offender;
    type_ = type;
  }
  [[nodiscard]] std::size_t sent() const {
    std::lock_guard lock(mu_);
    return sent_;
  }

  tl::expected<void, std::error_code> send(std::span<const std::uint8_t> payload) override {
    std::lock_guard lock(mu_);
    ++sent_;
    if (!offender_) return {};
    probe::TtlIcmpError e;
    e.offender = *offender_;
    e.icmp_type = type_;
    e.quoted_size = std::min(payload.size(), probe::kTtlPayloadSize);
    std::copy_n(payload.begin(), e.quoted_size, e.quoted.begin());
    queue_.push_back(e);
    const std::uint64_t one = 1;
    (void)::write(event_fd_, &one, sizeof one);
    return {};
  }
  tl::expected<std::size_t, std::error_code> receive_errors(
      std::span<probe::TtlIcmpError> out) override {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    while (n < out.size() && !queue_.empty()) {
      out[n++] = queue_.front();
      queue_.erase(queue_.begin());
    }
    if (queue_.empty()) {
      std::uint64_t v = 0;
      (void)::read(event_fd_, &v, sizeof v);
    }
    return n;
  }
  [[nodiscard]] int native_handle() const override { return event_fd_; }
  [[nodiscard]] short poll_events() const override { return POLLIN; }

 private:
  int event_fd_;
  mutable std::mutex mu_;
  std::optional<IpAddress> offender_;
  std::uint8_t type_ = 11;
  std::vector<probe::TtlIcmpError> queue_;
  std::size_t sent_ = 0;
};

}  // namespace pathsentry::test
