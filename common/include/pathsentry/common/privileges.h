#pragma once

#include <string>

namespace pathsentry::probe::io {

/// Drops every capability (effective, permitted, inheritable, ambient) and sets no_new_privs,
/// once the agent's sockets are open: raw sockets and SO_BINDTODEVICE only need CAP_NET_RAW at
/// open time. If `rt_priority` > 0, RLIMIT_RTPRIO is first raised to rt_priority + 1 so the
/// engine's threads can still take SCHED_FIFO without CAP_SYS_NICE; when that is not allowed
/// (no CAP_SYS_RESOURCE), CAP_SYS_NICE alone is kept if held (else SCHED_FIFO will be refused,
/// and said). Applies to the calling thread and to the
/// threads it creates afterwards: call it before starting any.
/// With `keep_net_raw` (the agent has taps), CAP_NET_RAW stays in the permitted set, not the
/// effective one, so a tap whose capture fails can be reopened later (NetRawScope).
/// Returns "" when everything was dropped, else what was kept or failed (to log).
[[nodiscard]] std::string drop_privileges(int rt_priority, bool keep_net_raw = false);

/// Raises CAP_NET_RAW into the calling thread's effective set while it lives (when it is in the
/// permitted set and not already effective), lowering it again after: for reopening a capture.
class NetRawScope {
 public:
  NetRawScope();
  ~NetRawScope();
  NetRawScope(const NetRawScope&) = delete;
  NetRawScope& operator=(const NetRawScope&) = delete;
  /// Why CAP_NET_RAW could not be raised ("" when it is effective now).
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  bool raised_ = false;
  std::string error_;
};

}  // namespace pathsentry::probe::io
