#include "pathsentry/probe/ship/shipper.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "pathsentry/common/thread_runner.h"
#include "pathsentry/probe/ship/batch.h"

namespace pathsentry::probe {

/// What a rollup needs of one record, its strings as ids into the queue's label table.
struct Shipper::Stat {
  std::uint64_t seq = 0;
  std::int64_t tx_ns = 0;
  std::int64_t rtt_ns = 0;
  std::uint32_t session_id = 0;
  std::uint16_t target = 0;
  std::uint16_t fwd = 0;
  std::uint16_t rev = 0;
  Proto proto = Proto::Icmp;
  LossDirection loss = LossDirection::None;
  bool received = false;
  bool late = false;
};

/// One take of the hand-off queue.
struct Shipper::Taken {
  std::vector<ProbeRecord> raw;
  std::vector<Stat> stats;
  std::vector<PathEvent> events;
};

namespace {

constexpr std::int64_t kTickNs = 20'000'000;
// Failures are logged the first time, when the reason changes, and every this many.
constexpr std::uint32_t kLogEvery = 20;
constexpr std::uint16_t kMaxLabels = 65'535;

bool retryable(int status) {
  return status == 0 || status == 408 || status == 429 || status >= 500 || status < 400;
}

std::string ms_text(std::int64_t ns) {
  return std::to_string(ns / 1'000'000) + " ms";
}

}  // namespace

std::int64_t ship_backoff_ns(std::uint32_t failures, std::int64_t initial_ns, std::int64_t max_ns) {
  std::int64_t d = std::max<std::int64_t>(initial_ns, 1);
  for (std::uint32_t i = 1; i < failures && d < max_ns; ++i) d *= 2;
  return std::min(d, std::max(max_ns, initial_ns));
}

Shipper::Shipper(const Clock& clock, ShipperOptions options)
    : clock_(clock),
      opt_(std::move(options)),
      spool_([this] {
        SpoolOptions so = opt_.spool;
        if (!so.log) so.log = opt_.log;
        return so;
      }()),
      client_(opt_.url, opt_.token, "pathsentry-probe/" + opt_.version),
      rollups_(opt_.rollup_grace_ns) {
  publish_stats();
}

Shipper::~Shipper() {
  stop();
}

void Shipper::log(const std::string& m) const {
  if (opt_.log) opt_.log("shipping: " + m);
}

void Shipper::start() {
  if (started_) return;
  started_ = true;
  last_batch_mono_ = clock_.monotonic_ns();
  thread_ = start_thread("shipper", [this] { loop(); });
  sender_ = start_thread("shipper-send", [this] { send_loop(); });
}

std::uint16_t Shipper::label(std::string_view s) {
  auto it = label_ids_.find(s);
  if (it != label_ids_.end()) return it->second;
  if (labels_.size() >= kMaxLabels) return 0;  // 65535 distinct targets/paths: not reachable
  const auto id = static_cast<std::uint16_t>(labels_.size());
  labels_.emplace_back(s);
  label_ids_.emplace(std::string(s), id);
  return id;
}

void Shipper::offer(const ProbeRecord& record) {
  std::lock_guard lock(mu_);
  ++offered_;
  if (q_stats_.size() < opt_.queue_stats_max) {
    Stat s;
    s.seq = record.seq;
    s.tx_ns = record.tx_ns;
    s.rtt_ns = record.rtt_ns;
    s.session_id = record.session_id;
    s.target = label(record.target);
    s.fwd = label(record.fwd_path);
    s.rev = label(record.rev_path);
    s.proto = record.proto;
    s.received = record.rx_ns.has_value();
    s.loss = s.received                           ? LossDirection::None
             : record.loss == LossDirection::None ? LossDirection::Undetermined
                                                  : record.loss;
    s.late = record.late;
    q_stats_.push_back(s);
  } else {
    ++dropped_stats_;
  }
  if (q_raw_.size() < opt_.queue_raw_max) {
    q_raw_.push_back(record);
    // Without taps nothing tells where a lost probe was lost (as the pipeline writes it).
    if (!record.rx_ns && record.loss == LossDirection::None) {
      q_raw_.back().loss = LossDirection::Undetermined;
    }
  } else {
    ++dropped_raw_;
  }
}

void Shipper::offer(const PathEvent& event) {
  {
    std::lock_guard lock(mu_);
    ++offered_events_;
    q_events_.push_back(event);
    if (q_events_.back().event_id == 0) {
      q_events_.back().event_id = next_event_id_++;
    } else {
      next_event_id_ = std::max(next_event_id_, q_events_.back().event_id + 1);
    }
  }
  cv_.notify_one();
}

void Shipper::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  stop_mono_.store(clock_.monotonic_ns());
  stopping_.store(true);  // a POST under way gives up now: the last sends have their own budget
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();  // the batcher has spooled its last batch
  {
    std::lock_guard lock(spool_mu_);
    batcher_done_ = true;
  }
  send_cv_.notify_one();
  if (sender_.joinable()) sender_.join();
  publish_stats();
}

std::string Shipper::client_url_text() const {
  const CollectorUrl& u = opt_.url;
  return u.unix_socket ? "unix:" + u.socket_path : "http://" + u.host_header + u.path;
}

void Shipper::loop() {
  Taken t;
  bool stopping = false;
  while (!stopping) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::nanoseconds(std::min(kTickNs, opt_.batch_ns)),
                   [this] { return stop_ || !q_events_.empty(); });
      stopping = stop_;
      t.raw.swap(q_raw_);
      t.stats.swap(q_stats_);
      t.events.swap(q_events_);
      if (my_labels_.size() != labels_.size()) my_labels_ = labels_;
    }
    const std::int64_t now = clock_.monotonic_ns();
    for (const Stat& s : t.stats) {
      RollupInput in;
      in.session_id = s.session_id;
      in.target = my_labels_[s.target];
      in.proto = s.proto;
      in.seq = s.seq;
      in.tx_ns = s.tx_ns;
      in.received = s.received;
      in.rtt_ns = s.rtt_ns;
      in.loss = s.loss;
      in.late = s.late;
      in.fwd_path = my_labels_[s.fwd];
      in.rev_path = my_labels_[s.rev];
      rollups_.add(in, pending_rollups_);
    }
    if (!t.events.empty() && pending_events_.empty()) first_event_mono_ = now;
    pending_events_.insert(pending_events_.end(), std::make_move_iterator(t.events.begin()),
                           std::make_move_iterator(t.events.end()));
    // Raw records wait here at most one batch period; if the spool cannot be written they are
    // capped like the queue (rollups and events are not).
    const std::size_t room = opt_.queue_raw_max * 2 > pending_raw_.size()
                                 ? opt_.queue_raw_max * 2 - pending_raw_.size()
                                 : 0;
    const std::size_t keep = std::min(room, t.raw.size());
    pending_raw_.insert(pending_raw_.end(), std::make_move_iterator(t.raw.begin()),
                        std::make_move_iterator(t.raw.begin() + static_cast<std::ptrdiff_t>(keep)));
    if (keep < t.raw.size()) {
      std::lock_guard lock(stats_mu_);
      stats_.pending_dropped_raw += t.raw.size() - keep;
    }
    t.raw.clear();
    t.stats.clear();
    t.events.clear();

    if (stopping) rollups_.flush(pending_rollups_);
    const bool due = stopping || now - last_batch_mono_ >= opt_.batch_ns ||
                     (!pending_events_.empty() && now - first_event_mono_ >= opt_.event_delay_ns);
    if (due) {
      write_batches();
      last_batch_mono_ = now;
    }
    publish_stats();
  }
  if (!pending_raw_.empty() || !pending_rollups_.empty() || !pending_events_.empty()) {
    log("LOST at stop, the spool cannot be written: " + std::to_string(pending_raw_.size()) +
        " record(s), " + std::to_string(pending_rollups_.size()) + " rollup(s), " +
        std::to_string(pending_events_.size()) + " event(s)");
  }
  publish_stats();
}

void Shipper::send_loop() {
  while (true) {
    {
      std::unique_lock lock(spool_mu_);
      send_cv_.wait_for(lock, std::chrono::nanoseconds(kTickNs),
                        [this] { return send_wake_ || batcher_done_; });
      send_wake_ = false;
      if (batcher_done_) break;
    }
    // Once stop() is asked, the batcher is spooling its last batch: the last sends follow.
    if (stopping_.load()) continue;
    send(clock_.monotonic_ns() + std::max(opt_.batch_ns, kTickNs), 0);
  }
  // The last sends: bounded from when stop() was called, and at once (whatever the backoff said).
  const std::int64_t deadline = stop_mono_.load() + opt_.stop_send_ns;
  next_attempt_mono_ = 0;
  while (true) {
    {
      std::lock_guard lock(spool_mu_);
      if (spool_.empty()) break;
    }
    const std::int64_t now = clock_.monotonic_ns();
    if (now >= deadline) break;
    if (now < next_attempt_mono_) {
      std::this_thread::sleep_for(
          std::chrono::nanoseconds(std::min(next_attempt_mono_, deadline) - now));
      continue;
    }
    send(deadline, deadline);
  }
  std::lock_guard lock(spool_mu_);
  if (!spool_.empty()) {
    log(std::to_string(spool_.stats().files) + " batch file(s) (" +
        std::to_string(spool_.stats().bytes) + " bytes) not acknowledged: kept in " + spool_.dir() +
        " for the next start");
  }
}

void Shipper::write_batches() {
  while (!pending_raw_.empty() || !pending_rollups_.empty() || !pending_events_.empty()) {
    const std::size_t n = std::min(pending_raw_.size(), opt_.batch_max_records);
    BatchHeader h;
    h.agent = opt_.agent;
    h.run = opt_.run;
    h.batch = batch_no_ + 1;
    h.created_ns = clock_.system_ns();
    h.version = opt_.version;
    const std::string body = encode_batch(h, pending_rollups_, pending_events_,
                                          std::span<const ProbeRecord>(pending_raw_.data(), n));
    tl::expected<void, std::string> w;
    {
      std::lock_guard lock(spool_mu_);
      w = spool_.add(h, body);
    }
    if (!w) {
      {
        std::lock_guard lock(stats_mu_);
        ++stats_.spool_write_errors;
      }
      if (!spool_failing_)
        log("cannot spool batch " + std::to_string(h.batch) + ": " + w.error() +
            " (kept in memory, retried)");
      spool_failing_ = true;
      return;
    }
    if (spool_failing_) log("the spool can be written again");
    spool_failing_ = false;
    batch_no_ = h.batch;
    {
      std::lock_guard lock(stats_mu_);
      ++stats_.batches_written;
      stats_.rollups += pending_rollups_.size();
    }
    pending_rollups_.clear();
    pending_events_.clear();
    pending_raw_.erase(pending_raw_.begin(), pending_raw_.begin() + static_cast<std::ptrdiff_t>(n));
    {
      std::lock_guard lock(spool_mu_);
      send_wake_ = true;
    }
    send_cv_.notify_one();
  }
}

void Shipper::send(std::int64_t until, std::int64_t post_deadline) {
  while (true) {
    const std::int64_t now = clock_.monotonic_ns();
    if (now < next_attempt_mono_ || now >= until) return;
    std::string name;
    tl::expected<std::string, std::string> body;
    {
      std::lock_guard lock(spool_mu_);
      if (spool_.empty()) return;
      name = spool_.front().name;
      body = spool_.read_front();
    }
    if (!body) continue;
    std::int64_t timeout = opt_.http_timeout_ns;
    if (post_deadline != 0) timeout = std::min(timeout, post_deadline - now);
    // Before stop(): a POST under way gives up when stop() is called. After: the deadline.
    const PostResult r = client_.post(*body, timeout, post_deadline == 0 ? &stopping_ : nullptr);
    if (r.status >= 200 && r.status < 300) {
      {
        std::lock_guard lock(spool_mu_);
        spool_.pop_front();
      }
      if (failures_in_row_ > 0) {
        log("collector " + client_url_text() + " acknowledged " + name + " after " +
            std::to_string(failures_in_row_) + " failed attempt(s)");
      }
      failures_in_row_ = 0;
      last_failure_.clear();
      std::lock_guard lock(stats_mu_);
      ++stats_.batches_sent;
      stats_.collector_ok = true;
      continue;
    }
    if (r.status == 0 && post_deadline == 0 && stopping_.load()) return;  // aborted by stop()
    if (!retryable(r.status)) {
      {
        std::lock_guard lock(spool_mu_);
        spool_.reject_front("the collector refused it for good: HTTP " + std::to_string(r.status) +
                            " " + r.body.substr(0, 300));
      }
      std::lock_guard lock(stats_mu_);
      ++stats_.rejected_batches;
      continue;
    }
    ++failures_in_row_;
    const std::int64_t wait =
        ship_backoff_ns(failures_in_row_, opt_.backoff_initial_ns, opt_.backoff_max_ns);
    next_attempt_mono_ = clock_.monotonic_ns() + wait;
    const std::string why =
        r.status == 0 ? r.error : "HTTP " + std::to_string(r.status) + " " + r.body.substr(0, 200);
    if (failures_in_row_ == 1 || failures_in_row_ % kLogEvery == 0 || why != last_failure_) {
      std::string m = "sending ";
      m += name;
      m += " failed (";
      m += why;
      m += "); attempt ";
      m += std::to_string(failures_in_row_);
      m += ", next in " + ms_text(wait);
      {
        std::lock_guard lock(spool_mu_);
        m += ", " + std::to_string(spool_.stats().files) + " file(s) spooled";
      }
      log(m);
    }
    last_failure_ = why;
    std::lock_guard lock(stats_mu_);
    ++stats_.send_failures;
    stats_.collector_ok = false;
    return;
  }
}

void Shipper::publish_stats() {
  std::uint64_t dropped_raw = 0;
  std::uint64_t dropped_stats = 0;
  std::uint64_t offered = 0;
  std::uint64_t offered_events = 0;
  {
    std::lock_guard lock(mu_);
    dropped_raw = dropped_raw_;
    dropped_stats = dropped_stats_;
    offered = offered_;
    offered_events = offered_events_;
  }
  std::lock_guard lock(stats_mu_);
  stats_.records_offered = offered;
  stats_.events_offered = offered_events;
  if (dropped_raw > stats_.queue_dropped_raw) {
    log("the hand-off queue was full: " + std::to_string(dropped_raw - stats_.queue_dropped_raw) +
        " raw record(s) dropped (their rollups are complete)");
  }
  if (dropped_stats > stats_.queue_dropped_stats) {
    log("THE HAND-OFF QUEUE OVERFLOWED: " +
        std::to_string(dropped_stats - stats_.queue_dropped_stats) +
        " probe(s) missing from the rollups");
  }
  stats_.queue_dropped_raw = dropped_raw;
  stats_.queue_dropped_stats = dropped_stats;
  stats_.rollup_after_close = rollups_.stats().after_close;
  std::lock_guard spool_lock(spool_mu_);
  stats_.spool_files = spool_.stats().files;
  stats_.spool_bytes = spool_.stats().bytes;
  stats_.spool_dropped_raw = spool_.stats().dropped_raw_records;
}

ShipperStats Shipper::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

std::string Shipper::summary_line() const {
  const ShipperStats s = stats();
  return "shipping to " + client_url_text() + ": " + std::to_string(s.records_offered) +
         " records, " + std::to_string(s.rollups) + " rollups, " +
         std::to_string(s.events_offered) + " events in " + std::to_string(s.batches_written) +
         " batches; sent " + std::to_string(s.batches_sent) + ", failed attempts " +
         std::to_string(s.send_failures) + ", rejected " + std::to_string(s.rejected_batches) +
         "; raw records dropped " + std::to_string(s.dropped_raw()) + " (queue full " +
         std::to_string(s.queue_dropped_raw) + ", spool bound " +
         std::to_string(s.spool_dropped_raw) + ", spool unwritable " +
         std::to_string(s.pending_dropped_raw) + "); records too late for their rollup " +
         std::to_string(s.rollup_after_close) + "; " + std::to_string(s.spool_files) +
         " file(s), " + std::to_string(s.spool_bytes) + " bytes left in " + spool_.dir();
}

}  // namespace pathsentry::probe
