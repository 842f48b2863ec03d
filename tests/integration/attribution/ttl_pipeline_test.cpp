#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "capture/pcap_builder.h"
#include "pathsentry/probe/attribution/pipeline.h"
#include "pathsentry/probe/capture/packet_source.h"
#include "ttl/ttl_fake_socket.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace pathsentry::test;

namespace {

constexpr std::uint32_t kTtlSession = 0x12340003;
constexpr std::uint32_t kIcmpSession = 0x12340001;
constexpr std::uint32_t kAgentId = 7;
constexpr std::int64_t kBase = 1'700'000'000'000'000'000;
constexpr std::int64_t kInterval = 10'000'000;

TtlResult ttl_result(std::uint64_t seq, const char* path) {
  TtlResult r;
  r.session_id = kTtlSession;
  r.seq = seq;
  r.tx_ns = kBase + static_cast<std::int64_t>(seq) * kInterval;
  r.outcome = std::string(path) == "none" ? TtlOutcome::None : TtlOutcome::Hop;
  if (r.outcome != TtlOutcome::None) r.rx_ns = r.tx_ns + 100'000;
  r.path = path;
  return r;
}

struct Lines {
  std::vector<ProbeRecord> records;
  std::vector<PathEvent> events;
};

Lines read_lines(const std::string& path) {
  Lines l;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto parsed = parse_json_line(line);
    REQUIRE(parsed);
    if (auto* r = std::get_if<ProbeRecord>(&*parsed)) l.records.push_back(*r);
    if (auto* e = std::get_if<PathEvent>(&*parsed)) l.events.push_back(*e);
  }
  return l;
}

TapSpec clear_tap(const char* interface, const char* path) {
  TapSpec t;
  t.interface = interface;
  t.path = path;
  t.encap = Encap::Clear;
  return t;
}

}  // namespace

TEST_CASE("pipeline without taps: TTL results become records and switchover events",
          "[integration]") {
  // TTL-only: records with proto ttl, rev_path "", and the detector's forward switchover with
  // its outage from the TTL probes' send times; an engine record passes through unattributed.
  TempDir dir;
  ManualClock clock(1'000'000'000, kBase - kNsPerSec);
  JsonLinesWriter out(dir.file("out.jsonl"), "dc1");
  PipelineOptions po;
  po.drain_ns = 0;
  JsonLinesOutput out_lines(out);
  po.output = &out_lines;
  Pipeline p(clock, po);
  SessionConfig sc;
  sc.target = *IpAddress::parse("192.168.20.161");
  sc.session_id = kIcmpSession;
  p.add_session(session_spec_for(sc));
  p.add_ttl_session(kTtlSession, sc.target);
  for (std::uint64_t seq = 0; seq < 20; ++seq) {
    const char* path = seq < 10 ? "express-connect" : (seq < 12 ? "none" : "ipsec");
    p.on_ttl_result(ttl_result(seq, path));
  }
  ProbeRecord icmp;
  icmp.target = sc.target.to_string();
  icmp.session_id = kIcmpSession;
  icmp.tx_ns = kBase;
  icmp.rx_ns = kBase + 1000;
  p.on_sent(SentNotice{kIcmpSession, 0, kBase, 60});
  p.on_record(icmp);
  p.start();
  p.stop();
  REQUIRE(out.flush());
  const Lines l = read_lines(dir.file("out.jsonl"));
  std::size_t ttl_records = 0;
  for (const auto& r : l.records) {
    if (r.proto == Proto::Ttl) {
      ++ttl_records;
      CHECK(r.rev_path.empty());
      CHECK(r.rx_ns.has_value() == (r.fwd_path != "none"));
      // No answer: the probe or the hop's ICMP error was lost, which one is not known.
      CHECK((r.loss == LossDirection::Undetermined) == !r.rx_ns.has_value());
    } else {
      CHECK(r.fwd_path.empty());
      CHECK(r.rev_path.empty());
    }
  }
  CHECK(ttl_records == 20);
  CHECK(l.records.size() == 21);
  REQUIRE(l.events.size() == 1);
  const PathEvent& e = l.events[0];
  CHECK(e.type == EventType::Switchover);
  CHECK(e.proto == Proto::Ttl);
  CHECK(e.direction == Direction::Forward);
  CHECK(e.from == "express-connect");
  CHECK(e.to == "ipsec");
  // Two TTL probes unanswered: lost in an undetermined direction (before the loss model they
  // were counted as probes_lost, i.e. as proven losses).
  CHECK(e.probes_lost == 0);
  CHECK(e.probes_lost_undetermined == 2);
  CHECK(e.outage_kind == OutageKind::Undetermined);
  CHECK(e.outage_ns == 3 * kInterval);
  CHECK(e.resolution_ns == kInterval);
  const PathState st = p.path_state(kTtlSession);
  CHECK(st.fwd == "ipsec");
  CHECK_FALSE(st.fwd_outage);
  CHECK_FALSE(st.has_reverse);
}

TEST_CASE("pipeline: a TTL switchover without loss is a bound at the probe interval",
          "[integration]") {
  // The TTL method at its default 1/s: nothing lost across the switch, so the outage is only
  // "no loss seen, at most 1 s", with a 1 s resolution (issue 8 item 5).
  TempDir dir;
  ManualClock clock(1'000'000'000, kBase - kNsPerSec);
  JsonLinesWriter out(dir.file("out.jsonl"), "dc1");
  PipelineOptions po;
  po.drain_ns = 0;
  JsonLinesOutput out_lines(out);
  po.output = &out_lines;
  std::vector<std::string> log;
  po.event_log = [&](const std::string& line) { log.push_back(line); };
  Pipeline p(clock, po);
  p.add_ttl_session(kTtlSession, *IpAddress::parse("192.168.20.161"));
  constexpr std::int64_t kSecond = 1'000'000'000;
  for (std::uint64_t seq = 0; seq < 10; ++seq) {
    TtlResult r = ttl_result(seq, seq < 5 ? "express-connect" : "ipsec");
    r.tx_ns = kBase + static_cast<std::int64_t>(seq) * kSecond;
    r.rx_ns = r.tx_ns + 100'000;
    p.on_ttl_result(r);
  }
  p.start();
  p.stop();
  REQUIRE(out.flush());
  const Lines l = read_lines(dir.file("out.jsonl"));
  REQUIRE(l.events.size() == 1);
  const PathEvent& e = l.events[0];
  CHECK(e.type == EventType::Switchover);
  CHECK(e.outage_kind == OutageKind::Bound);
  CHECK(e.outage_ns == kSecond);
  CHECK(e.resolution_ns == kSecond);
  CHECK(e.probes_lost == 0);
  REQUIRE(log.size() == 1);
  CHECK(log[0].find("no loss seen, outage at most 1000.000 ms") != std::string::npos);
}

TEST_CASE("pipeline: TTL probes are cross-checked against the taps", "[integration]") {
  // A clear tap sees ICMP probes 0..9 on express-connect; TTL probes sent at the same times
  // say express-connect (agree) except one that says ipsec (disagree, logged).
  TempDir dir;
  const IpAddress agent = *IpAddress::parse("172.16.1.188");
  const IpAddress target = *IpAddress::parse("192.168.20.161");
  SessionConfig sc;
  sc.target = target;
  sc.proto = Proto::Icmp;
  sc.rate_pps = 100;
  sc.session_id = kIcmpSession;
  const SessionSpec spec = session_spec_for(sc);
  {
    PcapFile ec(dir.file("ec.pcap"));
    for (std::uint64_t seq = 0; seq < 10; ++seq) {
      const std::int64_t tx = kBase + static_cast<std::int64_t>(seq) * kInterval;
      ec.add(tx + 50'000, ethernet(icmp_probe(agent, target, true, kAgentId, kIcmpSession, seq, tx,
                                              spec.wire_bytes)));
      ec.add(tx + 900'000, ethernet(icmp_probe(target, agent, false, kAgentId, kIcmpSession, seq,
                                               tx, spec.wire_bytes)));
    }
  }
  ManualClock clock(1'000'000'000, kBase - kNsPerSec);
  std::vector<std::string> logs;
  PipelineOptions po;
  po.taps = {clear_tap("ec", "express-connect")};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  po.crosscheck_window_ns = 15'000'000;
  po.log = [&logs](const std::string& m) { logs.push_back(m); };
  Pipeline p(clock, po);
  p.add_session(spec);
  p.add_ttl_session(kTtlSession, target);
  auto src = open_file(dir.file("ec.pcap"));
  REQUIRE(src);
  p.set_source(0, std::move(*src));
  for (std::uint64_t seq = 0; seq < 10; ++seq) {
    ProbeRecord r;
    r.target = target.to_string();
    r.session_id = kIcmpSession;
    r.seq = seq;
    r.tx_ns = kBase + static_cast<std::int64_t>(seq) * kInterval;
    r.rx_ns = r.tx_ns + 1'000'000;
    r.rtt_ns = 1'000'000;
    p.on_sent(SentNotice{kIcmpSession, seq, r.tx_ns, spec.wire_bytes});
    p.on_record(r);
  }
  for (std::uint64_t seq = 2; seq < 8; ++seq) {
    p.on_ttl_result(ttl_result(seq, seq == 5 ? "ipsec" : "express-connect"));
  }
  p.start();
  p.stop();
  const CrossCheckStats& c = p.crosscheck_stats();
  CHECK(c.agree == 5);
  CHECK(c.disagree == 1);
  CHECK(c.undecided == 0);
  CHECK(std::count_if(logs.begin(), logs.end(), [](const std::string& m) {
          return m.find("ttl cross-check") != std::string::npos &&
                 m.find("says forward path ipsec, the taps say express-connect") !=
                     std::string::npos;
        }) == 1);
}

TEST_CASE("ttl prober: paced probes answered by a hop reach the sink", "[integration]") {
  // The prober's thread sends at its rate over a fake socket that answers from 10.1.0.1; every
  // probe comes back as express-connect, in sequence, and stop() reports the rest.
  SystemClock clock;
  auto sock = std::make_unique<TtlFakeSocket>();
  sock->answer_from(IpAddress::parse("10.1.0.1"));
  TtlFakeSocket* raw = sock.get();
  TtlSessionConfig c;
  c.session_id = kTtlSession;
  c.target = *IpAddress::parse("192.168.20.161");
  c.rate_pps = 200;
  c.timeout_ns = 100'000'000;
  c.hops = {TtlHop{*IpAddress::parse("10.1.0.1"), "express-connect", ""}};
  std::mutex mu;
  std::vector<TtlResult> got;
  TtlProber prober(clock, c, std::move(sock), [&](const TtlResult& r) {
    std::lock_guard lock(mu);
    got.push_back(r);
  });
  prober.start();
  while (raw->sent() < 10) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  raw->answer_from(std::nullopt);  // from now on nothing answers
  while (raw->sent() < 12) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  prober.stop();
  std::lock_guard lock(mu);
  REQUIRE(got.size() == raw->sent());
  std::sort(got.begin(), got.end(),
            [](const TtlResult& a, const TtlResult& b) { return a.seq < b.seq; });
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].seq == i);
    if (i < 10) CHECK(got[i].path == "express-connect");
  }
  CHECK(got.back().path == "none");
  const TtlStats s = prober.stats();
  CHECK(s.sent == raw->sent());
  CHECK(s.hop_answers + s.no_answer == s.sent);
}

TEST_CASE("ttl prober: what blinds the method is logged once", "[integration]") {
  // The target answering (TTL too high) and an unmapped router are each logged once however
  // often they answer; five unanswered probes in a row are logged once.
  SystemClock clock;
  auto sock = std::make_unique<TtlFakeSocket>();
  TtlFakeSocket* raw = sock.get();
  const IpAddress target = *IpAddress::parse("192.168.20.161");
  sock->answer_from(target, 3);
  TtlSessionConfig c;
  c.session_id = kTtlSession;
  c.target = target;
  c.rate_pps = 500;
  c.timeout_ns = 20'000'000;
  c.hops = {TtlHop{*IpAddress::parse("10.1.0.1"), "express-connect", ""}};
  std::mutex mu;
  std::vector<std::string> logs;
  TtlProber prober(clock, c, std::move(sock), {}, [&](const std::string& m) {
    std::lock_guard lock(mu);
    logs.push_back(m);
  });
  prober.start();
  auto wait_sent = [&](std::size_t n) {
    while (raw->sent() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  wait_sent(5);
  raw->answer_from(IpAddress::parse("100.64.0.2"));
  wait_sent(10);
  raw->answer_from(std::nullopt);
  wait_sent(20);
  prober.stop();
  std::lock_guard lock(mu);
  auto count = [&](const char* what) {
    return std::count_if(logs.begin(), logs.end(), [what](const std::string& m) {
      return m.find(what) != std::string::npos;
    });
  };
  CHECK(count("the target itself answered") == 1);
  CHECK(count("time exceeded from 100.64.0.2, which no --ttl-hop") == 1);
  CHECK(count("probes in a row unanswered") == 1);
}
