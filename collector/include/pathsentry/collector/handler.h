#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/collector/auth_throttle.h"
#include "pathsentry/collector/event_hub.h"
#include "pathsentry/collector/http.h"
#include "pathsentry/collector/live_state.h"
#include "pathsentry/common/clock.h"
#include "pathsentry/db/store.h"

namespace pathsentry::collector {

/// What the handler needs of the configuration.
struct HandlerConfig {
  std::vector<std::string> tokens;  ///< bearer tokens accepted by ingest (none = refuse all)
  std::size_t max_body_bytes = std::size_t{16} << 20;
  std::size_t stream_queue = 4096;    ///< messages an SSE subscriber may have pending
  std::size_t stream_replay = 10000;  ///< events replayed after a Last-Event-ID, at most
  /// Wrong bearer tokens a source address may present per window before its ingests are
  /// refused (429) for the rest of it (AuthThrottle; limit 0 = no limit).
  AuthThrottle::Options auth_throttle;
  /// Called after each committed ingest with the agent and what was stored (the /metrics
  /// families, metrics/collector_metrics.h). Optional; runs on the worker thread.
  std::function<void(const std::string& agent, const db::IngestCounts& counts)> on_ingest;
  /// Called for each refused or failed ingest with its reason: bad_request, unauthorized,
  /// throttled (too many wrong tokens from its address), too_large, or store_busy / store_full /
  /// store_readonly / store_corrupt / store_io.
  std::function<void(std::string_view reason)> on_ingest_failure;
};

/// The ingest-failure reason of a store error ("store_full", …).
[[nodiscard]] std::string_view failure_reason(db::ErrorKind kind);

/// Counters for logs and /metrics; all monotonic since start.
struct HandlerCounters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> ingest_batches{0};    ///< committed
  std::atomic<std::uint64_t> ingest_rejected{0};   ///< 4xx (bad body, token, size)
  std::atomic<std::uint64_t> ingest_throttled{0};  ///< of those, 429 (wrong tokens, AuthThrottle)
  std::atomic<std::uint64_t> ingest_failed{0};     ///< 503 (the store failed)
  std::atomic<std::uint64_t> probes{0}, rollups{0}, events{0};  ///< rows inserted
  std::atomic<std::uint64_t> duplicates{0};                     ///< rows already there
};

/// The collector's request handling, apart from sockets (as the reflector's `handle` is): a
/// function of (request, store, clock). Routes: the API of docs/collector.md, plus any added
/// with add_route() before serving (/metrics, the page). handle() is thread-safe and runs on
/// the server's worker threads: an ingest waits there for the store's writer to commit.
class Handler {
 public:
  Handler(db::Store& store, const Clock& clock, HandlerConfig config);

  /// Answers one request. Never throws (a route that throws answers 500).
  [[nodiscard]] Response handle(const Request& request);

  /// Adds a route for `method` at exactly `path`, or at every path starting with `path` when
  /// `prefix` (e.g. "/assets/"). Exact routes win over prefixes; the longest prefix wins.
  /// Not thread-safe: add routes before the server starts.
  void add_route(std::string method, std::string path, RouteFn fn, bool prefix = false);

  /// Seeds the live state from the store's latest second of each target (one series query
  /// per target, up to `max_targets`), and the stream's event position from its newest
  /// event. Returns the store's error if it cannot read (the collector starts anyway).
  tl::expected<void, db::StoreError> bootstrap(std::size_t max_targets = 10000);

  /// The SSE keepalive comment, sent by the server every 15 s on each stream.
  [[nodiscard]] static const std::string& keepalive_message();

  [[nodiscard]] EventHub& hub() { return hub_; }
  [[nodiscard]] LiveState& live() { return live_; }
  [[nodiscard]] const HandlerCounters& counters() const { return counters_; }
  [[nodiscard]] db::Store& store() { return store_; }
  [[nodiscard]] const AuthThrottle& auth_throttle() const { return throttle_; }

 private:
  struct Route {
    std::string method;
    std::string path;
    bool prefix = false;
    RouteFn fn;
  };

  Response route(const Request& request);
  Response ingest(const Request& request);
  Response agents(const Request& request);
  Response targets(const Request& request);
  Response events(const Request& request);
  Response healthchecks(const Request& request);
  Response series(const Request& request);
  Response probes(const Request& request);
  Response stream(const Request& request);
  Response healthz(const Request& request);
  /// Publishes the events committed since the last call, in id order.
  void publish_new_events();
  void note_store_result(const db::StoreError* error);

  db::Store& store_;
  const Clock& clock_;
  HandlerConfig config_;
  std::vector<Route> routes_;
  EventHub hub_;
  LiveState live_;
  HandlerCounters counters_;
  AuthThrottle throttle_;

  std::mutex publish_mutex_;
  std::int64_t last_published_id_ = 0;

  std::mutex health_mutex_;
  std::string last_store_error_;  ///< the last failed ingest's reason, "" after a success
};

/// The JSON of a DIR object / a TargetState's "state" fields, and of SSE messages (exposed for
/// tests and the page's fixtures).
[[nodiscard]] std::string dir_json(const DirState& d);
[[nodiscard]] std::string state_message(const TargetState& s);
[[nodiscard]] std::string event_message(const db::EventRow& e);
[[nodiscard]] std::string event_json(const db::EventRow& e);

}  // namespace pathsentry::collector
