#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace pathsentry {

/// A FIFO addressed by absolute, ever-increasing indices: the first element ever pushed is 0,
/// and an element keeps its index until it is popped. Capacity is a power of two that grows by
/// doubling (from `kInitial`) and never shrinks, so a ring that has reached its working size no
/// longer allocates. `T` must be default-constructible and copy-assignable. Not thread-safe.
/// Preconditions (unchecked): front/back/pop_front on a non-empty ring; `at(abs)` with
/// begin_abs() <= abs < end_abs().
template <class T, std::size_t kInitial = 256>
class Ring {
  static_assert(kInitial > 0 && (kInitial & (kInitial - 1)) == 0, "a power of two");

 public:
  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] bool empty() const { return size_ == 0; }
  /// The absolute index of the front element (of the next one pushed when empty).
  [[nodiscard]] std::uint64_t begin_abs() const { return base_; }
  /// One past the absolute index of the back element.
  [[nodiscard]] std::uint64_t end_abs() const { return base_ + size_; }
  T& at(std::uint64_t abs) { return buf_[(head_ + static_cast<std::size_t>(abs - base_)) & mask_]; }
  const T& at(std::uint64_t abs) const {
    return buf_[(head_ + static_cast<std::size_t>(abs - base_)) & mask_];
  }
  T& front() { return buf_[head_]; }
  const T& front() const { return buf_[head_]; }
  T& back() { return at(end_abs() - 1); }
  const T& back() const { return at(end_abs() - 1); }
  void push_back(const T& v) {
    if (size_ == buf_.size()) grow();
    buf_[(head_ + size_) & mask_] = v;
    ++size_;
  }
  void pop_front() {
    head_ = (head_ + 1) & mask_;
    --size_;
    ++base_;
  }

 private:
  void grow() {
    std::vector<T> nb(buf_.empty() ? kInitial : buf_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i) nb[i] = buf_[(head_ + i) & mask_];
    buf_ = std::move(nb);
    head_ = 0;
    mask_ = buf_.size() - 1;
  }
  std::vector<T> buf_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
  std::size_t mask_ = 0;
  std::uint64_t base_ = 0;
};

}  // namespace pathsentry
