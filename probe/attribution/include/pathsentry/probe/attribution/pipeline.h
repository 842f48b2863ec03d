#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/record_json.h"
#include "pathsentry/common/waiter.h"
#include "pathsentry/probe/attribution/attributor.h"
#include "pathsentry/probe/attribution/clock_steps.h"
#include "pathsentry/probe/attribution/detector.h"
#include "pathsentry/probe/attribution/healthcheck_watch.h"
#include "pathsentry/probe/attribution/pipeline_observer.h"
#include "pathsentry/probe/attribution/ttl_crosscheck.h"
#include "pathsentry/probe/capture/packet_source.h"
#include "pathsentry/probe/capture/tap.h"
#include "pathsentry/probe/engine/probe_session.h"
#include "pathsentry/probe/engine/record_sink.h"
#include "pathsentry/probe/ttl/ttl_probe.h"

namespace pathsentry::probe {

/// Where finished records and events leave the agent: the JSON-lines writer, the shipper
/// (docs/probe.md "Shipping"), or both through an OutputFanout. The pipeline calls it on its
/// worker thread only; without a pipeline the agent calls it on the engine's receiver thread,
/// so an implementation must not block (the shipper only queues).
class RecordOutput {
 public:
  virtual ~RecordOutput() = default;
  virtual void write(const ProbeRecord& r) = 0;
  virtual void write(const PathEvent& e) = 0;
  /// A poll's records in one call (the agent's RecordQueue takes them under one lock).
  /// Default: one by one.
  virtual void write_all(std::span<const ProbeRecord> records) {
    for (const ProbeRecord& r : records) write(r);
  }
  /// Pushes out what is buffered (every ~200 ms and at the end). Default: nothing.
  virtual void flush() {}
};

/// A RecordOutput writing JSON lines through a JsonLinesWriter (not owned).
class JsonLinesOutput final : public RecordOutput {
 public:
  explicit JsonLinesOutput(JsonLinesWriter& writer) : writer_(writer) {}
  void write(const ProbeRecord& r) override { writer_.write(r); }
  void write(const PathEvent& e) override { writer_.write(e); }
  void flush() override { (void)writer_.flush(); }

 private:
  JsonLinesWriter& writer_;
};

/// Forwards every record and event to several outputs (not owned), in the order added. With
/// number_events, an event without an id gets the next of 1, 2, … first, so every output
/// carries the same event_id (the collector's identity of an event within the agent's run).
/// Not thread-safe: one thread writes (the pipeline's worker).
class OutputFanout final : public RecordOutput {
 public:
  explicit OutputFanout(bool number_events = false) : number_events_(number_events) {}
  void add(RecordOutput& out) { outs_.push_back(&out); }
  [[nodiscard]] bool empty() const { return outs_.empty(); }
  void write(const ProbeRecord& r) override {
    for (RecordOutput* o : outs_) o->write(r);
  }
  void write(const PathEvent& e) override {
    if (!number_events_ || e.event_id != 0) {
      for (RecordOutput* o : outs_) o->write(e);
      return;
    }
    PathEvent numbered = e;
    numbered.event_id = next_event_id_++;
    for (RecordOutput* o : outs_) o->write(numbered);
  }
  void flush() override {
    for (RecordOutput* o : outs_) o->flush();
  }

 private:
  std::vector<RecordOutput*> outs_;
  bool number_events_ = false;
  std::uint64_t next_event_id_ = 1;
};

/// How the live attribution pipeline runs (docs/attribution.md "Running it live").
struct PipelineOptions {
  std::vector<TapSpec> taps;  ///< in AttributorConfig order
  DetectorConfig detector;
  DecodeContext decode;
  /// The agent's own addresses, for the clear taps' BPF filter (empty = any address).
  std::vector<IpAddress> agent_addresses;
  /// Probes per second of all sessions together (sizes the capture rings).
  double total_pps = 1000;
  /// SCHED_FIFO priority of the capture threads and the worker, 0 = the default policy. The
  /// agent gives them its engine's priority (issue 14): beside the SCHED_FIFO sender and
  /// receiver at 100 000 probes/s, a capture thread of the default policy was starved until its
  /// ring overflowed, and a starved worker let the hand-off queues grow (hundreds of MB of RSS).
  /// A capture thread wakes once per TPACKET_V3 block, the worker every poll_interval_ns.
  int rt_priority = 0;
  /// The worker decides records and runs the detector this often: 5 ms, as the taps' blocks
  /// and the engine's receiver (what it decides waits ≥ 20 ms for the taps anyway, and a wake-up
  /// costs 7–20 µs of CPU on a VM: 2 ms polls cost ~10 µs per probe at 1000 probes/s).
  std::int64_t poll_interval_ns = 5'000'000;
  /// After stop() is asked, the worker keeps polling this long so the last probes' tap copies
  /// and windows are complete before everything left is flushed.
  std::int64_t drain_ns = 100'000'000;
  /// Where finished records and events go (may be null: events are still logged).
  RecordOutput* output = nullptr;
  /// One human line per event (describe()), called at once on the worker thread.
  std::function<void(const std::string&)> event_log;
  /// Warnings (capture errors, TTL cross-check disagreements).
  std::function<void(const std::string&)> log;
  /// Sees every finished record, event and the taps' counters (the agent's metrics); may be
  /// null. Must outlive the pipeline.
  PipelineObserver* observer = nullptr;
  /// TTL cross-check: tap samples within ± this of a TTL probe's send time are compared.
  std::int64_t crosscheck_window_ns = 20'000'000;
  /// A tap whose capture fails is reopened after this, then after twice as long each time up to
  /// reopen_max_ns, until it captures again (docs/attribution.md "Tap failures"). Timed by the
  /// Clock's monotonic reading.
  std::int64_t reopen_initial_ns = 100'000'000;
  std::int64_t reopen_max_ns = 5'000'000'000;
  /// The cloud's health check of each clear tap's line (docs/healthcheck.md): its events go out
  /// like path events, its state to the observer's on_healthcheck(). Off unless turned on here
  /// (the agent turns it on by default: healthcheck.enabled).
  HealthCheckSettings healthcheck{.enabled = false};
};

/// What the detector says of one session's paths now (Pipeline::path_state()).
struct PathState {
  /// The confirmed forward / reverse path; nullopt before one is established.
  std::optional<std::string> fwd;
  std::optional<std::string> rev;
  /// In an outage in that direction (the confirmed path, if any, is the one before it).
  bool fwd_outage = false;
  bool rev_outage = false;
  /// False for a TTL session: only its forward path is observable.
  bool has_reverse = true;
  friend bool operator==(const PathState&, const PathState&) = default;
};

/// A tap whose capture is down now (Pipeline::taps_down()).
struct TapDown {
  std::string interface;
  std::string path;
  std::int64_t down_ns = 0;  ///< down for this long so far
};

/// A tap's live capture could not be opened (Pipeline::open_live_taps()).
struct TapOpenError {
  std::size_t tap = 0;  ///< index in PipelineOptions::taps
  std::string message;  ///< "cannot capture: …"
};

/// Reopens a tap's capture (the same interface, BPF filter and ring size).
using SourceOpener = std::function<tl::expected<std::unique_ptr<PacketSource>, std::string>()>;

/// How Pipeline::open_live_taps() captures tap `index` of `options`: its BPF filter, snap length
/// 256, TPACKET_V3 (not immediate) with 5 ms blocks, a ring for 0.1 s of both directions at the
/// agent's whole rate, at least 8 MiB (docs/attribution.md §1 "Capture").
[[nodiscard]] LiveOptions tap_live_options(const PipelineOptions& options, std::size_t index);

/// The wait before reopen attempt number `attempt` (0 = the first) of a failed tap:
/// `initial_ns` doubling each attempt, at most `max_ns`.
[[nodiscard]] std::int64_t reopen_backoff_ns(std::uint32_t attempt, std::int64_t initial_ns,
                                             std::int64_t max_ns);

/// What the attributor needs to know of a configured session (its request's IP total length
/// is computed as the engine builds it).
[[nodiscard]] SessionSpec session_spec_for(const SessionConfig& s);

/// The agent's path side wired live. Without taps, engine records pass through unattributed
/// (paths "") and only TTL sessions (docs/ttl.md) feed the detector.
/// With taps: the engine's RecordSink feeds an Attributor, one capture
/// thread per tap pumps observations into it, and a worker thread polls the attributor every
/// few ms, writes finished records (with fwd_path/rev_path) and feeds per-direction samples to
/// the Detector, whose events are written and logged at once.
///
/// Threads: on_sent()/on_record() (the engine's receiver thread) and the capture threads only
/// append to mutex-protected hand-off queues; the attributor, detector and output belong to the
/// worker thread alone. path_state() and taps_down() may be called from any thread. The
/// threads ("capture <interface>", "pipeline") are started by start_thread(): an exception in
/// one ends the process. Time comes from `clock`; every wait and sleep goes through `waiter`.
/// The attributor, detector and capture watermarks run on a step-free timeline (ClockSteps:
/// CLOCK_MONOTONIC based); every timestamp is mapped onto it as it comes in and back to
/// CLOCK_REALTIME as records and events leave, so a step of the realtime clock neither holds
/// probes back nor declares those in flight lost (docs/design.md "Clocks").
class Pipeline final : public RecordSink {
 public:
  /// Throws ConfigError for an invalid tap or detector configuration (from the Attributor and
  /// the Detector).
  Pipeline(const Clock& clock, PipelineOptions options, Waiter& waiter = system_waiter());
  ~Pipeline() override;
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// Registers a session (before start()).
  void add_session(const SessionSpec& spec);
  /// Registers a TTL session (before start()): its results become records (proto ttl,
  /// rev_path "") and forward samples for the detector, cross-checked against the taps.
  /// std::invalid_argument for a session id registered twice.
  void add_ttl_session(std::uint32_t session_id, const IpAddress& target);
  /// One TTL probe's result (any thread: the TtlProber's).
  void on_ttl_result(const TtlResult& result);
  /// Opens every tap's live capture (needs CAP_NET_RAW: call before dropping privileges).
  /// Stops at the first tap whose capture cannot be opened and says which.
  [[nodiscard]] tl::expected<void, TapOpenError> open_live_taps();
  /// Uses `source` for tap `index` instead of a live capture (tests: pcap files). When its
  /// capture fails, `reopen` (if any) is tried with backoff until it yields a new source; without
  /// it the tap stays down. A source that ends (a file) is not a failure: the tap is done.
  void set_source(std::size_t index, std::unique_ptr<PacketSource> source,
                  SourceOpener reopen = {});
  /// Starts the capture threads and the worker. std::logic_error when a tap has no source.
  void start();
  /// Drains (drain_ns), flushes every pending probe, stops and joins the threads. Call after
  /// the engine has returned (every record delivered). Idempotent.
  void stop();

  void on_sent(const SentNotice& sent) override;
  void on_record(const ProbeRecord& record) override;

  /// A session's paths as the detector has them (updated every poll that brought samples); an
  /// unknown id reads as "nothing established". Any thread.
  [[nodiscard]] PathState path_state(std::uint32_t session_id) const;
  /// The taps whose capture is down now, in configuration order; empty while every tap
  /// captures. Any thread (the per-second summary).
  [[nodiscard]] std::vector<TapDown> taps_down() const;
  /// End-of-run counters as log lines (per tap and per path, the TTL cross-check). Call after
  /// stop().
  [[nodiscard]] std::vector<std::string> stats_lines();
  /// A tapped session's lost records by `loss` [forward, reverse, undetermined] (after stop(),
  /// or from the worker's thread); nullopt without taps or for an unknown session.
  [[nodiscard]] std::optional<std::array<std::uint64_t, 3>> session_losses(
      std::uint32_t session_id) const;
  /// The TTL cross-check's counters (after stop(), or from the worker's thread).
  [[nodiscard]] const CrossCheckStats& crosscheck_stats() const { return crosscheck_.stats(); }
  /// Bytes the hand-off queues and the worker's per-poll buffers hold allocated (their
  /// capacity), as of the worker's last poll; any thread. A burst (a worker held back) grows
  /// them; a poll whose batch fills less than a quarter of a buffer above kHandoffKeepBytes
  /// gives that buffer's memory back.
  [[nodiscard]] std::size_t handoff_bytes() const { return handoff_bytes_.load(); }
  /// A hand-off or per-poll buffer keeps up to this much allocated between polls.
  static constexpr std::size_t kHandoffKeepBytes = std::size_t{256} << 10;
  /// Steps of the realtime clock noticed so far (any thread).
  [[nodiscard]] std::uint64_t clock_steps() const { return steps_.steps(); }

 private:
  struct TapThread;
  using Input = std::variant<SentNotice, ProbeRecord, TtlResult>;
  /// A tap's capture failed (down) or was reopened (up): from its capture thread to the worker.
  struct TapChange {
    std::size_t tap = 0;
    bool down = true;
    std::int64_t ts_ns = 0;  ///< down: capture complete up to here; up: capturing again
    /// down: the attributor's time (poll) up to which its windows were judged with this tap's
    /// capture complete: ts_ns plus the watermark grace (ts_ns if it never reported).
    std::int64_t judged_ns = 0;
    std::int64_t detected_ns = 0;  ///< clock when it was seen
    std::int64_t duration_ns = 0;  ///< up: time down
    std::string reason;
  };

  void capture_loop(TapThread& t);
  /// The calling thread SCHED_FIFO at options_.rt_priority (when > 0); a refusal is logged.
  void set_realtime(const std::string& what) const;
  /// The tap's capture failed: reports it, then reopens it with backoff. Returns false when
  /// stop() was asked first.
  bool recover(TapThread& t, const std::string& reason);
  void publish_watermark(TapThread& t, std::int64_t ts_ns);
  void handle_tap_changes();
  void worker_loop();
  void process(std::int64_t now_ns, bool final);
  void handle_event(const PathEvent& e);
  /// The health check's part of a poll (healthcheck_watch.h): its events join events_.
  void health_check(std::int64_t now_ns, bool final);
  void handle_verdicts();
  /// Back from the internal timeline to realtime (what leaves the pipeline).
  void to_real(ProbeRecord& r) const;
  void to_real(PathEvent& e) const;

  const Clock& clock_;
  mutable ClockSteps steps_;  // the internal timeline (thread-safe): every time below is on it
  PipelineOptions options_;
  Waiter& waiter_;
  Attributor attributor_;
  Detector detector_;
  std::vector<std::uint32_t> session_ids_;
  bool attribute_ = false;  // taps configured: records go through the attributor
  std::map<std::uint32_t, std::string> ttl_targets_;  // TTL session id -> target text
  std::vector<std::unique_ptr<TapThread>> taps_;

  std::mutex in_mu_;
  std::vector<Input> inputs_;
  std::vector<std::pair<std::size_t, Observation>> observations_;
  std::vector<std::pair<std::size_t, EchoFrame>> echoes_;  // health-check frames
  std::vector<TapChange> tap_changes_;

  mutable std::mutex paths_mu_;
  std::map<std::uint32_t, PathState> paths_;

  std::atomic<bool> capture_stop_{false};
  std::atomic<bool> worker_stop_{false};
  std::thread worker_;
  bool started_ = false;
  bool stopped_ = false;

  // worker-only scratch
  std::vector<Input> in_scratch_;
  std::vector<std::pair<std::size_t, Observation>> obs_scratch_;
  std::vector<TapChange> changes_scratch_;
  std::vector<ProbeRecord> records_;
  std::vector<PathSample> samples_;
  std::vector<std::string> notes_;  // the attributor's log lines
  std::vector<PathEvent> events_;
  std::vector<ProbeRecord> ttl_records_;
  std::vector<CrossCheckVerdict> verdicts_;
  TtlCrossCheck crosscheck_;
  std::int64_t last_flush_ns_ = 0;
  std::uint64_t capture_lag_polls_ = 0;  // polls whose decisions waited for a tap's capture
  // The health check (healthcheck_watch.h), worker only.
  HealthCheckWork hc_;
  std::vector<std::pair<std::size_t, EchoFrame>> echo_scratch_;
  std::vector<std::int64_t> hc_watermarks_;
  std::int64_t hc_status_due_ns_ = 0;
  std::size_t live_bytes_ = 0;  // the queues' capacity at the last swap (worker)
  std::atomic<std::size_t> handoff_bytes_{0};
};

}  // namespace pathsentry::probe
