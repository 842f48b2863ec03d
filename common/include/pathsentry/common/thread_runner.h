#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <thread>

namespace pathsentry {

/// What happens when a thread's body throws: `thread` is the name given to start_thread(),
/// `what` the exception's message ("unknown exception" for a non-std exception).
using ThreadFailureHook = std::function<void(std::string_view thread, std::string_view what)>;

/// The process-wide hook: writes "<program>: thread <name> failed: <what>" to stderr and ends
/// the process with status 1 (std::_Exit after flushing stdio: the other threads are not asked
/// to stop, a failed thread means the measurement can no longer be trusted).
void exit_on_thread_failure(std::string_view thread, std::string_view what);

/// Starts every thread of the agent and the reflector: runs `body` on a new thread named `name`
/// (pthread name, truncated to 15 characters) and, when `body` throws, calls `on_failure` with
/// the name and the message on that thread. When `on_failure` returns (tests), the thread ends.
/// No thread of pathsentry dies silently or hands its exception to another.
[[nodiscard]] std::thread start_thread(std::string name, std::function<void()> body,
                                       ThreadFailureHook on_failure = exit_on_thread_failure);

/// Runs the calling thread SCHED_FIFO at `priority` (at most 99); nothing when `priority` <= 0.
/// Returns "" on success (or nothing asked), else why it could not ("Operation not permitted"),
/// for the caller's log line: the agent runs on without real-time scheduling.
[[nodiscard]] std::string set_thread_fifo(int priority);

}  // namespace pathsentry
