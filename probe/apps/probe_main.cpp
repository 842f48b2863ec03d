// pathsentry-probe: the agent's probing core (docs/probe.md).
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/common/privileges.h"
#include "pathsentry/probe/agent/agent_config.h"
#include "pathsentry/probe/agent/probe_output.h"
#include "pathsentry/probe/attribution/attributor.h"
#include "pathsentry/probe/attribution/pipeline.h"
#include "pathsentry/probe/engine/engine.h"
#include "pathsentry/probe/io/probe_sockets.h"
#include "pathsentry/probe/ttl/ttl_probe.h"

namespace {

using namespace pathsentry;
using namespace pathsentry::probe;

void log(const std::string& m) {
  std::fprintf(stderr, "pathsentry-probe: %s\n", m.c_str());
}

class NullSink final : public RecordSink {
 public:
  void on_record(const ProbeRecord&) override {}
};

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

std::unique_ptr<ProbeSession> make_session(const AgentConfig& cfg, std::size_t i,
                                           RecordSink& sink) {
  const SessionConfig& s = cfg.sessions[i];
  io::ProbeSocketOptions o;
  o.target = s.target;
  o.port = s.stamp_port;
  o.source = s.source;
  o.interface = s.interface;
  o.dscp = s.dscp;
  const auto echo_id = static_cast<std::uint16_t>((s.session_id >> 16) ^ s.session_id);
  auto opened = s.proto == Proto::Icmp ? io::open_icmp_socket(o, cfg.icmp_socket, echo_id)
                                       : io::open_udp_socket(o);
  if (!opened) {
    const auto& e = opened.error();
    std::string key = cfg.session_keys[i];
    std::string value = s.target.to_string();
    if (e.option == "source" && s.source) value = s.source->to_string();
    if (e.option == "interface") value = s.interface;
    if (e.option == "dscp") value = std::to_string(s.dscp);
    if (!e.option.empty() && key != "--target") key += "." + e.option;
    if (key == "--target" && !e.option.empty() && e.option != "target") key = "--" + e.option;
    throw ConfigError(
        cfg.config_file, key, value,
        std::string("cannot open the ") + proto_name(s.proto) + " socket: " + e.message());
  }
  if (!opened->note.empty()) log(s.target.to_string() + " icmp: " + opened->note);
  WireFormat wf;
  wf.proto = s.proto;
  wf.family = s.target.family;
  wf.icmp_raw = opened->icmp_raw;
  wf.echo_id = opened->echo_id;
  wf.agent_id = s.agent_id;
  wf.session_id = s.session_id;
  wf.datagram_size = datagram_size_for(s.proto, s.size);
  wf.stamp_error = local_error_estimate();
  return std::make_unique<ProbeSession>(s, wf, std::move(opened->socket), sink);
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
    t.source = s.source;
    t.interface = s.interface;
    t.hops = cfg.tap.ttl.hops;
    out.push_back(std::move(t));
  }
  return out;
}

std::string ttl_interval_line(std::int64_t end_ns, const TtlSessionConfig& c, const TtlStats& now,
                              const TtlStats& before, const std::string& paths) {
  const std::time_t t = static_cast<std::time_t>((end_ns - 1) / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[16];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  auto sum = [](const std::map<std::string, std::uint64_t>& m) {
    std::uint64_t n = 0;
    for (const auto& [k, v] : m) n += v;
    return n;
  };
  std::string l = std::string(ts) + " " + c.target.to_string() + " ttl=" + std::to_string(c.ttl) +
                  " sent " + std::to_string(now.sent - before.sent) + " hop";
  for (const auto& [p, n] : now.per_path) {
    const auto it = before.per_path.find(p);
    l += " " + p + ":" + std::to_string(n - (it == before.per_path.end() ? 0 : it->second));
  }
  l += " unmapped " + std::to_string(sum(now.unmapped) - sum(before.unmapped)) + " target " +
       std::to_string(now.target_answers - before.target_answers) + " other " +
       std::to_string(sum(now.other) - sum(before.other)) + " none " +
       std::to_string(now.no_answer - before.no_answer) + " " + paths;
  return l;
}

int run(const AgentConfig& cfg) {
  std::unique_ptr<JsonLinesWriter> writer;
  if (!cfg.records.empty()) {
    try {
      writer = std::make_unique<JsonLinesWriter>(cfg.records, std::to_string(cfg.agent_id));
    } catch (const ConfigError& e) {
      throw ConfigError(cfg.config_file, "records (--records / agent.records)", cfg.records,
                        e.what());
    }
  }
  File summary;
  if (!cfg.summary_json.empty()) summary = open_output(cfg.summary_json, "--summary-json", "");
  // Keep stdout clean for JSON when it carries records or the summary document.
  std::FILE* human = (cfg.records == "-" || cfg.summary_json == "-") ? stderr : stdout;

  // Signals are taken by a waiting thread, not a handler: block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  SystemClock clock;
  NullSink null_sink;
  std::unique_ptr<RecordJsonSink> record_sink;
  RecordSink* sink = &null_sink;
  if (writer) {
    record_sink = std::make_unique<RecordJsonSink>(*writer);
    sink = record_sink.get();
  }
  // With taps, records go through the attributor and the detector (docs/attribution.md); TTL
  // probes go through the detector (docs/ttl.md), with or without taps.
  std::unique_ptr<Pipeline> pipeline;
  const std::vector<TtlSessionConfig> ttl_cfgs = ttl_sessions(cfg);
  if (!cfg.tap.taps.empty() || !ttl_cfgs.empty()) {
    PipelineOptions po;
    po.total_pps = 0;
    po.taps = cfg.tap.taps;
    po.detector = cfg.tap.detector;
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
    po.output = writer.get();
    po.event_log = [human](const std::string& line) {
      std::fprintf(human, "event %s\n", line.c_str());
      std::fflush(human);
    };
    po.log = [](const std::string& m) { log(m); };
    pipeline = std::make_unique<Pipeline>(clock, std::move(po));
    for (const auto& s : cfg.sessions) pipeline->add_session(session_spec_for(s));
    for (const auto& t : ttl_cfgs) pipeline->add_ttl_session(t.session_id, t.target);
    pipeline->open_live_taps(cfg.tap.tap_keys);
    sink = pipeline.get();
  }
  std::vector<std::unique_ptr<TtlProber>> ttl_probers;
  for (const auto& t : ttl_cfgs) {
    TtlSocketOptions o;
    o.target = t.target;
    o.port = t.port;
    o.ttl = t.ttl;
    o.source = t.source;
    o.interface = t.interface;
    auto sock = open_ttl_socket(o);
    if (!sock) {
      throw ConfigError(cfg.tap.ttl.file, cfg.tap.ttl.ttl_key, t.target.to_string(),
                        "cannot open the TTL probe socket: " + sock.error());
    }
    Pipeline* p = pipeline.get();
    ttl_probers.push_back(std::make_unique<TtlProber>(
        clock, t, std::move(*sock), [p](const TtlResult& r) { p->on_ttl_result(r); },
        [](const std::string& m) { log(m); }));
  }

  EngineOptions eo;
  eo.duration_ns = cfg.duration_ns;
  eo.rt_priority = cfg.rt_priority;
  eo.log = [](const std::string& m) { log(m); };
  Engine engine(clock, eo);
  for (std::size_t i = 0; i < cfg.sessions.size(); ++i) {
    engine.add_session(make_session(cfg, i, *sink));
  }
  // Every socket is open: nothing below needs a capability.
  if (const std::string why = io::drop_privileges(cfg.rt_priority, !cfg.tap.taps.empty());
      !why.empty()) {
    log("privileges: " + why);
  }
  std::vector<TtlStats> ttl_before(ttl_probers.size());
  if (!cfg.quiet) {
    engine.on_interval([&](std::int64_t end_ns, std::span<const IntervalReport> reports) {
      for (std::size_t i = 0; i < ttl_probers.size(); ++i) {
        const TtlStats now = ttl_probers[i]->stats();
        std::fprintf(human, "%s\n",
                     ttl_interval_line(end_ns, ttl_probers[i]->config(), now, ttl_before[i],
                                       pipeline->current_paths(ttl_probers[i]->config().session_id))
                         .c_str());
        ttl_before[i] = now;
      }
      for (std::size_t i = 0; i < reports.size(); ++i) {
        const auto& sc = engine.sessions()[i]->config();
        std::string line = format_interval_line(end_ns, sc, reports[i]);
        if (pipeline) {
          line += ' ';
          line += pipeline->current_paths(sc.session_id);
          if (const std::string d = pipeline->degraded(); !d.empty()) {
            line += ' ';
            line += d;
          }
        }
        std::fprintf(human, "%s\n", line.c_str());
      }
      std::fflush(human);
    });
  }
  log("probing " + std::to_string(cfg.sessions.size()) + " session(s)" +
      (ttl_probers.empty() ? std::string()
                           : " and " + std::to_string(ttl_probers.size()) +
                                 " TTL session(s) (ttl " + std::to_string(cfg.tap.ttl.ttl) + ", " +
                                 std::to_string(cfg.tap.ttl.rate_pps) + "/s)") +
      (cfg.duration_ns ? " for " + std::to_string(cfg.duration_ns / kNsPerSec) + " s"
                       : std::string(" until SIGINT/SIGTERM")));

  std::atomic<bool> done{false};
  std::atomic<bool> signalled{false};
  std::thread waiter([&] {
    const timespec tick{0, 100'000'000};
    while (!done.load()) {
      const int sig = sigtimedwait(&sigs, nullptr, &tick);
      if (sig == SIGINT || sig == SIGTERM) {
        log(std::string("got ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
            ": stopping, waiting for outstanding replies");
        signalled.store(true);
        engine.request_stop();
      }
    }
  });
  const std::int64_t t0 = clock.monotonic_ns();
  if (pipeline) pipeline->start();
  for (auto& p : ttl_probers) p->start();
  try {
    engine.run();
  } catch (...) {
    for (auto& p : ttl_probers) p->stop();
    done.store(true);
    waiter.join();
    throw;
  }
  // The engine returns after its last slot (up to one period before the end at low rates): the
  // TTL sessions keep probing for the whole duration unless a signal ended the run.
  while (!ttl_probers.empty() && cfg.duration_ns > 0 && !signalled.load() &&
         clock.monotonic_ns() < t0 + cfg.duration_ns) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& p : ttl_probers) {
    p->stop();  // waits for the last answers (up to the TTL timeout)
    log(p->stats_line());
  }
  if (pipeline) {
    pipeline->stop();
    for (const auto& line : pipeline->stats_lines()) log(line);
  }
  const double duration_s = static_cast<double>(clock.monotonic_ns() - t0) / 1e9;
  done.store(true);
  waiter.join();

  if (writer) {
    auto flushed = writer->flush();
    if (!flushed || writer->dropped_lines() > 0) {
      log("writing records to " + cfg.records + " failed (" +
          (flushed ? std::string("buffer full") : flushed.error().message()) +
          "): " + std::to_string(writer->dropped_lines()) + " record(s) dropped, " +
          std::to_string(writer->pending_bytes()) + " bytes unwritten");
    }
  }
  std::vector<SessionSummary> summaries;
  std::vector<const SessionConfig*> configs;
  for (const auto& s : engine.sessions()) {
    summaries.push_back(s->summary());
    configs.push_back(&s->config());
    // With taps, the split by direction is the records' own (docs/attribution.md §2), so the
    // summary never says what the records do not.
    if (const auto l = pipeline ? pipeline->session_losses(s->config().session_id) : std::nullopt) {
      summaries.back().lost_forward = (*l)[0];
      summaries.back().lost_reverse = (*l)[1];
      summaries.back().lost_undetermined = (*l)[2];
    }
  }
  for (std::size_t i = 0; i < summaries.size(); ++i) {
    std::fprintf(human, "%s\n", format_total_line(*configs[i], summaries[i]).c_str());
  }
  std::fflush(human);
  if (summary) {
    const std::string doc = summary_json(duration_s, configs, summaries) + "\n";
    if (std::fwrite(doc.data(), 1, doc.size(), summary.get()) != doc.size() ||
        std::fflush(summary.get()) != 0) {
      log("writing the summary to " + cfg.summary_json + " failed");
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
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
    if (!cfg.tap.taps.empty() || cfg.tap.ttl.ttl != 0) {
      std::printf("  detector: confirm %u probes, outage after %u losses\n",
                  cfg.tap.detector.confirm_probes, cfg.tap.detector.outage_losses);
    }
    return 0;
  }
  try {
    return run(cfg);
  } catch (const ConfigError& e) {
    log(e.what());
    return 2;
  } catch (const std::exception& e) {
    log(std::string("fatal: ") + e.what());
    return 1;
  }
}
