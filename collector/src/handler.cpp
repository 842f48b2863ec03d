#include "pathsentry/collector/handler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <exception>
#include <map>
#include <utility>

#include "json_out.h"
#include "pathsentry/collector/ingest.h"
#include "pathsentry/common/record_json.h"
#include "query.h"

namespace pathsentry::collector {
namespace {

constexpr std::int64_t kSec = 1'000'000'000;
constexpr std::uint64_t kMaxSeriesSteps = 100'000;
constexpr std::uint64_t kMaxEventLimit = 100'000;
constexpr std::uint64_t kMaxProbeLimit = 1'000'000;
constexpr std::size_t kDefaultProbeLimit = 200'000;
// /healthchecks reads at most this many of the newest events of each health-check kind.
constexpr std::size_t kHealthcheckScan = 10'000;

const char* kind_name(db::ErrorKind k) {
  switch (k) {
    case db::ErrorKind::Busy:
      return "database busy";
    case db::ErrorKind::Full:
      return "database full";
    case db::ErrorKind::ReadOnly:
      return "database read-only";
    case db::ErrorKind::Corrupt:
      return "database corrupt";
    case db::ErrorKind::TooNew:
      return "database too new";
    case db::ErrorKind::Io:
      return "database I/O error";
    case db::ErrorKind::Closed:
      return "database closed";
  }
  return "database error";
}

std::string store_reason(const db::StoreError& e) {
  return e.message.empty() ? std::string(kind_name(e.kind)) : e.message;
}

// 503 with Retry-After: agents keep the batch spooled and resend; page clients retry.
Response unavailable(const db::StoreError& e) {
  Response r = Response::error(503, store_reason(e));
  r.headers.emplace_back("Retry-After", "5");
  return r;
}

Response bad_request(std::string_view why) {
  return Response::error(400, why);
}

std::optional<Proto> proto_of(std::string_view s) {
  for (const Proto p : {Proto::Icmp, Proto::Stamp, Proto::Ttl}) {
    if (s == probe::to_string(p)) return p;
  }
  return std::nullopt;
}

bool known_event_kind(std::string_view s) {
  for (const EventType t : {EventType::Switchover, EventType::OutageBegin, EventType::OutageEnd,
                            EventType::AsymmetricBegin, EventType::AsymmetricEnd,
                            EventType::TapDown, EventType::TapUp, EventType::HealthcheckDegraded,
                            EventType::HealthcheckFailed, EventType::HealthcheckRecovered,
                            EventType::HealthcheckAbsent, EventType::HealthcheckBlocked}) {
    if (s == probe::to_string(t)) return true;
  }
  return false;
}

// One parameter's typed reading, with the parameter named in the error.
struct Params {
  QueryParams q;
  std::string error;

  const std::string* get(std::string_view name) const {
    const auto it = q.find(name);
    return it == q.end() ? nullptr : &it->second;
  }
  std::optional<std::int64_t> time(std::string_view name) {
    const auto* v = get(name);
    if (v == nullptr || !error.empty()) return std::nullopt;
    auto t = parse_time_ns(*v);
    if (!t) {
      error = "query parameter '" + std::string(name) + "' = '" + *v + "' " + t.error();
      return std::nullopt;
    }
    return *t;
  }
  std::optional<std::uint64_t> uint(std::string_view name, std::uint64_t lo, std::uint64_t hi) {
    const auto* v = get(name);
    if (v == nullptr || !error.empty()) return std::nullopt;
    auto n = parse_unsigned(*v, lo, hi);
    if (!n) {
      error = "query parameter '" + std::string(name) + "' = '" + *v + "' " + n.error();
      return std::nullopt;
    }
    return *n;
  }
  std::optional<std::string> text(std::string_view name) {
    const auto* v = get(name);
    if (v == nullptr) return std::nullopt;
    if (v->empty() && error.empty()) error = "query parameter '" + std::string(name) + "' is empty";
    return *v;
  }
  std::optional<Proto> proto() {
    const auto* v = get("proto");
    if (v == nullptr || !error.empty()) return std::nullopt;
    const auto p = proto_of(*v);
    if (!p) error = "query parameter 'proto' = '" + *v + "' is not one of icmp, stamp, ttl";
    return p;
  }
};

tl::expected<Params, Response> params_of(const Request& req,
                                         std::initializer_list<std::string_view> allowed) {
  auto q = parse_query(query_of(req.target), allowed);
  if (!q) return tl::unexpected(bad_request(q.error()));
  return Params{std::move(*q), {}};
}

// A record_json line ({"type":"X",…}\n) with its "type" replaced by `head` keys.
std::string respliced(std::string line, std::string_view type, const std::string& head) {
  const std::string prefix = "{\"type\":\"" + std::string(type) + "\"";
  if (!line.empty() && line.back() == '\n') line.pop_back();
  if (line.compare(0, prefix.size(), prefix) != 0) return line;  // cannot happen
  std::string rest = line.substr(prefix.size());                 // ",…}" or "}"
  std::string out = "{" + head;
  if (rest.size() > 1) {
    out += rest;
  } else {
    out += "}";
  }
  return out;
}

std::string head_keys(const std::string& agent, const std::string& run) {
  std::string h;
  JsonOut j(h);
  // Written as keys of an object the caller opens: start a throwaway object to get commas.
  j.begin_object().kv("agent", agent).kv("run", run).end_object();
  return h.substr(1, h.size() - 2);
}

std::string probe_json(const db::ProbeRow& p) {
  std::string line;
  probe::append_json(p.record, line);
  return respliced(std::move(line), "probe", head_keys(p.agent, p.run));
}

void write_dir(JsonOut& j, const std::optional<DirState>& d) {
  if (!d) {
    j.null();
    return;
  }
  j.begin_object()
      .kv("path", d->path)
      .key("since_ns")
      .opt(d->since_ns)
      .kv_unum("sent", d->sent)
      .kv_unum("received", d->received)
      .kv_unum("lost", d->lost())
      .kv_unum("lost_forward", d->lost_forward)
      .kv_unum("lost_reverse", d->lost_reverse)
      .kv_unum("lost_undetermined", d->lost_undetermined)
      .key("rtt_p50_ns")
      .opt(d->rtt_p50_ns)
      .key("rtt_mean_ns")
      .opt(d->rtt_mean_ns)
      .key("jitter_ns")
      .opt(d->jitter_ns)
      .end_object();
}

// A line's health-check state from its latest health-check event (docs/collector.md).
const char* healthcheck_state(EventType t) {
  switch (t) {
    case EventType::HealthcheckDegraded:
      return "degraded";
    case EventType::HealthcheckFailed:
      return "failed";
    case EventType::HealthcheckBlocked:
      return "blocked";
    case EventType::HealthcheckAbsent:
      return "absent";
    case EventType::HealthcheckRecovered:
      return "ok";
    default:
      break;
  }
  return "unknown";
}

void write_healthcheck_line(JsonOut& j, const db::EventRow& row) {
  const PathEvent& e = row.event;
  j.begin_object()
      .kv("agent", row.agent)
      .kv("tap", e.tap)
      .kv("path", e.path)
      .kv("target", e.target)
      .kv("state", healthcheck_state(e.type))
      .kv("prober", e.prober)
      .kv_unum("unanswered", e.unanswered)
      .kv_unum("fall", e.fall)
      .kv_num("interval_ns", e.interval_ns)
      .key("eta_ns");
  // The eta counts from the event's time: the cloud is expected to move the return path at
  // ts_ns + eta_ns (degraded, blocked), or moves it now (failed).
  const bool counting =
      e.type == EventType::HealthcheckDegraded || e.type == EventType::HealthcheckBlocked;
  if (counting) {
    j.num(e.eta_ns).kv_num("eta_from_ns", e.ts_ns).kv_num("move_at_ns", e.ts_ns + e.eta_ns);
  } else if (e.type == EventType::HealthcheckFailed) {
    j.num(0).kv_num("eta_from_ns", e.ts_ns).kv_num("move_at_ns", e.ts_ns);
  } else {
    j.null().key("eta_from_ns").null().key("move_at_ns").null();
  }
  j.kv_num("duration_ns", e.duration_ns)
      .kv("reason", e.reason)
      .kv("event", probe::to_string(e.type))
      .kv_num("id", row.id)
      .kv("run", row.run)
      .kv_unum("event_id", e.event_id)
      .kv_num("ts_ns", e.ts_ns)
      .kv_num("detected_ns", e.detected_ns)
      .end_object();
}

}  // namespace

Response Response::error(unsigned status, std::string_view message) {
  Response r;
  r.status = status;
  JsonOut j(r.body);
  j.begin_object().kv("error", message).end_object();
  return r;
}

Response Response::json(std::string body) {
  Response r;
  r.body = std::move(body);
  return r;
}

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::string_view query_of(std::string_view target) {
  const auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
}

std::string dir_json(const DirState& d) {
  std::string s;
  JsonOut j(s);
  write_dir(j, d);
  return s;
}

std::string state_message(const TargetState& s) {
  std::string data;
  JsonOut j(data);
  j.begin_object()
      .kv("agent", s.agent)
      .kv("target", s.target)
      .kv("proto", probe::to_string(s.proto))
      .kv_num("second_ns", s.second_ns)
      .key("forward");
  write_dir(j, s.forward);
  j.key("reverse");
  write_dir(j, s.reverse);
  j.end_object();
  return "event: state\ndata: " + data + "\n\n";
}

std::string event_json(const db::EventRow& e) {
  std::string line;
  probe::append_json(e.event, line);
  std::string head;
  JsonOut j(head);
  j.begin_object().kv_num("id", e.id).kv("agent", e.agent).kv("run", e.run).end_object();
  return respliced(std::move(line), "event", head.substr(1, head.size() - 2));
}

std::string event_message(const db::EventRow& e) {
  return "id: " + std::to_string(e.id) + "\nevent: event\ndata: " + event_json(e) + "\n\n";
}

const std::string& Handler::keepalive_message() {
  static const std::string m = ": keepalive\n\n";
  return m;
}

Handler::Handler(db::Store& store, const Clock& clock, HandlerConfig config)
    : store_(store),
      clock_(clock),
      config_(std::move(config)),
      hub_(config_.stream_queue),
      throttle_(config_.auth_throttle) {
  add_route("POST", "/api/v1/ingest", [this](const Request& r) { return ingest(r); });
  add_route("GET", "/api/v1/agents", [this](const Request& r) { return agents(r); });
  add_route("GET", "/api/v1/targets", [this](const Request& r) { return targets(r); });
  add_route("GET", "/api/v1/events", [this](const Request& r) { return events(r); });
  add_route("GET", "/api/v1/healthchecks", [this](const Request& r) { return healthchecks(r); });
  add_route("GET", "/api/v1/series", [this](const Request& r) { return series(r); });
  add_route("GET", "/api/v1/probes", [this](const Request& r) { return probes(r); });
  add_route("GET", "/api/v1/stream", [this](const Request& r) { return stream(r); });
  add_route("GET", "/healthz", [this](const Request& r) { return healthz(r); });
}

void Handler::add_route(std::string method, std::string path, RouteFn fn, bool prefix) {
  routes_.push_back({std::move(method), std::move(path), prefix, std::move(fn)});
}

Response Handler::handle(const Request& request) {
  ++counters_.requests;
  try {
    return route(request);
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", request.method, path_of(request.target), e.what());
    return Response::error(500, std::string("internal error: ") + e.what());
  }
}

Response Handler::route(const Request& request) {
  const std::string_view path = path_of(request.target);
  // Exact routes first, then the longest prefix.
  const Route* best = nullptr;
  std::string allow;
  auto consider = [&](bool prefix) {
    std::size_t best_len = 0;
    for (const Route& r : routes_) {
      if (r.prefix != prefix) continue;
      const bool match = prefix ? path.starts_with(r.path) : path == r.path;
      if (!match || r.path.size() < best_len) continue;
      if (r.path.size() > best_len) {
        best_len = r.path.size();
        best = nullptr;
        allow.clear();
      }
      if (r.method == request.method) best = &r;
      if (!allow.empty()) allow += ", ";
      allow += r.method;
    }
  };
  consider(false);
  if (best == nullptr && allow.empty()) consider(true);
  if (best != nullptr) return best->fn(request);
  if (allow.empty()) return Response::error(404, "no such path: " + std::string(path));
  Response r = Response::error(405, "method " + request.method + " not allowed on " +
                                        std::string(path) + " (allowed: " + allow + ")");
  r.headers.emplace_back("Allow", allow);
  return r;
}

void Handler::note_store_result(const db::StoreError* error) {
  const std::lock_guard lock(health_mutex_);
  last_store_error_ = error == nullptr ? std::string() : store_reason(*error);
}

std::string_view failure_reason(db::ErrorKind kind) {
  switch (kind) {
    case db::ErrorKind::Busy:
      return "store_busy";
    case db::ErrorKind::Full:
      return "store_full";
    case db::ErrorKind::ReadOnly:
      return "store_readonly";
    case db::ErrorKind::Corrupt:
      return "store_corrupt";
    case db::ErrorKind::TooNew:
    case db::ErrorKind::Io:
    case db::ErrorKind::Closed:
      break;
  }
  return "store_io";
}

Response Handler::ingest(const Request& request) {
  auto reject = [this](unsigned status, std::string_view why) {
    ++counters_.ingest_rejected;
    if (config_.on_ingest_failure) {
      config_.on_ingest_failure(status == 401   ? "unauthorized"
                                : status == 429 ? "throttled"
                                : status == 413 ? "too_large"
                                                : "bad_request");
    }
    return Response::error(status, why);
  };
  // A source that presented too many wrong tokens is refused before its token is looked at:
  // guessing goes no faster than the limit.
  const std::int64_t now = clock_.monotonic_ns();
  auto retry_after = [](std::int64_t ns) {
    return std::to_string(std::max<std::int64_t>(1, (ns + 999'999'999) / 1'000'000'000));
  };
  if (const auto v = throttle_.check(request.source, now); v.refused) {
    ++counters_.ingest_throttled;
    Response r = reject(429, "too many wrong bearer tokens from " + request.source + " (" +
                                 std::to_string(v.failures) + " within " +
                                 std::to_string(config_.auth_throttle.window_ns / 1'000'000'000) +
                                 " s): refused for " + retry_after(v.retry_after_ns) + " s");
    r.headers.emplace_back("Retry-After", retry_after(v.retry_after_ns));
    return r;
  }
  // The token first: nothing about the body is told to a client without one.
  constexpr std::string_view kBearer = "Bearer ";
  bool authorized = false;
  const std::string_view auth = request.authorization;
  if (auth.size() > kBearer.size() &&
      std::equal(kBearer.begin(), kBearer.end(), auth.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) ==
               std::tolower(static_cast<unsigned char>(b));
      })) {
    const std::string_view presented = auth.substr(kBearer.size());
    // Every configured token is compared, whatever matched: no early exit.
    for (const auto& t : config_.tokens)
      authorized = constant_time_equal(presented, t) || authorized;
  }
  if (!authorized) {
    if (const auto v = throttle_.failed(request.source, now);
        v.refused && v.failures == config_.auth_throttle.limit) {
      spdlog::warn(
          "ingest from {}: {} wrong or missing bearer tokens within {} s: its ingests are refused "
          "(429) for {} s",
          request.source, v.failures, config_.auth_throttle.window_ns / 1'000'000'000,
          retry_after(v.retry_after_ns));
    }
    Response r = reject(401, "missing or wrong bearer token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  throttle_.succeeded(request.source);
  if (request.body.size() > config_.max_body_bytes) {
    return reject(413, "body of " + std::to_string(request.body.size()) +
                           " bytes is over max_body_bytes " +
                           std::to_string(config_.max_body_bytes));
  }
  if (auto q = parse_query(query_of(request.target), {}); !q) return reject(400, q.error());

  auto parsed = parse_ingest_body(request.body);
  if (!parsed) return reject(400, parsed.error());
  db::IngestBatch batch = std::move(*parsed);
  const std::string agent = batch.header.agent;
  std::vector<Rollup> rollups = batch.rollups;
  const bool has_events = !batch.events.empty();

  // Waits for the writer thread's commit: this runs on a worker thread, not the socket's.
  auto result = store_.ingest(std::move(batch)).get();
  if (!result) {
    ++counters_.ingest_failed;
    if (config_.on_ingest_failure) config_.on_ingest_failure(failure_reason(result.error().kind));
    note_store_result(&result.error());
    spdlog::warn("ingest from {} refused (503, the agent keeps it spooled): {}", agent,
                 store_reason(result.error()));
    return unavailable(result.error());
  }
  note_store_result(nullptr);
  const db::IngestCounts& c = *result;
  ++counters_.ingest_batches;
  counters_.probes += c.probes;
  counters_.rollups += c.rollups;
  counters_.events += c.events;
  counters_.duplicates += c.duplicate_probes + c.duplicate_rollups + c.duplicate_events;
  if (config_.on_ingest) config_.on_ingest(agent, c);

  if (has_events && c.events > 0) publish_new_events();
  for (const TargetState& s : live_.apply(agent, rollups)) hub_.publish({0, state_message(s)});

  std::string body;
  JsonOut j(body);
  j.begin_object()
      .key("accepted")
      .begin_object()
      .kv_unum("probes", c.probes)
      .kv_unum("rollups", c.rollups)
      .kv_unum("events", c.events)
      .end_object()
      .key("duplicates")
      .begin_object()
      .kv_unum("probes", c.duplicate_probes)
      .kv_unum("rollups", c.duplicate_rollups)
      .kv_unum("events", c.duplicate_events)
      .end_object()
      .end_object();
  return Response::json(std::move(body));
}

void Handler::publish_new_events() {
  const std::lock_guard lock(publish_mutex_);
  constexpr std::size_t kPage = 1000;
  for (;;) {
    auto rows = store_.events_after(last_published_id_, kPage);
    if (!rows) {
      spdlog::warn("live stream: cannot read new events: {}", store_reason(rows.error()));
      return;
    }
    for (const auto& e : *rows) {
      hub_.publish({e.id, event_message(e)});
      last_published_id_ = std::max(last_published_id_, e.id);
    }
    if (rows->size() < kPage) return;
  }
}

tl::expected<void, db::StoreError> Handler::bootstrap(std::size_t max_targets) {
  db::EventQuery newest;
  newest.limit = 1;
  auto ev = store_.events(newest);
  if (!ev) return tl::unexpected(ev.error());
  {
    const std::lock_guard lock(publish_mutex_);
    last_published_id_ = ev->empty() ? 0 : ev->front().id;
  }
  auto targets = store_.targets();
  if (!targets) return tl::unexpected(targets.error());
  std::size_t n = 0;
  for (const auto& t : *targets) {
    if (++n > max_targets) break;
    db::SeriesQuery q;
    q.target = t.target;
    q.proto = t.proto;
    q.agent = t.agent;
    q.from_ns = t.last_ns - t.last_ns % kSec;
    q.to_ns = q.from_ns + kSec;
    q.step_ns = kSec;
    auto points = store_.series(q);
    if (!points) return tl::unexpected(points.error());
    std::vector<Rollup> rows;
    for (const auto& p : *points) {
      Rollup r;
      r.target = t.target;
      r.proto = p.proto;
      r.session_id = t.session_id;
      r.second_ns = p.t_ns;
      r.direction = p.direction;
      r.path = p.path;
      r.sent = p.sent;
      r.received = p.received;
      r.lost_forward = p.lost_forward;
      r.lost_reverse = p.lost_reverse;
      r.lost_undetermined = p.lost_undetermined;
      r.rtt_min_ns = p.rtt_min_ns;
      r.rtt_mean_ns = p.rtt_mean_ns;
      r.rtt_p50_ns = p.rtt_p50_ns;
      r.rtt_p99_ns = p.rtt_p99_ns;
      r.rtt_max_ns = p.rtt_max_ns;
      r.jitter_ns = p.jitter_ns;
      rows.push_back(std::move(r));
    }
    (void)live_.apply(t.agent, rows);
  }
  return {};
}

Response Handler::agents(const Request& request) {
  auto p = params_of(request, {});
  if (!p) return p.error();
  auto rows = store_.agents();
  if (!rows) return unavailable(rows.error());
  std::string body;
  JsonOut j(body);
  j.begin_object().key("agents").begin_array();
  for (const auto& a : *rows) {
    j.begin_object()
        .kv("name", a.name)
        .kv("version", a.version)
        .kv("last_run", a.last_run)
        .kv_num("first_seen_ns", a.first_seen_ns)
        .kv_num("last_seen_ns", a.last_seen_ns)
        .kv_unum("batches", a.batches)
        .end_object();
  }
  j.end_array().end_object();
  return Response::json(std::move(body));
}

Response Handler::targets(const Request& request) {
  auto p = params_of(request, {});
  if (!p) return p.error();
  auto rows = store_.targets();
  if (!rows) return unavailable(rows.error());
  std::string body;
  JsonOut j(body);
  j.begin_object().key("targets").begin_array();
  for (const auto& t : *rows) {
    j.begin_object()
        .kv("agent", t.agent)
        .kv("target", t.target)
        .kv("proto", probe::to_string(t.proto))
        .kv_unum("session_id", t.session_id)
        .kv("run", t.run)
        .kv_num("first_ns", t.first_ns)
        .kv_num("last_ns", t.last_ns)
        .key("state");
    if (const auto s = live_.get(t.agent, t.target, t.proto)) {
      j.begin_object().kv_num("second_ns", s->second_ns).key("forward");
      write_dir(j, s->forward);
      j.key("reverse");
      write_dir(j, s->reverse);
      j.end_object();
    } else {
      j.null();
    }
    j.end_object();
  }
  j.end_array().end_object();
  return Response::json(std::move(body));
}

Response Handler::events(const Request& request) {
  auto p = params_of(request, {"since", "until", "target", "kind", "agent", "limit"});
  if (!p) return p.error();
  db::EventQuery q;
  q.since_ns = p->time("since");
  q.until_ns = p->time("until");
  q.target = p->text("target");
  q.kind = p->text("kind");
  q.agent = p->text("agent");
  if (const auto n = p->uint("limit", 1, kMaxEventLimit)) q.limit = *n;
  if (!p->error.empty()) return bad_request(p->error);
  if (q.kind && !known_event_kind(*q.kind)) {
    return bad_request("query parameter 'kind' = '" + *q.kind +
                       "' is not an event kind (switchover, outage_begin, outage_end, "
                       "asymmetric_begin, asymmetric_end, tap_down, tap_up, healthcheck_degraded, "
                       "healthcheck_failed, healthcheck_recovered, healthcheck_absent, "
                       "healthcheck_blocked)");
  }
  auto rows = store_.events(q);
  if (!rows) return unavailable(rows.error());
  std::string body = "{\"events\":[";
  for (std::size_t i = 0; i < rows->size(); ++i) {
    if (i) body += ',';
    body += event_json((*rows)[i]);
  }
  body += "]}";
  return Response::json(std::move(body));
}

Response Handler::healthchecks(const Request& request) {
  auto p = params_of(request, {"agent"});
  if (!p) return p.error();
  const auto agent = p->text("agent");
  if (!p->error.empty()) return bad_request(p->error);
  // The latest health-check event of each (agent, tap) decides that line's state. The store
  // filters one kind at a time: the newest kHealthcheckScan of each kind, merged.
  std::map<std::pair<std::string, std::string>, db::EventRow> latest;
  bool truncated = false;
  for (const EventType t : {EventType::HealthcheckDegraded, EventType::HealthcheckFailed,
                            EventType::HealthcheckRecovered, EventType::HealthcheckAbsent,
                            EventType::HealthcheckBlocked}) {
    db::EventQuery q;
    q.kind = std::string(probe::to_string(t));
    q.agent = agent;
    q.limit = kHealthcheckScan;
    auto rows = store_.events(q);
    if (!rows) return unavailable(rows.error());
    truncated = truncated || rows->size() >= kHealthcheckScan;
    for (auto& r : *rows) {
      auto [it, fresh] = latest.try_emplace({r.agent, r.event.tap}, r);
      const db::EventRow& have = it->second;
      if (!fresh && std::pair(r.event.ts_ns, r.id) > std::pair(have.event.ts_ns, have.id)) {
        it->second = std::move(r);
      }
    }
  }
  std::string body;
  JsonOut j(body);
  j.begin_object().key("healthchecks").begin_array();
  for (const auto& [key, row] : latest) write_healthcheck_line(j, row);
  j.end_array().key("truncated").boolean(truncated).end_object();
  return Response::json(std::move(body));
}

Response Handler::series(const Request& request) {
  auto p = params_of(request, {"target", "proto", "agent", "from", "to", "step"});
  if (!p) return p.error();
  db::SeriesQuery q;
  const auto target = p->text("target");
  q.proto = p->proto();
  q.agent = p->text("agent");
  const auto from = p->time("from");
  const auto to = p->time("to");
  const auto step = p->uint("step", 1, 86'400 * 366);
  if (!p->error.empty()) return bad_request(p->error);
  if (!target) return bad_request("query parameter 'target' is required");
  q.target = *target;
  q.to_ns = to.value_or(clock_.system_ns());
  q.from_ns = from.value_or(q.to_ns - 3600 * kSec);
  q.step_ns = static_cast<std::int64_t>(step.value_or(1)) * kSec;
  if (q.from_ns >= q.to_ns) return bad_request("'from' must be before 'to'");
  const auto steps = static_cast<std::uint64_t>((q.to_ns - q.from_ns) / q.step_ns);
  if (steps > kMaxSeriesSteps) {
    return bad_request("from..to holds " + std::to_string(steps) + " steps, over " +
                       std::to_string(kMaxSeriesSteps) + ": give a larger 'step'");
  }
  auto rows = store_.series(q);
  if (!rows) return unavailable(rows.error());
  std::string body;
  JsonOut j(body);
  j.begin_object().kv_num("step_ns", q.step_ns).key("points").begin_array();
  for (const auto& pt : *rows) {
    j.begin_object()
        .kv("agent", pt.agent)
        .kv("proto", probe::to_string(pt.proto))
        .kv("direction", probe::to_string(pt.direction))
        .kv("path", pt.path)
        .kv_num("t_ns", pt.t_ns)
        .kv_unum("sent", pt.sent)
        .kv_unum("received", pt.received)
        .kv_unum("lost_forward", pt.lost_forward)
        .kv_unum("lost_reverse", pt.lost_reverse)
        .kv_unum("lost_undetermined", pt.lost_undetermined)
        .kv_num("rtt_min_ns", pt.rtt_min_ns)
        .kv_num("rtt_mean_ns", pt.rtt_mean_ns)
        .kv_num("rtt_p50_ns", pt.rtt_p50_ns)
        .kv_num("rtt_p99_ns", pt.rtt_p99_ns)
        .kv_num("rtt_max_ns", pt.rtt_max_ns)
        .kv_num("jitter_ns", pt.jitter_ns)
        .end_object();
  }
  j.end_array().end_object();
  return Response::json(std::move(body));
}

Response Handler::probes(const Request& request) {
  auto p = params_of(request, {"target", "proto", "agent", "from", "to", "limit", "format"});
  if (!p) return p.error();
  db::ProbeQuery q;
  const auto target = p->text("target");
  q.proto = p->proto();
  q.agent = p->text("agent");
  const auto from = p->time("from");
  const auto to = p->time("to");
  const auto limit = p->uint("limit", 1, kMaxProbeLimit);
  const auto format = p->text("format");
  if (!p->error.empty()) return bad_request(p->error);
  if (!target) return bad_request("query parameter 'target' is required");
  if (format && *format != "json" && *format != "columns") {
    return bad_request("query parameter 'format' = '" + *format + "' is not json or columns");
  }
  q.target = *target;
  q.to_ns = to.value_or(clock_.system_ns());
  q.from_ns = from.value_or(q.to_ns - 60 * kSec);
  if (q.from_ns >= q.to_ns) return bad_request("'from' must be before 'to'");
  const std::size_t want = limit.value_or(kDefaultProbeLimit);
  q.limit = want + 1;  // one more tells whether the answer is truncated
  auto rows = store_.probes(q);
  if (!rows) return unavailable(rows.error());
  const bool truncated = rows->size() > want;
  if (truncated) rows->resize(want);

  std::string body;
  if (format && *format == "columns") {
    JsonOut j(body);
    j.begin_object().key("columns").begin_object();
    auto column = [&](std::string_view name, auto&& write) {
      j.key(name).begin_array();
      for (const auto& r : *rows) write(r);
      j.end_array();
    };
    column("agent", [&](const db::ProbeRow& r) { j.str(r.agent); });
    column("proto", [&](const db::ProbeRow& r) { j.str(probe::to_string(r.record.proto)); });
    column("seq", [&](const db::ProbeRow& r) { j.unum(r.record.seq); });
    column("tx_ns", [&](const db::ProbeRow& r) { j.num(r.record.tx_ns); });
    column("rtt_ns", [&](const db::ProbeRow& r) {
      if (r.record.rx_ns) {
        j.num(r.record.rtt_ns);
      } else {
        j.null();
      }
    });
    column("fwd_path", [&](const db::ProbeRow& r) { j.str(r.record.fwd_path); });
    column("rev_path", [&](const db::ProbeRow& r) { j.str(r.record.rev_path); });
    column("loss", [&](const db::ProbeRow& r) {
      if (r.record.loss == LossDirection::None) {
        j.null();
      } else {
        j.str(probe::to_string(r.record.loss));
      }
    });
    j.end_object().key("truncated").boolean(truncated).end_object();
    return Response::json(std::move(body));
  }
  body = "{\"probes\":[";
  for (std::size_t i = 0; i < rows->size(); ++i) {
    if (i) body += ',';
    body += probe_json((*rows)[i]);
  }
  body += std::string("],\"truncated\":") + (truncated ? "true" : "false") + "}";
  return Response::json(std::move(body));
}

Response Handler::stream(const Request& request) {
  auto p = params_of(request, {});
  if (!p) return p.error();
  std::optional<std::int64_t> after;
  if (!request.last_event_id.empty()) {
    auto id = parse_unsigned(request.last_event_id, 0, INT64_MAX);
    if (!id) return bad_request("Last-Event-ID '" + request.last_event_id + "' " + id.error());
    after = static_cast<std::int64_t>(*id);
  }
  // Subscribe before reading the catch-up, so nothing committed in between is missed; what
  // both hold is skipped once (skip_events_through).
  Response r;
  r.content_type = "text/event-stream";
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.stream = hub_.subscribe();
  if (after) {
    auto rows = store_.events_after(*after, config_.stream_replay);
    if (!rows) return unavailable(rows.error());
    std::int64_t last = *after;
    for (const auto& e : *rows) {
      r.body += event_message(e);
      last = std::max(last, e.id);
    }
    r.stream->skip_events_through(last);
  }
  for (const TargetState& s : live_.all()) r.body += state_message(s);
  return r;
}

Response Handler::healthz(const Request& request) {
  auto p = params_of(request, {});
  if (!p) return p.error();
  std::string error;
  {
    const std::lock_guard lock(health_mutex_);
    error = last_store_error_;
  }
  std::string body;
  JsonOut j(body);
  if (!error.empty()) {
    j.begin_object().kv("status", "degraded").kv("error", error).end_object();
    Response r;
    r.status = 503;
    r.body = std::move(body);
    return r;
  }
  const db::StoreStats s = store_.stats();
  j.begin_object().kv("status", "ok").kv_num("schema_version", s.schema_version).end_object();
  return Response::json(std::move(body));
}

}  // namespace pathsentry::collector
