// The collector's Handler without sockets, against the in-memory FakeStore: each endpoint's
// answer field by field, each bad request of issue 10 item 5, store failures, the live stream.
#include "pathsentry/collector/handler.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "collector/fake_store.h"
#include "collector/ingest_bodies.h"

namespace pathsentry::collector {
namespace {

using nlohmann::json;
using test::Body;
using test::FakeStore;
using test::kT0;
using test::kToken;

constexpr std::int64_t kSec = 1'000'000'000;

struct Fixture {
  FakeStore store;
  ManualClock clock{1'000'000'000, kT0 + 10 * kSec};
  Handler handler{store, clock, config()};

  static HandlerConfig config() {
    HandlerConfig c;
    c.tokens = {"other-token-abcdefgh", kToken};
    c.max_body_bytes = 64 * 1024;
    return c;
  }

  Response post(const std::string& body, const std::string& auth = std::string("Bearer ") + kToken,
                const std::string& target = "/api/v1/ingest") {
    Request r;
    r.method = "POST";
    r.target = target;
    r.authorization = auth;
    r.content_type = "application/x-ndjson";
    r.body = body;
    return handler.handle(r);
  }
  Response get(const std::string& target, const std::string& last_event_id = "") {
    Request r;
    r.method = "GET";
    r.target = target;
    r.last_event_id = last_event_id;
    return handler.handle(r);
  }
};

json body_of(const Response& r) {
  return json::parse(r.body);
}

// A body with 2 probes, 2 rollups (one second, both directions) and one event.
Body good_body() {
  Body b;
  b.add(test::probe_at(1, kT0 + 1000)).add(test::probe_at(2, kT0 + 2000));
  b.add(test::rollup(kT0, Direction::Forward, "express-connect", 2, 2));
  b.add(test::rollup(kT0, Direction::Reverse, "express-connect", 2, 2));
  b.add(test::switchover_event(1, kT0 + 3000));
  return b;
}

void check_counts(const json& j, int p, int r, int e, int dp, int dr, int de) {
  CHECK(j.at("accepted").at("probes") == p);
  CHECK(j.at("accepted").at("rollups") == r);
  CHECK(j.at("accepted").at("events") == e);
  CHECK(j.at("duplicates").at("probes") == dp);
  CHECK(j.at("duplicates").at("rollups") == dr);
  CHECK(j.at("duplicates").at("events") == de);
}

}  // namespace

TEST_CASE("ingest commits a good batch and counts a resent one as duplicates", "[unit]") {
  Fixture f;
  const auto first = f.post(good_body().text);
  REQUIRE(first.status == 200);
  CHECK(first.content_type == "application/json");
  check_counts(body_of(first), 2, 2, 1, 0, 0, 0);
  CHECK(f.store.probe_rows() == 2);
  CHECK(f.store.event_rows() == 1);

  // The same bytes again (an agent resending after a lost answer): nothing doubles.
  const auto again = f.post(good_body().text);
  REQUIRE(again.status == 200);
  check_counts(body_of(again), 0, 0, 0, 2, 2, 1);
  CHECK(f.store.probe_rows() == 2);
  CHECK(f.store.rollup_rows() == 2);
  CHECK(f.store.event_rows() == 1);
  CHECK(f.handler.counters().ingest_batches == 2);
  CHECK(f.handler.counters().duplicates == 5);
}

TEST_CASE("ingest refuses bad requests with a reason and writes nothing", "[unit]") {
  Fixture f;
  struct Case {
    const char* name;
    std::string body;
    std::string auth;
    std::string target;
    unsigned status;
    std::string error;
  };
  const std::string bearer = std::string("Bearer ") + kToken;
  const std::string probe_line = [] {
    std::string s;
    probe::append_json(test::probe_at(1, kT0), s);
    return s;
  }();
  std::string wrong_type = probe_line;
  wrong_type.replace(wrong_type.find("\"seq\":1"), 7, "\"seq\":\"one\"");
  std::string other_agent;
  probe::append_json(test::probe_at(3, kT0), other_agent, "dc2");
  PathEvent no_id = test::switchover_event(0, kT0);
  const std::vector<Case> cases = {
      {"no token", good_body().text, "", "/api/v1/ingest", 401, "missing or wrong bearer token"},
      {"wrong token", good_body().text, "Bearer nope", "/api/v1/ingest", 401,
       "missing or wrong bearer token"},
      {"a token's prefix", good_body().text,
       std::string("Bearer ") + std::string(kToken).substr(0, 5), "/api/v1/ingest", 401,
       "missing or wrong bearer token"},
      {"not bearer", good_body().text, std::string("Basic ") + kToken, "/api/v1/ingest", 401,
       "missing or wrong bearer token"},
      {"bad JSON", Body().line("{\"type\":\"probe\",").text, bearer, "/api/v1/ingest", 400,
       "line 2: not valid JSON"},
      {"wrong type", Body().line(wrong_type.substr(0, wrong_type.size() - 1)).text, bearer,
       "/api/v1/ingest", 400, "line 2: field 'seq'"},
      {"unknown type", Body().line("{\"type\":\"bogus\"}").text, bearer, "/api/v1/ingest", 400,
       "line 2: unknown type 'bogus'"},
      {"no batch line", probe_line, bearer, "/api/v1/ingest", 400,
       "line 1: the first line must be the \"batch\" header"},
      {"empty body", "", bearer, "/api/v1/ingest", 400, "empty body"},
      {"second batch line", Body().add(test::FakeStore::header()).text, bearer, "/api/v1/ingest",
       400, "line 2: a second \"batch\" header"},
      {"agent mismatch",
       Body().add(test::probe_at(1, kT0)).line(other_agent.substr(0, other_agent.size() - 1)).text,
       bearer, "/api/v1/ingest", 400, "line 3: agent 'dc2' differs from the batch header's 'dc1'"},
      {"event without id", Body().add(no_id).text, bearer, "/api/v1/ingest", 400,
       "line 2: an event without \"event_id\""},
      {"empty line", Body().line("").add(test::probe_at(1, kT0)).text, bearer, "/api/v1/ingest",
       400, "line 2: empty line"},
      {"unknown query parameter", good_body().text, bearer, "/api/v1/ingest?dry=1", 400,
       "unknown query parameter 'dry'"},
      {"oversized body", std::string(64 * 1024 + 1, 'x'), bearer, "/api/v1/ingest", 413,
       "over max_body_bytes 65536"},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      const auto r = f.post(c.body, c.auth, c.target);
      CHECK(r.status == c.status);
      const auto j = body_of(r);
      INFO(j.dump());
      CHECK(j.at("error").get<std::string>().find(c.error) != std::string::npos);
      if (c.status == 401) CHECK(r.headers == decltype(r.headers){{"WWW-Authenticate", "Bearer"}});
      CHECK(f.store.ingest_calls() == 0);
      CHECK(f.store.probe_rows() == 0);
      CHECK(f.handler.counters().ingest_rejected == 1);
    }
  }
}

TEST_CASE("ingest refuses an address after too many wrong tokens, with Retry-After", "[unit]") {
  FakeStore store;
  ManualClock clock{1'000'000'000, kT0 + 10 * kSec};
  HandlerConfig c;
  c.tokens = {kToken};
  c.auth_throttle.limit = 5;
  c.auth_throttle.window_ns = 60 * kSec;
  std::vector<std::string> reasons;
  c.on_ingest_failure = [&](std::string_view r) { reasons.emplace_back(r); };
  Handler handler{store, clock, c};
  auto post = [&](const std::string& source, const std::string& token) {
    Request r;
    r.method = "POST";
    r.target = "/api/v1/ingest";
    r.authorization = "Bearer " + token;
    r.content_type = "application/x-ndjson";
    r.body = good_body().text;
    r.source = source;
    return handler.handle(r);
  };
  // A right token between wrong ones clears the count.
  for (int i = 0; i < 4; ++i) CHECK(post("10.0.0.9", "guess").status == 401);
  CHECK(post("10.0.0.9", kToken).status == 200);
  for (int i = 0; i < 5; ++i) CHECK(post("10.0.0.9", "guess-" + std::to_string(i)).status == 401);
  CHECK(reasons == std::vector<std::string>(9, "unauthorized"));
  clock.advance(std::chrono::seconds(20));
  // Refused now whatever the token, before it is looked at; nothing written.
  const std::uint64_t calls = store.ingest_calls();
  const auto r = post("10.0.0.9", kToken);
  CHECK(r.status == 429);
  CHECK(body_of(r).at("error") ==
        "too many wrong bearer tokens from 10.0.0.9 (5 within 60 s): refused for 40 s");
  CHECK(r.headers == decltype(r.headers){{"Retry-After", "40"}});
  CHECK(post("10.0.0.9", "guess").status == 429);
  CHECK(store.ingest_calls() == calls);
  CHECK(reasons.back() == "throttled");
  CHECK(handler.counters().ingest_throttled == 2);
  // Other addresses and the Unix socket (no address) are not concerned.
  CHECK(post("10.0.0.10", kToken).status == 200);
  CHECK(post("", kToken).status == 200);
  // The window over: the right token is taken again.
  clock.advance(std::chrono::seconds(40));
  CHECK(post("10.0.0.9", kToken).status == 200);
}

TEST_CASE("ingest answers 503 with the store's reason and Retry-After for each failure", "[unit]") {
  Fixture f;
  using db::ErrorKind;
  for (const auto kind : {ErrorKind::Busy, ErrorKind::Full, ErrorKind::ReadOnly, ErrorKind::Corrupt,
                          ErrorKind::Io, ErrorKind::Closed}) {
    DYNAMIC_SECTION("kind " << static_cast<int>(kind)) {
      const std::string msg = "database full: /var/lib/pathsentry/collector.db: disk full";
      f.store.fail_ingest(db::StoreError{kind, msg});
      const auto r = f.post(good_body().text);
      CHECK(r.status == 503);
      CHECK(body_of(r).at("error") == msg);
      CHECK(r.headers == decltype(r.headers){{"Retry-After", "5"}});
      CHECK(f.store.probe_rows() == 0);
      CHECK(f.handler.counters().ingest_failed == 1);
      // /healthz says degraded until an ingest succeeds again; reads keep being served.
      const auto h = f.get("/healthz");
      CHECK(h.status == 503);
      CHECK(body_of(h) == json{{"status", "degraded"}, {"error", msg}});
      CHECK(f.get("/api/v1/agents").status == 200);
      f.store.fail_ingest(std::nullopt);
      CHECK(f.post(good_body().text).status == 200);
      CHECK(f.get("/healthz").status == 200);
    }
  }
}

TEST_CASE("read endpoints answer 503 with the reason when the store cannot read", "[unit]") {
  Fixture f;
  f.store.fail_reads(db::StoreError{db::ErrorKind::Busy, "database busy: x.db: locked"});
  for (const char* t : {"/api/v1/agents", "/api/v1/targets", "/api/v1/events",
                        "/api/v1/series?target=a", "/api/v1/probes?target=a"}) {
    const auto r = f.get(t);
    INFO(t);
    CHECK(r.status == 503);
    CHECK(body_of(r).at("error") == "database busy: x.db: locked");
  }
}

TEST_CASE("unknown paths are 404, wrong methods 405 with Allow", "[unit]") {
  Fixture f;
  const auto nf = f.get("/api/v1/nothing");
  CHECK(nf.status == 404);
  CHECK(body_of(nf).at("error") == "no such path: /api/v1/nothing");
  Request r;
  r.method = "GET";
  r.target = "/api/v1/ingest";
  const auto m = f.handler.handle(r);
  CHECK(m.status == 405);
  CHECK(m.headers == decltype(m.headers){{"Allow", "POST"}});
  r.method = "DELETE";
  r.target = "/api/v1/events";
  CHECK(f.handler.handle(r).status == 405);
  const auto p = f.post("", "", "/api/v1/agents");
  CHECK(p.status == 405);
}

TEST_CASE("added routes: exact, prefix, and their 405s", "[unit]") {
  Fixture f;
  f.handler.add_route("GET", "/metrics", [](const Request&) {
    Response r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = "pathsentry_up 1\n";
    return r;
  });
  f.handler.add_route(
      "GET", "/assets/",
      [](const Request& q) { return Response::json("\"" + std::string(path_of(q.target)) + "\""); },
      /*prefix=*/true);
  CHECK(f.get("/metrics").body == "pathsentry_up 1\n");
  CHECK(f.get("/assets/app.js?v=1").body == "\"/assets/app.js\"");
  CHECK(f.get("/assets").status == 404);
  CHECK(f.post("", "", "/assets/x").status == 405);
}

TEST_CASE("GET endpoints refuse unknown query parameters and wrong types", "[unit]") {
  Fixture f;
  struct Case {
    std::string target;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"/api/v1/agents?x=1", "unknown query parameter 'x' (this endpoint takes: none)"},
      {"/api/v1/targets?state=1", "unknown query parameter 'state'"},
      {"/api/v1/events?since=yesterday",
       "query parameter 'since' = 'yesterday' is neither integer ns"},
      {"/api/v1/events?limit=-1", "query parameter 'limit' = '-1' is not an unsigned integer"},
      {"/api/v1/events?limit=0", "query parameter 'limit' = '0' is out of range 1..100000"},
      {"/api/v1/events?kind=flap", "query parameter 'kind' = 'flap' is not an event kind"},
      {"/api/v1/events?target=a&target=b", "query parameter 'target' given twice"},
      {"/api/v1/events?target=%zz", "bad percent-encoding"},
      {"/api/v1/events?bogus", "unknown query parameter 'bogus'"},
      {"/api/v1/series", "query parameter 'target' is required"},
      {"/api/v1/series?target=a&step=0", "query parameter 'step' = '0' is out of range"},
      {"/api/v1/series?target=a&step=1.5", "query parameter 'step' = '1.5' is not an unsigned"},
      {"/api/v1/series?target=a&proto=udp", "query parameter 'proto' = 'udp' is not one of"},
      {"/api/v1/series?target=a&from=2000&to=1000", "'from' must be before 'to'"},
      {"/api/v1/series?target=a&from=0&to=1000000000000000000",
       "steps, over 100000: give a larger 'step'"},
      {"/api/v1/probes?from=1", "query parameter 'target' is required"},
      {"/api/v1/probes?target=a&format=csv", "query parameter 'format' = 'csv' is not json or"},
      {"/api/v1/probes?target=a&limit=x", "query parameter 'limit' = 'x' is not an unsigned"},
      {"/api/v1/probes?target=", "query parameter 'target' is empty"},
      {"/api/v1/stream?since=1", "unknown query parameter 'since'"},
      {"/healthz?verbose=1", "unknown query parameter 'verbose'"},
  };
  for (const auto& c : cases) {
    INFO(c.target);
    const auto r = f.get(c.target);
    CHECK(r.status == 400);
    const auto e = body_of(r).at("error").get<std::string>();
    INFO(e);
    CHECK(e.find(c.error) != std::string::npos);
  }
  CHECK(f.store.ingest_calls() == 0);
}

TEST_CASE("agents lists each agent field by field", "[unit]") {
  Fixture f;
  REQUIRE(f.post(good_body().text).status == 200);
  REQUIRE(f.post(Body(FakeStore::header("dc1", 2)).text).status == 200);
  const auto j = body_of(f.get("/api/v1/agents"));
  REQUIRE(j.at("agents").size() == 1);
  const auto& a = j["agents"][0];
  CHECK(a == json{{"name", "dc1"},
                  {"version", "0.1.0"},
                  {"last_run", "9f1c0a2b3d4e5f60"},
                  {"first_seen_ns", kT0 + 1},
                  {"last_seen_ns", kT0 + 2},
                  {"batches", 2}});
}

TEST_CASE("targets carry the live state of the latest complete second", "[unit]") {
  Fixture f;
  CHECK(body_of(f.get("/api/v1/targets")) == json{{"targets", json::array()}});
  REQUIRE(f.post(good_body().text).status == 200);
  // The next second: forward moved to ipsec (1 lost forward), reverse all lost beyond the tap.
  Body next(FakeStore::header("dc1", 2));
  next.add(test::rollup(kT0 + kSec, Direction::Forward, "ipsec", 3, 2, 1, 0, 0));
  next.add(test::rollup(kT0 + kSec, Direction::Reverse, "none", 3, 0, 1, 0, 2));
  REQUIRE(f.post(next.text).status == 200);

  const auto j = body_of(f.get("/api/v1/targets"));
  REQUIRE(j.at("targets").size() == 1);
  const auto& t = j["targets"][0];
  CHECK(t.at("agent") == "dc1");
  CHECK(t.at("target") == "192.0.2.10");
  CHECK(t.at("proto") == "stamp");
  CHECK(t.at("session_id") == 2);
  CHECK(t.at("run") == "9f1c0a2b3d4e5f60");
  CHECK(t.at("first_ns") == kT0);
  CHECK(t.at("last_ns") == kT0 + kSec);
  const auto& s = t.at("state");
  CHECK(s.at("second_ns") == kT0 + kSec);
  CHECK(s.at("forward") == json{{"path", "ipsec"},
                                {"since_ns", kT0 + kSec},
                                {"sent", 3},
                                {"received", 2},
                                {"lost", 1},
                                {"lost_forward", 1},
                                {"lost_reverse", 0},
                                {"lost_undetermined", 0},
                                {"rtt_p50_ns", 5'000'000},
                                {"rtt_mean_ns", 5'000'000},
                                {"jitter_ns", 100'000}});
  CHECK(s.at("reverse") == json{{"path", "undetermined"},
                                {"since_ns", kT0 + kSec},
                                {"sent", 3},
                                {"received", 0},
                                {"lost", 3},
                                {"lost_forward", 1},
                                {"lost_reverse", 0},
                                {"lost_undetermined", 2},
                                {"rtt_p50_ns", nullptr},
                                {"rtt_mean_ns", nullptr},
                                {"jitter_ns", nullptr}});
}

TEST_CASE("events: newest first, filters passed to the store, the record's fields", "[unit]") {
  Fixture f;
  REQUIRE(f.post(good_body().text).status == 200);
  Body more(FakeStore::header("dc1", 2));
  PathEvent down;
  down.type = EventType::TapDown;
  down.tap = "tap-inet";
  down.path = "ipsec";
  down.reason = "pcap read: \"gone\"";
  down.ts_ns = kT0 + 5 * kSec;
  down.detected_ns = kT0 + 6 * kSec;
  down.event_id = 2;
  more.add(down);
  REQUIRE(f.post(more.text).status == 200);

  const auto j = body_of(f.get("/api/v1/events"));
  REQUIRE(j.at("events").size() == 2);
  const auto& tap = j["events"][0];
  CHECK(tap.at("id") == 2);
  CHECK(tap.at("agent") == "dc1");
  CHECK(tap.at("run") == "9f1c0a2b3d4e5f60");
  CHECK(tap.at("event") == "tap_down");
  CHECK(tap.at("tap") == "tap-inet");
  CHECK(tap.at("reason") == "pcap read: \"gone\"");
  CHECK(tap.at("event_id") == 2);
  CHECK_FALSE(tap.contains("type"));
  const auto& sw = j["events"][1];
  CHECK(sw.at("id") == 1);
  CHECK(sw.at("event") == "switchover");
  CHECK(sw.at("from") == "express-connect");
  CHECK(sw.at("to") == "ipsec");
  CHECK(sw.at("direction") == "forward");
  CHECK(sw.at("ts_ns") == kT0 + 3000);
  CHECK(sw.at("seq") == 42);

  const auto k = body_of(
      f.get("/api/v1/events?kind=switchover&since=2023-11-14T22:13:20Z&until=1700000001000000000"
            "&target=192.0.2.10&agent=dc1&limit=5"));
  CHECK(k.at("events").size() == 1);
  const auto q = f.store.last_event_query();
  REQUIRE(q);
  CHECK(q->since_ns == kT0);
  CHECK(q->until_ns == kT0 + kSec);
  CHECK(q->kind == "switchover");
  CHECK(q->target == "192.0.2.10");
  CHECK(q->agent == "dc1");
  CHECK(q->limit == 5);
}

TEST_CASE("events: the health-check event kinds are kinds", "[unit]") {
  Fixture f;
  for (const char* kind : {"healthcheck_degraded", "healthcheck_failed", "healthcheck_recovered",
                           "healthcheck_absent", "healthcheck_blocked"}) {
    const auto r = f.get(std::string("/api/v1/events?kind=") + kind);
    CHECK(r.status == 200);
    const auto q = f.store.last_event_query();
    REQUIRE(q);
    CHECK(q->kind == kind);
  }
}

namespace {

// A health-check event of tap `tap` on agent dc1's line 10.1.0.2, k of 8 at a 2 s interval.
PathEvent hc_event(EventType type, std::uint64_t event_id, std::int64_t ts_ns,
                   const std::string& tap = "eth1", std::uint32_t k = 0) {
  PathEvent e;
  e.type = type;
  e.tap = tap;
  e.path = "express-connect";
  e.target = "10.1.0.2";
  e.prober = type == EventType::HealthcheckAbsent ? "" : "100.96.0.5";
  e.ts_ns = ts_ns;
  e.detected_ns = ts_ns + 1000;
  e.unanswered = k;
  e.fall = 8;
  e.interval_ns = 2 * kSec;
  e.duration_ns = static_cast<std::int64_t>(k) * 2 * kSec;
  if (type == EventType::HealthcheckDegraded || type == EventType::HealthcheckBlocked) {
    e.eta_ns = static_cast<std::int64_t>(8 - k) * 2 * kSec;
  }
  if (type == EventType::HealthcheckBlocked) e.reason = "agent probes answered on this line";
  if (type == EventType::HealthcheckRecovered) e.reason = "answered";
  e.event_id = event_id;
  return e;
}

}  // namespace

TEST_CASE("healthchecks: the latest health-check event of each line decides its state", "[unit]") {
  Fixture f;
  CHECK(body_of(f.get("/api/v1/healthchecks")) ==
        json{{"healthchecks", json::array()}, {"truncated", false}});
  // eth1: degraded 3 of 8, then 5 of 8 (the latest: eta 6 s from its time). eth3: degraded,
  // recovered (ok). A switchover between them is not a health-check event.
  Body b;
  b.add(hc_event(EventType::HealthcheckDegraded, 1, kT0, "eth1", 3));
  b.add(hc_event(EventType::HealthcheckDegraded, 2, kT0 + 4 * kSec, "eth1", 5));
  b.add(hc_event(EventType::HealthcheckDegraded, 3, kT0, "eth3", 1));
  b.add(hc_event(EventType::HealthcheckRecovered, 4, kT0 + kSec, "eth3", 1));
  b.add(test::switchover_event(5, kT0 + 5 * kSec));
  REQUIRE(f.post(b.text).status == 200);
  const auto j = body_of(f.get("/api/v1/healthchecks"));
  CHECK(j.at("truncated") == false);
  REQUIRE(j.at("healthchecks").size() == 2);
  const auto& l = j["healthchecks"][0];
  CHECK(l == json{{"agent", "dc1"},
                  {"tap", "eth1"},
                  {"path", "express-connect"},
                  {"target", "10.1.0.2"},
                  {"state", "degraded"},
                  {"prober", "100.96.0.5"},
                  {"unanswered", 5},
                  {"fall", 8},
                  {"interval_ns", 2 * kSec},
                  {"eta_ns", 6 * kSec},
                  {"eta_from_ns", kT0 + 4 * kSec},
                  {"move_at_ns", kT0 + 10 * kSec},
                  {"duration_ns", 10 * kSec},
                  {"reason", ""},
                  {"event", "healthcheck_degraded"},
                  {"id", 2},
                  {"run", "9f1c0a2b3d4e5f60"},
                  {"event_id", 2},
                  {"ts_ns", kT0 + 4 * kSec},
                  {"detected_ns", kT0 + 4 * kSec + 1000}});
  const auto& ok = j["healthchecks"][1];
  CHECK(ok.at("tap") == "eth3");
  CHECK(ok.at("state") == "ok");
  CHECK(ok.at("reason") == "answered");
  CHECK(ok.at("eta_ns") == nullptr);
  CHECK(ok.at("move_at_ns") == nullptr);
  CHECK(ok.at("id") == 4);
}

TEST_CASE("healthchecks: each state, by time not by arrival, per agent", "[unit]") {
  Fixture f;
  struct Case {
    EventType type;
    const char* state;
  };
  const std::vector<Case> cases = {{EventType::HealthcheckDegraded, "degraded"},
                                   {EventType::HealthcheckFailed, "failed"},
                                   {EventType::HealthcheckBlocked, "blocked"},
                                   {EventType::HealthcheckAbsent, "absent"},
                                   {EventType::HealthcheckRecovered, "ok"}};
  std::uint64_t id = 0;
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.state) {
      // The decisive event arrives first; an older one of another kind arrives after it (a
      // resent spool): the newer by ts_ns still decides.
      const EventType older = c.type == EventType::HealthcheckRecovered
                                  ? EventType::HealthcheckFailed
                                  : EventType::HealthcheckRecovered;
      Body b;
      b.add(hc_event(c.type, ++id, kT0 + 10 * kSec, "eth1", 8));
      b.add(hc_event(older, ++id, kT0, "eth1", 2));
      // Another agent's line: listed apart, filtered by agent=.
      Body other(FakeStore::header("dc2", 1));
      other.add(hc_event(EventType::HealthcheckAbsent, ++id, kT0 + 20 * kSec, "eth1"));
      REQUIRE(f.post(b.text).status == 200);
      REQUIRE(f.post(other.text).status == 200);
      const auto all = body_of(f.get("/api/v1/healthchecks"));
      REQUIRE(all.at("healthchecks").size() == 2);
      CHECK(all["healthchecks"][1].at("agent") == "dc2");
      CHECK(all["healthchecks"][1].at("state") == "absent");
      const auto j = body_of(f.get("/api/v1/healthchecks?agent=dc1"));
      REQUIRE(j.at("healthchecks").size() == 1);
      const auto& l = j["healthchecks"][0];
      CHECK(l.at("state") == c.state);
      CHECK(l.at("ts_ns") == kT0 + 10 * kSec);
      const auto q = f.store.last_event_query();
      REQUIRE(q);
      CHECK(q->agent == "dc1");
      if (c.type == EventType::HealthcheckFailed) {
        // Failed: the move is due now.
        CHECK(l.at("eta_ns") == 0);
        CHECK(l.at("move_at_ns") == kT0 + 10 * kSec);
      } else if (c.type == EventType::HealthcheckBlocked) {
        CHECK(l.at("move_at_ns") == kT0 + 10 * kSec);  // k = N in this case: eta 0
        CHECK(l.at("reason") == "agent probes answered on this line");
      } else if (c.type != EventType::HealthcheckDegraded) {
        CHECK(l.at("move_at_ns") == nullptr);
      }
    }
  }
}

TEST_CASE("healthchecks: bad parameters are 400, a store that cannot read 503", "[unit]") {
  Fixture f;
  const auto unknown = f.get("/api/v1/healthchecks?tap=eth1");
  CHECK(unknown.status == 400);
  CHECK(body_of(unknown).at("error") ==
        "unknown query parameter 'tap' (this endpoint takes: agent)");
  const auto empty = f.get("/api/v1/healthchecks?agent=");
  CHECK(empty.status == 400);
  CHECK(body_of(empty).at("error") == "query parameter 'agent' is empty");
  CHECK(f.get("/api/v1/healthchecks?agent=a&agent=b").status == 400);
  Request r;
  r.method = "POST";
  r.target = "/api/v1/healthchecks";
  CHECK(f.handler.handle(r).status == 405);
  f.store.fail_reads(db::StoreError{db::ErrorKind::Busy, "database busy: x.db: locked"});
  const auto busy = f.get("/api/v1/healthchecks");
  CHECK(busy.status == 503);
  CHECK(body_of(busy).at("error") == "database busy: x.db: locked");
}

TEST_CASE("series: step, defaults and each point's fields", "[unit]") {
  Fixture f;
  REQUIRE(f.post(good_body().text).status == 200);
  const auto r = f.get("/api/v1/series?target=192.0.2.10&proto=stamp&from=" + std::to_string(kT0) +
                       "&to=" + std::to_string(kT0 + 10 * kSec) + "&step=5");
  REQUIRE(r.status == 200);
  const auto j = body_of(r);
  CHECK(j.at("step_ns") == 5 * kSec);
  REQUIRE(j.at("points").size() == 2);
  CHECK(j["points"][0] == json{{"agent", "dc1"},
                               {"proto", "stamp"},
                               {"direction", "forward"},
                               {"path", "express-connect"},
                               {"t_ns", kT0},
                               {"sent", 2},
                               {"received", 2},
                               {"lost_forward", 0},
                               {"lost_reverse", 0},
                               {"lost_undetermined", 0},
                               {"rtt_min_ns", 4'000'000},
                               {"rtt_mean_ns", 5'000'000},
                               {"rtt_p50_ns", 5'000'000},
                               {"rtt_p99_ns", 6'000'000},
                               {"rtt_max_ns", 7'000'000},
                               {"jitter_ns", 100'000}});
  CHECK(j["points"][1].at("direction") == "reverse");
  // Without from/to: the last hour up to now; step 1 s.
  REQUIRE(f.get("/api/v1/series?target=192.0.2.10").status == 200);
  const auto q = f.store.last_series_query();
  CHECK(q->to_ns == f.clock.system_ns());
  CHECK(q->from_ns == f.clock.system_ns() - 3600 * kSec);
  CHECK(q->step_ns == kSec);
  CHECK_FALSE(q->proto);
}

TEST_CASE("probes: records with agent and run, columns, truncated", "[unit]") {
  Fixture f;
  Body b;
  b.add(test::probe_at(1, kT0 + 1000)).add(test::probe_at(2, kT0 + 2000, /*lost=*/true));
  b.add(test::probe_at(3, kT0 + 3000));
  REQUIRE(f.post(b.text).status == 200);
  const std::string range = "&from=" + std::to_string(kT0) + "&to=" + std::to_string(kT0 + kSec);

  const auto j = body_of(f.get("/api/v1/probes?target=192.0.2.10" + range));
  CHECK(j.at("truncated") == false);
  REQUIRE(j.at("probes").size() == 3);
  const auto& p = j["probes"][0];
  CHECK(p.at("agent") == "dc1");
  CHECK(p.at("run") == "9f1c0a2b3d4e5f60");
  CHECK(p.at("target") == "192.0.2.10");
  CHECK(p.at("proto") == "stamp");
  CHECK(p.at("session_id") == 2);
  CHECK(p.at("seq") == 1);
  CHECK(p.at("tx_ns") == kT0 + 1000);
  CHECK(p.at("rtt_ns") == 5'000'000);
  CHECK(p.at("fwd_path") == "express-connect");
  CHECK(p.at("loss") == nullptr);
  CHECK_FALSE(p.contains("type"));
  CHECK(j["probes"][1].at("loss") == "forward");

  const auto c = body_of(f.get("/api/v1/probes?target=192.0.2.10&format=columns&limit=2" + range));
  CHECK(c.at("truncated") == true);
  CHECK(c.at("columns") == json{{"agent", {"dc1", "dc1"}},
                                {"proto", {"stamp", "stamp"}},
                                {"seq", {1, 2}},
                                {"tx_ns", {kT0 + 1000, kT0 + 2000}},
                                {"rtt_ns", {5'000'000, nullptr}},
                                {"fwd_path", {"express-connect", "none"}},
                                {"rev_path", {"express-connect", ""}},
                                {"loss", {nullptr, "forward"}}});
  CHECK(f.store.last_probe_query()->limit == 3);  // one more than asked: tells truncation
}

TEST_CASE("healthz answers ok with the schema version", "[unit]") {
  Fixture f;
  const auto r = f.get("/healthz");
  CHECK(r.status == 200);
  CHECK(body_of(r) == json{{"status", "ok"}, {"schema_version", 3}});
}

TEST_CASE("the stream delivers new events and states; Last-Event-ID replays", "[unit]") {
  Fixture f;
  auto first = f.get("/api/v1/stream");
  REQUIRE(first.status == 200);
  CHECK(first.content_type == "text/event-stream");
  REQUIRE(first.stream);
  CHECK(first.body.empty());  // nothing yet: no states, no replay

  REQUIRE(f.post(good_body().text).status == 200);
  auto taken = first.stream->take();
  CHECK_FALSE(taken.dropped);
  REQUIRE(taken.messages.size() == 2);
  CHECK(taken.messages[0].event_id == 1);
  const std::string& ev = taken.messages[0].text;
  CHECK(ev.starts_with("id: 1\nevent: event\ndata: {\"id\":1,\"agent\":\"dc1\",\"run\":"));
  CHECK(ev.ends_with("}\n\n"));
  const auto ev_json = json::parse(ev.substr(ev.find("data: ") + 6));
  CHECK(ev_json.at("event") == "switchover");
  const std::string& st = taken.messages[1].text;
  REQUIRE(st.starts_with("event: state\ndata: "));
  const auto sj = json::parse(st.substr(std::string("event: state\ndata: ").size()));
  CHECK(sj.at("agent") == "dc1");
  CHECK(sj.at("target") == "192.0.2.10");
  CHECK(sj.at("proto") == "stamp");
  CHECK(sj.at("second_ns") == kT0);
  CHECK(sj.at("forward").at("path") == "express-connect");
  CHECK(sj.at("forward").at("since_ns") == nullptr);
  CHECK(sj.at("reverse").at("path") == "express-connect");

  // A second client resuming after event 0 gets event 1 replayed and the current state.
  auto resumed = f.get("/api/v1/stream", "0");
  REQUIRE(resumed.stream);
  CHECK(resumed.body.starts_with("id: 1\nevent: event\n"));
  CHECK(resumed.body.find("event: state\n") != std::string::npos);
  // A duplicate resend publishes nothing new as event (no new row).
  REQUIRE(f.post(good_body().text).status == 200);
  for (const auto& m : resumed.stream->take().messages) CHECK(m.event_id == 0);
  CHECK(f.get("/api/v1/stream", "abc").status == 400);
}

TEST_CASE("a slow stream subscriber is dropped, never blocks ingest", "[unit]") {
  FakeStore store;
  ManualClock clock;
  HandlerConfig c;
  c.tokens = {kToken};
  c.stream_queue = 4;
  Handler h(store, clock, c);
  Request s;
  s.method = "GET";
  s.target = "/api/v1/stream";
  auto slow = h.handle(s);
  REQUIRE(slow.stream);
  for (std::uint64_t i = 1; i <= 6; ++i) {
    Body b(FakeStore::header("dc1", i));
    b.add(test::switchover_event(i, kT0 + static_cast<std::int64_t>(i)));
    Request r;
    r.method = "POST";
    r.target = "/api/v1/ingest";
    r.authorization = std::string("Bearer ") + kToken;
    r.body = b.text;
    CHECK(h.handle(r).status == 200);
  }
  CHECK(store.event_rows() == 6);
  CHECK(slow.stream->take().dropped);
  CHECK(h.hub().dropped_total() == 1);
}

}  // namespace pathsentry::collector
