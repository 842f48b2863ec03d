#include "pathsentry/common/privileges.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace pathsentry::probe::io {

namespace {

bool get_caps(__user_cap_data_struct (&data)[_LINUX_CAPABILITY_U32S_3]) {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  return syscall(SYS_capget, &header, data) == 0;
}

bool set_caps(__user_cap_data_struct (&data)[_LINUX_CAPABILITY_U32S_3]) {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  return syscall(SYS_capset, &header, data) == 0;
}

}  // namespace

NetRawScope::NetRawScope() {
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (!get_caps(data)) {
    error_ = std::string("capget: ") + std::strerror(errno);
    return;
  }
  auto& d = data[CAP_TO_INDEX(CAP_NET_RAW)];
  if ((d.effective & CAP_TO_MASK(CAP_NET_RAW)) != 0) return;
  if ((d.permitted & CAP_TO_MASK(CAP_NET_RAW)) == 0) {
    error_ = "CAP_NET_RAW is not permitted";
    return;
  }
  d.effective |= CAP_TO_MASK(CAP_NET_RAW);
  if (!set_caps(data)) {
    error_ = std::string("raising CAP_NET_RAW: ") + std::strerror(errno);
    return;
  }
  raised_ = true;
}

NetRawScope::~NetRawScope() {
  if (!raised_) return;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (!get_caps(data)) return;
  data[CAP_TO_INDEX(CAP_NET_RAW)].effective &= ~CAP_TO_MASK(CAP_NET_RAW);
  (void)set_caps(data);
}

std::string drop_privileges(int rt_priority, bool keep_net_raw) {
  std::string notes;
  // SCHED_FIFO without CAP_SYS_NICE needs RLIMIT_RTPRIO; raising its hard limit needs
  // CAP_SYS_RESOURCE. When that is impossible, keep CAP_SYS_NICE alone.
  bool keep_nice = false;
  if (rt_priority > 0) {
    const auto want = static_cast<rlim_t>(rt_priority) + 1;
    rlimit rl{};
    if (getrlimit(RLIMIT_RTPRIO, &rl) == 0 && rl.rlim_cur < want) {
      rlimit raised{want, rl.rlim_max < want ? want : rl.rlim_max};
      if (setrlimit(RLIMIT_RTPRIO, &raised) != 0) {
        const std::string why = std::strerror(errno);
        // Keep only what is held: asking capset for more fails and would drop nothing at all.
        __user_cap_data_struct held[_LINUX_CAPABILITY_U32S_3] = {};
        keep_nice = get_caps(held) &&
                    (held[CAP_TO_INDEX(CAP_SYS_NICE)].permitted & CAP_TO_MASK(CAP_SYS_NICE)) != 0;
        notes += "cannot raise RLIMIT_RTPRIO to " + std::to_string(want) + " (" + why + "): " +
                 (keep_nice ? "keeping CAP_SYS_NICE for SCHED_FIFO (LimitRTPRIO= in the unit "
                              "lets it go); "
                            : "SCHED_FIFO will be refused (set LimitRTPRIO= in the unit); ");
      }
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    notes += std::string("clearing ambient capabilities: ") + std::strerror(errno) + "; ";
  }
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (keep_nice) {
    data[CAP_TO_INDEX(CAP_SYS_NICE)].effective |= CAP_TO_MASK(CAP_SYS_NICE);
    data[CAP_TO_INDEX(CAP_SYS_NICE)].permitted |= CAP_TO_MASK(CAP_SYS_NICE);
  }
  if (keep_net_raw) {
    data[CAP_TO_INDEX(CAP_NET_RAW)].permitted |= CAP_TO_MASK(CAP_NET_RAW);
    notes += "keeping CAP_NET_RAW permitted (not effective) to reopen a failed tap; ";
  }
  if (syscall(SYS_capset, &header, data) != 0) {
    notes += std::string("capset: ") + std::strerror(errno) + "; ";
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    notes += std::string("no_new_privs: ") + std::strerror(errno) + "; ";
  }
  if (!notes.empty()) notes.resize(notes.size() - 2);
  return notes;
}

}  // namespace pathsentry::probe::io
