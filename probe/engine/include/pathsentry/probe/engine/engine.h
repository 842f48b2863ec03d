#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/waiter.h"
#include "pathsentry/probe/engine/probe_session.h"

namespace pathsentry::probe {

/// How the engine runs.
struct EngineOptions {
  std::int64_t duration_ns = 0;  ///< stop sending after this long; 0 = until request_stop()
  /// The sender sleeps (clock_nanosleep, TIMER_ABSTIME, 1 ns timer slack) until the next
  /// deadline; when it is closer than this it spins on the clock instead. 0 (the default) never
  /// spins: a wake-up a few microseconds late costs nothing with kernel TX timestamps, while a
  /// spin costs CPU on every probe.
  std::int64_t spin_ns = 0;
  /// Send coalescing: after a wake-up the sender sleeps at least the coalescing interval
  /// before the next one and sends every slot that fell due meanwhile in one sendmmsg. The
  /// interval is the time `send_coalesce_probes` slots of all sessions together take to fall due,
  /// but at least `send_coalesce_min_ns`, and at most `send_coalesce_ns` (1 ms: the time
  /// resolution): at 10 000/s 0.8 ms (8 a wake-up), from 40 000/s on 200 us (at 300 000/s 60
  /// a wake-up). Slots are then sent up to that late (timed exactly by their kernel TX
  /// timestamps; the lag allowed before a slot is missed grows by as much), in groups, and each
  /// wake-up (>= 7 us of CPU in a VM) is shared by several probes. The floor: at high rates
  /// groups of 8 every few microseconds kept the sender and the far side's receive path
  /// contending (at 300 000/s STAMP the sender's CPU fell 91-104 % -> 63-67 % with 200 us;
  /// docs/bench.md, issue 14 session 17). 0 = wake for every deadline.
  std::int64_t send_coalesce_ns = 1'000'000;
  std::uint32_t send_coalesce_probes = 8;
  std::int64_t send_coalesce_min_ns = 200'000;
  /// Launch-time pacing (ProbeSession::start, docs/probe.md "Pacing"): the sender hands slots
  /// to the kernel up to this long before their deadline, each with its deadline as launch
  /// time (SO_TXTIME), and wakes ~3/4 of it apart; a qdisc that schedules by launch time (fq)
  /// sends each at its deadline. Falls back to plain coalescing, said in `log`, when the socket
  /// refuses it or a probe leaves early (a qdisc that ignores launch times). 0 = off.
  std::int64_t launch_ahead_ns = 0;
  /// The receiver wakes this often, drains every socket (replies and TX timestamps), expires
  /// probes and rolls intervals; it is not woken per packet, so at any rate it costs at most
  /// 1 / rx_tick_ns wake-ups a second. Kernel timestamps make this free for accuracy; it only
  /// delays records (and SentNotices) by up to one tick. At most 5 ms.
  std::int64_t rx_tick_ns = 5'000'000;
  /// Delay from run() to the first slot, so every session starts on the same instant.
  std::int64_t start_delay_ns = 1'000'000;
  /// SCHED_FIFO priority for the sender and receiver threads (1..99), so pacing holds when the
  /// machine is busy; 0 = leave the default scheduling. When the kernel refuses (no
  /// CAP_SYS_NICE) the threads run with the default policy and `log` says so.
  int rt_priority = 0;
  /// Once sending has stopped, the longest wait for the outstanding replies (0 = each session's
  /// timeout, however long): probes still unanswered then are declared lost (and said in
  /// `log`), so a stop is never longer than this plus a receiver tick.
  std::int64_t drain_ns = 0;
  /// Where the engine reports what it could not do as asked (may be empty).
  std::function<void(const std::string&)> log;
};

/// Runs probe sessions on two threads (docs/probe.md):
///  - the sender paces every session with absolute deadlines and sends what is due in batches;
///  - the receiver waits on all sockets (epoll), reads replies and TX timestamps, expires
///    probes past their timeout and, at each wall-clock second, reports the interval. Its
///    waits (on the epoll descriptor, the coalescing sleep) go through the Waiter; the
///    sender's pacing sleep (absolute deadlines) does not.
/// Records leave through each session's RecordSink on the receiver thread.
class Engine {
 public:
  /// Interval reports, one per session in add order, at the end of each wall-clock second
  /// (`second_end_ns`, CLOCK_REALTIME), on the receiver thread. Timed on the monotonic clock:
  /// after a realtime step they keep coming once a second, labelled on the new timeline.
  using IntervalCallback =
      std::function<void(std::int64_t second_end_ns, std::span<const IntervalReport> reports)>;

  Engine(const Clock& clock, EngineOptions options, Waiter& waiter = system_waiter());
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Adds a session before run(). Sessions that cycle sizes (SessionConfig::size_cycle > 1)
  /// share one SizeCycle, so consecutive probes of the agent have distinct sizes whatever their
  /// session; they must all have the same size_cycle and size_step (std::invalid_argument).
  void add_session(std::unique_ptr<ProbeSession> session);
  [[nodiscard]] const std::vector<std::unique_ptr<ProbeSession>>& sessions() const {
    return sessions_;
  }
  void on_interval(IntervalCallback cb) { on_interval_ = std::move(cb); }

  /// Sends until the duration has passed or request_stop() is called, then waits for the
  /// outstanding replies up to each session's timeout, reports the last (partial) interval and
  /// returns. Blocks; call once. The threads ("sender", "receiver") are started by
  /// start_thread(): an error that stops one (std::system_error from epoll) is logged with the
  /// thread's name and ends the process with status 1.
  void run();

  /// Asks run() to stop sending now. Thread-safe (not async-signal-safe: call it from a thread
  /// that waits for signals, not from a handler).
  void request_stop() { stop_.store(true); }

  /// Stops sending and ends the drain now: the outstanding probes are declared lost at once
  /// (a second SIGTERM/SIGINT). Thread-safe, as request_stop().
  void request_abort() {
    abort_.store(true);
    stop_.store(true);
  }

  /// The sender's coalescing interval for these options and sessions (see EngineOptions).
  [[nodiscard]] std::int64_t send_coalesce_ns() const;

 private:
  void sender_loop(std::int64_t start_ns, std::int64_t coalesce_ns);
  void receiver_loop();
  void report_interval(std::int64_t second_end_ns);
  void set_realtime(const char* thread_name, int boost);

  const Clock& clock_;
  EngineOptions options_;
  Waiter& waiter_;  // the receiver's waits
  std::vector<std::unique_ptr<ProbeSession>> sessions_;
  std::unique_ptr<SizeCycle> size_cycle_;  // shared by the cycling sessions (sender thread)
  std::vector<IntervalReport> reports_;
  IntervalCallback on_interval_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> sender_exited_{false};
  std::atomic<bool> abort_{false};
};

}  // namespace pathsentry::probe
