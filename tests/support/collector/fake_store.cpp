#include "collector/fake_store.h"

#include <algorithm>

#include "pathsentry/common/record_json.h"

namespace pathsentry::test {

using db::StoreError;

BatchHeader FakeStore::header(const std::string& agent, std::uint64_t batch) {
  BatchHeader h;
  h.agent = agent;
  h.run = "9f1c0a2b3d4e5f60";
  h.batch = batch;
  h.created_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(batch);
  h.version = "0.1.0";
  return h;
}

std::future<tl::expected<db::IngestCounts, StoreError>> FakeStore::ingest(db::IngestBatch b) {
  std::promise<tl::expected<db::IngestCounts, StoreError>> p;
  auto f = p.get_future();
  std::unique_lock lock(mutex_);
  ++ingest_calls_;
  released_.wait(lock, [this] { return !held_; });
  if (ingest_error_) {
    ++failed_;
    p.set_value(tl::unexpected(*ingest_error_));
    return f;
  }
  db::IngestCounts c;
  const auto& h = b.header;
  for (auto& r : b.probes) {
    if (probe_ids_.emplace(h.agent, h.run, r.session_id, r.seq).second) {
      ++c.probes;
      probes_.push_back({h.agent, h.run, std::move(r)});
    } else {
      ++c.duplicate_probes;
    }
  }
  for (auto& r : b.rollups) {
    if (rollup_ids_
            .emplace(h.agent, h.run, r.session_id, r.second_ns, static_cast<int>(r.direction),
                     r.path)
            .second) {
      ++c.rollups;
      rollups_.push_back({h.agent, h.run, std::move(r)});
    } else {
      ++c.duplicate_rollups;
    }
  }
  for (auto& e : b.events) {
    if (event_ids_.emplace(h.agent, h.run, e.event_id).second) {
      ++c.events;
      events_.push_back(
          {static_cast<std::int64_t>(events_.size() + 1), h.agent, h.run, std::move(e)});
    } else {
      ++c.duplicate_events;
    }
  }
  auto [it, fresh] = agents_.try_emplace(h.agent);
  auto& a = it->second;
  if (fresh) {
    a.name = h.agent;
    a.first_seen_ns = h.created_ns;
  }
  a.version = h.version;
  a.last_run = h.run;
  a.last_seen_ns = h.created_ns;
  ++a.batches;
  ++committed_;
  p.set_value(c);
  return f;
}

tl::expected<std::vector<db::AgentRow>, StoreError> FakeStore::agents() {
  const std::lock_guard lock(mutex_);
  if (read_error_) return tl::unexpected(*read_error_);
  std::vector<db::AgentRow> out;
  for (const auto& [k, a] : agents_) out.push_back(a);
  return out;
}

tl::expected<std::vector<db::TargetRow>, StoreError> FakeStore::targets() {
  const std::lock_guard lock(mutex_);
  if (read_error_) return tl::unexpected(*read_error_);
  std::map<std::tuple<std::string, std::string, Proto>, db::TargetRow> rows;
  auto see = [&](const std::string& agent, const std::string& run, const std::string& target,
                 Proto proto, std::uint32_t session, std::int64_t t) {
    auto [it, fresh] = rows.try_emplace({agent, target, proto});
    auto& r = it->second;
    if (fresh) {
      r.agent = agent;
      r.target = target;
      r.proto = proto;
      r.first_ns = t;
      r.last_ns = t;
    }
    r.first_ns = std::min(r.first_ns, t);
    if (t >= r.last_ns) {
      r.last_ns = t;
      r.run = run;
      r.session_id = session;
    }
  };
  for (const auto& p : probes_)
    see(p.agent, p.run, p.record.target, p.record.proto, p.record.session_id, p.record.tx_ns);
  for (const auto& r : rollups_)
    see(r.agent, r.run, r.r.target, r.r.proto, r.r.session_id, r.r.second_ns);
  std::vector<db::TargetRow> out;
  for (auto& [k, r] : rows) out.push_back(r);
  return out;
}

tl::expected<std::vector<db::EventRow>, StoreError> FakeStore::events(const db::EventQuery& q) {
  const std::lock_guard lock(mutex_);
  last_event_query_ = q;
  if (read_error_) return tl::unexpected(*read_error_);
  std::vector<db::EventRow> out;
  for (auto it = events_.rbegin(); it != events_.rend() && out.size() < q.limit; ++it) {
    const auto& e = it->event;
    if (q.since_ns && e.ts_ns < *q.since_ns) continue;
    if (q.until_ns && e.ts_ns >= *q.until_ns) continue;
    if (q.target && e.target != *q.target) continue;
    if (q.kind && probe::to_string(e.type) != *q.kind) continue;
    if (q.agent && it->agent != *q.agent) continue;
    out.push_back(*it);
  }
  return out;
}

tl::expected<std::vector<db::EventRow>, StoreError> FakeStore::events_after(std::int64_t after_id,
                                                                            std::size_t limit) {
  const std::lock_guard lock(mutex_);
  if (read_error_) return tl::unexpected(*read_error_);
  std::vector<db::EventRow> out;
  for (const auto& e : events_) {
    if (e.id > after_id && out.size() < limit) out.push_back(e);
  }
  return out;
}

tl::expected<std::vector<db::SeriesPoint>, StoreError> FakeStore::series(const db::SeriesQuery& q) {
  const std::lock_guard lock(mutex_);
  last_series_query_ = q;
  if (read_error_) return tl::unexpected(*read_error_);
  std::map<std::tuple<std::int64_t, std::string, Proto, int, std::string>, db::SeriesPoint> pts;
  for (const auto& row : rollups_) {
    const Rollup& r = row.r;
    if (r.target != q.target || r.second_ns < q.from_ns || r.second_ns >= q.to_ns) continue;
    if (q.proto && r.proto != *q.proto) continue;
    if (q.agent && row.agent != *q.agent) continue;
    const std::int64_t t = q.from_ns + (r.second_ns - q.from_ns) / q.step_ns * q.step_ns;
    auto [it, fresh] =
        pts.try_emplace({t, row.agent, r.proto, static_cast<int>(r.direction), r.path});
    auto& p = it->second;
    if (fresh) {
      p.agent = row.agent;
      p.proto = r.proto;
      p.direction = r.direction;
      p.path = r.path;
      p.t_ns = t;
      p.rtt_min_ns = r.rtt_min_ns;
    }
    // Sums; the RTT figures of the step's last row (enough for the handler's tests).
    p.sent += r.sent;
    p.received += r.received;
    p.lost_forward += r.lost_forward;
    p.lost_reverse += r.lost_reverse;
    p.lost_undetermined += r.lost_undetermined;
    p.rtt_min_ns = std::min(p.rtt_min_ns, r.rtt_min_ns);
    p.rtt_mean_ns = r.rtt_mean_ns;
    p.rtt_p50_ns = r.rtt_p50_ns;
    p.rtt_p99_ns = r.rtt_p99_ns;
    p.rtt_max_ns = std::max(p.rtt_max_ns, r.rtt_max_ns);
    p.jitter_ns = r.jitter_ns;
  }
  std::vector<db::SeriesPoint> out;
  for (auto& [k, p] : pts) out.push_back(p);
  return out;
}

tl::expected<std::vector<db::ProbeRow>, StoreError> FakeStore::probes(const db::ProbeQuery& q) {
  const std::lock_guard lock(mutex_);
  last_probe_query_ = q;
  if (read_error_) return tl::unexpected(*read_error_);
  std::vector<db::ProbeRow> out;
  for (const auto& p : probes_) {
    const auto& r = p.record;
    if (r.target != q.target || r.tx_ns < q.from_ns || r.tx_ns >= q.to_ns) continue;
    if (q.proto && r.proto != *q.proto) continue;
    if (q.agent && p.agent != *q.agent) continue;
    out.push_back(p);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.record.tx_ns < b.record.tx_ns; });
  if (out.size() > q.limit) out.resize(q.limit);
  return out;
}

tl::expected<db::RetentionReport, StoreError> FakeStore::apply_retention(std::int64_t now_ns) {
  const std::lock_guard lock(mutex_);
  retention_calls_.push_back(now_ns);
  if (ingest_error_) return tl::unexpected(*ingest_error_);
  return db::RetentionReport{};
}

db::StoreStats FakeStore::stats() {
  const std::lock_guard lock(mutex_);
  db::StoreStats s;
  s.schema_version = 3;
  s.committed_batches = committed_;
  s.failed_batches = failed_;
  return s;
}

void FakeStore::fail_ingest(std::optional<StoreError> e) {
  const std::lock_guard lock(mutex_);
  ingest_error_ = std::move(e);
}
void FakeStore::hold_ingest(bool hold) {
  {
    const std::lock_guard lock(mutex_);
    held_ = hold;
  }
  released_.notify_all();
}
void FakeStore::fail_reads(std::optional<StoreError> e) {
  const std::lock_guard lock(mutex_);
  read_error_ = std::move(e);
}
std::size_t FakeStore::probe_rows() const {
  const std::lock_guard lock(mutex_);
  return probes_.size();
}
std::size_t FakeStore::rollup_rows() const {
  const std::lock_guard lock(mutex_);
  return rollups_.size();
}
std::size_t FakeStore::event_rows() const {
  const std::lock_guard lock(mutex_);
  return events_.size();
}
std::uint64_t FakeStore::ingest_calls() const {
  const std::lock_guard lock(mutex_);
  return ingest_calls_;
}
std::vector<std::int64_t> FakeStore::retention_calls() const {
  const std::lock_guard lock(mutex_);
  return retention_calls_;
}
std::optional<db::EventQuery> FakeStore::last_event_query() const {
  const std::lock_guard lock(mutex_);
  return last_event_query_;
}
std::optional<db::SeriesQuery> FakeStore::last_series_query() const {
  const std::lock_guard lock(mutex_);
  return last_series_query_;
}
std::optional<db::ProbeQuery> FakeStore::last_probe_query() const {
  const std::lock_guard lock(mutex_);
  return last_probe_query_;
}

}  // namespace pathsentry::test
