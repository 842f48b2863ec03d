#include "pathsentry/common/thread_runner.h"

#include <pthread.h>
#include <sched.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <utility>

namespace pathsentry {

void exit_on_thread_failure(std::string_view thread, std::string_view what) {
  std::fprintf(stderr, "%s: thread %.*s failed: %.*s\n", program_invocation_short_name,
               static_cast<int>(thread.size()), thread.data(), static_cast<int>(what.size()),
               what.data());
  std::fflush(nullptr);
  // Not exit(): the other threads still run, and static destructors must not race them.
  std::_Exit(1);
}

std::thread start_thread(std::string name, std::function<void()> body,
                         ThreadFailureHook on_failure) {
  return std::thread(
      [name = std::move(name), body = std::move(body), on_failure = std::move(on_failure)] {
        (void)pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
        try {
          body();
        } catch (const std::exception& e) {
          if (on_failure) on_failure(name, e.what());
        } catch (...) {
          if (on_failure) on_failure(name, "unknown exception");
        }
      });
}

std::string set_thread_fifo(int priority) {
  if (priority <= 0) return "";
  sched_param sp{};
  sp.sched_priority = priority > 99 ? 99 : priority;
  const int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
  return rc == 0 ? std::string() : std::string(std::strerror(rc));
}

}  // namespace pathsentry
