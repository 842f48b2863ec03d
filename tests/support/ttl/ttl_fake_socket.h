#pragma once

#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "pathsentry/probe/ttl/ttl_probe.h"

namespace pathsentry::test {

/// An in-memory TtlSocket: every datagram sent is answered at once by an ICMP time-exceeded
/// from `offender` quoting `quote` bytes of it (unless `offender` is nullopt: no answer).
/// Thread-safe (the prober's thread sends and reads, the test changes the offender).
class TtlFakeSocket final : public probe::TtlSocket {
 public:
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
    return n;
  }
  [[nodiscard]] int native_handle() const override { return -1; }

 private:
  mutable std::mutex mu_;
  std::optional<IpAddress> offender_;
  std::uint8_t type_ = 11;
  std::vector<probe::TtlIcmpError> queue_;
  std::size_t sent_ = 0;
};

}  // namespace pathsentry::test
