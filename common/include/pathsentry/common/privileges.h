#pragma once

#include <string>

namespace pathsentry::probe::io {

/// Drops every capability (effective, permitted, inheritable, ambient) and sets no_new_privs,
/// once the agent's sockets are open: raw sockets and SO_BINDTODEVICE only need CAP_NET_RAW at
/// open time. If `rt_priority` > 0, RLIMIT_RTPRIO is first raised to rt_priority + 1 so the
/// engine's threads can still take SCHED_FIFO without CAP_SYS_NICE; when that is not allowed
/// (no CAP_SYS_RESOURCE), CAP_SYS_NICE alone is kept. Applies to the calling thread and to the
/// threads it creates afterwards: call it before starting any.
/// Returns "" when everything was dropped, else what was kept or failed (to log).
[[nodiscard]] std::string drop_privileges(int rt_priority);

}  // namespace pathsentry::probe::io
