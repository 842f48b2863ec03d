// Wrong bearer tokens per source address: see auth_throttle.h.
#include "pathsentry/collector/auth_throttle.h"

#include <iterator>

namespace pathsentry::collector {

AuthThrottle::Verdict AuthThrottle::check(std::string_view source, std::int64_t now_ns) {
  if (opt_.limit == 0 || source.empty()) return {};
  const std::lock_guard lock(mu_);
  const auto it = sources_.find(std::string(source));
  if (it == sources_.end()) return {};
  if (expired(it->second, now_ns)) {
    sources_.erase(it);
    return {};
  }
  return verdict(it->second, now_ns);
}

AuthThrottle::Verdict AuthThrottle::verdict(const Entry& e, std::int64_t now_ns) const {
  Verdict v;
  v.failures = e.failures;
  if (e.failures >= opt_.limit) {
    v.refused = true;
    v.retry_after_ns = e.window_start_ns + opt_.window_ns - now_ns;
  }
  return v;
}

AuthThrottle::Verdict AuthThrottle::failed(std::string_view source, std::int64_t now_ns) {
  if (opt_.limit == 0 || source.empty()) return {};
  const std::lock_guard lock(mu_);
  auto it = sources_.find(std::string(source));
  if (it == sources_.end()) {
    if (sources_.size() >= opt_.max_sources) evict_expired(now_ns);
    if (sources_.size() >= opt_.max_sources) {
      ++untracked_;
      return {};
    }
    it = sources_.emplace(std::string(source), Entry{now_ns, 0}).first;
  }
  Entry& e = it->second;
  if (expired(e, now_ns)) e = Entry{now_ns, 0};
  ++e.failures;
  return verdict(e, now_ns);
}

void AuthThrottle::succeeded(std::string_view source) {
  if (opt_.limit == 0 || source.empty()) return;
  const std::lock_guard lock(mu_);
  const auto it = sources_.find(std::string(source));
  if (it != sources_.end()) sources_.erase(it);
}

void AuthThrottle::evict_expired(std::int64_t now_ns) {
  for (auto it = sources_.begin(); it != sources_.end();)
    it = expired(it->second, now_ns) ? sources_.erase(it) : std::next(it);
}

std::size_t AuthThrottle::tracked() const {
  const std::lock_guard lock(mu_);
  return sources_.size();
}

std::uint64_t AuthThrottle::untracked() const {
  const std::lock_guard lock(mu_);
  return untracked_;
}

}  // namespace pathsentry::collector
