#include "pathsentry/probe/pipeline.h"

#include <poll.h>

#include <chrono>

#include "pathsentry/common/config_error.h"
#include "pathsentry/probe/packet_source.h"
#include "pathsentry/probe/probe_wire.h"

namespace pathsentry::probe {

struct Pipeline::TapThread {
  std::size_t index = 0;
  std::unique_ptr<Tap> tap;
  std::thread thread;
  std::string error;  // set by the capture thread when its source failed
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
      detector_(options_.detector) {
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
  attributor_.add_session(spec);
  session_ids_.push_back(spec.session_id);
  std::lock_guard lock(paths_mu_);
  paths_[spec.session_id] = "fwd=- rev=-";
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
  return it == paths_.end() ? std::string("fwd=- rev=-") : it->second;
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
    if (!sink.buf.empty()) {
      std::lock_guard lock(in_mu_);
      observations_.insert(observations_.end(), sink.buf.begin(), sink.buf.end());
      sink.buf.clear();
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
  {
    std::lock_guard lock(in_mu_);
    in_scratch_.swap(inputs_);
    obs_scratch_.swap(observations_);
  }
  for (const auto& [tap, obs] : obs_scratch_) attributor_.on_observation(tap, obs);
  for (const Input& in : in_scratch_) {
    if (const auto* s = std::get_if<SentNotice>(&in)) {
      attributor_.on_sent(ProbeSent{s->session_id, s->seq, s->tx_ns, s->wire_bytes});
    } else {
      attributor_.on_record(std::get<ProbeRecord>(in));
    }
  }
  in_scratch_.clear();
  obs_scratch_.clear();

  if (final) {
    attributor_.flush(records_, &samples_);
  } else {
    attributor_.poll(now_ns, records_, &samples_);
  }
  for (const PathSample& s : samples_) detector_.on_sample(s, now_ns, events_);
  detector_.poll(now_ns, events_);
  if (options_.output != nullptr) {
    for (const ProbeRecord& r : records_) options_.output->write(r);
  }
  for (const PathEvent& e : events_) handle_event(e);
  const bool changed = !samples_.empty();
  records_.clear();
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
    for (Direction d : {Direction::Forward, Direction::Reverse}) {
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

void Pipeline::handle_event(const PathEvent& e) {
  if (options_.output != nullptr) options_.output->write(e);
  if (options_.event_log) options_.event_log(describe(e));
}

std::vector<std::string> Pipeline::stats_lines() {
  std::vector<std::string> out;
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
           std::to_string(st.esp_conflicts);
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
