// The shared metrics module and the agent's metrics, without sockets: bucket layout, listen
// addresses, counters mirrored from totals, the collector's families, and what AgentMetrics
// makes of records, totals, path states and events.
#include "pathsentry/metrics/metrics.h"

#include <prometheus/registry.h>

#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/common/config_error.h"
#include "pathsentry/metrics/collector_metrics.h"
#include "pathsentry/probe/agent/agent_config.h"
#include "pathsentry/probe/agent/agent_metrics.h"

namespace pathsentry {
namespace {

using Labels = std::map<std::string, std::string>;

// The value of the series of `name` whose labels include `want` (a histogram: its count);
// nullopt when there is none.
std::optional<double> value(const prometheus::Registry& r, const std::string& name,
                            const Labels& want = {}) {
  for (const auto& f : r.Collect()) {
    if (f.name != name) continue;
    for (const auto& m : f.metric) {
      bool match = true;
      for (const auto& [k, v] : want) {
        bool found = false;
        for (const auto& l : m.label) found = found || (l.name == k && l.value == v);
        match = match && found;
      }
      if (!match) continue;
      switch (f.type) {
        case prometheus::MetricType::Counter:
          return m.counter.value;
        case prometheus::MetricType::Gauge:
          return m.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(m.histogram.sample_count);
        default:
          return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

// The cumulative count of a histogram series' bucket with upper bound `le`.
std::optional<double> bucket(const prometheus::Registry& r, const std::string& name,
                             const Labels& want, double le) {
  for (const auto& f : r.Collect()) {
    if (f.name != name) continue;
    for (const auto& m : f.metric) {
      bool match = true;
      for (const auto& [k, v] : want) {
        bool found = false;
        for (const auto& l : m.label) found = found || (l.name == k && l.value == v);
        match = match && found;
      }
      if (!match) continue;
      for (const auto& b : m.histogram.bucket) {
        if (b.upper_bound == le) return static_cast<double>(b.cumulative_count);
      }
    }
  }
  return std::nullopt;
}

ProbeRecord answered(std::uint32_t session, std::int64_t rtt_ns, const std::string& fwd,
                     const std::string& rev) {
  ProbeRecord r;
  r.target = "10.1.0.10";
  r.session_id = session;
  r.tx_ns = 1'000'000'000;
  r.rx_ns = r.tx_ns + rtt_ns;
  r.rtt_ns = rtt_ns;
  r.fwd_path = fwd;
  r.rev_path = rev;
  return r;
}

ProbeRecord lost(std::uint32_t session, LossDirection d) {
  ProbeRecord r = answered(session, 0, kPathNone, kPathNone);
  r.rx_ns.reset();
  r.rtt_ns = 0;
  r.loss = d;
  return r;
}

}  // namespace

// The RTT buckets resolve 20 us to 2 s with neighbours at most 5/3 apart (1, 1.5, 2, 3, 5, 7).
TEST_CASE("rtt buckets span 20 us to 2 s finely", "[unit]") {
  const auto& b = metrics::rtt_buckets_seconds();
  REQUIRE(b.size() == 31);
  CHECK(b.front() == Approx(20e-6));
  CHECK(b.back() == Approx(2.0));
  for (std::size_t i = 1; i < b.size(); ++i) {
    CHECK(b[i] > b[i - 1]);
    CHECK(b[i] / b[i - 1] <= 5.0 / 3.0 + 1e-9);
  }
}

// Listen addresses: off, IPv4, bracketed IPv6, and each malformed shape with its reason.
TEST_CASE("metrics listen addresses are parsed or refused with a reason", "[unit]") {
  CHECK(metrics::parse_listen("off").value() == std::nullopt);
  CHECK(metrics::parse_listen("127.0.0.1:9781").value() == "127.0.0.1:9781");
  CHECK(metrics::parse_listen("[::1]:0").value() == "[::1]:0");
  CHECK_THAT(metrics::parse_listen("localhost:9781").error(), Catch::Contains("not an IP address"));
  CHECK_THAT(metrics::parse_listen("127.0.0.1").error(), Catch::Contains("ADDRESS:PORT"));
  CHECK_THAT(metrics::parse_listen("127.0.0.1:70000").error(), Catch::Contains("0..65535"));
  CHECK_THAT(metrics::parse_listen("127.0.0.1:").error(), Catch::Contains("0..65535"));
  CHECK_THAT(metrics::parse_listen("::1:9781").error(), Catch::Contains("brackets"));
  CHECK_THAT(metrics::parse_listen("[127.0.0.1]:9781").error(), Catch::Contains("IPv6"));
  CHECK_THAT(metrics::parse_listen("").error(), Catch::Contains("ADDRESS:PORT"));
}

// A counter mirrored from a total never goes back, and catches up once the total passes it.
TEST_CASE("advance mirrors a total without ever decreasing", "[unit]") {
  prometheus::Registry r;
  auto& c = prometheus::BuildCounter().Name("x_total").Help("x").Register(r).Add({});
  std::uint64_t last = 0;
  metrics::advance(c, last, 10);
  CHECK(c.Value() == 10);
  metrics::advance(c, last, 7);  // a late reply took a loss back
  CHECK(c.Value() == 10);
  metrics::advance(c, last, 12);
  CHECK(c.Value() == 12);
}

// The text exposition holds the family's TYPE line and its series.
TEST_CASE("serialize writes the text exposition", "[unit]") {
  prometheus::Registry r;
  prometheus::BuildGauge()
      .Name("pathsentry_x")
      .Help("a gauge")
      .Register(r)
      .Add({{"a", "b"}})
      .Set(3);
  const std::string text = metrics::serialize(r);
  CHECK_THAT(text, Catch::Contains("# TYPE pathsentry_x gauge"));
  CHECK_THAT(text, Catch::Contains("pathsentry_x{a=\"b\"} 3"));
}

// The collector's families: kinds and reasons exist at 0; a batch, a failure, an unknown
// reason, the database size and an agent's last-seen time land where they should.
TEST_CASE("collector metrics count batches, failures, size and agents", "[unit]") {
  prometheus::Registry r;
  metrics::CollectorMetrics m(r);
  CHECK(value(r, "pathsentry_collector_ingest_rows_total", {{"kind", "rollup"}}) == 0);
  CHECK(value(r, "pathsentry_collector_ingest_failures_total", {{"reason", "store_full"}}) == 0);
  m.add_batch("dc", 100, 5, 2, 10, 0, 1);
  m.add_batch("dc", 1, 0, 0, 0, 0, 0);
  CHECK(value(r, "pathsentry_collector_ingest_rows_total", {{"kind", "probe"}}) == 101);
  CHECK(value(r, "pathsentry_collector_ingest_rows_total", {{"kind", "rollup"}}) == 5);
  CHECK(value(r, "pathsentry_collector_ingest_rows_total", {{"kind", "event"}}) == 2);
  CHECK(value(r, "pathsentry_collector_ingest_duplicates_total", {{"kind", "probe"}}) == 10);
  CHECK(value(r, "pathsentry_collector_ingest_duplicates_total", {{"kind", "event"}}) == 1);
  CHECK(value(r, "pathsentry_collector_ingest_batches_total", {{"agent", "dc"}}) == 2);
  m.add_failure("unauthorized");
  m.add_failure("no such reason");
  CHECK(value(r, "pathsentry_collector_ingest_failures_total", {{"reason", "unauthorized"}}) == 1);
  CHECK(value(r, "pathsentry_collector_ingest_failures_total", {{"reason", "other"}}) == 1);
  m.set_db_size(4096);
  CHECK(value(r, "pathsentry_collector_db_size_bytes") == 4096);
  m.set_agent_last_seen("dc", 1.7e9);
  CHECK(value(r, "pathsentry_collector_agent_last_seen_timestamp_seconds", {{"agent", "dc"}}) ==
        1.7e9);
}

namespace probe {

// Records gathered on one thread reach the histogram and the loss counters only at flush(),
// by path pair and loss direction; unknown paths count as unattributed.
TEST_CASE("agent metrics: records become RTT buckets, losses and unattributed counts", "[unit]") {
  prometheus::Registry r;
  AgentMetrics m(r, /*losses_from_records=*/true);
  m.add_session(7, "10.1.0.10", Proto::Icmp, {"express-connect", "ipsec"}, true);
  m.on_record(answered(7, 25'000, "express-connect", "express-connect"));   // 25 us
  m.on_record(answered(7, 900'000, "express-connect", "express-connect"));  // 0.9 ms
  m.on_record(answered(7, 3'000'000'000, "ipsec", "unknown"));              // 3 s: +Inf
  m.on_record(lost(7, LossDirection::Forward));
  m.on_record(lost(7, LossDirection::Reverse));
  m.on_record(lost(7, LossDirection::Undetermined));
  m.on_record(lost(7, LossDirection::Undetermined));
  m.on_record(answered(99, 1000, "ipsec", "ipsec"));  // an unknown session: ignored
  const Labels ec{{"fwd_path", "express-connect"}, {"rev_path", "express-connect"}};
  CHECK(value(r, "pathsentry_rtt_seconds", ec) == 0);  // not before flush()
  m.flush();
  CHECK(value(r, "pathsentry_rtt_seconds", ec) == 2);
  CHECK(bucket(r, "pathsentry_rtt_seconds", ec, 20e-6) == 0);
  CHECK(bucket(r, "pathsentry_rtt_seconds", ec, 30e-6) == 1);
  CHECK(bucket(r, "pathsentry_rtt_seconds", ec, 0.7e-3) == 1);
  CHECK(bucket(r, "pathsentry_rtt_seconds", ec, 1e-3) == 2);
  const Labels slow{{"fwd_path", "ipsec"}, {"rev_path", "unknown"}};
  CHECK(value(r, "pathsentry_rtt_seconds", slow) == 1);
  CHECK(bucket(r, "pathsentry_rtt_seconds", slow, 2.0) == 0);
  CHECK(value(r, "pathsentry_probes_lost_total", {{"direction", "forward"}}) == 1);
  CHECK(value(r, "pathsentry_probes_lost_total", {{"direction", "reverse"}}) == 1);
  CHECK(value(r, "pathsentry_probes_lost_total", {{"direction", "undetermined"}}) == 2);
  CHECK(value(r, "pathsentry_unattributed_probes_total", {{"direction", "reverse"}}) == 1);
  CHECK(value(r, "pathsentry_unattributed_probes_total", {{"direction", "forward"}}) == 0);
  // Every switchover between the session's paths (and unknown) exists at 0.
  CHECK(value(r, "pathsentry_switchovers_total",
              {{"direction", "reverse"}, {"from", "unknown"}, {"to", "ipsec"}}) == 0);
}

// Without a pipeline, sent/received/lost come from the session's totals (the STAMP reflector's
// split), never decreasing; unattributed records keep the "n/a" path label.
TEST_CASE("agent metrics: session totals without a pipeline", "[unit]") {
  prometheus::Registry r;
  AgentMetrics m(r, /*losses_from_records=*/false);
  m.add_session(1, "10.1.0.10", Proto::Stamp, {}, true);
  SessionSummary s;
  s.counters.sent = 100;
  s.counters.received = 95;
  s.lost_forward = 3;
  s.lost_reverse = 2;
  s.lost_undetermined = 0;
  m.on_session_totals(1, s);
  s.lost_forward = 2;  // a late reply
  m.on_session_totals(1, s);
  const Labels stamp{{"proto", "stamp"}};
  CHECK(value(r, "pathsentry_probes_sent_total", stamp) == 100);
  CHECK(value(r, "pathsentry_probes_received_total", stamp) == 95);
  CHECK(value(r, "pathsentry_probes_lost_total", {{"direction", "forward"}}) == 3);
  CHECK(value(r, "pathsentry_probes_lost_total", {{"direction", "reverse"}}) == 2);
  m.on_record(lost(1, LossDirection::Forward));  // not counted twice
  m.on_record(answered(1, 50'000, "", ""));
  m.flush();
  CHECK(value(r, "pathsentry_probes_lost_total", {{"direction", "forward"}}) == 3);
  CHECK(value(r, "pathsentry_rtt_seconds", {{"fwd_path", "n/a"}, {"rev_path", "n/a"}}) == 1);
  CHECK_FALSE(value(r, "pathsentry_switchovers_total").has_value());  // no paths, no series
}

// Issue 13 / 14: replies refused as spoofed are counted by reason, and a STAMP session whose
// forward loss looks capped by a rate limit shows the rate (0 once it no longer does).
TEST_CASE("agent metrics: rejected replies and the forward loss cap", "[unit]") {
  prometheus::Registry r;
  AgentMetrics m(r, /*losses_from_records=*/false);
  m.add_session(1, "10.1.0.10", Proto::Stamp, {}, true);
  SessionSummary s;
  CHECK(value(r, "pathsentry_replies_rejected_total", {{"reason", "send_time"}}) == 0);
  CHECK(value(r, "pathsentry_forward_loss_capped_pps") == 0);
  s.counters.rejected_send_time = 4;
  s.counters.rejected_ssid = 2;
  s.counters.rejected_implausible_time = 1;
  s.forward_cap_now_pps = 10'000;
  m.on_session_totals(1, s);
  CHECK(value(r, "pathsentry_replies_rejected_total", {{"reason", "send_time"}}) == 4);
  CHECK(value(r, "pathsentry_replies_rejected_total", {{"reason", "ssid"}}) == 2);
  CHECK(value(r, "pathsentry_replies_rejected_total", {{"reason", "implausible_time"}}) == 1);
  CHECK(value(r, "pathsentry_forward_loss_capped_pps") == 10'000);
  s.forward_cap_now_pps.reset();
  m.on_session_totals(1, s);
  CHECK(value(r, "pathsentry_forward_loss_capped_pps") == 0);
}

// Issue 14: unsent pacing slots by cause, for every session from the start (0), then the
// session's totals.
TEST_CASE("agent metrics: missed slots by cause", "[unit]") {
  prometheus::Registry r;
  AgentMetrics m(r, /*losses_from_records=*/false);
  m.add_session(1, "10.1.0.10", Proto::Icmp, {}, true);
  for (const char* c : {"late_wakeup", "ring_full", "send_error"}) {
    CHECK(value(r, "pathsentry_missed_slots_total", {{"cause", c}}) == 0);
  }
  SessionSummary s;
  s.counters.missed_late_wakeup = 5;
  s.counters.missed_ring_full = 3;
  s.counters.missed_slots = 8;
  s.counters.send_errors = 2;
  m.on_session_totals(1, s);
  CHECK(value(r, "pathsentry_missed_slots_total", {{"cause", "late_wakeup"}}) == 5);
  CHECK(value(r, "pathsentry_missed_slots_total", {{"cause", "ring_full"}}) == 3);
  CHECK(value(r, "pathsentry_missed_slots_total", {{"cause", "send_error"}}) == 2);
}

// The active path gauge: 1 for the current path, 0 for the one before; down and undetermined.
TEST_CASE("agent metrics: the active path per direction", "[unit]") {
  prometheus::Registry r;
  AgentMetrics m(r, true);
  m.add_session(1, "10.1.0.10", Proto::Icmp, {"express-connect", "ipsec"}, true);
  PathState st;
  m.on_path_state(1, st);
  const auto active = [&](const char* dir, const char* path) {
    return value(r, "pathsentry_active_path", {{"direction", dir}, {"path", path}});
  };
  CHECK(active("forward", "undetermined") == 1);
  CHECK(active("reverse", "undetermined") == 1);
  st.fwd = "express-connect";
  st.rev = "express-connect";
  m.on_path_state(1, st);
  CHECK(active("forward", "undetermined") == 0);
  CHECK(active("forward", "express-connect") == 1);
  st.fwd = "ipsec";
  st.rev_outage = true;
  m.on_path_state(1, st);
  CHECK(active("forward", "express-connect") == 0);
  CHECK(active("forward", "ipsec") == 1);
  CHECK(active("reverse", "express-connect") == 0);
  CHECK(active("reverse", "down") == 1);
}

// Events: a switchover counts by from/to and sets the last outage; outages, asymmetry and
// tap state follow their begin/end events.
TEST_CASE("agent metrics: events", "[unit]") {
  prometheus::Registry r;
  AgentMetrics m(r, true);
  m.add_session(1, "10.1.0.10", Proto::Icmp, {"express-connect", "ipsec"}, true);
  m.add_tap("tap-ec", "express-connect");
  CHECK(value(r, "pathsentry_tap_up", {{"tap", "tap-ec"}}) == 1);
  PathEvent e;
  e.target = "10.1.0.10";
  e.proto = Proto::Icmp;
  e.direction = Direction::Reverse;
  e.from = "express-connect";
  e.to = "ipsec";
  e.outage_ns = 1'500'000'000;
  m.on_event(e);
  CHECK(value(r, "pathsentry_switchovers_total",
              {{"direction", "reverse"}, {"from", "express-connect"}, {"to", "ipsec"}}) == 1);
  CHECK(value(r, "pathsentry_last_outage_seconds", {{"direction", "reverse"}}) == 1.5);
  CHECK(value(r, "pathsentry_path_events_total", {{"type", "switchover"}}) == 1);
  e.type = EventType::OutageBegin;
  m.on_event(e);
  CHECK(value(r, "pathsentry_outages_total", {{"direction", "reverse"}}) == 1);
  e.type = EventType::OutageEnd;
  e.outage_ns = 250'000'000;
  m.on_event(e);
  CHECK(value(r, "pathsentry_last_outage_seconds", {{"direction", "reverse"}}) == 0.25);
  e.type = EventType::AsymmetricBegin;
  m.on_event(e);
  CHECK(value(r, "pathsentry_path_asymmetric", {{"target", "10.1.0.10"}}) == 1);
  e.type = EventType::AsymmetricEnd;
  m.on_event(e);
  CHECK(value(r, "pathsentry_path_asymmetric", {{"target", "10.1.0.10"}}) == 0);
  PathEvent t;
  t.type = EventType::TapDown;
  t.tap = "tap-ec";
  t.path = "express-connect";
  m.on_event(t);
  CHECK(value(r, "pathsentry_tap_up", {{"tap", "tap-ec"}}) == 0);
  t.type = EventType::TapUp;
  m.on_event(t);
  CHECK(value(r, "pathsentry_tap_up", {{"tap", "tap-ec"}}) == 1);
}

// Tap counters, TTL counters and the spool hook mirror their totals.
TEST_CASE("agent metrics: taps, TTL probes and the spool", "[unit]") {
  prometheus::Registry r;
  AgentMetrics m(r, true);
  m.add_tap("tap-ec", "express-connect");
  TapStats ts;
  ts.frames = 1000;
  ts.source.dropped = 7;
  ts.source.if_dropped = 1;
  m.on_tap_stats(0, ts);
  m.on_tap_stats(5, ts);  // no such tap: ignored
  CHECK(value(r, "pathsentry_tap_frames_total", {{"tap", "tap-ec"}}) == 1000);
  CHECK(value(r, "pathsentry_tap_pcap_drops_total", {{"tap", "tap-ec"}}) == 7);
  CHECK(value(r, "pathsentry_tap_interface_drops_total", {{"tap", "tap-ec"}}) == 1);
  TtlStats tt;
  tt.sent = 10;
  tt.no_answer = 2;
  tt.per_path["ipsec"] = 8;
  m.on_ttl_stats("10.1.0.10", tt);
  CHECK(value(r, "pathsentry_ttl_probes_sent_total") == 10);
  CHECK(value(r, "pathsentry_ttl_no_answer_total") == 2);
  CHECK(value(r, "pathsentry_ttl_hop_answers_total", {{"path", "ipsec"}}) == 8);
  CHECK(value(r, "pathsentry_ttl_errors_unused_total", {{"kind", "unmapped_hop"}}) == 0);
  // Errors it could not use, the addresses past the per-address limit included (issue 13: a
  // flood of forged errors from many addresses is counted, not hidden).
  tt.unmapped["192.0.2.1"] = 3;
  tt.unmapped["192.0.2.2"] = 1;
  tt.unmapped_overflow = 1000;
  tt.other["192.0.2.9 3/3"] = 2;
  tt.other_overflow = 5;
  tt.short_quote_refused = 4;
  tt.unmatched = 6;
  tt.late = 1;
  m.on_ttl_stats("10.1.0.10", tt);
  CHECK(value(r, "pathsentry_ttl_errors_unused_total", {{"kind", "unmapped_hop"}}) == 1004);
  CHECK(value(r, "pathsentry_ttl_errors_unused_total", {{"kind", "other_error"}}) == 7);
  CHECK(value(r, "pathsentry_ttl_errors_unused_total", {{"kind", "short_quote_refused"}}) == 4);
  CHECK(value(r, "pathsentry_ttl_errors_unused_total", {{"kind", "unmatched"}}) == 6);
  CHECK(value(r, "pathsentry_ttl_errors_unused_total", {{"kind", "late"}}) == 1);
  CHECK(value(r, "pathsentry_ttl_probes_sent_total") == 10);  // mirrored, not added again
  m.set_spool(3, 4096, 2);
  m.set_spool(1, 1024, 2);
  CHECK(value(r, "pathsentry_spool_files") == 1);
  CHECK(value(r, "pathsentry_spool_bytes") == 1024);
  CHECK(value(r, "pathsentry_spool_dropped_records_total") == 2);
}

// The health check's series: counters mirror the watcher's totals, k / N / interval / the
// countdown are gauges (the countdown only while one runs), the state is one-hot, and the series
// move to the gateway's label once it is learned.
TEST_CASE("agent metrics: the health check", "[unit]") {
  prometheus::Registry r;
  AgentMetrics m(r, true);
  HealthCheckStatus st;
  st.tap = "tap-ec";
  st.path = "express-connect";
  st.fall = 8;
  m.on_healthcheck({st});  // nothing seen yet: no gateway
  CHECK(value(r, "pathsentry_healthcheck_state", {{"target", ""}, {"state", "ok"}}) == 1);
  CHECK(value(r, "pathsentry_healthcheck_state", {{"target", ""}, {"state", "absent"}}) == 0);
  CHECK_FALSE(value(r, "pathsentry_healthcheck_eta_seconds").has_value());

  st.target = "10.1.0.2";
  st.stats.probes = 10;
  st.stats.answered = 7;
  st.stats.unanswered = 3;
  st.stats.run = 3;
  st.stats.interval_ns = 2'000'000'000;
  st.state = HealthCheckState::Blocked;
  st.eta_ns = 10'000'000'000;
  m.on_healthcheck({st});
  const Labels gw{{"tap", "tap-ec"}, {"path", "express-connect"}, {"target", "10.1.0.2"}};
  CHECK_FALSE(value(r, "pathsentry_healthcheck_probes_total", {{"target", ""}}).has_value());
  CHECK(value(r, "pathsentry_healthcheck_probes_total", gw) == 10);
  CHECK(value(r, "pathsentry_healthcheck_answered_total", gw) == 7);
  CHECK(value(r, "pathsentry_healthcheck_unanswered_total", gw) == 3);
  CHECK(value(r, "pathsentry_healthcheck_unanswered_in_row", gw) == 3);
  CHECK(value(r, "pathsentry_healthcheck_fall", gw) == 8);
  CHECK(value(r, "pathsentry_healthcheck_interval_seconds", gw) == 2);
  CHECK(value(r, "pathsentry_healthcheck_eta_seconds", gw) == 10);
  CHECK(value(r, "pathsentry_healthcheck_state", {{"target", "10.1.0.2"}, {"state", "blocked"}}) ==
        1);
  CHECK(value(r, "pathsentry_healthcheck_state", {{"target", "10.1.0.2"}, {"state", "ok"}}) == 0);

  st.stats.probes = 12;
  st.stats.answered = 8;
  st.stats.run = 0;
  st.state = HealthCheckState::Ok;
  st.eta_ns.reset();
  m.on_healthcheck({st});
  CHECK(value(r, "pathsentry_healthcheck_probes_total", gw) == 12);
  CHECK_FALSE(value(r, "pathsentry_healthcheck_eta_seconds", gw).has_value());
  CHECK(value(r, "pathsentry_healthcheck_state", {{"target", "10.1.0.2"}, {"state", "ok"}}) == 1);
  CHECK(value(r, "pathsentry_healthcheck_state", {{"target", "10.1.0.2"}, {"state", "blocked"}}) ==
        0);

  PathEvent e;
  e.type = EventType::HealthcheckBlocked;
  m.on_event(e);
  CHECK(value(r, "pathsentry_path_events_total", {{"type", "healthcheck_blocked"}}) == 1);
  CHECK(value(r, "pathsentry_path_events_total", {{"type", "healthcheck_absent"}}) == 0);
}

// --metrics-listen: the default is loopback 9781 and not "configured"; a flag sets it and says
// where it came from; a malformed value is refused naming the flag.
TEST_CASE("agent config: --metrics-listen", "[unit]") {
  const auto parse = [](std::vector<std::string_view> extra) {
    std::vector<std::string_view> args{"--target", "127.0.0.1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return parse_agent_config(args, 1);
  };
  const AgentConfig d = parse({});
  CHECK(d.metrics_listen == "127.0.0.1:9781");
  CHECK(d.metrics_listen_key.empty());
  const AgentConfig set = parse({"--metrics-listen", "[::1]:0"});
  CHECK(set.metrics_listen == "[::1]:0");
  CHECK(set.metrics_listen_key == "--metrics-listen");
  CHECK(parse({"--metrics-listen=off"}).metrics_listen == "off");
  try {
    (void)parse({"--metrics-listen", "somewhere:80"});
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains("--metrics-listen") && Catch::Contains("somewhere:80") &&
                             Catch::Contains("not an IP address"));
  }
}

}  // namespace probe
}  // namespace pathsentry
