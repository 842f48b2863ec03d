#pragma once
// Ingest bodies and records for the collector's tests, written with the record model's own
// JSON codec (the agent's), plus a scratch directory.

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "collector/fake_store.h"
#include "pathsentry/common/record_json.h"

namespace pathsentry::test {

inline constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;  // a whole second
inline constexpr const char* kToken = "s3cret-token-0123456789";

inline ProbeRecord probe_at(std::uint64_t seq, std::int64_t tx_ns, bool lost = false) {
  ProbeRecord r;
  r.target = "192.0.2.10";
  r.proto = Proto::Stamp;
  r.session_id = 2;
  r.seq = seq;
  r.tx_ns = tx_ns;
  if (!lost) {
    r.rx_ns = tx_ns + 5'000'000;
    r.rtt_ns = 5'000'000;
  } else {
    r.loss = LossDirection::Forward;
  }
  r.fwd_path = lost ? "none" : "express-connect";
  r.rev_path = lost ? "" : "express-connect";
  return r;
}

inline Rollup rollup(std::int64_t second_ns, Direction d, const std::string& path,
                     std::uint64_t sent, std::uint64_t received, std::uint64_t lost_forward = 0,
                     std::uint64_t lost_reverse = 0, std::uint64_t lost_undetermined = 0) {
  Rollup r;
  r.target = "192.0.2.10";
  r.proto = Proto::Stamp;
  r.session_id = 2;
  r.second_ns = second_ns;
  r.direction = d;
  r.path = path;
  r.sent = sent;
  r.received = received;
  r.lost_forward = lost_forward;
  r.lost_reverse = lost_reverse;
  r.lost_undetermined = lost_undetermined;
  if (received > 0) {
    r.rtt_min_ns = 4'000'000;
    r.rtt_mean_ns = 5'000'000;
    r.rtt_p50_ns = 5'000'000;
    r.rtt_p99_ns = 6'000'000;
    r.rtt_max_ns = 7'000'000;
    r.jitter_ns = 100'000;
  }
  return r;
}

inline PathEvent switchover_event(std::uint64_t event_id, std::int64_t ts_ns) {
  PathEvent e;
  e.type = EventType::Switchover;
  e.target = "192.0.2.10";
  e.proto = Proto::Stamp;
  e.session_id = 2;
  e.direction = Direction::Forward;
  e.ts_ns = ts_ns;
  e.seq = 42;
  e.detected_ns = ts_ns + 1000;
  e.from = "express-connect";
  e.to = "ipsec";
  e.event_id = event_id;
  return e;
}

/// Lines of one ingest body.
struct Body {
  std::string text;
  explicit Body(const BatchHeader& h = FakeStore::header()) { probe::append_json(h, text); }
  Body& add(const ProbeRecord& r) {
    probe::append_json(r, text);
    return *this;
  }
  Body& add(const Rollup& r) {
    probe::append_json(r, text);
    return *this;
  }
  Body& add(const PathEvent& e) {
    probe::append_json(e, text);
    return *this;
  }
  Body& add(const BatchHeader& h) {
    probe::append_json(h, text);
    return *this;
  }
  Body& line(const std::string& l) {
    text += l + "\n";
    return *this;
  }
};

/// A temporary directory `/tmp/<prefix>XXXXXX`, removed with everything in it.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& prefix) {
    std::string t = "/tmp/" + prefix + "XXXXXX";
    if (mkdtemp(t.data()) != nullptr) path = t;
  }
  ~TempDir() {
    if (!path.empty()) std::filesystem::remove_all(path);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] std::string file(const std::string& name) const { return path + "/" + name; }
};

}  // namespace pathsentry::test
