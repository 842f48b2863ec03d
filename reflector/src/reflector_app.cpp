// pathsentry-reflector's program: flags and config, logging, signals, privileges, the
// readiness line and the final counters around ReflectorServer.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <string_view>
#include <vector>

#include "pathsentry/common/config_error.h"
#include "pathsentry/common/privileges.h"
#include "pathsentry/common/thread_runner.h"
#include "pathsentry/metrics/metrics.h"
#include "pathsentry/reflector/reflector.h"
#include "reflector_metrics.h"

namespace pathsentry::probe {
namespace {

constexpr const char* kVersion = "0.1.0";

std::atomic<ReflectorServer*> g_server{nullptr};

extern "C" void on_stop_signal(int /*sig*/) {
  if (ReflectorServer* s = g_server.load()) s->stop();
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll() returns EINTR and the loop sees the wake fd
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("reflector");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::warn);
}

}  // namespace

int reflector_main(int argc, char** argv) {
  ReflectorConfig config;
  ReflectorCommandLine cli;
  try {
    std::vector<std::string_view> args(argv + 1, argv + argc);
    cli = parse_reflector_args(args);
    if (cli.help) {
      std::fputs(reflector_usage().c_str(), stdout);
      return 0;
    }
    if (cli.version) {
      std::printf("pathsentry-reflector %s\n", kVersion);
      return 0;
    }
    config = resolve_reflector_config(cli);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "pathsentry-reflector: error: %s\n", e.what());
    return 2;
  }
  if (cli.check_config) {
    std::printf("config OK: %s\n", describe(config).c_str());
    return 0;
  }

  setup_logging(config.log_level);
  try {
    SystemClock clock;
    ReflectorServer server(config, clock);
    g_server.store(&server);
    install_signal_handlers();
    // Once the sockets are bound nothing else needs a privilege (port 862 needs
    // CAP_NET_BIND_SERVICE only to bind): drop every capability and forbid regaining any
    // (with rt_priority, RLIMIT_RTPRIO is raised first, or CAP_SYS_NICE kept if held).
    if (const std::string notes = probe::io::drop_privileges(config.rt_priority); !notes.empty()) {
      spdlog::warn("dropping privileges: {}", notes);
    }
    for (const auto& p : config.allow) {
      if (broad_prefix(p)) {
        spdlog::warn(
            "allow {} is a broad prefix (allow_broad is set): spoofed requests from "
            "anywhere in it get answers",
            p.to_string());
      }
    }
    spdlog::info("config: {}", describe(config));

    // /metrics, opened with no privilege left; the counters are copied when scraped. Declared
    // after `server`, so it stops serving before the server goes.
    auto registry = std::make_shared<prometheus::Registry>();
    ReflectorMetrics counters_metrics(*registry);
    auto served = metrics::open_endpoint(
        config.metrics_listen, config.metrics_listen_configured,
        metrics::refreshing(
            registry,
            [&] { counters_metrics.update(server.counters(), server.active_sessions()); }),
        [](const std::string& m) { spdlog::warn("{}", m); });
    if (!served) {
      throw EnvironmentError("", "metrics_listen", config.metrics_listen, served.error());
    }
    const std::unique_ptr<metrics::MetricsServer> metrics_server = std::move(*served);
    if (metrics_server) spdlog::info("metrics on {}", metrics_server->url());

    std::string line = "reflector listening on";
    for (const auto& e : server.endpoints()) line += " " + e;
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);

    // SCHED_FIFO for this thread only, once the metrics threads exist (a thread inherits its
    // creator's policy): they serve scrapes, not probes.
    if (config.rt_priority > 0) {
      if (const std::string why = set_thread_fifo(config.rt_priority); why.empty()) {
        spdlog::info("answering thread at SCHED_FIFO priority {}", config.rt_priority);
      } else {
        spdlog::warn(
            "cannot run the answering thread at SCHED_FIFO priority {} ({}): running "
            "with the default policy",
            config.rt_priority, why);
      }
    }
    server.run();
    g_server.store(nullptr);
    const auto c = server.counters();
    spdlog::info("stopping: {}", c.to_string());
    std::printf("reflector counters: %s\n", c.to_string().c_str());
    std::fflush(stdout);
    return 0;
  } catch (const EnvironmentError& e) {
    g_server.store(nullptr);
    std::fprintf(stderr, "pathsentry-reflector: error: %s\n", e.what());
    return kExitEnvironment;
  } catch (const ConfigError& e) {
    g_server.store(nullptr);
    std::fprintf(stderr, "pathsentry-reflector: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    g_server.store(nullptr);
    spdlog::critical("{}", e.what());
    return 1;
  }
}

}  // namespace pathsentry::probe
