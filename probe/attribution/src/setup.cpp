#include "setup.h"

// The attributor's setup: taps → path ids and ESP lanes, windows → delays.

#include <algorithm>
#include <cstdlib>

#include "esp_lanes.h"
#include "pathsentry/common/config_error.h"

namespace pathsentry::probe::attr {

Setup::Setup(AttributorConfig c) : cfg(std::move(c)) {
  for (std::size_t t = 0; t < cfg.taps.size(); ++t) {
    const auto& tap = cfg.taps[t];
    const std::string key = "taps[" + std::to_string(t) + "]";
    if (tap.path.empty() || tap.path == kPathNone || tap.path == kPathUnknown) {
      throw ConfigError("", key + ".path", tap.path,
                        "a tap needs a path label other than 'none'/'unknown'");
    }
    auto it = std::find(labels.begin(), labels.end(), tap.path);
    if (it == labels.end()) {
      if (labels.size() == kMaxPaths)
        throw ConfigError("", key + ".path", tap.path, "too many paths");
      labels.push_back(tap.path);
      it = labels.end() - 1;
    }
    tap_path.push_back(static_cast<std::int8_t>(it - labels.begin()));
    if (tap.encap == Encap::Esp) {
      if (lane_tap.size() == kMaxEspTaps) {
        throw ConfigError("", key, tap.interface, "at most 4 ESP taps are supported");
      }
      if (tap.local_endpoint == tap.remote_endpoint) {
        throw ConfigError("", key + ".remote_endpoint", tap.remote_endpoint.to_string(),
                          "ESP taps need two different tunnel endpoints");
      }
      if (tap.window_hi_ns <= tap.window_lo_ns ||
          tap.hi_ns(Direction::Reverse) <= tap.lo_ns(Direction::Reverse)) {
        throw ConfigError("", key + ".window", std::to_string(tap.window_hi_ns),
                          "a window's hi must exceed its lo");
      }
      tap_lane.push_back(static_cast<int>(lane_tap.size()));
      lane_tap.push_back(t);
    } else {
      tap_lane.push_back(-1);
    }
  }
  if (cfg.settle_ns < 0 || cfg.reorder_grace_ns < 0 || cfg.record_grace_ns < 0 ||
      cfg.esp_late_horizon_ns < 0 || cfg.esp_stall_wait_ns < 0 || cfg.stamp_evidence_wait_ns < 0) {
    throw ConfigError("", "attribution", "", "settle/grace times must not be negative");
  }
  unknown_id = static_cast<std::int8_t>(labels.size());
  none_id = static_cast<std::int8_t>(labels.size() + 1);
  labels.emplace_back(kPathUnknown);
  labels.emplace_back(kPathNone);
  std::int64_t fc = 0, fd = 0, rc = 0, rd = 0, span = 0;
  for (std::size_t t : lane_tap) {
    const auto& tap = cfg.taps[t];
    const std::int64_t flo = tap.lo_ns(Direction::Forward);
    const std::int64_t fhi = tap.hi_ns(Direction::Forward);
    const std::int64_t rlo = tap.lo_ns(Direction::Reverse);
    const std::int64_t rhi = tap.hi_ns(Direction::Reverse);
    fc = std::max(fc, fhi);
    fd = std::max(fd, 2 * fhi - flo);
    rc = std::max(rc, -rlo);
    rd = std::max(rd, rhi - 2 * rlo);
    span = std::max({span, 2 * (fhi - flo), 2 * (rhi - rlo)});
  }
  fwd_claim_delay = fc + cfg.settle_ns;
  fwd_decide_delay = std::max(fd, fc) + cfg.settle_ns;
  rev_claim_delay = rc + cfg.settle_ns;
  rev_decide_delay = std::max(rd, rc) + cfg.settle_ns;
  // A forward "none" waits until every probe whose window can hold a packet of its late
  // horizon has been decided (that packet is then explained, or not).
  fwd_none_delay =
      std::max(cfg.fwd_unseen_wait_ns,
               lane_tap.empty() ? 0 : fwd_decide_delay + span / 2 + cfg.esp_late_horizon_ns);
  // A probe seen nowhere on a tap carrying probes may wait esp_stall_wait_ns longer.
  retention = std::max(span + cfg.settle_ns,
                       fwd_none_delay + (lane_tap.empty() ? 0 : cfg.esp_stall_wait_ns)) +
              kRetentionMarginNs;
  bool learning = false;
  for (std::size_t t : lane_tap) learning = learning || !cfg.taps[t].transform;
  if (learning) retention += std::max<std::int64_t>(cfg.learn_hold_ns, 0);
  if (const char* x = std::getenv("PATHSENTRY_EXPLAIN_UNKNOWN")) explain = x[0] == '1';
}

}  // namespace pathsentry::probe::attr
