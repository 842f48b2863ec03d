#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pathsentry::collector {

/// Wrong bearer tokens per source address (docs/collector.md "Security"): a source that
/// presents `limit` wrong tokens within `window_ns` is refused (429) for the rest of that
/// window, whatever token it presents meanwhile, so guessing goes no faster than `limit` per
/// window per address. A right token clears the source's count. The table holds at most
/// `max_sources` addresses; when it is full of sources still counting, a new one is not
/// tracked (counted in `untracked`): the limit fails open rather than forgetting a blocked one.
/// Thread-safe. `limit` 0 turns it off.
class AuthThrottle {
 public:
  struct Options {
    std::uint32_t limit = 20;
    std::int64_t window_ns = 60'000'000'000;
    std::size_t max_sources = 4096;
  };
  struct Verdict {
    bool refused = false;
    std::int64_t retry_after_ns = 0;  ///< when refused: until the window ends
    std::uint32_t failures = 0;       ///< wrong tokens from this source in the window
  };

  explicit AuthThrottle(Options options) : opt_(options) {}

  /// Before the token is looked at: is `source` refused at `now_ns` (monotonic)? An empty
  /// source (a Unix socket: a local client) is never refused.
  [[nodiscard]] Verdict check(std::string_view source, std::int64_t now_ns);
  /// A wrong or missing token from `source`. Returns the verdict after counting it: `refused`
  /// when this failure reached the limit (the caller logs that once).
  Verdict failed(std::string_view source, std::int64_t now_ns);
  /// A right token from `source`: its count is cleared.
  void succeeded(std::string_view source);

  [[nodiscard]] std::size_t tracked() const;
  [[nodiscard]] std::uint64_t untracked() const;
  [[nodiscard]] const Options& options() const { return opt_; }

 private:
  struct Entry {
    std::int64_t window_start_ns = 0;
    std::uint32_t failures = 0;
  };
  [[nodiscard]] bool expired(const Entry& e, std::int64_t now_ns) const {
    return now_ns - e.window_start_ns >= opt_.window_ns;
  }
  [[nodiscard]] Verdict verdict(const Entry& e, std::int64_t now_ns) const;
  void evict_expired(std::int64_t now_ns);

  Options opt_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> sources_;
  std::uint64_t untracked_ = 0;
};

}  // namespace pathsentry::collector
