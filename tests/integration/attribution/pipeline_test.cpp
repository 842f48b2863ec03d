#include "pathsentry/probe/attribution/pipeline.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "capture/pcap_builder.h"
#include "pathsentry/probe/capture/packet_source.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace pathsentry::test;

namespace {
// A clear tap (GCC 12 warns on designated initializers that omit members, even defaulted ones).
pathsentry::probe::TapSpec clear_tap(const char* interface, const char* path) {
  pathsentry::probe::TapSpec t;
  t.interface = interface;
  t.path = path;
  t.encap = pathsentry::probe::Encap::Clear;
  return t;
}
}  // namespace

namespace {

constexpr std::uint32_t kAgentId = 7;
constexpr std::uint32_t kSession = 0x12340001;
constexpr std::int64_t kBase = 1'700'000'000'000'000'000;
constexpr std::int64_t kInterval = 10'000'000;  // 10 ms between probes
constexpr std::int64_t kRtt = 1'000'000;

struct Lab {
  IpAddress agent = addr("172.16.1.188");
  IpAddress target = addr("192.168.20.161");
  IpAddress gw = addr("198.51.100.68");
  IpAddress vpn = addr("203.0.113.10");
};

// Writes the two taps' captures: probes 0..9 on the clear tap, 10..19 as ESP on the other.
void write_captures(const Lab& lab, const SessionSpec& spec, const TapSpec& esp,
                    const std::string& ec_path, const std::string& inet_path) {
  PcapFile ec(ec_path);
  PcapFile inet(inet_path);
  const std::uint32_t esp_len = esp.transform->esp_length(spec.wire_bytes);
  for (std::uint64_t seq = 0; seq < 20; ++seq) {
    const std::int64_t tx = kBase + static_cast<std::int64_t>(seq) * kInterval;
    if (seq < 10) {
      ec.add(tx + 50'000, ethernet(icmp_probe(lab.agent, lab.target, true, kAgentId, kSession, seq,
                                              tx, spec.wire_bytes)));
      ec.add(tx + kRtt - 50'000, ethernet(icmp_probe(lab.target, lab.agent, false, kAgentId,
                                                     kSession, seq, tx, spec.wire_bytes)));
    } else {
      const auto n = static_cast<std::uint32_t>(seq);
      inet.add(tx + 100'000, ethernet(esp_packet(lab.gw, lab.vpn, 0x1001, n, esp_len, true)));
      inet.add(tx + kRtt - 100'000,
               ethernet(esp_packet(lab.vpn, lab.gw, 0x2002, n, esp_len, true)));
    }
  }
}

// The IPsec tap of the lab (AES-CBC + HMAC-SHA256 ESP between the two gateways).
TapSpec esp_tap(const Lab& lab) {
  return TapSpec{.interface = "inet",
                 .path = "ipsec",
                 .encap = Encap::Esp,
                 .local_endpoint = lab.gw,
                 .remote_endpoint = lab.vpn,
                 .transform = EspTransform::preset("aes-cbc-sha256")};
}

// One ICMP session to the lab's target at 100 probes/s.
SessionSpec icmp_session(const Lab& lab) {
  SessionConfig sc;
  sc.target = lab.target;
  sc.proto = Proto::Icmp;
  sc.rate_pps = 100;
  sc.session_id = kSession;
  return session_spec_for(sc);
}

ProbeRecord answered(const Lab& lab, std::uint64_t seq) {
  ProbeRecord r;
  r.target = lab.target.to_string();
  r.proto = Proto::Icmp;
  r.session_id = kSession;
  r.seq = seq;
  r.tx_ns = kBase + static_cast<std::int64_t>(seq) * kInterval;
  r.rx_ns = r.tx_ns + kRtt;
  r.rtt_ns = kRtt;
  r.tx_kernel_ts = true;
  return r;
}

}  // namespace

TEST_CASE("pipeline: taps, attributor and detector write paths and events", "[integration]") {
  // Records and samples fed from the engine side and frames from two pcap-file taps come out of
  // the worker as JSON lines with each probe's paths and a switchover event per direction.
  Lab lab;
  TempDir dir;
  const TapSpec ec = clear_tap("ec", "express-connect");
  const TapSpec inet = esp_tap(lab);
  const SessionSpec spec = icmp_session(lab);
  CHECK(spec.wire_bytes == 60);  // 20-byte IPv4 header + the 40-byte minimal ICMP probe
  write_captures(lab, spec, inet, dir.file("ec.pcap"), dir.file("inet.pcap"));

  // The clock stays before the probes, so nothing is decided until stop() flushes: the result
  // does not depend on how the capture threads and the worker interleave.
  ManualClock clock(1'000'000'000, kBase - kNsPerSec);
  JsonLinesWriter out(dir.file("out.jsonl"), "dc1");
  std::vector<std::string> event_lines;
  PipelineOptions po;
  po.taps = {ec, inet};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  JsonLinesOutput out_lines(out);
  po.output = &out_lines;
  po.event_log = [&event_lines](const std::string& l) { event_lines.push_back(l); };
  Pipeline p(clock, po);
  p.add_session(spec);
  for (std::size_t i = 0; i < 2; ++i) {
    auto src = open_file(dir.file(i == 0 ? "ec.pcap" : "inet.pcap"));
    REQUIRE(src);
    p.set_source(i, std::move(*src));
  }
  for (std::uint64_t seq = 0; seq < 20; ++seq) {
    const ProbeRecord r = answered(lab, seq);
    p.on_sent(SentNotice{kSession, seq, r.tx_ns, spec.wire_bytes});
    p.on_record(r);
  }
  p.start();
  p.stop();
  REQUIRE(out.flush());

  std::vector<ProbeRecord> records;
  std::vector<PathEvent> events;
  std::ifstream in(dir.file("out.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto parsed = parse_json_line(line);
    REQUIRE(parsed);
    if (auto* r = std::get_if<ProbeRecord>(&*parsed)) records.push_back(*r);
    if (auto* e = std::get_if<PathEvent>(&*parsed)) events.push_back(*e);
  }
  REQUIRE(records.size() == 20);
  for (const auto& r : records) {
    const char* want = r.seq < 10 ? "express-connect" : "ipsec";
    CHECK(r.fwd_path == want);
    CHECK(r.rev_path == want);
  }
  std::vector<std::string> switches;
  for (const auto& e : events) {
    if (e.type == EventType::Switchover) {
      switches.push_back(std::string(to_string(e.direction)) + " " + e.from + ">" + e.to);
    }
  }
  std::sort(switches.begin(), switches.end());
  CHECK(switches ==
        std::vector<std::string>{"forward express-connect>ipsec", "reverse express-connect>ipsec"});
  CHECK(event_lines.size() == events.size());
  const PathState st = p.path_state(kSession);
  CHECK(st.fwd == "ipsec");
  CHECK(st.rev == "ipsec");
  CHECK_FALSE(st.fwd_outage);
  CHECK_FALSE(st.rev_outage);
}

TEST_CASE("pipeline: the loss split by direction is the records'", "[integration]") {
  // Probe 3's reply is on the clear tap but never reached the agent (reverse); 12..14 left on
  // the tunnel and were never answered (undetermined). The split the summary takes from
  // session_losses() is exactly what the records say.
  Lab lab;
  TempDir dir;
  const TapSpec inet = esp_tap(lab);
  const SessionSpec spec = icmp_session(lab);
  write_captures(lab, spec, inet, dir.file("ec.pcap"), dir.file("inet.pcap"));
  ManualClock clock(1'000'000'000, kBase - kNsPerSec);
  JsonLinesWriter out(dir.file("out.jsonl"), "dc1");
  PipelineOptions po;
  po.taps = {clear_tap("ec", "express-connect"), inet};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  JsonLinesOutput out_lines(out);
  po.output = &out_lines;
  Pipeline p(clock, po);
  p.add_session(spec);
  for (std::size_t i = 0; i < 2; ++i) {
    auto src = open_file(dir.file(i == 0 ? "ec.pcap" : "inet.pcap"));
    REQUIRE(src);
    p.set_source(i, std::move(*src));
  }
  for (std::uint64_t seq = 0; seq < 20; ++seq) {
    ProbeRecord r = answered(lab, seq);
    if (seq == 3 || (seq >= 12 && seq < 15)) {
      r.rx_ns.reset();
      r.rtt_ns = 0;
    }
    p.on_sent(SentNotice{kSession, seq, r.tx_ns, spec.wire_bytes});
    p.on_record(r);
  }
  p.start();
  p.stop();
  REQUIRE(out.flush());
  std::array<std::uint64_t, 3> from_records{};
  std::ifstream in(dir.file("out.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto parsed = parse_json_line(line);
    REQUIRE(parsed);
    const auto* r = std::get_if<ProbeRecord>(&*parsed);
    if (r == nullptr) continue;
    INFO("seq " << r->seq);
    if (r->seq == 3) CHECK(r->loss == LossDirection::Reverse);
    if (r->seq >= 12 && r->seq < 15) CHECK(r->loss == LossDirection::Undetermined);
    if (r->loss != LossDirection::None) ++from_records[static_cast<std::size_t>(r->loss) - 1];
  }
  CHECK(from_records == std::array<std::uint64_t, 3>{0, 1, 3});
  CHECK(p.session_losses(kSession) == from_records);
  CHECK_FALSE(p.session_losses(kSession + 1));
}

TEST_CASE("pipeline: a session before any sample has no path yet", "[integration]") {
  // path_state() has no path in either direction until the detector has established one.
  ManualClock clock;
  PipelineOptions po;
  po.taps = {clear_tap("ec", "express-connect")};
  Pipeline p(clock, po);
  SessionConfig sc;
  sc.target = addr("192.0.2.1");
  sc.session_id = 5;
  p.add_session(session_spec_for(sc));
  CHECK(p.path_state(5) == PathState{});
}

namespace {

// A pcap-file source whose capture thread stalls (blocks) at the first frame captured at or
// after `gate_ns` until open(): a capture thread that has fallen behind.
class GatedSource final : public PacketSource {
 public:
  GatedSource(std::unique_ptr<PacketSource> inner, std::int64_t gate_ns)
      : inner_(std::move(inner)), gate_ns_(gate_ns) {}
  tl::expected<ReadStatus, std::string> next(Frame& out) override {
    auto r = inner_->next(out);
    if (!r || *r != ReadStatus::Frame || out.ts_ns < gate_ns_) return r;
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return open_; });
    return r;  // `out` still points into the inner source: nothing else was read meanwhile
  }
  [[nodiscard]] int linktype() const override { return inner_->linktype(); }
  [[nodiscard]] SourceStats stats() const override { return inner_->stats(); }
  [[nodiscard]] int selectable_fd() const override { return -1; }
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::unique_ptr<PacketSource> inner_;
  std::int64_t gate_ns_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace

TEST_CASE("pipeline: a lagging capture holds the attributor's decisions back", "[integration]") {
  // The clock is long past every probe, and the clear tap's capture thread stalls after probe
  // 4's copies: the worker must wait for that tap's capture instead of deciding probes 5..9
  // without their copies (which would make them "unknown" and the copies late).
  Lab lab;
  TempDir dir;
  const TapSpec ec = clear_tap("ec", "express-connect");
  const TapSpec inet = esp_tap(lab);
  const SessionSpec spec = icmp_session(lab);
  write_captures(lab, spec, inet, dir.file("ec0.pcap"), dir.file("inet.pcap"));
  {
    // The clear tap's capture with a full pump batch of other frames between probes 4 and 5,
    // so its thread hands over probes 0..4 (watermark there) before it stalls.
    auto src = open_file(dir.file("ec0.pcap"));
    REQUIRE(src);
    PcapFile with_filler(dir.file("ec.pcap"));
    Frame f;
    bool filler_written = false;
    while (true) {
      auto r = (*src)->next(f);
      REQUIRE(r);
      if (*r != ReadStatus::Frame) break;
      if (!filler_written && f.ts_ns > kBase + 5 * kInterval) {
        for (int i = 0; i < 5000; ++i) {
          const Bytes junk{0x01, 0x02, 0x03};
          with_filler.add(kBase + 4 * kInterval + 2'000'000 + i, junk);
        }
        filler_written = true;
      }
      with_filler.add(f.ts_ns, f.bytes);
    }
    with_filler.close();
  }

  ManualClock clock(1'000'000'000, kBase + 30 * kNsPerSec);
  JsonLinesWriter out(dir.file("out.jsonl"), "dc1");
  PipelineOptions po;
  po.taps = {ec, inet};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  JsonLinesOutput out_lines(out);
  po.output = &out_lines;
  Pipeline p(clock, po);
  p.add_session(spec);
  auto ec_src = open_file(dir.file("ec.pcap"));
  auto inet_src = open_file(dir.file("inet.pcap"));
  REQUIRE(ec_src);
  REQUIRE(inet_src);
  auto gated = std::make_unique<GatedSource>(std::move(*ec_src), kBase + 5 * kInterval);
  GatedSource* gate = gated.get();
  p.set_source(0, std::move(gated));
  p.set_source(1, std::move(*inet_src));
  for (std::uint64_t seq = 0; seq < 20; ++seq) {
    const ProbeRecord r = answered(lab, seq);
    p.on_sent(SentNotice{kSession, seq, r.tx_ns, spec.wire_bytes});
    p.on_record(r);
  }
  p.start();
  // Long enough for many worker polls (every 2 ms) while the capture is stalled.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  gate->open();
  p.stop();
  REQUIRE(out.flush());

  std::vector<ProbeRecord> records;
  std::ifstream in(dir.file("out.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto parsed = parse_json_line(line);
    REQUIRE(parsed);
    if (auto* r = std::get_if<ProbeRecord>(&*parsed)) records.push_back(*r);
  }
  REQUIRE(records.size() == 20);
  for (const auto& r : records) {
    INFO("seq " << r.seq);
    const char* want = r.seq < 10 ? "express-connect" : "ipsec";
    CHECK(r.fwd_path == want);
    CHECK(r.rev_path == want);
  }
  bool lag_counted = false;
  for (const auto& l : p.stats_lines()) {
    UNSCOPED_INFO(l);
    if (l.find("polls held back by a lagging capture 0") == std::string::npos &&
        l.find("polls held back by a lagging capture") != std::string::npos) {
      lag_counted = true;
    }
  }
  CHECK(lag_counted);
}

TEST_CASE("pipeline: reopen backoff doubles up to its maximum", "[unit]") {
  constexpr std::int64_t kMs = 1'000'000;
  CHECK(reopen_backoff_ns(0, 100 * kMs, 5000 * kMs) == 100 * kMs);
  CHECK(reopen_backoff_ns(1, 100 * kMs, 5000 * kMs) == 200 * kMs);
  CHECK(reopen_backoff_ns(5, 100 * kMs, 5000 * kMs) == 3200 * kMs);
  CHECK(reopen_backoff_ns(6, 100 * kMs, 5000 * kMs) == 5000 * kMs);
  CHECK(reopen_backoff_ns(1000, 100 * kMs, 5000 * kMs) == 5000 * kMs);
}

namespace {

// A scripted capture: its frames, then `timeouts` empty reads, then either a read error (an
// interface that disappeared) or the end (a file that ends).
class ScriptedSource final : public PacketSource {
 public:
  ScriptedSource(std::vector<std::pair<std::int64_t, Bytes>> frames, int timeouts,
                 std::string error)
      : frames_(std::move(frames)), timeouts_(timeouts), error_(std::move(error)) {}
  tl::expected<ReadStatus, std::string> next(Frame& out) override {
    if (i_ < frames_.size()) {
      out.ts_ns = frames_[i_].first;
      out.bytes = frames_[i_].second;
      out.wire_len = static_cast<std::uint32_t>(frames_[i_].second.size());
      out.linktype = linktype::kEthernet;
      ++i_;
      return ReadStatus::Frame;
    }
    if (timeouts_ > 0) {
      --timeouts_;
      return ReadStatus::Timeout;
    }
    if (error_.empty()) return ReadStatus::End;
    return tl::unexpected(error_);
  }
  [[nodiscard]] int linktype() const override { return linktype::kEthernet; }
  [[nodiscard]] SourceStats stats() const override { return {}; }
  [[nodiscard]] int selectable_fd() const override { return -1; }

 private:
  std::vector<std::pair<std::int64_t, Bytes>> frames_;
  std::size_t i_ = 0;
  int timeouts_;
  std::string error_;
};

// Waits (real time, for the pipeline's threads) until `done` holds; false after 10 s.
template <class F>
bool wait_for(F done) {
  for (int i = 0; i < 10'000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

}  // namespace

TEST_CASE("pipeline: a tap whose capture fails is reopened, its gap is no evidence",
          "[integration]") {
  // One clear tap; probes every 50 ms. Its capture fails after probe 4 (the interface
  // disappeared), the first reopen fails, the second (after the backoff, moved by the manual
  // clock) succeeds: probes 5..11 fall in the gap, 7 and 8 are lost there. The gap's probes are
  // "unknown" (never "none" by the tap's silence) and carry taps_down; tap_down and tap_up
  // are emitted, counted and logged; no path event comes of it.
  constexpr std::int64_t kMs = 1'000'000;
  constexpr std::int64_t kGapInterval = 50 * kMs;
  Lab lab;
  TempDir dir;
  const SessionSpec spec = icmp_session(lab);
  auto tx = [](std::uint64_t seq) { return kBase + static_cast<std::int64_t>(seq) * kGapInterval; };
  auto copies = [&](std::uint64_t from, std::uint64_t to) {
    std::vector<std::pair<std::int64_t, Bytes>> v;
    for (std::uint64_t seq = from; seq < to; ++seq) {
      v.emplace_back(tx(seq) + 50'000,
                     ethernet(icmp_probe(lab.agent, lab.target, true, kAgentId, kSession, seq,
                                         tx(seq), spec.wire_bytes)));
      v.emplace_back(tx(seq) + kRtt - 50'000,
                     ethernet(icmp_probe(lab.target, lab.agent, false, kAgentId, kSession, seq,
                                         tx(seq), spec.wire_bytes)));
    }
    return v;
  };

  ManualClock clock(1'000'000'000, kBase + 230 * kMs);
  JsonLinesWriter out(dir.file("out.jsonl"), "dc1");
  std::mutex mu;
  std::vector<std::string> event_lines;
  std::vector<std::string> log_lines;
  PipelineOptions po;
  po.taps = {clear_tap("ec", "express-connect")};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  JsonLinesOutput out_lines(out);
  po.output = &out_lines;
  po.event_log = [&](const std::string& l) {
    std::lock_guard lock(mu);
    event_lines.push_back(l);
  };
  po.log = [&](const std::string& l) {
    std::lock_guard lock(mu);
    log_lines.push_back(l);
  };
  std::atomic<int> attempts{0};  // before the pipeline: its threads use them until it is gone
  std::atomic<bool> back{false};
  Pipeline p(clock, po);
  p.add_session(spec);
  p.set_source(
      0, std::make_unique<ScriptedSource>(copies(0, 5), 1, "pcap read: The interface disappeared"),
      [&]() -> tl::expected<std::unique_ptr<PacketSource>, std::string> {
        ++attempts;
        if (!back.load()) return tl::unexpected(std::string("tap ec: No such device"));
        return std::make_unique<ScriptedSource>(copies(12, 20), 0, "");
      });
  for (std::uint64_t seq = 0; seq < 20; ++seq) {
    ProbeRecord r = answered(lab, seq);
    r.tx_ns = tx(seq);
    r.rx_ns = r.tx_ns + kRtt;
    if (seq == 7 || seq == 8) r.rx_ns.reset();
    p.on_sent(SentNotice{kSession, seq, r.tx_ns, spec.wire_bytes});
    p.on_record(r);
  }
  p.start();
  REQUIRE(wait_for([&] { return !p.taps_down().empty(); }));
  const std::vector<TapDown> down = p.taps_down();
  REQUIRE(down.size() == 1);
  CHECK(down[0].interface == "ec");
  CHECK(down[0].path == "express-connect");
  clock.advance(std::chrono::milliseconds(100));  // the first reopen is due: it fails
  REQUIRE(wait_for([&] { return attempts.load() == 1; }));
  back.store(true);
  clock.advance(std::chrono::milliseconds(242));  // the second (200 ms later) works
  REQUIRE(wait_for([&] { return attempts.load() == 2 && p.taps_down().empty(); }));
  p.stop();
  REQUIRE(out.flush());

  std::vector<ProbeRecord> records;
  std::vector<PathEvent> events;
  std::ifstream in(dir.file("out.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto parsed = parse_json_line(line);
    REQUIRE(parsed);
    if (auto* r = std::get_if<ProbeRecord>(&*parsed)) records.push_back(*r);
    if (auto* e = std::get_if<PathEvent>(&*parsed)) events.push_back(*e);
  }
  REQUIRE(records.size() == 20);
  for (const auto& r : records) {
    INFO("seq " << r.seq);
    const bool gap = r.seq >= 5 && r.seq <= 11;
    const bool lost = r.seq == 7 || r.seq == 8;
    CHECK(r.fwd_path == (gap ? "unknown" : "express-connect"));
    CHECK(r.rev_path == (lost ? "none" : gap ? "unknown" : "express-connect"));
    CHECK(r.taps_down == (gap ? std::vector<std::string>{"ec"} : std::vector<std::string>{}));
  }
  REQUIRE(events.size() == 2);  // no switchover, no outage: only the tap's own events
  CHECK(events[0].type == EventType::TapDown);
  CHECK(events[0].tap == "ec");
  CHECK(events[0].path == "express-connect");
  CHECK(events[0].reason == "pcap read: The interface disappeared");
  // Complete up to the last drained read less the capture's slack (20 ms: a TPACKET_V3
  // block may hold frames that long).
  CHECK(events[0].ts_ns == kBase + 210 * kMs);
  CHECK(events[0].detected_ns == kBase + 230 * kMs);
  CHECK(events[1].type == EventType::TapUp);
  CHECK(events[1].ts_ns == kBase + 572 * kMs);
  CHECK(events[1].duration_ns == 362 * kMs);
  {
    std::lock_guard lock(mu);
    REQUIRE(event_lines.size() == 2);
    CHECK(event_lines[0].find("tap_down ec (express-connect): pcap read: The interface") == 0);
    CHECK(event_lines[1].find("tap_up ec (express-connect): capturing again after 362.000 ms") ==
          0);
    bool still_down_logged = false;
    for (const auto& l : log_lines) {
      still_down_logged =
          still_down_logged || l == "tap ec: still down after 1 reopen attempt(s): No such device";
    }
    CHECK(still_down_logged);
  }
  bool counted = false;
  for (const auto& l : p.stats_lines()) {
    UNSCOPED_INFO(l);
    counted = counted || l.find("degraded: down 1 time(s), 2 reopen attempt(s), 0.362 s down") !=
                             std::string::npos;
  }
  CHECK(counted);
}

TEST_CASE("pipeline: a failed tap without a way to reopen it stays down, never complete",
          "[integration]") {
  // Before: a failed capture's watermark went to +inf and the attributor decided without it.
  // Now the tap is down until the end: the probe after the failure that no tap saw is unknown.
  Lab lab;
  TempDir dir;
  const SessionSpec spec = icmp_session(lab);
  ManualClock clock(1'000'000'000, kBase + 15 * kInterval);
  JsonLinesWriter out(dir.file("out.jsonl"), "dc1");
  PipelineOptions po;
  po.taps = {clear_tap("ec", "express-connect")};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  JsonLinesOutput out_lines(out);
  po.output = &out_lines;
  Pipeline p(clock, po);
  p.add_session(spec);
  p.set_source(0, std::make_unique<ScriptedSource>(std::vector<std::pair<std::int64_t, Bytes>>{}, 0,
                                                   "pcap read: The interface went down"));
  ProbeRecord r = answered(lab, 20);
  r.rx_ns.reset();
  p.on_sent(SentNotice{kSession, 20, r.tx_ns, spec.wire_bytes});
  p.on_record(r);
  p.start();
  REQUIRE(wait_for([&] { return !p.taps_down().empty(); }));
  p.stop();
  REQUIRE(out.flush());
  std::vector<ProbeRecord> records;
  std::vector<PathEvent> events;
  std::ifstream in(dir.file("out.jsonl"));
  for (std::string line; std::getline(in, line);) {
    auto parsed = parse_json_line(line);
    REQUIRE(parsed);
    if (auto* rec = std::get_if<ProbeRecord>(&*parsed)) records.push_back(*rec);
    if (auto* e = std::get_if<PathEvent>(&*parsed)) events.push_back(*e);
  }
  REQUIRE(records.size() == 1);
  CHECK(records[0].fwd_path == "unknown");
  CHECK(records[0].taps_down == std::vector<std::string>{"ec"});
  REQUIRE(events.size() == 1);
  CHECK(events[0].type == EventType::TapDown);
  bool down_at_end = false;
  for (const auto& l : p.stats_lines()) {
    down_at_end = down_at_end || l.find("DOWN at the end (pcap read: The interface went down)") !=
                                     std::string::npos;
  }
  CHECK(down_at_end);
}

namespace {

// A Waiter whose sleeps (the worker's) block while held: the test decides when the worker polls
// again.
class HeldWaiter final : public Waiter {
 public:
  // The capture thread's waits are not held (a short real sleep).
  void wait_fd(int /*fd*/, short /*events*/, std::int64_t /*timeout_ns*/) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  void sleep_for(std::int64_t /*ns*/) override {
    std::unique_lock lock(mu_);
    ++sleeps_;
    cv_.wait(lock, [this] { return !held_; });
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }
  int sleeps() {
    std::lock_guard lock(mu_);
    return sleeps_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = true;
  int sleeps_ = 0;
};

// A pcap-file source that hands over nothing until open(), then everything; says when it is
// exhausted.
class LatchedSource final : public PacketSource {
 public:
  explicit LatchedSource(std::unique_ptr<PacketSource> inner) : inner_(std::move(inner)) {}
  tl::expected<ReadStatus, std::string> next(Frame& out) override {
    if (!open_.load()) return ReadStatus::Timeout;
    auto r = inner_->next(out);
    if (r && *r == ReadStatus::End) done_.store(true);
    return r;
  }
  [[nodiscard]] int linktype() const override { return inner_->linktype(); }
  [[nodiscard]] SourceStats stats() const override { return inner_->stats(); }
  [[nodiscard]] int selectable_fd() const override { return -1; }
  void open() { open_.store(true); }
  [[nodiscard]] bool done() const { return done_.load(); }

 private:
  std::unique_ptr<PacketSource> inner_;
  std::atomic<bool> open_{false};
  std::atomic<bool> done_{false};
};

}  // namespace

namespace {

// A clear tap's capture of `probes` ICMP probes one interval apart, each request 50 us after
// its send and its reply 50 us before the RTT.
void write_answered_icmp(const std::string& path, const Lab& lab, const SessionSpec& spec,
                         std::uint64_t probes) {
  PcapFile ec(path);
  for (std::uint64_t seq = 0; seq < probes; ++seq) {
    const std::int64_t tx = kBase + static_cast<std::int64_t>(seq) * kInterval;
    ec.add(tx + 50'000, ethernet(icmp_probe(lab.agent, lab.target, true, kAgentId, kSession, seq,
                                            tx, spec.wire_bytes)));
    ec.add(tx + kRtt - 50'000, ethernet(icmp_probe(lab.target, lab.agent, false, kAgentId, kSession,
                                                   seq, tx, spec.wire_bytes)));
  }
}

}  // namespace

TEST_CASE("pipeline: a poll's batch is announced before its tap copies are matched",
          "[integration]") {
  // Issue 14: at 50 000 probes/s a session, a worker ~20 ms late takes more than 1024 probes'
  // announcements and their clear copies in one batch. A copy ahead of the last announced
  // sequence by more than 1024 is not taken (it could be anything), so when the copies went to
  // the attributor first, every probe past the first 1024 of the batch came out "unknown" (and
  // its copies "unmatched"). Here probe 0 is announced in the worker's first poll; then, with the
  // worker held, the tap hands over the copies of probes 0..2999 and the sender announces and
  // answers them all; the worker's next poll takes both at once.
  constexpr std::uint64_t kProbes = 3000;
  Lab lab;
  TempDir dir;
  const SessionSpec spec = icmp_session(lab);
  write_answered_icmp(dir.file("ec.pcap"), lab, spec, kProbes);
  ManualClock clock(1'000'000'000, kBase - kNsPerSec);  // nothing decided before the flush
  JsonLinesWriter out(dir.file("out.jsonl"), "dc1");
  PipelineOptions po;
  po.taps = {clear_tap("ec", "express-connect")};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  JsonLinesOutput out_lines(out);
  po.output = &out_lines;
  HeldWaiter waiter;
  Pipeline p(clock, po, waiter);
  p.add_session(spec);
  auto src = open_file(dir.file("ec.pcap"));
  REQUIRE(src);
  auto latched = std::make_unique<LatchedSource>(std::move(*src));
  LatchedSource* tap = latched.get();
  p.set_source(0, std::move(latched));
  auto send = [&](std::uint64_t seq) {
    const ProbeRecord r = answered(lab, seq);
    p.on_sent(SentNotice{kSession, seq, r.tx_ns, spec.wire_bytes});
    p.on_record(r);
  };
  send(0);
  p.start();
  // The worker's first poll (probe 0 announced, no copy yet) is done once it sleeps.
  REQUIRE(wait_for([&] { return waiter.sleeps() >= 1; }));
  tap->open();
  REQUIRE(wait_for([&] { return tap->done(); }));
  for (std::uint64_t seq = 1; seq < kProbes; ++seq) send(seq);
  waiter.release();
  p.stop();
  REQUIRE(out.flush());

  std::ifstream in(dir.file("out.jsonl"));
  std::uint64_t records = 0;
  std::uint64_t attributed = 0;
  for (std::string line; std::getline(in, line);) {
    auto parsed = parse_json_line(line);
    REQUIRE(parsed);
    const auto* r = std::get_if<ProbeRecord>(&*parsed);
    if (r == nullptr) continue;
    ++records;
    if (r->fwd_path == "express-connect" && r->rev_path == "express-connect") ++attributed;
  }
  CHECK(records == kProbes);
  CHECK(attributed == kProbes);
  for (const auto& l : p.stats_lines()) {
    if (l.rfind("tap ec", 0) == 0) {
      CHECK(l.find("matched 6000, unmatched 0") != std::string::npos);
    }
  }
}

TEST_CASE("pipeline: taps capture through TPACKET_V3 blocks with a ring sized for the rate",
          "[integration]") {
  // Issue 14: immediate mode (TPACKET_V2) woke the capture thread once per frame from the
  // sender's softirq, ~10 % of the agent's CPU at 100 000 probes/s; and the rings (0.5 s of
  // 320-byte V2 frames per tap) alone were 64 MB of RSS at that rate.
  Lab lab;
  PipelineOptions po;
  po.taps = {clear_tap("ec", "express-connect"), esp_tap(lab)};
  po.decode = DecodeContext{kAgentId, 862};
  po.agent_addresses = {lab.agent};
  po.total_pps = 100'000;
  for (std::size_t i = 0; i < po.taps.size(); ++i) {
    const LiveOptions lo = tap_live_options(po, i);
    CHECK(lo.interface == po.taps[i].interface);
    CHECK(lo.filter == bpf_filter(po.taps[i], po.agent_addresses, 862));
    CHECK_FALSE(lo.immediate);
    CHECK(lo.timeout_ms == 5);
    CHECK(lo.nonblocking);
    CHECK(lo.snaplen == 256);
    CHECK(lo.buffer_bytes == 8u << 20);  // 200 000 frames/s x 0.1 s x (256 + 96) bytes = 7.04 MB
  }
  po.total_pps = 150'000;
  CHECK(tap_live_options(po, 0).buffer_bytes == 10'560'000);
  po.total_pps = 1000;  // the floor: a starved capture thread at low rates
  CHECK(tap_live_options(po, 0).buffer_bytes == 8u << 20);
}

namespace {

// A source that records the scheduling policy of the thread reading it, then ends.
class PolicySource final : public PacketSource {
 public:
  tl::expected<ReadStatus, std::string> next(Frame& /*out*/) override {
    sched_param sp{};
    int policy = -1;
    pthread_getschedparam(pthread_self(), &policy, &sp);
    policy_.store(policy);
    priority_.store(sp.sched_priority);
    return ReadStatus::End;
  }
  [[nodiscard]] int linktype() const override { return linktype::kEthernet; }
  [[nodiscard]] SourceStats stats() const override { return {}; }
  [[nodiscard]] int selectable_fd() const override { return -1; }
  std::atomic<int> policy_{-1};
  std::atomic<int> priority_{-1};
};

}  // namespace

namespace {

// An output that records the scheduling policy of the thread flushing it (the worker).
class PolicyOutput final : public RecordOutput {
 public:
  void write(const ProbeRecord& /*r*/) override {}
  void write(const PathEvent& /*e*/) override {}
  void flush() override {
    sched_param sp{};
    int policy = -1;
    pthread_getschedparam(pthread_self(), &policy, &sp);
    policy_.store(policy);
    priority_.store(sp.sched_priority);
  }
  std::atomic<int> policy_{-1};
  std::atomic<int> priority_{-1};
};

}  // namespace

TEST_CASE("pipeline: capture threads and the worker run SCHED_FIFO at the priority asked",
          "[privileged]") {
  // Issue 14: beside the engine's SCHED_FIFO threads at 100 000 probes/s a capture thread of the
  // default policy was starved until its ring overflowed, and a starved worker let the hand-off
  // queues grow by hundreds of MB. Needs root (or RLIMIT_RTPRIO).
  for (const int prio : {0, 7}) {
    ManualClock clock;
    PipelineOptions po;
    po.taps = {clear_tap("ec", "express-connect")};
    po.drain_ns = 0;
    po.rt_priority = prio;
    PolicyOutput out;
    po.output = &out;
    std::vector<std::string> logs;
    std::mutex mu;
    po.log = [&](const std::string& l) {
      std::lock_guard lock(mu);
      logs.push_back(l);
    };
    Pipeline p(clock, po);
    auto src = std::make_unique<PolicySource>();
    PolicySource* s = src.get();
    p.set_source(0, std::move(src));
    p.start();
    REQUIRE(wait_for([&] { return s->policy_.load() != -1; }));
    p.stop();  // the worker's last poll flushes the output
    INFO("priority " << prio);
    {
      std::lock_guard lock(mu);
      for (const auto& l : logs) UNSCOPED_INFO(l);
    }
    const int want = prio > 0 ? SCHED_FIFO : SCHED_OTHER;
    CHECK(s->policy_.load() == want);
    CHECK(s->priority_.load() == prio);
    CHECK(out.policy_.load() == want);
    CHECK(out.priority_.load() == prio);
  }
}

TEST_CASE("pipeline: the hand-off buffers give a burst's memory back", "[integration]") {
  // Issue 14 goal 6: a worker held back (a busy machine) takes a burst of announcements,
  // records and tap copies in one poll; the queues and per-poll buffers grown for it (tens of MB
  // at 100 000 probes/s) kept that capacity for good, swapping between the two sides of the
  // hand-off. Here 20 000 probes and their 40 000 copies arrive while the worker is held; once
  // it polls on without a burst, what it holds falls back under a few kHandoffKeepBytes.
  constexpr std::uint64_t kProbes = 20'000;
  Lab lab;
  TempDir dir;
  const SessionSpec spec = icmp_session(lab);
  write_answered_icmp(dir.file("ec.pcap"), lab, spec, kProbes);
  ManualClock clock(1'000'000'000, kBase - kNsPerSec);
  PipelineOptions po;
  po.taps = {clear_tap("ec", "express-connect")};
  po.decode = DecodeContext{kAgentId, 862};
  po.drain_ns = 0;
  HeldWaiter waiter;
  Pipeline p(clock, po, waiter);
  p.add_session(spec);
  auto src = open_file(dir.file("ec.pcap"));
  REQUIRE(src);
  auto latched = std::make_unique<LatchedSource>(std::move(*src));
  LatchedSource* tap = latched.get();
  p.set_source(0, std::move(latched));
  p.start();
  REQUIRE(wait_for([&] { return waiter.sleeps() >= 1; }));
  tap->open();
  REQUIRE(wait_for([&] { return tap->done(); }));
  for (std::uint64_t seq = 0; seq < kProbes; ++seq) {
    const ProbeRecord r = answered(lab, seq);
    p.on_sent(SentNotice{kSession, seq, r.tx_ns, spec.wire_bytes});
    p.on_record(r);
  }
  waiter.release();
  // The burst's poll, then polls with nothing new: both sides of each queue come back.
  const int burst_poll = waiter.sleeps();
  REQUIRE(wait_for([&] { return waiter.sleeps() >= burst_poll + 4; }));
  const bool released =
      wait_for([&] { return p.handoff_bytes() <= 4 * Pipeline::kHandoffKeepBytes; });
  const std::size_t held = p.handoff_bytes();
  p.stop();
  INFO("hand-off bytes after the burst: " << held);
  CHECK(released);
}
