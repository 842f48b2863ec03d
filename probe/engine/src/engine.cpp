#include "pathsentry/probe/engine/engine.h"

#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <thread>
#include <utility>

#include "pathsentry/common/thread_runner.h"

namespace pathsentry::probe {
namespace {

// The receiver wakes at least this often to expire probes and roll intervals.
constexpr std::int64_t kReceiverTickNs = 5'000'000;
// The sender re-checks for a stop request at least this often while sleeping.
constexpr std::int64_t kSenderMaxSleepNs = 50'000'000;

void sleep_until_mono(std::int64_t t) {
  timespec ts{};
  ts.tv_sec = t / kNsPerSec;
  ts.tv_nsec = t % kNsPerSec;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

}  // namespace

Engine::Engine(const Clock& clock, EngineOptions options, Waiter& waiter)
    : clock_(clock), options_(std::move(options)), waiter_(waiter) {}

Engine::~Engine() = default;

void Engine::add_session(std::unique_ptr<ProbeSession> session) {
  const SessionConfig& c = session->config();
  if (c.size_cycle > 1) {
    if (!size_cycle_) size_cycle_ = std::make_unique<SizeCycle>(c.size_cycle, c.size_step);
    session->share_size_cycle(*size_cycle_);
  }
  sessions_.push_back(std::move(session));
}

std::int64_t Engine::send_coalesce_ns() const {
  if (options_.send_coalesce_ns <= 0 || options_.send_coalesce_probes == 0) return 0;
  double total_pps = 0;
  for (const auto& s : sessions_) total_pps += s->config().rate_pps;
  if (total_pps <= 0) return 0;
  const double ns = static_cast<double>(options_.send_coalesce_probes) * 1e9 / total_pps;
  return std::min(options_.send_coalesce_ns,
                  std::max(options_.send_coalesce_min_ns, static_cast<std::int64_t>(ns)));
}

void Engine::run() {
  reports_.resize(sessions_.size());
  const std::int64_t coalesce = send_coalesce_ns();
  const std::int64_t start = clock_.monotonic_ns() + options_.start_delay_ns;
  for (auto& s : sessions_) {
    s->start(start, coalesce, options_.launch_ahead_ns);
    if (options_.duration_ns > 0) s->stop_at(start + options_.duration_ns);
  }
  // A thread that throws ends the process (thread_runner.h): a half-running engine would
  // report loss that is not there.
  std::thread sender = start_thread("sender", [&] {
    set_realtime("sender", 1);
    sender_loop(start, coalesce);
    sender_exited_.store(true);
  });
  // The receiver gets its own thread too, so the caller's scheduling is left alone.
  std::thread receiver = start_thread("receiver", [&] {
    set_realtime("receiver", 0);
    receiver_loop();
  });
  receiver.join();
  sender.join();
}

void Engine::set_realtime(const char* thread_name, int boost) {
  if (options_.rt_priority <= 0) return;
  // The sender outranks the receiver: under SCHED_FIFO equal priorities never preempt each
  // other, and a late send is a missed slot while a late receive only delays a record.
  const int priority = std::min(options_.rt_priority + boost, 99);
  const std::string error = set_thread_fifo(priority);
  if (!error.empty() && options_.log) {
    options_.log(std::string("cannot run the ") + thread_name +
                 " thread with SCHED_FIFO priority " + std::to_string(options_.rt_priority) + " (" +
                 error + "): pacing may miss slots on a busy machine");
  }
}

void Engine::sender_loop(std::int64_t start_ns, std::int64_t coalesce_ns) {
  // Wake-ups as close to the deadline as the timer allows (the default slack is 50 us).
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  sleep_until_mono(start_ns);
  bool stopping = false;
  for (;;) {
    std::int64_t now = clock_.monotonic_ns();
    const std::int64_t woke = now;
    if (!stopping && stop_.load()) {
      stopping = true;
      for (auto& s : sessions_) s->stop_at(now);
    }
    std::int64_t next = Pacer::kNever;
    bool active = false;
    for (auto& s : sessions_) {
      if (s->sending_finished()) continue;
      s->send_due(clock_);
      next = std::min(next, s->next_wake_ns());
      active = active || !s->sending_finished();
    }
    if (!active) return;
    now = clock_.monotonic_ns();
    // With send coalescing, slots due before the next coalescing point wait for it.
    if (next != Pacer::kNever) next = std::max(next, woke + coalesce_ns);
    const std::int64_t wake = std::min(next, now + kSenderMaxSleepNs);
    if (wake - now > options_.spin_ns) {
      sleep_until_mono(wake - options_.spin_ns / 2);
    }
    while (options_.spin_ns > 0 && clock_.monotonic_ns() < wake &&
           !stop_.load(std::memory_order_relaxed)) {
      // spin for the last few microseconds
    }
  }
}

void Engine::receiver_loop() {
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{ep};
  for (std::size_t i = 0; i < sessions_.size(); ++i) {
    const int fd = sessions_[i]->socket().native_handle();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLERR;
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      throw std::system_error(errno, std::system_category(), "epoll_ctl");
    }
  }
  std::vector<epoll_event> events(std::max<std::size_t>(sessions_.size(), 1));
  // The interval reports are labelled with realtime second boundaries but timed on the
  // monotonic clock: a step of realtime neither silences them (backwards: the next boundary
  // an hour away) nor bunches them (docs/design.md "Clocks").
  std::int64_t next_second = 0;  // the label of the next report (CLOCK_REALTIME)
  std::int64_t next_due = 0;     // when it is due (CLOCK_MONOTONIC)
  const auto schedule = [this, &next_second, &next_due] {
    const ClockReadings r = clock_.readings();
    next_second = (r.system_ns / kNsPerSec + 1) * kNsPerSec;
    next_due = r.monotonic_ns + (next_second - r.system_ns);
  };
  schedule();
  std::int64_t drain_start = -1;  // when the sender was first seen gone
  // Launch-time pacing per session as last logged (it changes on the receiver thread).
  std::vector<ProbeSession::LaunchTime> launch(sessions_.size(), ProbeSession::LaunchTime::Off);
  const auto log_launch = [&](std::size_t i, bool at_start) {
    const ProbeSession& s = *sessions_[i];
    const ProbeSession::LaunchTime now = s.launch_time();
    if (now == launch[i] && !at_start) return;
    const bool asked = options_.launch_ahead_ns > 0;
    launch[i] = now;
    if (!options_.log || !asked) return;
    const std::string who = "session " + s.config().target.to_string() + ": launch-time pacing ";
    if (now == ProbeSession::LaunchTime::On) {
      options_.log(who +
                   "on (the egress qdisc holds each probe until its slot; probes are handed "
                   "over up to " +
                   std::to_string(options_.launch_ahead_ns / 1000) + " us ahead)");
    } else if (now == ProbeSession::LaunchTime::Off) {
      options_.log(who + "off (" + s.launch_time_note() + "): one wake-up per coalescing interval");
    }
  };
  for (std::size_t i = 0; i < sessions_.size(); ++i) log_launch(i, true);
  for (;;) {
    const std::int64_t to_second = next_due - clock_.monotonic_ns();
    const std::int64_t tick = std::clamp<std::int64_t>(options_.rx_tick_ns, 1, kReceiverTickNs);
    // A periodic drain, not a wake-up per packet: the epoll set only says which sockets have
    // something, collected without blocking.
    waiter_.sleep_for(std::clamp<std::int64_t>(to_second, 0, tick));
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 0);
    if (n < 0 && errno != EINTR)
      throw std::system_error(errno, std::system_category(), "epoll_wait");
    for (int i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(events[static_cast<std::size_t>(i)].data.u64);
      sessions_[k]->service_io(clock_);
      log_launch(k, false);
    }
    const std::int64_t now = clock_.monotonic_ns();
    // Once the sender thread is gone (finished, stopped or failed) nothing new is published:
    // the run ends when every probe is resolved.
    const bool sender_gone = sender_exited_.load();
    bool drained = sender_gone;
    for (auto& s : sessions_) {
      s->expire(now);
      drained = drained && s->all_resolved();
    }
    if (sender_gone && drain_start < 0) drain_start = now;
    if (sender_gone && !drained &&
        (abort_.load() || (options_.drain_ns > 0 && now - drain_start >= options_.drain_ns))) {
      std::uint64_t lost_before = 0;
      std::uint64_t lost_after = 0;
      for (auto& s : sessions_) {
        lost_before += s->summary().counters.lost;
        s->expire_all();
        lost_after += s->summary().counters.lost;
      }
      if (options_.log) {
        options_.log(std::string(abort_.load() ? "stop forced" : "drain cap reached") + ": " +
                     std::to_string(lost_after - lost_before) +
                     " probe(s) still unanswered declared lost");
      }
      drained = true;
    }
    if (now >= next_due) {
      report_interval(next_second);
      schedule();
    }
    if (drained) {
      report_interval(clock_.system_ns());
      return;
    }
  }
}

void Engine::report_interval(std::int64_t second_end_ns) {
  for (std::size_t i = 0; i < sessions_.size(); ++i) reports_[i] = sessions_[i]->roll_interval();
  if (on_interval_) on_interval_(second_end_ns, reports_);
}

}  // namespace pathsentry::probe
