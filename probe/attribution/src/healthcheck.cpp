#include "pathsentry/probe/attribution/healthcheck.h"

#include <algorithm>
#include <utility>

namespace pathsentry::probe {

HealthCheckWatcher::HealthCheckWatcher(HealthCheckConfig cfg)
    : cfg_(std::move(cfg)), gateway_(cfg_.gateway) {
  if (cfg_.fall == 0) cfg_.fall = 1;
}

std::int64_t HealthCheckWatcher::interval() const {
  return cfg_.interval_ns > 0 ? cfg_.interval_ns : learned_ns_;
}

HealthCheckWatcher::Stats HealthCheckWatcher::stats() const {
  Stats s = st_;
  s.interval_ns = interval();
  return s;
}

void HealthCheckWatcher::learn_gap(std::int64_t gap_ns) {
  if (gap_ns <= 0) return;
  if (gaps_.size() < kGaps) {
    gaps_.push_back(gap_ns);
  } else {
    gaps_[gap_next_] = gap_ns;
    gap_next_ = (gap_next_ + 1) % kGaps;
  }
  std::vector<std::int64_t> g = gaps_;
  const auto mid = g.begin() + static_cast<std::ptrdiff_t>(g.size() / 2);
  std::nth_element(g.begin(), mid, g.end());
  learned_ns_ = *mid;
}

PathEvent HealthCheckWatcher::event(EventType t, std::int64_t ts_ns, std::int64_t now_ns,
                                    const IpAddress& prober) const {
  PathEvent e;
  e.type = t;
  e.target = gateway_ ? gateway_->to_string() : std::string();
  e.prober = prober.to_string();
  e.tap = cfg_.tap;
  e.path = cfg_.path;
  e.ts_ns = ts_ns;
  e.detected_ns = now_ns;
  e.unanswered = st_.run;
  e.fall = cfg_.fall;
  e.interval_ns = interval();
  return e;
}

void HealthCheckWatcher::resolve(const Open& o, bool answered, std::int64_t at_ns,
                                 std::int64_t now_ns, std::vector<PathEvent>& out) {
  if (answered) {
    ++st_.answered;
    if (degraded_) {
      PathEvent e = event(EventType::HealthcheckRecovered, at_ns, now_ns, o.src);
      e.duration_ns = at_ns - first_lost_ns_;
      e.reason = "answered";
      out.push_back(std::move(e));
    }
    degraded_ = false;
    st_.run = 0;
    return;
  }
  ++st_.unanswered;
  if (st_.run == 0) first_lost_ns_ = o.ts_ns;
  ++st_.run;
  if (st_.run > cfg_.fall) return;  // the cloud has moved already: nothing new to say
  const bool failed = st_.run == cfg_.fall;
  PathEvent e = event(failed ? EventType::HealthcheckFailed : EventType::HealthcheckDegraded,
                      o.ts_ns, now_ns, o.src);
  e.eta_ns = static_cast<std::int64_t>(cfg_.fall - st_.run) * interval();
  e.duration_ns = o.ts_ns - first_lost_ns_;
  out.push_back(std::move(e));
  degraded_ = true;
}

bool HealthCheckWatcher::on_packet(const HealthCheckPacket& p, std::vector<PathEvent>& out) {
  if (p.request) {
    if (!cfg_.prefix.contains(p.src)) return false;
    if (!gateway_) gateway_ = p.dst;
    if (!(p.dst == *gateway_)) return false;
    if (!tap_up_) return true;
    tick(p.ts_ns, out);
    // The next probe closes every probe still open: the health check waits one interval.
    while (!open_.empty()) {
      const Open o = open_.front();
      open_.pop_front();
      resolve(o, false, p.ts_ns, p.ts_ns, out);
    }
    if (last_probe_ns_ != 0 && missing_from_ns_ == last_probe_ns_) {
      learn_gap(p.ts_ns - last_probe_ns_);  // (a gap over probes counted missing is no gap)
    }
    last_probe_ns_ = p.ts_ns;
    missing_from_ns_ = p.ts_ns;
    last_prober_ = p.src;
    ++st_.probes;
    if (st_.absent) {
      st_.absent = false;
      PathEvent e = event(EventType::HealthcheckRecovered, p.ts_ns, p.ts_ns, p.src);
      e.reason = "probes_resumed";
      out.push_back(std::move(e));
    }
    open_.push_back(Open{p.ts_ns, p.src, p.id, p.seq});
    return true;
  }
  if (!gateway_ || !(p.src == *gateway_) || !cfg_.prefix.contains(p.dst)) return false;
  if (!tap_up_) return true;
  tick(p.ts_ns, out);
  const auto it = std::find_if(open_.begin(), open_.end(), [&](const Open& o) {
    return o.src == p.dst && o.id == p.id && o.seq == p.seq;
  });
  if (it == open_.end()) {
    ++st_.late;  // its probe was declared unanswered already (or never seen)
    return true;
  }
  // Probes before the one answered went unanswered (the check answers in order).
  while (open_.begin() != it) {
    const Open o = open_.front();
    open_.pop_front();
    resolve(o, false, p.ts_ns, p.ts_ns, out);
  }
  const Open o = open_.front();
  open_.pop_front();
  resolve(o, true, p.ts_ns, p.ts_ns, out);
  return true;
}

void HealthCheckWatcher::tick(std::int64_t now_ns, std::vector<PathEvent>& out) {
  if (!started_) {
    started_ = true;
    watch_from_ns_ = now_ns;
  }
  if (!tap_up_) return;
  const std::int64_t iv = interval();
  if (iv > 0) {
    while (!open_.empty() && now_ns > open_.front().ts_ns + iv) {
      const Open o = open_.front();
      open_.pop_front();
      resolve(o, false, o.ts_ns + iv, now_ns, out);
    }
  }
  if (iv > 0 && last_probe_ns_ != 0 && line_.dead_from_ns != 0) {
    // Probes that did not arrive while the line was dead: lost, as the cloud counts them. One
    // expected at e is judged once its timeout (e + iv) has passed and the agent's records reach e.
    while (now_ns > missing_from_ns_ + 2 * iv) {
      const std::int64_t e = missing_from_ns_ + iv;
      if (line_.known_ns < e) break;  // the records do not tell yet
      missing_from_ns_ = e;
      if (e <= line_.carried_ns) continue;  // the line carried after it: not the line's doing
      ++st_.missing;
      resolve(Open{e, last_prober_, 0, 0}, false, e + iv, now_ns, out);
    }
  }
  const std::int64_t absence_iv = iv > 0 ? iv : kDefaultIntervalNs;
  const std::int64_t since = std::max(last_probe_ns_, watch_from_ns_);
  if (!st_.absent && now_ns - since > 3 * absence_iv &&
      (!line_.any || line_.carried_ns > since + 3 * absence_iv)) {
    st_.absent = true;
    PathEvent e = event(EventType::HealthcheckAbsent, since + 3 * absence_iv, now_ns, IpAddress{});
    e.prober.clear();
    e.interval_ns = absence_iv;
    e.duration_ns = now_ns - since;
    out.push_back(std::move(e));
  }
}

void HealthCheckWatcher::set_tap_up(bool up, std::int64_t now_ns) {
  if (up == tap_up_) return;
  tap_up_ = up;
  started_ = true;
  if (!up) {
    open_.clear();
    return;
  }
  watch_from_ns_ = now_ns;
  missing_from_ns_ = std::max(missing_from_ns_, now_ns);  // no probe missed while not watching
}

}  // namespace pathsentry::probe
