// pathsentry-collector's program: flags and config, logging, the store, the handler and the
// server, retention on a timer, signals.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <string_view>
#include <vector>

#include "pathsentry/collector/collector_config.h"
#include "pathsentry/collector/handler.h"
#include "pathsentry/collector/server.h"
#include "pathsentry/common/config_error.h"
#include "pathsentry/metrics/collector_metrics.h"
#include "pathsentry/metrics/metrics.h"
#include "pathsentry/web/assets.h"

namespace pathsentry::collector {
namespace {

constexpr const char* kVersion = "0.1.0";

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("collector");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::warn);
}

}  // namespace

int collector_main(int argc, char** argv) {
  CollectorConfig config;
  CollectorCommandLine cli;
  try {
    std::vector<std::string_view> args(argv + 1, argv + argc);
    cli = parse_collector_args(args);
    if (cli.help) {
      std::fputs(collector_usage().c_str(), stdout);
      return 0;
    }
    if (cli.version) {
      std::printf("pathsentry-collector %s\n", kVersion);
      return 0;
    }
    config = resolve_collector_config(cli);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "pathsentry-collector: error: %s\n", e.what());
    return 2;
  }
  if (cli.check_config) {
    for (const auto& w : config.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::printf("config OK: %s\n", describe(config).c_str());
    return 0;
  }

  setup_logging(config.log_level);
  for (const auto& w : config.warnings) spdlog::warn("{}", w);
  // A client that goes away mid-answer must not kill the process.
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<db::Store> store;
  try {
    store = db::open_sqlite_store(config.store);
  } catch (const db::StoreOpenError& e) {
    spdlog::critical("cannot open the store: {}", e.what());
    // A newer schema or a corrupt file stays so across restarts: the configuration status.
    return e.kind() == db::ErrorKind::TooNew || e.kind() == db::ErrorKind::Corrupt ? 2 : 1;
  }
  try {
    SystemClock clock;
    // /metrics (docs/metrics.md "Collector"): ingest rows, failures, agents, database size.
    auto registry = std::make_shared<prometheus::Registry>();
    metrics::CollectorMetrics cm(*registry);
    HandlerConfig hc;
    hc.tokens = config.tokens;
    hc.max_body_bytes = config.server.max_body_bytes;
    hc.auth_throttle = config.auth_throttle;
    hc.on_ingest = [&cm, &clock](const std::string& agent, const db::IngestCounts& c) {
      cm.add_batch(agent, c.probes, c.rollups, c.events, c.duplicate_probes, c.duplicate_rollups,
                   c.duplicate_events);
      cm.set_agent_last_seen(agent, static_cast<double>(clock.system_ns()) / 1e9);
    };
    hc.on_ingest_failure = [&cm](std::string_view reason) { cm.add_failure(reason); };
    Handler handler(*store, clock, hc);
    auto* st_for_metrics = store.get();
    handler.add_route("GET", "/metrics", [&cm, registry, st_for_metrics](const Request&) {
      cm.set_db_size(static_cast<std::uint64_t>(st_for_metrics->stats().file_bytes));
      Response r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = metrics::serialize(*registry);
      return r;
    });
    // The page (web/, embedded at build time; docs/web.md).
    auto page = [](const Request& req) {
      const auto asset = web::find_asset(path_of(req.target));
      if (!asset) return Response::error(404, "not found");
      Response r;
      r.content_type = std::string(asset->content_type);
      r.body = std::string(asset->body);
      r.headers = {{"ETag", std::string(asset->etag)}, {"Cache-Control", "no-cache"}};
      return r;
    };
    handler.add_route("GET", "/", page);
    handler.add_route("GET", "/index.html", page);
    handler.add_route("GET", "/assets/", page, true);
    if (auto b = handler.bootstrap(); !b) {
      spdlog::warn("live state not seeded from the store: {}", b.error().message);
    }
    Server server(handler, config.server);
    server.stop_on_signals({SIGINT, SIGTERM});
    auto* st = store.get();
    server.every(std::chrono::milliseconds(config.retention_interval_ns / 1'000'000), [st, &clock] {
      auto r = st->apply_retention(clock.system_ns());
      if (!r) {
        spdlog::warn("retention: {}", r.error().message);
      } else if (r->probes_deleted + r->rollups_deleted + r->events_deleted > 0) {
        spdlog::info("retention: deleted {} probes, {} rollups, {} events", r->probes_deleted,
                     r->rollups_deleted, r->events_deleted);
      }
    });
    spdlog::info("config: {}", describe(config));
    std::string line = "collector listening on";
    for (const auto& e : server.endpoints()) line += " " + e;
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);

    server.run();
    const auto& c = handler.counters();
    const auto sc = server.counters();
    spdlog::info(
        "stopped: {} requests, {} batches committed, {} refused (4xx), {} failed (503); "
        "{} connections, {} refused at the cap, {} refused at the per-source cap, {} timeouts, "
        "{} failed TLS handshakes",
        c.requests.load(), c.ingest_batches.load(), c.ingest_rejected.load(),
        c.ingest_failed.load(), sc.connections_accepted, sc.connections_refused,
        sc.connections_refused_per_source, sc.timeouts, sc.tls_handshakes_failed);
    return 0;
  } catch (const EnvironmentError& e) {
    std::fprintf(stderr, "pathsentry-collector: error: %s\n", e.what());
    return kExitEnvironment;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "pathsentry-collector: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}

}  // namespace pathsentry::collector
