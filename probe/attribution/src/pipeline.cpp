#include "pathsentry/probe/attribution/pipeline.h"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "pathsentry/common/privileges.h"
#include "pathsentry/common/thread_runner.h"
#include "pathsentry/probe/capture/packet_source.h"
#include "pathsentry/probe/wire/probe_wire.h"

namespace pathsentry::probe {

struct Pipeline::TapThread {
  std::size_t index = 0;
  std::unique_ptr<Tap> tap;
  SourceOpener reopen;  // empty: a failed capture stays down
  std::thread thread;
  std::string error;  // the last failure (capture thread; read after stop())
  /// Capture time up to which this tap has handed over everything it captured: the newest
  /// frame's timestamp, or (ring drained, or the tap down and known to the attributor as such)
  /// the clock minus a little slack; INT64_MAX at the end of a file. Written by the capture
  /// thread, read by the worker.
  std::atomic<std::int64_t> watermark_ns{std::numeric_limits<std::int64_t>::min()};
  /// Down since (capture time), for degraded(); kUp while capturing.
  static constexpr std::int64_t kUp = std::numeric_limits<std::int64_t>::min();
  std::atomic<std::int64_t> down_since_ns{kUp};
  std::int64_t stats_due_ns = 0;  // next on_tap_stats() (capture thread, monotonic)
};

namespace {

// Buffers what one pump decodes, so the hand-off lock is taken once per batch.
class BufferSink final : public ObservationSink {
 public:
  void on_observation(std::size_t tap, const Observation& obs) override {
    buf.emplace_back(tap, obs);
  }
  void on_echo(std::size_t tap, const EchoFrame& echo) override { echoes.emplace_back(tap, echo); }
  std::vector<std::pair<std::size_t, Observation>> buf;
  std::vector<std::pair<std::size_t, EchoFrame>> echoes;
};

// The taps with the health check watched (healthcheck_prefix set on the clear ones).
std::vector<TapSpec> with_health_check(std::vector<TapSpec> taps, const HealthCheckSettings& s) {
  enable_health_check(taps, s);
  return taps;
}

constexpr std::size_t kPumpBatch = 4096;
// The taps capture through TPACKET_V3 (libpcap without immediate mode): the kernel packs frames
// into blocks and wakes the capture thread once per block, retired when full or after this
// many ms, instead of once per frame (immediate mode, TPACKET_V2: a wake-up per frame in the
// sender's and receiver's softirq, ~10 % of the agent's CPU at 100 000 probes/s). At low rates
// the timer retires the blocks: 5 ms, the engine receiver's tick, is 200 wake-ups a second
// (2 ms blocks and 2 ms worker polls cost ~15 µs of CPU per probe at 1000 probes/s, issue 14).
constexpr int kCaptureBlockMs = 5;
// Seconds of frames a tap's kernel ring holds while its capture thread does not run, sized for
// full-snap-length frames (default-size probes take less than half of that: ~0.2 s). The rings
// are mapped into the agent and count in its RSS: at 100 000 probes/s each tap's is 7 MB.
constexpr double kRingSeconds = 0.1;
// But never less than this: at low rates a capture thread starved for longer (a userspace IPsec
// on the same CPUs: the lab's ESP tap dropped frames at 20 000 probes/s with a 2 MiB ring).
constexpr std::size_t kMinRingBytes = std::size_t{8} << 20;
// A drained capture ring holds nothing stamped more than this before the clock read: a frame
// can wait in the kernel's open block until the block's retire timer (kCaptureBlockMs, rounded
// up to a jiffy: 8 ms at HZ 250) fires, and the timer may fire late on a busy machine.
constexpr std::int64_t kDrainSlackNs = 20'000'000;
// The attributor's settle_ns: windows ending at the watermark are complete this much later.
constexpr std::int64_t kWatermarkGraceNs = 20'000'000;

template <class V>
std::size_t bytes_of(const V& v) {
  return v.capacity() * sizeof(typename V::value_type);
}

// A buffer that a burst grew (a worker held back under load: up to a second of announcements,
// records and tap copies, tens of MB at 100 000 probes/s) gives its memory back once a poll's
// batch (`used`) fills less than a quarter of it; up to keep_bytes it stays for the next polls.
template <class V>
void release_after_burst(V& v, std::size_t used, std::size_t keep_bytes) {
  if (bytes_of(v) <= keep_bytes || used * 4 >= v.capacity()) return;
  V fresh;
  fresh.reserve(used);
  v.clear();
  v.swap(fresh);
}

}  // namespace

std::int64_t reopen_backoff_ns(std::uint32_t attempt, std::int64_t initial_ns,
                               std::int64_t max_ns) {
  std::int64_t d = std::max<std::int64_t>(initial_ns, 1);
  for (std::uint32_t i = 0; i < attempt && d < max_ns; ++i) d *= 2;
  return std::min(d, std::max(max_ns, initial_ns));
}

LiveOptions tap_live_options(const PipelineOptions& options, std::size_t index) {
  const TapSpec& spec = options.taps.at(index);
  LiveOptions lo;
  lo.interface = spec.interface;
  lo.filter = bpf_filter(spec, options.agent_addresses, options.decode.stamp_port);
  lo.snaplen = 256;
  // Every tap may carry all the probes (a switchover): both directions at the agent's whole
  // rate.
  lo.buffer_bytes =
      std::max(ring_buffer_bytes(2 * options.total_pps, lo.snaplen, kRingSeconds), kMinRingBytes);
  lo.immediate = false;
  lo.timeout_ms = kCaptureBlockMs;
  lo.nonblocking = true;
  return lo;
}

SessionSpec session_spec_for(const SessionConfig& s) {
  SessionSpec spec;
  spec.session_id = s.session_id;
  spec.stamp_ssid = s.stamp_ssid;
  spec.proto = s.proto;
  spec.target = s.target;
  spec.wire_bytes = probe_ip_bytes(s.target.family, s.proto, datagram_size_for(s.proto, s.size));
  spec.stateful_reflector = s.stamp_stateful;
  spec.rate_pps = s.rate_pps;
  spec.timeout_ns = s.timeout_ns;
  return spec;
}

Pipeline::Pipeline(const Clock& clock, PipelineOptions options, Waiter& waiter)
    : clock_(clock),
      steps_(clock),
      options_([&] {
        options.taps = with_health_check(std::move(options.taps), options.healthcheck);
        return std::move(options);
      }()),
      waiter_(waiter),
      attributor_(AttributorConfig{.taps = options_.taps}),
      detector_(options_.detector),
      attribute_(!options_.taps.empty()),
      // Forward samples leave when their probe's fate is known (a probe lost beyond a tap
      // after later ones): judge a TTL probe only once every sample of its window can be in.
      crosscheck_(options_.crosscheck_window_ns,
                  std::max<std::int64_t>(3'000'000'000, options_.detector.reorder_hold_ns), false),
      hc_(options_.taps, options_.healthcheck) {
  taps_.reserve(options_.taps.size());
  for (std::size_t i = 0; i < options_.taps.size(); ++i) {
    auto t = std::make_unique<TapThread>();
    t->index = i;
    taps_.push_back(std::move(t));
  }
}

Pipeline::~Pipeline() {
  stop();
}

void Pipeline::add_session(const SessionSpec& spec) {
  if (attribute_) attributor_.add_session(spec);
  session_ids_.push_back(spec.session_id);
  std::lock_guard lock(paths_mu_);
  paths_[spec.session_id] = PathState{};
}

void Pipeline::add_ttl_session(std::uint32_t session_id, const IpAddress& target) {
  if (ttl_targets_.count(session_id) != 0) {
    throw std::invalid_argument("TTL session " + std::to_string(session_id) + " (" +
                                target.to_string() + "): duplicate session id");
  }
  ttl_targets_[session_id] = target.to_string();
  session_ids_.push_back(session_id);
  std::lock_guard lock(paths_mu_);
  paths_[session_id].has_reverse = false;
}

void Pipeline::on_ttl_result(const TtlResult& result) {
  TtlResult r = result;
  const std::int64_t now = steps_.now();
  r.tx_ns = steps_.to_internal(r.tx_ns, now);
  if (r.rx_ns) r.rx_ns = steps_.to_internal(*r.rx_ns, now);
  std::lock_guard lock(in_mu_);
  inputs_.emplace_back(std::move(r));
}

tl::expected<void, TapOpenError> Pipeline::open_live_taps() {
  for (std::size_t i = 0; i < taps_.size(); ++i) {
    if (taps_[i]->tap) continue;
    const LiveOptions lo = tap_live_options(options_, i);
    auto src = open_live(lo);
    if (!src) return tl::unexpected(TapOpenError{i, "cannot capture: " + src.error()});
    // The same capture again once it fails: needs CAP_NET_RAW then too (kept in the permitted
    // set by the agent, raised for the call: io/privileges.h).
    set_source(i, std::move(*src),
               [lo]() -> tl::expected<std::unique_ptr<PacketSource>, std::string> {
                 const io::NetRawScope cap;
                 auto reopened = open_live(lo);
                 if (!reopened && !cap.error().empty()) {
                   return tl::unexpected(reopened.error() + " (" + cap.error() + ")");
                 }
                 return reopened;
               });
  }
  return {};
}

void Pipeline::set_source(std::size_t index, std::unique_ptr<PacketSource> source,
                          SourceOpener reopen) {
  taps_.at(index)->tap =
      std::make_unique<Tap>(options_.taps[index], options_.decode, std::move(source), index);
  taps_.at(index)->reopen = std::move(reopen);
}

void Pipeline::start() {
  if (started_) return;
  started_ = true;
  for (auto& t : taps_) {
    if (!t->tap) {
      throw std::logic_error("tap " + options_.taps[t->index].interface + " has no source");
    }
  }
  for (auto& t : taps_) {
    TapThread* tt = t.get();
    t->thread = start_thread("capture " + options_.taps[t->index].interface,
                             [this, tt] { capture_loop(*tt); });
  }
  worker_ = start_thread("pipeline", [this] { worker_loop(); });
}

void Pipeline::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  // Keep capturing and polling a little: the last replies' tap copies and ESP windows.
  waiter_.sleep_for(options_.drain_ns);
  capture_stop_.store(true);
  for (auto& t : taps_) {
    if (t->thread.joinable()) t->thread.join();
  }
  worker_stop_.store(true);
  if (worker_.joinable()) worker_.join();
}

void Pipeline::on_sent(const SentNotice& sent) {
  if (!attribute_) return;
  SentNotice s = sent;
  s.tx_ns = steps_.to_internal(s.tx_ns);
  std::lock_guard lock(in_mu_);
  inputs_.emplace_back(s);
}

void Pipeline::on_record(const ProbeRecord& record) {
  if (!attribute_) {
    // Without taps a record only passes through: its times stay as they are.
    std::lock_guard lock(in_mu_);
    inputs_.emplace_back(record);
    return;
  }
  ProbeRecord r = record;
  const std::int64_t now = steps_.now();
  r.tx_ns = steps_.to_internal(r.tx_ns, now);
  if (r.rx_ns) r.rx_ns = steps_.to_internal(*r.rx_ns, now);
  std::lock_guard lock(in_mu_);
  inputs_.emplace_back(std::move(r));
}

void Pipeline::to_real(ProbeRecord& r) const {
  r.tx_ns = steps_.to_real(r.tx_ns);
  if (r.rx_ns) r.rx_ns = steps_.to_real(*r.rx_ns);
}

void Pipeline::to_real(PathEvent& e) const {
  e.ts_ns = steps_.to_real(e.ts_ns);
  e.detected_ns = steps_.to_real(e.detected_ns);
  if (e.last_ok_on_old_ns != 0) e.last_ok_on_old_ns = steps_.to_real(e.last_ok_on_old_ns);
  if (e.first_ok_on_new_ns != 0) e.first_ok_on_new_ns = steps_.to_real(e.first_ok_on_new_ns);
}

std::vector<TapDown> Pipeline::taps_down() const {
  std::vector<TapDown> out;
  const std::int64_t now = steps_.now();
  for (const auto& t : taps_) {
    const std::int64_t since = t->down_since_ns.load();
    if (since == TapThread::kUp) continue;
    out.push_back(TapDown{options_.taps[t->index].interface, options_.taps[t->index].path,
                          std::max<std::int64_t>(0, now - since)});
  }
  return out;
}

PathState Pipeline::path_state(std::uint32_t session_id) const {
  {
    std::lock_guard lock(paths_mu_);
    auto it = paths_.find(session_id);
    if (it != paths_.end()) return it->second;
  }
  PathState none;
  none.has_reverse = ttl_targets_.count(session_id) == 0;
  return none;
}

void Pipeline::publish_watermark(TapThread& t, std::int64_t ts_ns) {
  if (ts_ns > t.watermark_ns.load(std::memory_order_relaxed)) {
    t.watermark_ns.store(ts_ns, std::memory_order_release);
  }
}

void Pipeline::set_realtime(const std::string& what) const {
  const std::string error = set_thread_fifo(options_.rt_priority);
  if (!error.empty() && options_.log) {
    options_.log("cannot run the " + what + " thread with SCHED_FIFO priority " +
                 std::to_string(std::min(options_.rt_priority, 99)) + " (" + error +
                 "): it may fall behind on a busy machine");
  }
}

void Pipeline::capture_loop(TapThread& t) {
  set_realtime("tap " + t.tap->spec().interface + " capture");
  BufferSink sink;
  bool end = false;
  while (!end) {
    const bool stopping = capture_stop_.load();
    auto n = t.tap->pump(sink, kPumpBatch, &end);
    std::string failure;
    std::int64_t drained = std::numeric_limits<std::int64_t>::min();
    if (!n) {
      failure = n.error();
    } else if (!end && *n < kPumpBatch) {
      // The ring is empty: nothing captured before now (minus the slack) is pending — if the
      // interface could deliver frames, which libpcap does not say for one that is down or
      // without carrier (it just reads nothing). Checked after the clock read, so a watermark
      // is only published for a time the link is known to have been up.
      drained = steps_.now() - kDrainSlackNs;
      failure = t.tap->source().link_problem().value_or("");
    }
    std::int64_t newest = std::numeric_limits<std::int64_t>::min();
    if (!sink.buf.empty() || !sink.echoes.empty()) {
      // Capture timestamps (CLOCK_REALTIME) onto the pipeline's timeline.
      const std::int64_t now = steps_.now();
      for (auto& o : sink.buf) {
        o.second.ts_ns = steps_.to_internal(o.second.ts_ns, now);
        newest = std::max(newest, o.second.ts_ns);
      }
      for (auto& o : sink.echoes) {
        o.second.ts_ns = steps_.to_internal(o.second.ts_ns, now);
        newest = std::max(newest, o.second.ts_ns);
      }
      std::lock_guard lock(in_mu_);
      observations_.insert(observations_.end(), sink.buf.begin(), sink.buf.end());
      echoes_.insert(echoes_.end(), sink.echoes.begin(), sink.echoes.end());
      sink.buf.clear();
      sink.echoes.clear();
    }
    if (!failure.empty()) {
      // What was read before the failure is complete; from there on the tap is down (never
      // complete up to +inf: its silence must not count as evidence, docs/attribution.md).
      publish_watermark(t, newest);
      if (!recover(t, failure)) break;
      continue;
    }
    if (options_.observer != nullptr) {
      // The taps' counters for the metrics, about once a second (one clock read per pump).
      const std::int64_t mono = clock_.monotonic_ns();
      if (mono >= t.stats_due_ns) {
        t.stats_due_ns = mono + kNsPerSec;
        options_.observer->on_tap_stats(t.index, t.tap->stats());
      }
    }
    // Published after the observations are queued, so the worker never sees a watermark
    // ahead of what it can read.
    publish_watermark(t,
                      end ? std::numeric_limits<std::int64_t>::max() : std::max(newest, drained));
    if (stopping) break;  // one last pump after the stop was asked
    if (*n == kPumpBatch || end) continue;
    // The ring ran dry: wait for the next frames. (A file never runs dry before its end; a
    // source without a descriptor makes this a plain 5 ms wait.)
    waiter_.wait_fd(t.tap->source().selectable_fd(), POLLIN, 5'000'000);
  }
}

bool Pipeline::recover(TapThread& t, const std::string& reason) {
  const std::string& name = t.tap->spec().interface;
  std::int64_t due = clock_.monotonic_ns() +
                     reopen_backoff_ns(0, options_.reopen_initial_ns, options_.reopen_max_ns);
  const std::int64_t detected = steps_.now();
  const std::int64_t wm = t.watermark_ns.load(std::memory_order_relaxed);
  // Down from where its capture was last complete (or now, if it never reported).
  const std::int64_t from = wm == std::numeric_limits<std::int64_t>::min() ? detected : wm;
  t.error = reason;
  t.tap->close_source();
  t.tap->count_down();
  t.down_since_ns.store(from);
  {
    // Queued before the watermark moves past `from`: the worker tells the attributor about the
    // down span before it decides any window after it.
    std::lock_guard lock(in_mu_);
    // The worker may already have polled up to the watermark plus the grace and decided
    // windows ending there with this tap's evidence: for the attributor the tap is down
    // after that time only (so a record does not depend on whether that poll came first).
    const std::int64_t judged =
        wm == std::numeric_limits<std::int64_t>::min() ? from : from + kWatermarkGraceNs;
    tap_changes_.push_back(TapChange{t.index, true, from, judged, detected, 0, reason});
  }
  std::uint32_t attempt = 0;
  std::string last_error = reason;
  while (!capture_stop_.load()) {
    // While down, the tap holds nothing back: the attributor knows its silence means nothing.
    publish_watermark(t, steps_.now() - kDrainSlackNs);
    const std::int64_t now = clock_.monotonic_ns();
    if (t.reopen && now >= due) {
      t.tap->count_reopen_attempt();
      auto src = t.reopen();
      std::string problem;
      if (!src) {
        problem = src.error();
      } else if (auto p = (*src)->link_problem()) {
        problem = *p;
      }
      if (problem.empty()) {
        const std::int64_t up = steps_.now();
        const std::int64_t down_ns = std::max<std::int64_t>(0, up - from);
        t.tap->replace_source(std::move(*src));
        t.tap->count_up(down_ns);
        {
          std::lock_guard lock(in_mu_);
          tap_changes_.push_back(TapChange{t.index, false, up, up, up, down_ns, reason});
        }
        t.down_since_ns.store(TapThread::kUp);
        return true;
      }
      ++attempt;
      if (options_.log && (attempt == 1 || attempt % 10 == 0 || problem != last_error)) {
        // open_live() names the tap already.
        const std::string prefix = "tap " + name + ": ";
        options_.log(prefix + "still down after " + std::to_string(attempt) +
                     " reopen attempt(s): " +
                     (problem.rfind(prefix, 0) == 0 ? problem.substr(prefix.size()) : problem));
      }
      last_error = problem;
      t.error = problem;
      due = now + reopen_backoff_ns(attempt, options_.reopen_initial_ns, options_.reopen_max_ns);
    }
    waiter_.sleep_for(5'000'000);
  }
  return false;
}

void Pipeline::worker_loop() {
  set_realtime("pipeline worker");
  std::int64_t next = clock_.monotonic_ns();
  while (!worker_stop_.load()) {
    process(steps_.now(), false);
    next += options_.poll_interval_ns;
    const std::int64_t now = clock_.monotonic_ns();
    if (next < now) next = now;
    // At most one period: a clock that stands still (a test's) must not stretch the waits.
    waiter_.sleep_for(std::min(next - now, options_.poll_interval_ns));
  }
  process(steps_.now(), true);
}

void Pipeline::process(std::int64_t now_ns, bool final) {
  // How far every tap's capture is complete, read BEFORE taking the queued observations: a
  // capture thread queues its frames first and then publishes its watermark, so everything the
  // watermarks read here cover is in the queue swapped below (read after, a watermark could
  // cover frames queued after the swap, which this poll would then decide without).
  // A tap that has not reported yet holds everything back (its first pump comes at once).
  std::int64_t complete = now_ns;
  hc_watermarks_.clear();
  for (const auto& t : taps_) {
    const std::int64_t wm = t->watermark_ns.load(std::memory_order_acquire);
    hc_watermarks_.push_back(wm);
    complete = std::min(
        complete,
        wm == std::numeric_limits<std::int64_t>::min()
            ? wm
            : wm + std::min(kWatermarkGraceNs, std::numeric_limits<std::int64_t>::max() - wm));
  }
  {
    std::lock_guard lock(in_mu_);
    in_scratch_.swap(inputs_);
    obs_scratch_.swap(observations_);
    changes_scratch_.swap(tap_changes_);
    echo_scratch_.swap(echoes_);
    live_bytes_ = bytes_of(inputs_) + bytes_of(observations_) + bytes_of(echoes_);
  }
  const std::size_t in_used = in_scratch_.size();
  const std::size_t obs_used = obs_scratch_.size();
  const std::size_t echo_used = echo_scratch_.size();
  handle_tap_changes();
  // The sender's side first, then the taps' copies: a clear copy whose probe has not been
  // announced is only taken for a sequence just ahead of the last one announced (1024, the
  // smallest slot ring), so a batch holding more than that per session (the worker late by
  // ~20 ms at 50 000 probes/s a session) would leave the later copies unmatched and their
  // probes "unknown" if the copies came first. Nothing is decided before poll() below.
  for (const Input& in : in_scratch_) {
    if (const auto* s = std::get_if<SentNotice>(&in)) {
      attributor_.on_sent(ProbeSent{s->session_id, s->seq, s->tx_ns, s->wire_bytes});
    } else if (const auto* t = std::get_if<TtlResult>(&in)) {
      auto it = ttl_targets_.find(t->session_id);
      if (it == ttl_targets_.end()) continue;
      ProbeRecord r;
      r.target = it->second;
      r.proto = Proto::Ttl;
      r.session_id = t->session_id;
      r.seq = t->seq;
      r.tx_ns = t->tx_ns;
      if (t->outcome != TtlOutcome::None) {
        r.rx_ns = t->rx_ns.value_or(t->tx_ns);
        r.rtt_ns = *r.rx_ns - t->tx_ns;
      } else {
        // Nothing came back: the probe, or the hop's ICMP error on its way back, was lost.
        r.loss = LossDirection::Undetermined;
      }
      r.fwd_path = t->path;
      r.rev_path = "";  // not observable with TTL probes: the reply's way back is not seen
      ttl_records_.push_back(std::move(r));
    } else if (attribute_) {
      attributor_.on_record(std::get<ProbeRecord>(in));
    } else {
      records_.push_back(std::get<ProbeRecord>(in));  // no taps: paths stay ""
      // Without taps or a reflector's help nothing tells where a lost probe was lost.
      if (!records_.back().rx_ns) records_.back().loss = LossDirection::Undetermined;
    }
  }
  in_scratch_.clear();
  for (const auto& [tap, obs] : obs_scratch_) attributor_.on_observation(tap, obs);
  obs_scratch_.clear();

  if (attribute_) {
    if (final) {
      attributor_.flush(records_, &samples_);
    } else {
      // The attributor decides a window once its capture is complete: a tap whose capture
      // thread lags holds the decisions back (instead of them being made without its copies).
      if (complete < now_ns) ++capture_lag_polls_;
      // Before every tap has reported there is nothing the attributor may decide.
      if (complete != std::numeric_limits<std::int64_t>::min()) {
        attributor_.poll(complete, records_, &samples_);
      }
    }
  }
  if (attribute_) {
    attributor_.take_notes(notes_);
    for (const std::string& n : notes_) {
      if (options_.log) options_.log(n);
    }
    notes_.clear();
  }
  // The taps' forward samples first (for the cross-check), then the TTL probes' own.
  const bool crosscheck = attribute_ && !ttl_targets_.empty();
  if (crosscheck) {
    for (const PathSample& s : samples_) {
      if (s.dir == Direction::Forward && !s.revision) {
        crosscheck_.on_tap_sample(s.target, s.tx_ns, s.path);
      }
    }
  }
  for (const ProbeRecord& r : ttl_records_) {
    PathSample s;
    s.session_id = r.session_id;
    s.target = r.target;
    s.proto = Proto::Ttl;
    s.dir = Direction::Forward;
    s.seq = r.seq;
    s.tx_ns = r.tx_ns;
    s.path = r.fwd_path;
    s.fate = fate_of(r, Direction::Forward);
    samples_.push_back(s);
    if (crosscheck) crosscheck_.on_ttl(r.target, r.seq, r.tx_ns, r.fwd_path);
  }
  if (crosscheck) {
    if (final) {
      crosscheck_.flush(verdicts_);
    } else {
      crosscheck_.poll(now_ns, verdicts_);
    }
    handle_verdicts();
  }
  for (const PathSample& s : samples_) detector_.on_sample(s, now_ns, events_);
  detector_.poll(now_ns, events_);
  health_check(now_ns, final);
  // What leaves carries realtime again (the records of a pipeline without taps never left it).
  if (attribute_) {
    for (ProbeRecord& r : records_) to_real(r);
  }
  for (ProbeRecord& r : ttl_records_) to_real(r);
  if (options_.output != nullptr) {
    options_.output->write_all(records_);
    options_.output->write_all(ttl_records_);
  }
  for (const PathEvent& e : events_) handle_event(e);
  if (options_.observer != nullptr) {
    for (const ProbeRecord& r : records_) options_.observer->on_record(r);
    for (const ProbeRecord& r : ttl_records_) options_.observer->on_record(r);
    if (!records_.empty() || !ttl_records_.empty() || !events_.empty()) {
      options_.observer->on_poll_done();
    }
  }
  const bool changed = !samples_.empty();
  release_after_burst(records_, records_.size(), Pipeline::kHandoffKeepBytes);
  release_after_burst(samples_, samples_.size(), Pipeline::kHandoffKeepBytes);
  release_after_burst(in_scratch_, in_used, Pipeline::kHandoffKeepBytes);
  release_after_burst(obs_scratch_, obs_used, Pipeline::kHandoffKeepBytes);
  release_after_burst(echo_scratch_, echo_used, Pipeline::kHandoffKeepBytes);
  handoff_bytes_.store(live_bytes_ + bytes_of(in_scratch_) + bytes_of(obs_scratch_) +
                       bytes_of(echo_scratch_) + bytes_of(records_) + bytes_of(samples_));
  records_.clear();
  ttl_records_.clear();
  samples_.clear();
  events_.clear();
  if (options_.output != nullptr && (final || now_ns - last_flush_ns_ >= 200'000'000)) {
    options_.output->flush();
    last_flush_ns_ = now_ns;
  }
  if (!changed) return;
  std::map<std::uint32_t, PathState> snapshot;
  for (std::uint32_t id : session_ids_) {
    PathState& st = snapshot[id];
    st.has_reverse = ttl_targets_.count(id) == 0;  // TTL probes see the forward path only
    st.fwd_outage = detector_.in_outage(id, Direction::Forward);
    if (auto p = detector_.current_path(id, Direction::Forward)) st.fwd = *p;
    if (st.has_reverse) {
      st.rev_outage = detector_.in_outage(id, Direction::Reverse);
      if (auto p = detector_.current_path(id, Direction::Reverse)) st.rev = *p;
    }
  }
  std::lock_guard lock(paths_mu_);
  paths_.swap(snapshot);
}

void Pipeline::handle_verdicts() {
  for (const CrossCheckVerdict& v : verdicts_) {
    if (v.kind != CrossCheckVerdict::Kind::Disagree || !options_.log) continue;
    options_.log("ttl cross-check: " + v.target + " ttl probe " + std::to_string(v.seq) + " (tx " +
                 std::to_string(steps_.to_real(v.tx_ns)) + ") says forward path " + v.ttl_path +
                 ", the taps say " + v.tap_path);
  }
  verdicts_.clear();
}

void Pipeline::handle_tap_changes() {
  for (const TapChange& c : changes_scratch_) {
    if (c.down) {
      attributor_.tap_down(c.tap, c.judged_ns);
    } else {
      attributor_.tap_up(c.tap, c.ts_ns);
    }
    hc_.set_tap_up(c.tap, !c.down, c.ts_ns);
    PathEvent e;
    e.type = c.down ? EventType::TapDown : EventType::TapUp;
    e.ts_ns = c.ts_ns;
    e.detected_ns = c.detected_ns;
    e.duration_ns = c.duration_ns;
    e.tap = options_.taps[c.tap].interface;
    e.path = options_.taps[c.tap].path;
    e.reason = c.reason;
    handle_event(e);
  }
  changes_scratch_.clear();
}

void Pipeline::health_check(std::int64_t now_ns, bool final) {
  if (!hc_.active()) {
    echo_scratch_.clear();
    return;
  }
  // The echo frames in capture order per tap, then each watcher's time moved to how far its
  // tap's capture is complete (never past the clock; a file's end is no time), then the
  // records as evidence that the line carries the agent's probes.
  for (const auto& [tap, echo] : echo_scratch_) hc_.on_echo(tap, echo, events_);
  echo_scratch_.clear();
  for (std::size_t i = 0; i < hc_watermarks_.size(); ++i) {
    const std::int64_t wm = hc_watermarks_[i];
    if (wm == std::numeric_limits<std::int64_t>::min() ||
        wm == std::numeric_limits<std::int64_t>::max()) {
      continue;
    }
    hc_.tick(i, std::min(wm, now_ns), events_);
  }
  for (const ProbeRecord& r : records_) hc_.on_record(r, now_ns, events_);
  if (options_.observer != nullptr) {
    const std::int64_t mono = clock_.monotonic_ns();
    bool hc_event = false;
    for (const PathEvent& e : events_) hc_event = hc_event || is_healthcheck_event(e.type);
    if (final || hc_event || mono >= hc_status_due_ns_) {
      hc_status_due_ns_ = mono + kNsPerSec;
      options_.observer->on_healthcheck(hc_.status());
    }
  }
}

void Pipeline::handle_event(const PathEvent& internal) {
  PathEvent e = internal;
  to_real(e);
  if (options_.output != nullptr) options_.output->write(e);
  if (options_.observer != nullptr) options_.observer->on_event(e);
  if (options_.event_log) options_.event_log(describe(e));
}

std::optional<std::array<std::uint64_t, 3>> Pipeline::session_losses(
    std::uint32_t session_id) const {
  if (!attribute_) return std::nullopt;
  return attributor_.session_losses(session_id);
}

std::vector<std::string> Pipeline::stats_lines() {
  std::vector<std::string> out;
  if (attribute_ && !ttl_targets_.empty()) {
    const CrossCheckStats& c = crosscheck_.stats();
    out.push_back(
        "ttl cross-check with the taps: agree " + std::to_string(c.agree) + ", disagree " +
        std::to_string(c.disagree) + ", undecided " + std::to_string(c.undecided) +
        " (TTL probes without a path, not judged: " + std::to_string(c.no_ttl_path) + ")");
  }
  for (const HealthCheckStatus& h : hc_.status()) {
    char iv[32];
    std::snprintf(iv, sizeof iv, "%.3f", static_cast<double>(h.stats.interval_ns) / 1e9);
    out.push_back("healthcheck " + h.tap + " (" + h.path + "): gateway " +
                  (h.target.empty() ? "-" : h.target) + ", probes " +
                  std::to_string(h.stats.probes) + ", answered " +
                  std::to_string(h.stats.answered) + ", unanswered " +
                  std::to_string(h.stats.unanswered) + " (never seen " +
                  std::to_string(h.stats.missing) + "), late " + std::to_string(h.stats.late) +
                  ", interval " + iv + " s, state " + to_string(h.state));
  }
  if (!attribute_) return out;
  const AttributorStats& st = attributor_.stats();
  const auto& labels = attributor_.path_labels();
  std::string paths = "attribution: " + std::to_string(st.records) + " records;";
  for (std::size_t i = 0; i < labels.size() && i < st.path_counts.size(); ++i) {
    paths += " " + labels[i] + " fwd " + std::to_string(st.path_counts[i][0]) + " rev " +
             std::to_string(st.path_counts[i][1]) + ";";
  }
  paths += " lost forward " + std::to_string(st.losses[0]) + " reverse " +
           std::to_string(st.losses[1]) + " undetermined " + std::to_string(st.losses[2]) + ";";
  paths += " early losses " + std::to_string(st.early_losses) + ", late records " +
           std::to_string(st.late_records) + " (to probes already let go " +
           std::to_string(st.late_forgotten) + "), no record " + std::to_string(st.no_record) +
           ", probe state dropped " + std::to_string(st.state_overruns) +
           " (inputs for a slot a newer probe held " + std::to_string(st.superseded_inputs) + ")" +
           ", conflicts clear " + std::to_string(st.clear_conflicts) + " esp " +
           std::to_string(st.esp_conflicts) + ", forward samples revised " +
           std::to_string(st.fwd_samples_revised) + ", unseen made unknown by late ESP " +
           std::to_string(st.fwd_late_esp) + " (past the late horizon, a stalled tunnel " +
           std::to_string(st.fwd_late_esp_stalled) + "), polls held back by a lagging capture " +
           std::to_string(capture_lag_polls_) + ", records with a tap down " +
           std::to_string(st.tap_down_records) + " (unseen made unknown " +
           std::to_string(st.fwd_unseen_tap_down) + ")";
  out.push_back(paths);
  const DetectorStats& dst = detector_.stats();
  out.push_back("detector: " + std::to_string(dst.events) + " events, samples late " +
                std::to_string(dst.late) + " duplicate " + std::to_string(dst.duplicates) +
                " skipped " + std::to_string(dst.skipped) + ", revised by late answers " +
                std::to_string(dst.revisions) + " (gaps re-measured " +
                std::to_string(dst.revised_gaps) + ")");
  if (const std::uint64_t steps = steps_.steps(); steps != 0) {
    out.push_back("realtime clock stepped " + std::to_string(steps) +
                  " time(s): deadlines ran on the monotonic clock, timestamps stay realtime");
  }
  for (auto& t : taps_) {
    if (!t->tap) continue;
    const TapStats& ts = t->tap->stats();
    std::string line =
        "tap " + t->tap->spec().interface + " (" + t->tap->spec().path + "): frames " +
        std::to_string(ts.frames) + ", decoded " + std::to_string(ts.decoded) + ", pcap drops " +
        std::to_string(ts.source.dropped) + "/" + std::to_string(ts.source.if_dropped);
    for (std::size_t r = 0; r < kDropReasonCount; ++r) {
      if (ts.dropped[r] != 0) {
        line += ", " + std::string(to_string(static_cast<DropReason>(r))) + " " +
                std::to_string(ts.dropped[r]);
      }
    }
    if (t->index < st.taps.size()) {
      const TapAttribution& ta = st.taps[t->index];
      line += "; matched " + std::to_string(ta.matched) + ", unmatched " +
              std::to_string(ta.unmatched) + ", ambiguous " + std::to_string(ta.ambiguous) +
              ", esp seq gaps " + std::to_string(ta.esp_seq_gaps) + ", late " +
              std::to_string(ta.late) + ", length mismatches " + std::to_string(ta.length_mismatch);
      if (t->tap->spec().encap == Encap::Esp) {
        line += ", by order " + std::to_string(ta.order_rescued) + ", by elimination " +
                std::to_string(ta.eliminated) + ", no candidate " +
                std::to_string(ta.no_candidate) + ", no length known " +
                std::to_string(ta.unlearned) + ", no-attribution warnings " +
                std::to_string(ta.silent_warnings) + "; transform " +
                (t->tap->spec().transform
                     ? std::string("configured")
                     : "learned fwd " + (ta.transform[0].empty() ? "-" : ta.transform[0]) +
                           " rev " + (ta.transform[1].empty() ? "-" : ta.transform[1]) +
                           " (changes " + std::to_string(ta.transform_changes) + ")");
        for (std::size_t d = 0; d < 2; ++d) {
          const DelayStats& ds = ta.delay[d];
          if (ds.count == 0) continue;
          line += std::string("; ") + (d == 0 ? "fwd" : "rev") + " delay us min/mean/max " +
                  std::to_string(ds.min_ns / 1000) + "/" +
                  std::to_string(ds.sum_ns / static_cast<std::int64_t>(ds.count) / 1000) + "/" +
                  std::to_string(ds.max_ns / 1000) + " (" + std::to_string(ds.near_hi) + " of " +
                  std::to_string(ds.count) + " near the window's end)";
        }
      }
    }
    if (ts.down > 0) {
      std::int64_t down_ns = ts.down_ns;
      const std::int64_t since = t->down_since_ns.load();
      if (since != TapThread::kUp) down_ns += std::max<std::int64_t>(0, steps_.now() - since);
      char b[32];
      std::snprintf(b, sizeof b, "%.3f", static_cast<double>(down_ns) / 1e9);
      line += "; degraded: down " + std::to_string(ts.down) + " time(s), " +
              std::to_string(ts.reopen_attempts) + " reopen attempt(s), " + b + " s down";
      if (since != TapThread::kUp) line += ", DOWN at the end (" + t->error + ")";
    }
    out.push_back(line);
  }
  return out;
}

}  // namespace pathsentry::probe
