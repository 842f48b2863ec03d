#pragma once
// The attributor tests' world (unit and integration): a two-tap topology in miniature that turns
// probes into the frames each tap would capture and the records the sender makes, fed to an
// Attributor directly or through pcap files.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "capture/pcap_builder.h"
#include "pathsentry/probe/attribution/attributor.h"
#include "pathsentry/probe/capture/tap.h"

namespace pathsentry::test::attributor_world {

using namespace pathsentry::probe;
using pathsentry::test::addr;
using pathsentry::test::Bytes;

constexpr std::uint32_t kAgent = 7;
constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kUs = 1'000;
constexpr std::uint32_t kSpiFwd = 0xC1000001;
constexpr std::uint32_t kSpiRev = 0xC2000002;

/// How a probe (or its reply) travels.
enum class Via { Ec, Ipsec, LostBeforeTaps, LostAfterEc, LostAfterIpsec };

struct Probe {
  Proto proto = Proto::Icmp;
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;
  Via fwd = Via::Ec;
  Via rev = Via::Ec;
  std::int64_t rtt_ns = 8 * kMs;
  std::uint32_t wire = 0;  // 0 = the session's
};

using Key = std::pair<std::uint32_t, std::uint64_t>;

/// The seed topology in miniature: an Express Connect tap (clear) and an IPsec tap (ESP-in-UDP
/// between the DC gateway and the VPN gateway, AES-GCM-16), one ICMP and one STAMP session.
/// Probes are turned into the frames each tap would capture and the records the sender makes.
class World {
 public:
  World() {
    ec.interface = "tap-ec";
    ec.path = "express-connect";
    inet.interface = "tap-inet";
    inet.path = "ipsec";
    inet.encap = Encap::Esp;
    inet.local_endpoint = addr("203.0.113.68");
    inet.remote_endpoint = addr("198.51.100.7");
    inet.transform = EspTransform::preset("aes-gcm-16");
    inet.window_lo_ns = -200 * kUs;
    inet.window_hi_ns = 2 * kMs;
    icmp = {1, Proto::Icmp, target, 84, 0, true, 1000, 1'000'000'000};
    stamp = {0x20002, Proto::Stamp, target, 72, 0, true, 1000, 1'000'000'000};
    stamp.stamp_ssid = 0xA5C3;  // random in the agent (issue 13): not the session's low bits
  }

  AttributorConfig config() const {
    AttributorConfig c;
    c.taps = {ec, inet};
    return c;
  }
  std::unique_ptr<Attributor> make(const AttributorConfig& c) const {
    auto a = std::make_unique<Attributor>(c);
    a->add_session(icmp);
    a->add_session(stamp);
    return a;
  }
  std::unique_ptr<Attributor> make() const { return make(config()); }

  const SessionSpec& spec(Proto p) const { return p == Proto::Icmp ? icmp : stamp; }

  void add(const Probe& p) {
    const SessionSpec& s = spec(p.proto);
    const std::uint32_t wire = p.wire != 0 ? p.wire : s.wire_bytes;
    sent.push_back({s.session_id, p.seq, p.tx_ns, p.wire});
    bool arrived = false;
    switch (p.fwd) {
      case Via::Ec:
      case Via::LostAfterEc:
        frames[0].emplace_back(p.tx_ns + 50 * kUs, request(p, wire));
        arrived = p.fwd == Via::Ec;
        break;
      case Via::Ipsec:
      case Via::LostAfterIpsec:
        esp(p.tx_ns + 400 * kUs, Direction::Forward, inet.transform->esp_length(wire));
        arrived = p.fwd == Via::Ipsec;
        break;
      case Via::LostBeforeTaps:
        break;
    }
    ProbeRecord r;
    r.target = s.target.to_string();
    r.proto = p.proto;
    r.session_id = s.session_id;
    r.seq = p.seq;
    r.tx_ns = p.tx_ns + 3 * kUs;  // the kernel stamp comes a little after the clock read
    r.tx_kernel_ts = true;
    const std::uint32_t rseq = reflector_seq_;
    if (arrived && p.proto == Proto::Stamp) ++reflector_seq_;  // the STAMP reflector's own count
    bool received = false;
    const std::int64_t rx = p.tx_ns + p.rtt_ns;
    if (arrived) {
      switch (p.rev) {
        case Via::Ec:
        case Via::LostAfterEc:
          frames[0].emplace_back(rx - 50 * kUs, reply(p, wire, rseq));
          received = p.rev == Via::Ec;
          break;
        case Via::Ipsec:
        case Via::LostAfterIpsec:
          esp(rx - 400 * kUs, Direction::Reverse, inet.transform->esp_length(wire));
          received = p.rev == Via::Ipsec;
          break;
        case Via::LostBeforeTaps:
          break;
      }
    }
    if (received) {
      r.rx_ns = rx;
      r.rtt_ns = rx - r.tx_ns;
      if (p.proto == Proto::Stamp) {
        r.reflector_seq = rseq;
        r.reflector_rx_ns = p.tx_ns + p.rtt_ns / 2;
        r.reflector_tx_ns = p.tx_ns + p.rtt_ns / 2 + 10 * kUs;
      }
    }
    records.push_back(r);
  }

  /// Tunnel traffic that is not a probe.
  void esp(std::int64_t ts, Direction d, std::uint32_t len) {
    const bool fwd = d == Direction::Forward;
    frames[1].emplace_back(
        ts, test::ethernet(test::esp_packet(fwd ? inet.local_endpoint : inet.remote_endpoint,
                                            fwd ? inet.remote_endpoint : inet.local_endpoint,
                                            fwd ? kSpiFwd : kSpiRev, fwd ? esp_fwd_++ : esp_rev_++,
                                            len, true)));
  }

  /// Feeds tap `t`'s frames (0 = tap-ec, 1 = tap-inet) in the order they were made, decoding
  /// each as that tap does (link type 1, as the tests that feed one tap by hand always did).
  void observe(Attributor& a, std::size_t t) const {
    const TapSpec& spec = t == 0 ? ec : inet;
    for (const auto& [ts, f] : frames[t]) {
      a.on_observation(t, *decode_frame(spec, DecodeContext{kAgent, 862}, ts, 1, f));
    }
  }

  /// Feeds everything (decoding each frame), then flushes. Returns records by (session, seq).
  std::map<Key, ProbeRecord> run(Attributor& a) {
    feed_sender_before(a);
    for (std::size_t t = 0; t < 2; ++t) {
      const TapSpec& spec = t == 0 ? ec : inet;
      for (const auto& [ts, f] : sorted(t)) {
        const auto o = decode_frame(spec, DecodeContext{kAgent, 862}, ts, linktype::kEthernet, f);
        if (o) a.on_observation(t, *o);
      }
    }
    return finish(a);
  }

  /// Same through pcap files, libpcap and Tap::pump.
  std::map<Key, ProbeRecord> run_pcap(Attributor& a, std::vector<Bytes> extra_ec = {},
                                      std::vector<Bytes> extra_inet = {}) {
    test::TempDir dir;
    std::vector<std::string> paths = {dir.file("tap-ec.pcap"), dir.file("tap-inet.pcap")};
    for (std::size_t t = 0; t < 2; ++t) {
      test::PcapFile f(paths[t]);
      const auto& extra = t == 0 ? extra_ec : extra_inet;
      std::size_t i = 0;
      std::int64_t last = kT0;
      for (const auto& [ts, fr] : sorted(t)) {
        f.add(ts, fr);
        if (i < extra.size()) f.add(ts, extra[i++]);  // junk interleaved with real frames
        last = ts;
      }
      for (; i < extra.size(); ++i) f.add(last, extra[i]);
      f.close();
    }
    feed_sender_before(a);
    for (std::size_t t = 0; t < 2; ++t) {
      auto src = open_file(paths[t]);
      REQUIRE(src);
      taps.emplace_back(t == 0 ? ec : inet, DecodeContext{kAgent, 862}, std::move(*src), t);
      bool end = false;
      while (!end) REQUIRE(taps.back().pump(a, 64, &end));
    }
    return finish(a);
  }

  TapSpec ec;
  TapSpec inet;
  IpAddress agent = addr("172.16.1.188");
  IpAddress target = addr("192.168.20.161");
  SessionSpec icmp;
  SessionSpec stamp;
  std::vector<std::pair<std::int64_t, Bytes>> frames[2];
  std::vector<ProbeSent> sent;
  std::vector<ProbeRecord> records;
  std::vector<Tap> taps;

 private:
  Bytes request(const Probe& p, std::uint32_t wire) const {
    const SessionSpec& s = spec(p.proto);
    if (p.proto == Proto::Icmp) {
      return test::ethernet(
          test::icmp_probe(agent, target, true, kAgent, s.session_id, p.seq, p.tx_ns, wire));
    }
    return test::ethernet(test::stamp_request(
        agent, target, 40000, 862, static_cast<std::uint32_t>(p.seq), s.stamp_ssid, wire));
  }
  Bytes reply(const Probe& p, std::uint32_t wire, std::uint32_t rseq) const {
    const SessionSpec& s = spec(p.proto);
    if (p.proto == Proto::Icmp) {
      return test::ethernet(
          test::icmp_probe(target, agent, false, kAgent, s.session_id, p.seq, p.tx_ns, wire));
    }
    return test::ethernet(test::stamp_reply(target, agent, 862, 40000, rseq,
                                            static_cast<std::uint32_t>(p.seq), s.stamp_ssid, wire));
  }
  /// Frames in capture order (ties keep insertion order). Not std::stable_sort: its nothrow-new
  /// buffer is freed by the operator delete another test in this binary replaces, which ASan
  /// reports as a mismatch.
  std::vector<std::pair<std::int64_t, Bytes>> sorted(std::size_t t) const {
    std::vector<std::size_t> idx(frames[t].size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](std::size_t x, std::size_t y) {
      return std::pair{frames[t][x].first, x} < std::pair{frames[t][y].first, y};
    });
    std::vector<std::pair<std::int64_t, Bytes>> v;
    for (std::size_t i : idx) v.push_back(frames[t][i]);
    return v;
  }
  void feed_sender_before(Attributor& a) {
    for (const auto& s : sent) a.on_sent(s);
  }
  std::map<Key, ProbeRecord> finish(Attributor& a) {
    for (const auto& r : records) a.on_record(r);
    std::vector<ProbeRecord> out;
    a.flush(out);
    std::map<Key, ProbeRecord> m;
    for (auto& r : out) m[{r.session_id, r.seq}] = r;
    return m;
  }

  std::uint32_t reflector_seq_ = 0;
  std::uint32_t esp_fwd_ = 1;
  std::uint32_t esp_rev_ = 1;
};

inline std::pair<std::string, std::string> paths(const std::map<Key, ProbeRecord>& m,
                                                 std::uint32_t s, std::uint64_t seq) {
  const auto it = m.find({s, seq});
  if (it == m.end()) return {"<missing>", "<missing>"};
  return {it->second.fwd_path, it->second.rev_path};
}

using P = std::pair<std::string, std::string>;

}  // namespace pathsentry::test::attributor_world
