#include "esp_lanes.h"

// ESP lanes: ESP packets seen, lengths learned, the silent-tap warning.

#include <algorithm>
#include <string>

namespace pathsentry::probe::attr {

EspLanes::EspLanes(const Setup& setup, AttributorStats& stats, std::vector<std::string>& notes)
    : setup_(setup),
      stats_(stats),
      notes_(notes),
      lanes_(setup.lane_tap.size()),
      silent_(setup.lane_tap.size()) {}

std::optional<std::uint32_t> EspLanes::expected_len(std::size_t lane, Direction d,
                                                    std::uint32_t wire) const {
  if (wire == 0) return std::nullopt;
  const auto& tap = setup_.cfg.taps[setup_.lane_tap[lane]];
  if (tap.transform) return tap.transform->esp_length(wire);
  const EspLane& ln = lanes_[lane][static_cast<std::size_t>(d)];
  if (ln.learner.model()) return ln.learner.model()->transform.esp_length(wire);
  for (const auto& l : ln.learned) {
    if (l.wire == wire) return l.learned ? std::optional<std::uint32_t>(l.len) : std::nullopt;
  }
  return std::nullopt;
}

void EspLanes::learn(std::size_t lane, Direction d, std::uint32_t wire, std::uint32_t len) {
  if (wire == 0) return;
  auto& ln = lanes_[lane][static_cast<std::size_t>(d)];
  auto it = std::find_if(ln.learned.begin(), ln.learned.end(),
                         [&](const EspLane::Learned& l) { return l.wire == wire; });
  if (it == ln.learned.end()) {
    if (ln.learned.size() >= 256) return;  // a fallback for lone probes: bounded
    ln.learned.push_back({wire, len, 1, setup_.cfg.learn_samples <= 1});
  } else if (it->len == len) {
    if (++it->count >= setup_.cfg.learn_samples) it->learned = true;
  } else {
    *it = {wire, len, 1, setup_.cfg.learn_samples <= 1};
  }
}

void EspLanes::learn_window(Direction d, std::int64_t anchor_ns, std::uint32_t wire) {
  const auto di = static_cast<std::size_t>(d);
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    const auto& tap = setup_.cfg.taps[setup_.lane_tap[lane]];
    EspLane& ln = lanes_[lane][di];
    const auto [from, to] = window_of(tap, d, anchor_ns);
    if (from <= ln.evicted_through_ns) continue;
    const std::uint64_t first = lower_bound_from(ln.obs, from, ln.learn_hint);
    ln.learn_hint = first;
    if (first == ln.obs.end_abs() || ln.obs.at(first).ts_ns > to) continue;  // no ESP: no evidence
    // Thinning: once the learner has locked a transform, dense windows (high rates, or a tunnel
    // carrying other traffic) are learned one in `stride` (chosen by a hash of the anchor); the
    // others are only counted. The shares of windows holding a length are estimated from the
    // windows learned, the packet-count test keeps every window: learning costs about
    // kLearnTargetPackets packets per window whatever the density. Before the lock every
    // window is learned, so a transform is learned as fast as ever; and while the lengths
    // contradict the locked one (a rekey), so that the next is learned as fast.
    auto& ts = stats_.taps[setup_.lane_tap[lane]];
    if (ln.learner.model() && ln.learner.locked_fits() && !learn_pick(anchor_ns, ln.learn_stride)) {
      ln.learner.on_window_skipped(wire);
      ++ts.learn_skipped;
      continue;
    }
    // The distinct lengths in the window, in the order first seen (at most 64).
    DistinctLens& lens = window_lens_;
    lens.start();
    std::uint64_t i = first;
    for (; i < ln.obs.end_abs() && !lens.full(); ++i) {
      const EspObs& o = ln.obs.at(i);
      if (o.ts_ns > to) break;
      lens.add(o.len);
    }
    ln.learner.on_window(wire, lens.data(), lens.size());
    ++ts.learn_windows;
    ln.learn_stride = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(
        (i - first) / kLearnTargetPackets, 1, std::min(kMaxLearnStride, ln.learner.max_stride())));
  }
}

void EspLanes::evaluate_learners() {
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    const std::size_t tap = setup_.lane_tap[lane];
    const auto& spec = setup_.cfg.taps[tap];
    for (std::size_t di = 0; di < 2; ++di) {
      EspLane& ln = lanes_[lane][di];
      const std::uint64_t every = ln.learner.model() ? 1024 : 8;
      if (ln.learner.windows_since_eval() < every) continue;
      const auto change = ln.learner.evaluate();
      const char* dir = di == 0 ? "forward" : "reverse";
      if (change != EspLearner::Change::None) {
        const std::string name = ln.learner.model()->name;
        if (!spec.transform) stats_.taps[tap].transform[di] = name;
        if (change == EspLearner::Change::Relearned) ++stats_.taps[tap].transform_changes;
        if (!spec.transform) {
          notes_.push_back("tap " + spec.interface + " (" + spec.path + "): " + dir + " ESP " +
                           (change == EspLearner::Change::Learned ? "transform learned: "
                                                                  : "transform re-learned, the "
                                                                    "lengths seen changed: ") +
                           name);
        }
      }
      if (spec.transform && ln.learner.model() && !ln.mismatch_counted &&
          !ln.learner.agrees_with(*spec.transform)) {
        ln.mismatch_counted = true;
        ++stats_.taps[tap].length_mismatch;
        notes_.push_back("tap " + spec.interface + " (" + spec.path + "): the " + dir +
                         " ESP lengths seen fit " + ln.learner.model()->name +
                         ", not the configured transform: probes will not be attributed");
      }
    }
  }
}

std::int64_t EspLanes::learn_hold(std::int64_t now) const {
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    if (setup_.cfg.taps[setup_.lane_tap[lane]].transform) continue;
    for (const EspLane& ln : lanes_[lane]) {
      if (ln.first_esp_ns != 0 && !ln.learner.model() &&
          now - ln.first_esp_ns < setup_.cfg.learn_hold_ns) {
        return setup_.cfg.learn_hold_ns;
      }
    }
  }
  return 0;
}

namespace {

std::uint64_t unexplained(const SilentPeriod& p) {
  return p.ambiguous + p.no_cand + p.unlearned;
}

bool silent_period(const SilentPeriod& p) {
  return p.esp >= 10 && p.matched == 0 && unexplained(p) >= 10;
}

}  // namespace

void EspLanes::check_silent(std::int64_t now) {
  if (setup_.cfg.silent_warn_ns <= 0) return;
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    auto& periods = silent_[lane];
    if (periods[0].start_ns == 0) periods[0].start_ns = periods[1].start_ns = now;
    const std::int64_t start = periods[0].start_ns;
    if (now - start < setup_.cfg.silent_warn_ns) continue;
    const bool quiet[2] = {silent_period(periods[0]), silent_period(periods[1])};
    if (quiet[0] || quiet[1]) {
      const std::size_t tap = setup_.lane_tap[lane];
      const auto& spec = setup_.cfg.taps[tap];
      ++stats_.taps[tap].silent_warnings;
      // Both directions silent: one warning over both; one direction: that direction's, with
      // what the other attributed (a transform learned one way only, say).
      SilentPeriod p;
      for (std::size_t d = 0; d < 2; ++d) {
        if (!quiet[d]) continue;
        const SilentPeriod& q = periods[d];
        p.esp += q.esp;
        p.ambiguous += q.ambiguous;
        p.no_cand += q.no_cand;
        p.unlearned += q.unlearned;
        p.collapsed += q.collapsed;
        p.warned = p.warned || q.warned;
      }
      const bool both = quiet[0] && quiet[1];
      const std::size_t one = quiet[0] ? 0 : 1;  // the silent direction when only one is
      const char* dir_name[2] = {"forward", "reverse"};
      const EspLearner& fl = lanes_[lane][0].learner;
      const EspLearner& rl = lanes_[lane][1].learner;
      const std::string diagnosis =
          both ? "forward " + fl.diagnosis() + "; reverse " + rl.diagnosis()
               : std::string(dir_name[one]) + " " + lanes_[lane][one].learner.diagnosis();
      std::string cause;
      if (p.unlearned >= p.ambiguous && p.unlearned >= p.no_cand) {
        cause = "no ESP length known for the probes: " + diagnosis;
      } else if (p.ambiguous >= p.no_cand) {
        const EspLearner& l = both ? (fl.model() ? fl : rl) : lanes_[lane][one].learner;
        cause = p.collapsed * 2 >= p.ambiguous && l.model()
                    ? "TFC padding gives the probes one ESP length (" + l.model()->name +
                          "): several share every window; send probes larger than the padding "
                          "(--size) or narrow the window"
                    : "window too wide for the rate: probes of one ESP length share a window "
                      "(more sizes with --size-cycle, or a narrower window)";
      } else {
        cause =
            "no ESP packet of the expected length in the windows: the window is too "
            "narrow for the tunnel's delay, or the transform is wrong (" +
            (spec.transform ? std::string("configured") : diagnosis) + ")";
      }
      const std::string from =
          (both || one == 0 ? spec.local_endpoint : spec.remote_endpoint).to_string();
      const std::string to =
          (both || one == 0 ? spec.remote_endpoint : spec.local_endpoint).to_string();
      std::string w = "WARNING tap " + spec.interface;
      w += " (";
      w += spec.path;
      w += "): ";
      if (p.warned) w += "still ";
      if (!both) {
        w += dir_name[one];
        w += " direction ";
      }
      w += "attributed nothing in ";
      w += std::to_string((now - start) / 1'000'000'000);
      w += " s although it saw ";
      w += std::to_string(p.esp);
      if (both) {
        w += " ESP packets between ";
        w += from;
        w += " and ";
        w += to;
      } else {
        w += " ESP packets from ";
        w += from;
        w += " to ";
        w += to;
        w += " (the ";
        w += dir_name[1 - one];
        w += " direction attributed ";
        w += std::to_string(periods[1 - one].matched);
        w += ")";
      }
      w += " (";
      w += std::to_string(unexplained(p));
      w += " probe directions unexplained: ";
      w += std::to_string(p.unlearned);
      w += " without a known length, ";
      w += std::to_string(p.no_cand);
      w += " without a candidate, ";
      w += std::to_string(p.ambiguous);
      w += " ambiguous); likely cause: ";
      w += cause;
      notes_.push_back(std::move(w));
    }
    for (std::size_t d = 0; d < 2; ++d) {
      periods[d] = SilentPeriod{};
      periods[d].start_ns = now;
      periods[d].warned = quiet[d];
    }
  }
}

void EspLanes::add_esp(std::size_t tap, const Observation& o, std::int64_t last_now) {
  const std::size_t lane = static_cast<std::size_t>(setup_.tap_lane[tap]);
  EspLane& ln = lanes_[lane][static_cast<std::size_t>(o.dir)];
  auto& ts = stats_.taps[tap];
  // Sequence gaps per SA: packets the gateway sent that the tap never delivered.
  auto sa = std::find_if(ln.sas.begin(), ln.sas.end(),
                         [&](const EspLane::Sa& x) { return x.used && x.spi == o.spi; });
  if (sa == ln.sas.end()) {
    ln.sas[ln.next_sa] = {o.spi, o.esp_seq, true};
    ln.next_sa = (ln.next_sa + 1) % ln.sas.size();
  } else if (o.esp_seq > sa->last_seq) {
    ts.esp_seq_gaps += o.esp_seq - sa->last_seq - 1;
    sa->last_seq = o.esp_seq;
  }
  if (o.ts_ns + setup_.cfg.settle_ns < last_now) ++ts.late;
  if (ln.first_esp_ns == 0) ln.first_esp_ns = o.ts_ns;
  ln.learner.on_packet(o.esp_len);
  ++silent_[lane][static_cast<std::size_t>(o.dir)].esp;
  if (ln.obs.size() >= setup_.cfg.max_esp_observations) evict_front(tap, ln, true);
  ln.obs.push_back(EspObs{o.ts_ns, o.esp_len, 0, 0, false, o.spi, o.esp_seq});
  // Keep time order (capture timestamps can step back slightly across CPUs).
  for (std::uint64_t i = ln.obs.end_abs() - 1; i > ln.obs.begin_abs(); --i) {
    EspObs& cur = ln.obs.at(i);
    EspObs& prev = ln.obs.at(i - 1);
    if (prev.ts_ns <= cur.ts_ns) break;
    std::swap(prev, cur);
  }
}

void EspLanes::evict_older(std::int64_t before_ns) {
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    for (auto& ln : lanes_[lane]) {
      while (!ln.obs.empty() && ln.obs.front().ts_ns < before_ns) {
        evict_front(setup_.lane_tap[lane], ln, false);
      }
      // A probe still judged has its anchor after before_ns and looks back esp_stall_wait_ns.
      while (!ln.progress.empty() &&
             ln.progress.front().anchor_ns < before_ns - setup_.cfg.esp_stall_wait_ns) {
        ln.progress.pop_front();
      }
    }
  }
}

void EspLanes::evict_front(std::size_t tap, EspLane& ln, bool overflow) {
  const EspObs& o = ln.obs.front();
  if (!o.attributed) ++stats_.taps[tap].unmatched;
  if (overflow) ++stats_.taps[tap].overflow;
  ln.evicted_through_ns = std::max(ln.evicted_through_ns, o.ts_ns);
  ln.obs.pop_front();
}

}  // namespace pathsentry::probe::attr
