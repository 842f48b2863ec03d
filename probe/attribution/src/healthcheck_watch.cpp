#include "pathsentry/probe/attribution/healthcheck_watch.h"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace pathsentry::probe {

const char* to_string(HealthCheckState s) {
  switch (s) {
    case HealthCheckState::Ok:
      return "ok";
    case HealthCheckState::Degraded:
      return "degraded";
    case HealthCheckState::Failed:
      return "failed";
    case HealthCheckState::Blocked:
      return "blocked";
    case HealthCheckState::Absent:
      return "absent";
  }
  return "ok";
}

BlockedJudge::BlockedJudge(std::string path, const HealthCheckSettings& s)
    : path_(std::move(path)), blocked_after_(s.blocked_after), evidence_(s.blocked_evidence) {}

void BlockedJudge::on_event(const PathEvent& e, std::int64_t now_ns, std::vector<PathEvent>& out) {
  switch (e.type) {
    case EventType::HealthcheckDegraded:
    case EventType::HealthcheckFailed: {
      const std::int64_t first = e.ts_ns - e.duration_ns;
      if (!in_run_ || first != first_lost_ns_) {
        in_run_ = true;
        emitted_ = false;
        first_lost_ns_ = first;
        carried_ = 0;
        lost_ = 0;
      }
      last_ = e;
      judge(now_ns, out);
      break;
    }
    case EventType::HealthcheckRecovered:
    case EventType::HealthcheckAbsent:
      in_run_ = false;
      emitted_ = false;
      break;
    default:
      break;
  }
}

void BlockedJudge::on_record(const ProbeRecord& r, std::int64_t now_ns,
                             std::vector<PathEvent>& out) {
  if (!in_run_ || r.proto == Proto::Ttl || r.tx_ns < first_lost_ns_) return;
  if (r.rx_ns) {
    if (r.fwd_path == path_ && r.rev_path == path_) ++carried_;
  } else if (r.fwd_path == path_ || r.rev_path == path_) {
    ++lost_;
  }
  judge(now_ns, out);
}

void BlockedJudge::judge(std::int64_t now_ns, std::vector<PathEvent>& out) {
  if (emitted_ || !in_run_ || last_.unanswered < blocked_after_ || carried_ < evidence_ ||
      lost_ * 10 > carried_) {
    return;
  }
  emitted_ = true;
  PathEvent e = last_;
  e.type = EventType::HealthcheckBlocked;
  e.detected_ns = now_ns;
  char b[512];
  std::snprintf(b, sizeof b,
                "the line works: %llu of the agent's probes sent since the first unanswered "
                "health-check probe went both ways on %s (%llu lost), while %u health-check "
                "probes in a row to %s went unanswered (the gateway drops them or has no route "
                "back to %s): the cloud's return path moves although the line works",
                static_cast<unsigned long long>(carried_), path_.c_str(),
                static_cast<unsigned long long>(lost_), last_.unanswered, last_.target.c_str(),
                last_.prober.c_str());
  e.reason = b;
  out.push_back(std::move(e));
}

void enable_health_check(std::vector<TapSpec>& taps, const HealthCheckSettings& s) {
  if (!s.enabled) return;
  for (TapSpec& t : taps) {
    if (t.encap == Encap::Clear) t.healthcheck_prefix = s.prefix;
  }
}

HealthCheckWork::HealthCheckWork(const std::vector<TapSpec>& taps, const HealthCheckSettings& s)
    : fall_(s.fall == 0 ? 1 : s.fall) {
  for (std::size_t i = 0; i < taps.size(); ++i) {
    const TapSpec& t = taps[i];
    if (t.encap != Encap::Clear || !t.healthcheck_prefix) continue;
    HealthCheckConfig c;
    c.prefix = *t.healthcheck_prefix;
    c.gateway = s.gateway;
    c.fall = fall_;
    c.interval_ns = s.interval_ns;
    c.tap = t.interface;
    c.path = t.path;
    watches_.push_back(Watch{i, t.interface, t.path, HealthCheckWatcher(c), BlockedJudge(t.path, s),
                             HealthCheckState::Ok, HealthCheckWatcher::LineEvidence{}, 0, 0});
  }
}

HealthCheckWork::Watch* HealthCheckWork::find(std::size_t tap) {
  for (Watch& w : watches_) {
    if (w.tap == tap) return &w;
  }
  return nullptr;
}

void HealthCheckWork::take(Watch& w, std::vector<PathEvent>& events, std::int64_t now_ns,
                           std::vector<PathEvent>& out) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    const PathEvent e = events[i];  // the judge may append to `events`
    switch (e.type) {
      case EventType::HealthcheckDegraded:
        if (w.state != HealthCheckState::Blocked) w.state = HealthCheckState::Degraded;
        break;
      case EventType::HealthcheckFailed:
        if (w.state != HealthCheckState::Blocked) w.state = HealthCheckState::Failed;
        break;
      case EventType::HealthcheckBlocked:
        w.state = HealthCheckState::Blocked;
        break;
      case EventType::HealthcheckAbsent:
        w.state = HealthCheckState::Absent;
        break;
      case EventType::HealthcheckRecovered:
        w.state = HealthCheckState::Ok;
        break;
      default:
        break;
    }
    out.push_back(e);
    if (e.type != EventType::HealthcheckBlocked) w.judge.on_event(e, now_ns, events);
  }
  events.clear();
}

void HealthCheckWork::on_echo(std::size_t tap, const EchoFrame& f, std::vector<PathEvent>& out) {
  Watch* w = find(tap);
  if (w == nullptr) return;
  const HealthCheckPacket p{f.ts_ns, f.src, f.dst, f.request, f.id, f.seq};
  (void)w->watcher.on_packet(p, scratch_);
  take(*w, scratch_, f.ts_ns, out);
}

void HealthCheckWork::on_record(const ProbeRecord& r, std::int64_t now_ns,
                                std::vector<PathEvent>& out) {
  for (Watch& w : watches_) {
    if (r.proto != Proto::Ttl) {
      HealthCheckWatcher::LineEvidence& l = w.line;
      l.any = true;
      l.known_ns = std::max(l.known_ns, r.tx_ns);
      if (r.rx_ns && r.fwd_path == w.path && r.rev_path == w.path) {
        if (r.tx_ns > l.carried_ns) {
          l.carried_ns = r.tx_ns;
          w.not_carried = 0;
          w.first_not_ns = 0;
          l.dead_from_ns = 0;
        }
      } else if (r.tx_ns > l.carried_ns) {
        if (w.not_carried == 0 || r.tx_ns < w.first_not_ns) w.first_not_ns = r.tx_ns;
        if (++w.not_carried >= kNotCarried) l.dead_from_ns = w.first_not_ns;
      }
      w.watcher.set_line_evidence(l);
    }
    w.judge.on_record(r, now_ns, scratch_);
    take(w, scratch_, now_ns, out);
  }
}

void HealthCheckWork::tick(std::size_t tap, std::int64_t now_ns, std::vector<PathEvent>& out) {
  Watch* w = find(tap);
  if (w == nullptr) return;
  w->watcher.tick(now_ns, scratch_);
  take(*w, scratch_, now_ns, out);
}

void HealthCheckWork::set_tap_up(std::size_t tap, bool up, std::int64_t now_ns) {
  if (Watch* w = find(tap)) w->watcher.set_tap_up(up, now_ns);
}

std::vector<HealthCheckStatus> HealthCheckWork::status() const {
  std::vector<HealthCheckStatus> out;
  out.reserve(watches_.size());
  for (const Watch& w : watches_) {
    HealthCheckStatus s;
    s.tap = w.interface;
    s.path = w.path;
    if (const auto& g = w.watcher.gateway()) s.target = g->to_string();
    s.stats = w.watcher.stats();
    s.fall = fall_;
    s.state = w.state;
    if (s.stats.run >= fall_) {
      s.eta_ns = 0;
    } else if (s.stats.run > 0) {
      s.eta_ns = static_cast<std::int64_t>(fall_ - s.stats.run) * s.stats.interval_ns;
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace pathsentry::probe
