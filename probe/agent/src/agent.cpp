#include "pathsentry/probe/agent/agent.h"

#include <fcntl.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "malloc_tuning.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/common/privileges.h"
#include "pathsentry/common/thread_runner.h"
#include "pathsentry/common/waiter.h"
#include "pathsentry/metrics/metrics.h"
#include "pathsentry/probe/agent/agent_metrics.h"
#include "pathsentry/probe/agent/probe_output.h"
#include "pathsentry/probe/attribution/attributor.h"
#include "pathsentry/probe/attribution/pipeline.h"
#include "pathsentry/probe/engine/engine.h"
#include "pathsentry/probe/engine/open_session.h"
#include "pathsentry/probe/ship/batch.h"
#include "pathsentry/probe/ship/shipper.h"
#include "pathsentry/probe/ttl/ttl_probe.h"
#include "record_queue.h"

namespace pathsentry::probe {
namespace {

void log(const std::string& m) {
  std::fprintf(stderr, "pathsentry-probe: %s\n", m.c_str());
}

class NullSink final : public RecordSink {
 public:
  void on_record(const ProbeRecord&) override {}
};

// Records and events to the shipper's hand-off queue (never blocks: shipper.h).
class ShipperOutput final : public RecordOutput {
 public:
  explicit ShipperOutput(Shipper& s) : shipper_(s) {}
  void write(const ProbeRecord& r) override { shipper_.offer(r); }
  void write(const PathEvent& e) override { shipper_.offer(e); }

 private:
  Shipper& shipper_;
};

// JSON lines through the agent's current writer, which SIGHUP replaces (log rotation): the
// writer thread alone uses it.
class WriterOutput final : public RecordOutput {
 public:
  explicit WriterOutput(std::unique_ptr<JsonLinesWriter>& w) : writer_(w) {}
  void write(const ProbeRecord& r) override { writer_->write(r); }
  void write(const PathEvent& e) override { writer_->write(e); }
  void flush() override {
    if (auto f = writer_->flush(); !f) last_errno_ = f.error().value();
  }
  [[nodiscard]] int last_errno() const { return last_errno_; }

 private:
  std::unique_ptr<JsonLinesWriter>& writer_;
  int last_errno_ = 0;
};

// A pipe or socket as the records output (a FIFO, `--records -` into a pipe) is made
// non-blocking: a reader that stops reading then fails the writes with EAGAIN (counted,
// reported, the lines kept up to the buffer's bound) instead of blocking the writer thread
// forever, and the agent can still stop. Regular files and terminals are left as they are.
void unblock_if_pipe(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) return;
  const int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f != nullptr && f != stdout) std::fclose(f);
  }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

File open_output(const std::string& path, const std::string& flag, const std::string& file) {
  if (path == "-") return File(stdout);
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) throw ConfigError(file, flag, path, std::strerror(errno));
  return File(f);
}

// Session `i`'s probe socket and session; a socket that cannot be opened is a ConfigError naming
// the session's key (e.g. "--target", "session[1].source") and the value at fault.
std::unique_ptr<ProbeSession> make_session(const AgentConfig& cfg, std::size_t i,
                                           RecordSink& sink) {
  const SessionConfig& s = cfg.sessions[i];
  auto opened = open_probe_session(s, cfg.icmp_socket, sink);
  if (!opened) {
    const auto& e = opened.error();
    std::string key = cfg.session_keys[i];
    std::string value = s.target.to_string();
    if (e.option == "source" && s.source) value = s.source->to_string();
    if (e.option == "interface") value = s.interface;
    if (e.option == "dscp") value = std::to_string(s.dscp);
    if (!e.option.empty() && key != "--target") key += "." + e.option;
    if (key == "--target" && !e.option.empty() && e.option != "target") key = "--" + e.option;
    // The address not (yet) on the host, the interface not up: the environment, not the file.
    throw EnvironmentError(
        cfg.config_file, key, value,
        std::string("cannot open the ") + proto_name(s.proto) + " socket: " + e.message());
  }
  if (!opened->note.empty()) log(s.target.to_string() + " icmp: " + opened->note);
  return std::move(opened->session);
}

// One TTL session per distinct target (docs/ttl.md), with the addressing of its first session.
// Session ids continue after the engine's: (run nonce << 16) | (index + 1).
std::vector<TtlSessionConfig> ttl_sessions(const AgentConfig& cfg) {
  std::vector<TtlSessionConfig> out;
  if (cfg.tap.ttl.ttl == 0 || cfg.sessions.empty()) return out;
  const std::uint32_t nonce_bits = cfg.sessions.front().session_id & 0xFFFF0000u;
  std::uint32_t next = static_cast<std::uint32_t>(cfg.sessions.size()) + 1;
  for (const SessionConfig& s : cfg.sessions) {
    bool seen = false;
    for (const auto& t : out) seen = seen || t.target == s.target;
    if (seen) continue;
    if (next > 0xFFFF) throw ConfigError(cfg.config_file, "ttl", "", "too many sessions");
    TtlSessionConfig t;
    t.agent_id = cfg.agent_id;
    t.session_id = nonce_bits | next++;
    t.target = s.target;
    t.ttl = cfg.tap.ttl.ttl;
    t.port = cfg.tap.ttl.port;
    t.rate_pps = cfg.tap.ttl.rate_pps;
    t.timeout_ns = cfg.tap.ttl.timeout_ns;
    t.drain_ns = cfg.drain_ns;
    t.source = s.source;
    t.interface = s.interface;
    t.hops = cfg.tap.ttl.hops;
    out.push_back(std::move(t));
  }
  return out;
}

PipelineOptions pipeline_options(const AgentConfig& cfg, RecordOutput* output, std::FILE* human) {
  PipelineOptions po;
  po.total_pps = 0;
  po.rt_priority = cfg.rt_priority;  // capture and worker beside the engine's threads (issue 14)
  po.taps = cfg.tap.taps;
  po.detector = cfg.tap.detector;
  po.healthcheck = cfg.tap.healthcheck;
  // A lost probe's samples can leave the attributor as late as its timeout (+ the grace for a
  // missing record) + the wait for the STAMP reflector's counter after the samples of later
  // probes: the detector must hold those that long, not skip the late ones' sequence.
  const AttributorConfig acfg;
  std::int64_t max_timeout = 0;
  for (const auto& s : cfg.sessions) max_timeout = std::max(max_timeout, s.timeout_ns);
  po.detector.reorder_hold_ns =
      std::max(po.detector.reorder_hold_ns,
               max_timeout + acfg.record_grace_ns + acfg.stamp_evidence_wait_ns + kNsPerSec);
  po.decode = DecodeContext{cfg.agent_id, cfg.sessions.front().stamp_port};
  for (const auto& s : cfg.sessions) {
    po.total_pps += s.rate_pps;
    if (s.source) po.agent_addresses.push_back(*s.source);
  }
  po.output = output;
  po.event_log = [human](const std::string& line) {
    std::fprintf(human, "event %s\n", line.c_str());
    std::fflush(human);
  };
  po.log = [](const std::string& m) { log(m); };
  return po;
}

// The rollups' backstop (rollup_builder.h): a second closes as soon as all its sequences are in;
// only a sequence whose record never comes is waited for this long: the slowest loss timeout
// plus, with taps, the attributor's holds (docs/attribution.md), and at least 30 s (under load
// the attribution was seen holding records back 14 s).
std::int64_t rollup_grace_ns(const AgentConfig& cfg) {
  std::int64_t max_timeout = cfg.tap.ttl.ttl != 0 ? cfg.tap.ttl.timeout_ns : 0;
  for (const auto& s : cfg.sessions) max_timeout = std::max(max_timeout, s.timeout_ns);
  std::int64_t grace = max_timeout + kNsPerSec;
  if (!cfg.tap.taps.empty()) {
    const AttributorConfig acfg;
    grace += acfg.record_grace_ns + acfg.stamp_evidence_wait_ns;
  }
  return std::max(grace, 30 * kNsPerSec);
}

std::unique_ptr<Shipper> make_shipper(const AgentConfig& cfg, const Clock& clock) {
  const CollectorSettings& c = cfg.collector;
  ShipperOptions so;
  so.agent = cfg.agent_name;
  so.run = new_run_id();
  so.version = PATHSENTRY_VERSION;
  so.url = c.parsed;
  so.token = c.token;
  so.spool.dir = c.spool_dir;
  so.spool.max_bytes = c.spool_max_mb << 20;
  so.batch_ns = c.batch_ms * 1'000'000;
  so.rollup_grace_ns = rollup_grace_ns(cfg);
  double total_pps = 0;
  for (const auto& s : cfg.sessions) total_pps += s.rate_pps;
  // Ten seconds of raw records at the agent's rate may wait for the shipper's batcher (which
  // only encodes and spools: the collector's answers are waited for on its own sender thread).
  so.queue_raw_max = static_cast<std::size_t>(
      std::clamp(10 * total_pps, 65'536.0, static_cast<double>(std::size_t{1} << 21)));
  so.log = [](const std::string& m) { log(m); };
  try {
    auto shipper = std::make_unique<Shipper>(clock, std::move(so));
    log("shipping to " + c.url + " as agent " + cfg.agent_name + ", run " +
        std::string(shipper->run()) + ", spool " + c.spool_dir);
    return shipper;
  } catch (const std::runtime_error& e) {
    throw ConfigError(c.spool_dir_file, c.spool_dir_key, c.spool_dir, e.what());
  }
}

void print_check(const AgentConfig& cfg) {
  std::printf("configuration OK: %zu session(s)\n", cfg.sessions.size());
  for (const auto& s : cfg.sessions) {
    std::printf("  %s %s rate %g/s timeout %lld ms dscp %u size %zu%s%s\n",
                s.target.to_string().c_str(), proto_name(s.proto), s.rate_pps,
                static_cast<long long>(s.timeout_ns / 1'000'000), s.dscp,
                datagram_size_for(s.proto, s.size) + (s.proto == Proto::Stamp ? 8 : 0),
                s.source ? (" source " + s.source->to_string()).c_str() : "",
                s.interface.empty() ? "" : (" interface " + s.interface).c_str());
  }
  if (cfg.size_cycle > 1) {
    std::printf("  probe sizes cycle over %u sizes, %u bytes apart, across all sessions\n",
                cfg.size_cycle, cfg.size_step);
  }
  for (const TapSpec& t : cfg.tap.taps) {
    std::printf("  tap %s path %s %s", t.interface.c_str(), t.path.c_str(),
                t.encap == Encap::Clear ? "clear" : "esp");
    if (t.encap == Encap::Esp) {
      std::printf(" %s -> %s window %lld..%lld us%s", t.local_endpoint.to_string().c_str(),
                  t.remote_endpoint.to_string().c_str(),
                  static_cast<long long>(t.window_lo_ns / 1000),
                  static_cast<long long>(t.window_hi_ns / 1000),
                  t.transform ? "" : " (ESP lengths learned)");
    }
    std::printf("\n");
  }
  if (cfg.tap.ttl.ttl != 0) {
    std::printf("  ttl probes: ttl %u, %g/s per target, UDP port %u, timeout %lld ms\n",
                cfg.tap.ttl.ttl, cfg.tap.ttl.rate_pps, cfg.tap.ttl.port,
                static_cast<long long>(cfg.tap.ttl.timeout_ns / 1'000'000));
    for (const TtlHop& h : cfg.tap.ttl.hops) {
      std::printf("    hop %s -> %s\n", h.address.to_string().c_str(), h.path.c_str());
    }
  }
  if (cfg.collector.enabled) {
    std::printf(
        "  shipping to %s as agent %s, spool %s (at most %llu MiB), batches every %lld ms\n",
        cfg.collector.url.c_str(), cfg.agent_name.c_str(), cfg.collector.spool_dir.c_str(),
        static_cast<unsigned long long>(cfg.collector.spool_max_mb),
        static_cast<long long>(cfg.collector.batch_ms));
  }
  if (!cfg.tap.taps.empty() || cfg.tap.ttl.ttl != 0) {
    std::printf("  detector: confirm %u probes, outage after %u losses\n",
                cfg.tap.detector.confirm_probes, cfg.tap.detector.outage_losses);
  }
}

}  // namespace

// Members in construction order; destroyed in reverse: the engine (and the sessions' sockets)
// first, then the TTL probers and the pipeline (each stops its threads), the sinks, the shipper,
// the outputs.
struct Agent::Impl {
  Impl(const AgentConfig& config, const Clock& c);
  void print_interval(std::int64_t end_ns, std::span<const IntervalReport> reports);
  void publish_metrics();
  void open_metrics_endpoint();

  const AgentConfig cfg;
  const Clock& clock;
  void on_writer_period();
  void reopen_records();
  [[nodiscard]] std::string records_failure_line() const;

  std::unique_ptr<JsonLinesWriter> writer;
  File summary;
  std::FILE* human = stdout;
  std::unique_ptr<WriterOutput> json_output;
  std::unique_ptr<Shipper> shipper;
  std::unique_ptr<ShipperOutput> ship_output;
  OutputFanout outputs;  // the writer thread's outputs: JSON lines and/or the shipper
  NullSink null_sink;
  // Metrics (docs/metrics.md): before the pipeline and engine that feed them; null when off.
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<AgentMetrics> metrics;
  RecordSink* sink = &null_sink;
  // After the metrics its writer thread reports to, before the pipeline that feeds it. The
  // bounded hand-off from the receiver (no pipeline) or the pipeline's worker to `outputs`
  // on the writer thread (record_queue.h); null when nothing is written or shipped.
  std::unique_ptr<RecordQueue> queue;
  // The records file's failures (writer thread): totals over reopened writers, and the last
  // figures reported (a log line and the metrics, every 10 s while they grow).
  std::atomic<bool> reopen_requested{false};
  std::uint64_t write_errors_before = 0;   // of the writers replaced by SIGHUP
  std::uint64_t dropped_lines_before = 0;  // idem
  std::uint64_t reported_errors = 0;
  std::uint64_t reported_dropped = 0;
  std::uint64_t reported_queue_dropped = 0;
  std::int64_t next_report_ns = 0;
  prometheus::Counter* m_queue_dropped = nullptr;
  prometheus::Counter* m_output_dropped = nullptr;
  prometheus::Counter* m_write_errors = nullptr;
  std::vector<TtlSessionConfig> ttl_cfgs;
  std::unique_ptr<Pipeline> pipeline;
  std::vector<std::unique_ptr<TtlProber>> ttl_probers;
  std::vector<TtlStats> ttl_before;
  std::unique_ptr<Engine> engine;
  std::atomic<bool> stop_requested{false};
  std::unique_ptr<pathsentry::metrics::MetricsServer> metrics_server;  // stops serving first
};

Agent::Impl::Impl(const AgentConfig& config, const Clock& c)
    : cfg(config), clock(c), outputs(config.collector.enabled) {
  if (!cfg.records.empty()) {
    try {
      writer = std::make_unique<JsonLinesWriter>(cfg.records, std::to_string(cfg.agent_id));
    } catch (const ConfigError& e) {
      throw ConfigError(cfg.config_file, "records (--records / agent.records)", cfg.records,
                        e.what());
    }
  }
  if (!cfg.summary_json.empty()) summary = open_output(cfg.summary_json, "--summary-json", "");
  // Keep stdout clean for JSON when it carries records or the summary document.
  human = (cfg.records == "-" || cfg.summary_json == "-") ? stderr : stdout;

  if (writer) {
    writer->set_max_buffer_bytes(static_cast<std::size_t>(cfg.records_buffer_kb) << 10);
    unblock_if_pipe(writer->fd());
    json_output = std::make_unique<WriterOutput>(writer);
    outputs.add(*json_output);
  }
  if (cfg.collector.enabled) {
    shipper = make_shipper(cfg, clock);
    ship_output = std::make_unique<ShipperOutput>(*shipper);
    outputs.add(*ship_output);
  }
  if (!outputs.empty()) {
    // Two seconds of records at the agent's rate (at least 4096) may wait for the writer, within
    // record_queue_mb of memory.
    double total_pps = 0;
    for (const auto& s : cfg.sessions) total_pps += s.rate_pps;
    queue = std::make_unique<RecordQueue>(RecordQueue::capacity_for(total_pps),
                                          static_cast<std::size_t>(cfg.record_queue_mb) << 20,
                                          outputs, [this] { on_writer_period(); });
    sink = queue.get();
  }
  // With taps, records go through the attributor and the detector (docs/attribution.md); TTL
  // probes go through the detector (docs/ttl.md), with or without taps.
  ttl_cfgs = ttl_sessions(cfg);
  const bool attributes = !cfg.tap.taps.empty() || !ttl_cfgs.empty();
  if (cfg.metrics_listen != "off") {
    registry = std::make_shared<prometheus::Registry>();
    metrics = std::make_unique<AgentMetrics>(*registry, attributes);
    auto& dropped = prometheus::BuildCounter()
                        .Name("pathsentry_records_dropped_total")
                        .Help(
                            "Records and events not written or shipped: stage=\"queue\" the "
                            "hand-off queue to the writer thread was full, stage=\"output\" "
                            "the records output's buffer was full (its writes failing)")
                        .Register(*registry);
    m_queue_dropped = &dropped.Add({{"stage", "queue"}});
    m_output_dropped = &dropped.Add({{"stage", "output"}});
    m_write_errors = &prometheus::BuildCounter()
                          .Name("pathsentry_records_write_errors_total")
                          .Help("Failed writes to the records output (disk full, EPIPE, ...)")
                          .Register(*registry)
                          .Add({});
    // The labels a session's paths can take: the taps' (engine sessions), the hops' (TTL).
    std::vector<std::string> tap_paths;
    for (const TapSpec& t : cfg.tap.taps) {
      metrics->add_tap(t.interface, t.path);
      if (std::find(tap_paths.begin(), tap_paths.end(), t.path) == tap_paths.end()) {
        tap_paths.push_back(t.path);
      }
    }
    std::vector<std::string> hop_paths;
    for (const TtlHop& h : cfg.tap.ttl.hops) {
      if (std::find(hop_paths.begin(), hop_paths.end(), h.path) == hop_paths.end()) {
        hop_paths.push_back(h.path);
      }
    }
    for (const auto& s : cfg.sessions) {
      metrics->add_session(s.session_id, s.target.to_string(), s.proto, tap_paths, true);
    }
    for (const auto& t : ttl_cfgs) {
      metrics->add_session(t.session_id, t.target.to_string(), Proto::Ttl, hop_paths, false);
    }
  }
  if (attributes) {
    PipelineOptions po = pipeline_options(cfg, queue.get(), human);
    po.observer = metrics.get();
    pipeline = std::make_unique<Pipeline>(clock, std::move(po));
    for (const auto& s : cfg.sessions) pipeline->add_session(session_spec_for(s));
    for (const auto& t : ttl_cfgs) pipeline->add_ttl_session(t.session_id, t.target);
    if (auto opened = pipeline->open_live_taps(); !opened) {
      const TapOpenError& e = opened.error();
      const std::string key = e.tap < cfg.tap.tap_keys.size() ? cfg.tap.tap_keys[e.tap] : "tap";
      throw EnvironmentError("", key == "--tap" ? key : key + ".interface",
                             cfg.tap.taps[e.tap].interface, e.message);
    }
    sink = pipeline.get();
  }
  for (const auto& t : ttl_cfgs) {
    TtlSocketOptions o;
    o.target = t.target;
    o.port = t.port;
    o.ttl = t.ttl;
    o.source = t.source;
    o.interface = t.interface;
    auto sock = open_ttl_socket(o);
    if (!sock) {
      throw EnvironmentError(cfg.tap.ttl.file, cfg.tap.ttl.ttl_key, t.target.to_string(),
                             "cannot open the TTL probe socket: " + sock.error());
    }
    Pipeline* p = pipeline.get();
    ttl_probers.push_back(std::make_unique<TtlProber>(
        clock, t, std::move(*sock), [p](const TtlResult& r) { p->on_ttl_result(r); },
        [](const std::string& m) { log(m); }));
  }
  ttl_before.resize(ttl_probers.size());

  EngineOptions eo;
  eo.duration_ns = cfg.duration_ns;
  eo.rt_priority = cfg.rt_priority;
  eo.send_coalesce_ns = cfg.send_coalesce_ns;
  eo.launch_ahead_ns = cfg.launch_ahead_ns;
  eo.drain_ns = cfg.drain_ns;
  eo.log = [](const std::string& m) { log(m); };
  engine = std::make_unique<Engine>(clock, eo);
  // Without a pipeline the records' RTTs reach the metrics on the receiver thread.
  if (metrics && !pipeline) sink = &metrics->wrap(*sink);
  for (std::size_t i = 0; i < cfg.sessions.size(); ++i) {
    engine->add_session(make_session(cfg, i, *sink));
  }
  // Every socket is open: nothing below needs a capability.
  if (const std::string why = io::drop_privileges(cfg.rt_priority, !cfg.tap.taps.empty());
      !why.empty()) {
    log("privileges: " + why);
  }
  // After the privileges are gone: the server's threads must not keep any.
  open_metrics_endpoint();
}

// The writer thread's period (every 200 ms and at the end): SIGHUP's reopen, then the records
// output's failures, reported while they grow (a log line at most every 10 s, the metrics at
// once), not only at exit.
void Agent::Impl::on_writer_period() {
  if (reopen_requested.exchange(false)) reopen_records();
  const std::uint64_t queue_dropped = queue ? queue->dropped() : 0;
  std::uint64_t errors = write_errors_before;
  std::uint64_t dropped = dropped_lines_before;
  if (writer) {
    errors += writer->write_errors();
    dropped += writer->dropped_lines();
  }
  if (m_write_errors != nullptr) {
    m_write_errors->Increment(static_cast<double>(errors) - m_write_errors->Value());
    m_output_dropped->Increment(static_cast<double>(dropped) - m_output_dropped->Value());
    m_queue_dropped->Increment(static_cast<double>(queue_dropped) - m_queue_dropped->Value());
  }
  const bool grew = errors > reported_errors || dropped > reported_dropped ||
                    queue_dropped > reported_queue_dropped;
  const std::int64_t now = clock.monotonic_ns();
  if (!grew || now < next_report_ns) return;
  next_report_ns = now + 10 * kNsPerSec;
  std::string line = "records: ";
  if (errors > reported_errors || dropped > reported_dropped) {
    line += "writing to " + cfg.records + " failing (" + std::to_string(errors) +
            " failed write(s), last: " + std::strerror(json_output->last_errno()) + "), " +
            std::to_string(dropped) + " line(s) dropped so far, " +
            std::to_string(writer ? writer->pending_bytes() : 0) + " bytes pending";
  }
  if (queue_dropped > reported_queue_dropped) {
    if (line.size() > 9) line += "; ";
    line += std::to_string(queue_dropped) + " record(s)/event(s) dropped so far at the hand-off " +
            "to the writer thread (queue of " + std::to_string(queue->capacity()) + " / " +
            std::to_string(queue->max_bytes() >> 20) + " MiB full)";
  }
  log(line);
  reported_errors = errors;
  reported_dropped = dropped;
  reported_queue_dropped = queue_dropped;
}

// SIGHUP (writer thread): the records file renamed away by a log rotation is flushed and closed
// and a new one opened under the configured name. When that fails the old one stays in use.
void Agent::Impl::reopen_records() {
  if (!writer || cfg.records == "-") return;
  std::unique_ptr<JsonLinesWriter> fresh;
  try {
    fresh = std::make_unique<JsonLinesWriter>(cfg.records, std::to_string(cfg.agent_id));
  } catch (const ConfigError& e) {
    log(std::string("SIGHUP: cannot reopen the records file, keeping the old one: ") + e.what());
    return;
  }
  fresh->set_max_buffer_bytes(static_cast<std::size_t>(cfg.records_buffer_kb) << 10);
  unblock_if_pipe(fresh->fd());
  json_output->flush();
  write_errors_before += writer->write_errors();
  dropped_lines_before += writer->dropped_lines();
  if (writer->pending_bytes() > 0) {
    log("SIGHUP: " + std::to_string(writer->pending_bytes()) +
        " bytes could not be written to the old records file");
  }
  writer = std::move(fresh);
  log("SIGHUP: reopened " + cfg.records);
}

void Agent::Impl::open_metrics_endpoint() {
  if (!metrics) return;
  const bool configured = !cfg.metrics_listen_key.empty();
  auto server = pathsentry::metrics::open_endpoint(cfg.metrics_listen, configured, registry,
                                                   [](const std::string& m) { log(m); });
  if (!server) {
    throw EnvironmentError(cfg.metrics_listen_file, cfg.metrics_listen_key, cfg.metrics_listen,
                           server.error());
  }
  metrics_server = std::move(*server);
  if (metrics_server) log("metrics on " + metrics_server->url());
}

// The engine's interval callback (receiver thread): the sessions' totals, their paths as the
// detector has them, the TTL sessions' counters; without a pipeline, the records gathered here.
void Agent::Impl::publish_metrics() {
  for (const auto& s : engine->sessions()) {
    const std::uint32_t id = s->config().session_id;
    metrics->on_session_totals(id, s->summary());
    if (pipeline) metrics->on_path_state(id, pipeline->path_state(id));
  }
  for (const auto& p : ttl_probers) {
    metrics->on_ttl_stats(p->config().target.to_string(), p->stats());
    metrics->on_path_state(p->config().session_id, pipeline->path_state(p->config().session_id));
  }
  if (!pipeline) metrics->flush();
  if (shipper) {
    const ShipperStats st = shipper->stats();
    metrics->set_spool(st.spool_files, st.spool_bytes, st.dropped_raw());
  }
}

void Agent::Impl::print_interval(std::int64_t end_ns, std::span<const IntervalReport> reports) {
  for (std::size_t i = 0; i < ttl_probers.size(); ++i) {
    const TtlStats now = ttl_probers[i]->stats();
    const TtlSessionConfig& c = ttl_probers[i]->config();
    std::fprintf(
        human, "%s\n",
        format_ttl_interval_line(end_ns, c, now, ttl_before[i], pipeline->path_state(c.session_id))
            .c_str());
    ttl_before[i] = now;
  }
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const auto& sc = engine->sessions()[i]->config();
    std::string line = format_interval_line(end_ns, sc, reports[i]);
    if (pipeline) {
      line += ' ';
      line += format_paths(pipeline->path_state(sc.session_id));
      if (const std::string d = format_degraded(pipeline->taps_down()); !d.empty()) {
        line += ' ';
        line += d;
      }
    }
    std::fprintf(human, "%s\n", line.c_str());
  }
  std::fflush(human);
}

Agent::Agent(const AgentConfig& config, const Clock& clock)
    : impl_(std::make_unique<Impl>(config, clock)) {}

Agent::~Agent() = default;

void Agent::request_stop() {
  impl_->stop_requested.store(true);
  impl_->engine->request_stop();
}

void Agent::request_reopen() {
  if (!impl_->writer || impl_->cfg.records == "-") {
    log("SIGHUP: no records file to reopen");
    return;
  }
  impl_->reopen_requested.store(true);
}

void Agent::request_abort() {
  impl_->stop_requested.store(true);
  impl_->engine->request_abort();
}

std::optional<ShipperStats> Agent::shipping_stats() const {
  if (!impl_->shipper) return std::nullopt;
  return impl_->shipper->stats();
}

int Agent::run() {
  Impl& a = *impl_;
  const AgentConfig& cfg = a.cfg;
  if (!cfg.quiet || a.metrics) {
    a.engine->on_interval([&a](std::int64_t end_ns, std::span<const IntervalReport> reports) {
      if (a.metrics) a.publish_metrics();
      if (!a.cfg.quiet) a.print_interval(end_ns, reports);
    });
  }
  log("probing " + std::to_string(cfg.sessions.size()) + " session(s)" +
      (a.ttl_probers.empty() ? std::string()
                             : " and " + std::to_string(a.ttl_probers.size()) +
                                   " TTL session(s) (ttl " + std::to_string(cfg.tap.ttl.ttl) +
                                   ", " + std::to_string(cfg.tap.ttl.rate_pps) + "/s)") +
      (cfg.duration_ns ? " for " + std::to_string(cfg.duration_ns / kNsPerSec) + " s"
                       : std::string(" until SIGINT/SIGTERM")));

  const std::int64_t t0 = a.clock.monotonic_ns();
  if (a.shipper) a.shipper->start();
  if (a.queue) a.queue->start();
  if (a.pipeline) a.pipeline->start();
  for (auto& p : a.ttl_probers) p->start();
  a.engine->run();
  // The engine returns after its last slot (up to one period before the end at low rates): the
  // TTL sessions keep probing for the whole duration unless a stop was asked.
  while (!a.ttl_probers.empty() && cfg.duration_ns > 0 && !a.stop_requested.load() &&
         a.clock.monotonic_ns() < t0 + cfg.duration_ns) {
    system_waiter().sleep_for(10'000'000);
  }
  for (auto& p : a.ttl_probers) {
    p->stop();  // waits for the last answers (up to the TTL timeout)
    log(p->stats_line());
  }
  if (a.pipeline) {
    a.pipeline->stop();
    for (const auto& line : a.pipeline->stats_lines()) log(line);
  }
  const double duration_s = static_cast<double>(a.clock.monotonic_ns() - t0) / 1e9;

  // Every record is in the queue: the writer thread writes them out, flushes, reports.
  if (a.queue) {
    a.queue->stop();
    log("records: " + std::to_string(a.queue->queued()) + " handed to the writer thread, " +
        std::to_string(a.queue->dropped()) + " dropped (queue of " +
        std::to_string(a.queue->capacity()) + " / " + std::to_string(a.queue->max_bytes() >> 20) +
        " MiB full)");
  }
  if (a.writer) {
    auto flushed = a.writer->flush();
    const std::uint64_t dropped = a.dropped_lines_before + a.writer->dropped_lines();
    if (!flushed || dropped > 0) {
      log("writing records to " + cfg.records + " failed (" +
          (flushed ? std::string("buffer full") : flushed.error().message()) +
          "): " + std::to_string(dropped) + " record(s) dropped, " +
          std::to_string(a.writer->pending_bytes()) + " bytes unwritten");
    }
  }
  if (a.shipper) {
    // Every record is in: close the open seconds, spool the last batch, send it (at most 2 s).
    a.shipper->stop();
    log(a.shipper->summary_line());
  }
  std::vector<SessionSummary> summaries;
  std::vector<const SessionConfig*> configs;
  for (const auto& s : a.engine->sessions()) {
    summaries.push_back(s->summary());
    configs.push_back(&s->config());
    // With taps, the split by direction is the records' own (docs/attribution.md §2), so the
    // summary never says what the records do not.
    if (const auto l =
            a.pipeline ? a.pipeline->session_losses(s->config().session_id) : std::nullopt) {
      summaries.back().lost_forward = (*l)[0];
      summaries.back().lost_reverse = (*l)[1];
      summaries.back().lost_undetermined = (*l)[2];
    }
  }
  for (std::size_t i = 0; i < summaries.size(); ++i) {
    std::fprintf(a.human, "%s\n", format_total_line(*configs[i], summaries[i]).c_str());
  }
  std::fflush(a.human);
  if (a.summary) {
    const std::string doc = summary_json(duration_s, configs, summaries) + "\n";
    if (std::fwrite(doc.data(), 1, doc.size(), a.summary.get()) != doc.size() ||
        std::fflush(a.summary.get()) != 0) {
      log("writing the summary to " + cfg.summary_json + " failed");
      return 1;
    }
  }
  return 0;
}

namespace {

// Runs the agent with SIGINT/SIGTERM/SIGHUP taken by a waiting thread, not a handler: blocked
// before any thread starts, so every thread inherits the mask.
int run_agent(const AgentConfig& cfg) {
  // A reader of --records - that goes away must not kill the agent before it flushes and
  // reports: the write fails with EPIPE instead, is counted and said at the end.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  SystemClock clock;
  Agent agent(cfg, clock);
  std::atomic<bool> done{false};
  std::thread signals = start_thread("signals", [&] {
    const timespec tick{0, 100'000'000};
    bool stopping = false;
    while (!done.load()) {
      const int sig = sigtimedwait(&sigs, nullptr, &tick);
      if (sig == SIGHUP) agent.request_reopen();
      if (sig == SIGINT || sig == SIGTERM) {
        const std::string name = sig == SIGINT ? "SIGINT" : "SIGTERM";
        if (!stopping) {
          stopping = true;
          log("got " + name + ": stopping, waiting for outstanding replies (at most " +
              std::to_string(cfg.drain_ns / 1'000'000) + " ms; a second signal ends at once)");
          agent.request_stop();
        } else {
          log("got " + name + " again: ending now (flushing what is buffered)");
          agent.request_abort();
        }
      }
    }
  });
  struct Joiner {
    std::atomic<bool>& done;
    std::thread& t;
    ~Joiner() {
      done.store(true);
      t.join();
    }
  } joiner{done, signals};
  return agent.run();
}

}  // namespace

int agent_main(int argc, char** argv) {
  // Before any thread starts: the arenas and the mmap threshold (malloc_tuning.h).
  tune_malloc_for_agent();
  std::vector<std::string_view> args(argv + 1, argv + argc);
  std::random_device rd;
  const auto nonce = static_cast<std::uint16_t>(rd());
  AgentConfig cfg;
  try {
    cfg = parse_agent_config(args, nonce);
  } catch (const ConfigError& e) {
    log(e.what());
    return 2;
  }
  if (cfg.help) {
    std::fputs(agent_usage().c_str(), stdout);
    return 0;
  }
  if (cfg.check_only) {
    print_check(cfg);
    return 0;
  }
  try {
    return run_agent(cfg);
  } catch (const EnvironmentError& e) {
    log(e.what());
    return kExitEnvironment;
  } catch (const ConfigError& e) {
    log(e.what());
    return 2;
  } catch (const std::exception& e) {
    log(std::string("fatal: ") + e.what());
    return 1;
  }
}

}  // namespace pathsentry::probe
