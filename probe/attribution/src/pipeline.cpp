#include "pathsentry/probe/attribution/pipeline.h"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>

#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/capture/packet_source.h"
#include "pathsentry/probe/wire/probe_wire.h"

namespace pathsentry::probe {

struct Pipeline::TapThread {
  std::size_t index = 0;
  std::unique_ptr<Tap> tap;
  std::thread thread;
  std::string error;  // set by the capture thread when its source failed
  /// Capture time up to which this tap has handed over everything it captured: the newest
  /// frame's timestamp, or (ring drained) the clock minus a little slack; INT64_MAX at the end
  /// of a file or after a failure. Written by the capture thread, read by the worker.
  std::atomic<std::int64_t> watermark_ns{std::numeric_limits<std::int64_t>::min()};
};

namespace {

// Buffers what one pump decodes, so the hand-off lock is taken once per batch.
class BufferSink final : public ObservationSink {
 public:
  void on_observation(std::size_t tap, const Observation& obs) override {
    buf.emplace_back(tap, obs);
  }
  std::vector<std::pair<std::size_t, Observation>> buf;
};

constexpr std::size_t kPumpBatch = 4096;
// A drained capture ring holds nothing stamped more than this before the clock read.
constexpr std::int64_t kDrainSlackNs = 1'000'000;
// The attributor's settle_ns: windows ending at the watermark are complete this much later.
constexpr std::int64_t kWatermarkGraceNs = 20'000'000;

}  // namespace

SessionSpec session_spec_for(const SessionConfig& s) {
  SessionSpec spec;
  spec.session_id = s.session_id;
  spec.proto = s.proto;
  spec.target = s.target;
  const std::size_t ip_header = s.target.family == AF_INET ? 20 : 40;
  spec.wire_bytes = static_cast<std::uint32_t>(ip_header + datagram_size_for(s.proto, s.size) +
                                               (s.proto == Proto::Stamp ? kUdpHeaderSize : 0));
  spec.stateful_reflector = s.stamp_stateful;
  spec.rate_pps = s.rate_pps;
  spec.timeout_ns = s.timeout_ns;
  return spec;
}

Pipeline::Pipeline(const Clock& clock, PipelineOptions options)
    : clock_(clock),
      options_(std::move(options)),
      attributor_(AttributorConfig{.taps = options_.taps}),
      detector_(options_.detector),
      attribute_(!options_.taps.empty()),
      crosscheck_(options_.crosscheck_window_ns) {
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
  paths_[spec.session_id] = "fwd=- rev=-";
}

void Pipeline::add_ttl_session(std::uint32_t session_id, const IpAddress& target) {
  if (ttl_targets_.count(session_id) != 0) {
    throw ConfigError("", "session " + std::to_string(session_id), target.to_string(),
                      "duplicate session id");
  }
  ttl_targets_[session_id] = target.to_string();
  session_ids_.push_back(session_id);
  std::lock_guard lock(paths_mu_);
  paths_[session_id] = "fwd=-";
}

void Pipeline::on_ttl_result(const TtlResult& result) {
  std::lock_guard lock(in_mu_);
  inputs_.emplace_back(result);
}

void Pipeline::open_live_taps(const std::vector<std::string>& keys) {
  for (std::size_t i = 0; i < taps_.size(); ++i) {
    if (taps_[i]->tap) continue;
    const TapSpec& spec = options_.taps[i];
    LiveOptions lo;
    lo.interface = spec.interface;
    lo.filter = bpf_filter(spec, options_.agent_addresses, options_.decode.stamp_port);
    lo.snaplen = 256;
    lo.buffer_bytes = ring_buffer_bytes(2 * options_.total_pps, lo.snaplen);
    lo.immediate = true;
    lo.nonblocking = true;
    auto src = open_live(lo);
    if (!src) {
      const std::string key = i < keys.size() ? keys[i] : "tap";
      throw ConfigError("", key == "--tap" ? key : key + ".interface", spec.interface,
                        "cannot capture: " + src.error());
    }
    set_source(i, std::move(*src));
  }
}

void Pipeline::set_source(std::size_t index, std::unique_ptr<PacketSource> source) {
  taps_.at(index)->tap =
      std::make_unique<Tap>(options_.taps[index], options_.decode, std::move(source), index);
}

void Pipeline::start() {
  if (started_) return;
  started_ = true;
  for (auto& t : taps_) {
    if (!t->tap) throw ConfigError("", "tap", options_.taps[t->index].interface, "has no source");
  }
  for (auto& t : taps_) {
    TapThread* tt = t.get();
    t->thread = std::thread([this, tt] { capture_loop(*tt); });
  }
  worker_ = std::thread([this] { worker_loop(); });
}

void Pipeline::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  // Keep capturing and polling a little: the last replies' tap copies and ESP windows.
  std::this_thread::sleep_for(std::chrono::nanoseconds(options_.drain_ns));
  capture_stop_.store(true);
  for (auto& t : taps_) {
    if (t->thread.joinable()) t->thread.join();
  }
  worker_stop_.store(true);
  if (worker_.joinable()) worker_.join();
}

void Pipeline::on_sent(const SentNotice& sent) {
  if (!attribute_) return;
  std::lock_guard lock(in_mu_);
  inputs_.emplace_back(sent);
}

void Pipeline::on_record(const ProbeRecord& record) {
  std::lock_guard lock(in_mu_);
  inputs_.emplace_back(record);
}

std::string Pipeline::current_paths(std::uint32_t session_id) const {
  std::lock_guard lock(paths_mu_);
  auto it = paths_.find(session_id);
  if (it != paths_.end()) return it->second;
  return ttl_targets_.count(session_id) != 0 ? std::string("fwd=-") : std::string("fwd=- rev=-");
}

void Pipeline::capture_loop(TapThread& t) {
  BufferSink sink;
  const int fd = t.tap->source().selectable_fd();
  bool end = false;
  while (!end) {
    const bool stopping = capture_stop_.load();
    auto n = t.tap->pump(sink, kPumpBatch, &end);
    if (!n) {
      t.error = n.error();
      if (options_.log) {
        options_.log("tap " + t.tap->spec().interface + ": capture stopped: " + n.error());
      }
      end = true;
    }
    std::int64_t newest = std::numeric_limits<std::int64_t>::min();
    if (!sink.buf.empty()) {
      for (const auto& o : sink.buf) newest = std::max(newest, o.second.ts_ns);
      std::lock_guard lock(in_mu_);
      observations_.insert(observations_.end(), sink.buf.begin(), sink.buf.end());
      sink.buf.clear();
    }
    // Published after the observations are queued, so the worker never sees a watermark
    // ahead of what it can read.
    if (end) {
      newest = std::numeric_limits<std::int64_t>::max();
    } else if (n && *n < kPumpBatch) {
      newest = std::max(newest, clock_.system_ns() - kDrainSlackNs);  // nothing older is pending
    }
    if (newest > t.watermark_ns.load(std::memory_order_relaxed)) {
      t.watermark_ns.store(newest, std::memory_order_release);
    }
    if (stopping) break;  // one last pump after the stop was asked
    if (n && *n == kPumpBatch) continue;
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      (void)::poll(&p, 1, 5);
    } else if (!end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

void Pipeline::worker_loop() {
  auto next = std::chrono::steady_clock::now();
  const auto period = std::chrono::nanoseconds(options_.poll_interval_ns);
  while (!worker_stop_.load()) {
    process(clock_.system_ns(), false);
    next += period;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;
    std::this_thread::sleep_until(next);
  }
  process(clock_.system_ns(), true);
}

void Pipeline::process(std::int64_t now_ns, bool final) {
  // How far every tap's capture is complete, read BEFORE taking the queued observations: a
  // capture thread queues its frames first and then publishes its watermark, so everything the
  // watermarks read here cover is in the queue swapped below (read after, a watermark could
  // cover frames queued after the swap, which this poll would then decide without).
  // A tap that has not reported yet holds everything back (its first pump comes at once).
  std::int64_t complete = now_ns;
  for (const auto& t : taps_) {
    const std::int64_t wm = t->watermark_ns.load(std::memory_order_acquire);
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
  }
  for (const auto& [tap, obs] : obs_scratch_) attributor_.on_observation(tap, obs);
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
      }
      r.fwd_path = t->path;
      r.rev_path = "";  // not observable with TTL probes: the reply's way back is not seen
      ttl_records_.push_back(std::move(r));
    } else if (attribute_) {
      attributor_.on_record(std::get<ProbeRecord>(in));
    } else {
      records_.push_back(std::get<ProbeRecord>(in));  // no taps: paths stay ""
    }
  }
  in_scratch_.clear();
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
  // The taps' forward samples first (for the cross-check), then the TTL probes' own.
  const bool crosscheck = attribute_ && !ttl_targets_.empty();
  if (crosscheck) {
    for (const PathSample& s : samples_) {
      if (s.dir == Direction::Forward) crosscheck_.on_tap_sample(s.target, s.tx_ns, s.path);
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
  if (options_.output != nullptr) {
    for (const ProbeRecord& r : records_) options_.output->write(r);
    for (const ProbeRecord& r : ttl_records_) options_.output->write(r);
  }
  for (const PathEvent& e : events_) handle_event(e);
  const bool changed = !samples_.empty();
  records_.clear();
  ttl_records_.clear();
  samples_.clear();
  events_.clear();
  if (options_.output != nullptr && (final || now_ns - last_flush_ns_ >= 200'000'000)) {
    (void)options_.output->flush();
    last_flush_ns_ = now_ns;
  }
  if (!changed) return;
  std::map<std::uint32_t, std::string> snapshot;
  for (std::uint32_t id : session_ids_) {
    std::string text;
    const bool ttl = ttl_targets_.count(id) != 0;
    for (Direction d : {Direction::Forward, Direction::Reverse}) {
      if (ttl && d == Direction::Reverse) break;  // TTL probes see the forward path only
      text += d == Direction::Forward ? "fwd=" : " rev=";
      if (detector_.in_outage(id, d)) {
        text += kPathNone;
      } else if (auto p = detector_.current_path(id, d)) {
        text += *p;
      } else {
        text += "-";
      }
    }
    snapshot[id] = std::move(text);
  }
  std::lock_guard lock(paths_mu_);
  paths_.swap(snapshot);
}

void Pipeline::handle_verdicts() {
  for (const CrossCheckVerdict& v : verdicts_) {
    if (v.kind != CrossCheckVerdict::Kind::Disagree || !options_.log) continue;
    options_.log("ttl cross-check: " + v.target + " ttl probe " + std::to_string(v.seq) + " (tx " +
                 std::to_string(v.tx_ns) + ") says forward path " + v.ttl_path + ", the taps say " +
                 v.tap_path);
  }
  verdicts_.clear();
}

void Pipeline::handle_event(const PathEvent& e) {
  if (options_.output != nullptr) options_.output->write(e);
  if (options_.event_log) options_.event_log(describe(e));
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
  if (!attribute_) return out;
  const AttributorStats& st = attributor_.stats();
  const auto& labels = attributor_.path_labels();
  std::string paths = "attribution: " + std::to_string(st.records) + " records;";
  for (std::size_t i = 0; i < labels.size() && i < st.path_counts.size(); ++i) {
    paths += " " + labels[i] + " fwd " + std::to_string(st.path_counts[i][0]) + " rev " +
             std::to_string(st.path_counts[i][1]) + ";";
  }
  paths += " early losses " + std::to_string(st.early_losses) + ", late records " +
           std::to_string(st.late_records) + ", no record " + std::to_string(st.no_record) +
           ", conflicts clear " + std::to_string(st.clear_conflicts) + " esp " +
           std::to_string(st.esp_conflicts) + ", forward samples revised " +
           std::to_string(st.fwd_samples_revised) + ", unseen made unknown by late ESP " +
           std::to_string(st.fwd_late_esp) + ", polls held back by a lagging capture " +
           std::to_string(capture_lag_polls_);
  out.push_back(paths);
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
    if (!t->error.empty()) line += "; error: " + t->error;
    out.push_back(line);
  }
  return out;
}

}  // namespace pathsentry::probe
