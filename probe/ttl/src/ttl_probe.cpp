#include "pathsentry/probe/ttl/ttl_probe.h"

#include <algorithm>
#include <cerrno>
#include <limits>

#include "pathsentry/common/byte_order.h"
#include "pathsentry/common/record.h"
#include "pathsentry/common/thread_runner.h"
#include "pathsentry/probe/engine/pacer.h"

namespace pathsentry::probe {
namespace {

using be::get32;
using be::get64;
using be::put32;
using be::put64;

bool time_exceeded(const TtlIcmpError& e) {
  return e.icmp6 ? e.icmp_type == 3 : e.icmp_type == 11;
}

}  // namespace

void encode_ttl_payload(const TtlPayload& p, std::span<std::uint8_t, kTtlPayloadSize> out) {
  put32(out.data(), kTtlMagic);
  put32(out.data() + 4, p.agent_id);
  put32(out.data() + 8, p.session_id);
  put64(out.data() + 12, p.seq);
  put64(out.data() + 20, static_cast<std::uint64_t>(p.tx_ns));
}

std::optional<TtlPayload> decode_ttl_payload(std::span<const std::uint8_t> in) {
  if (in.size() < kTtlPayloadSize || get32(in.data()) != kTtlMagic) return std::nullopt;
  TtlPayload p;
  p.agent_id = get32(in.data() + 4);
  p.session_id = get32(in.data() + 8);
  p.seq = get64(in.data() + 12);
  p.tx_ns = static_cast<std::int64_t>(get64(in.data() + 20));
  return p;
}

const char* to_string(TtlOutcome o) {
  switch (o) {
    case TtlOutcome::Hop:
      return "hop";
    case TtlOutcome::Unmapped:
      return "unmapped";
    case TtlOutcome::Target:
      return "target";
    case TtlOutcome::Other:
      return "other";
    case TtlOutcome::None:
      return "none";
  }
  return "?";
}

namespace {

// Counts `key` in `m`, or in `overflow` when `m` already holds kTtlMaxAddresses other keys.
void count_bounded(std::map<std::string, std::uint64_t>& m, const std::string& key,
                   std::uint64_t& overflow) {
  if (const auto it = m.find(key); it != m.end()) {
    ++it->second;
  } else if (m.size() < kTtlMaxAddresses) {
    m.emplace(key, 1);
  } else {
    ++overflow;
  }
}

}  // namespace

BoundedAddressSet::Insert BoundedAddressSet::insert(const IpAddress& a) {
  if (std::find(addrs_.begin(), addrs_.end(), a) != addrs_.end()) return Insert::Known;
  if (addrs_.size() >= max_) {
    ++refused_;
    return Insert::Full;
  }
  addrs_.push_back(a);
  return Insert::New;
}

TtlHopMap::TtlHopMap(const std::vector<TtlHop>& hops) {
  for (const TtlHop& h : hops) {
    hops_.emplace_back(h.address, h.path);
    if (std::find(labels_.begin(), labels_.end(), h.path) == labels_.end()) {
      labels_.push_back(h.path);
    }
  }
}

const std::string* TtlHopMap::find(const IpAddress& a) const {
  for (const auto& [addr, path] : hops_) {
    if (addr == a) return &path;
  }
  return nullptr;
}

// --- tracker ------------------------------------------------------------------------------------

TtlTracker::TtlTracker(const TtlSessionConfig& config) : cfg_(config), hops_(config.hops) {}

TtlPayload TtlTracker::next_probe(std::int64_t tx_ns) {
  return TtlPayload{cfg_.agent_id, cfg_.session_id, next_seq_++, tx_ns};
}

void TtlTracker::on_sent(const TtlPayload& p, std::int64_t tx_mono_ns) {
  pending_[p.seq] = Pending{p.tx_ns, tx_mono_ns};
  ++stats_.sent;
}

TtlResult TtlTracker::classify(const TtlPayload& probe, const TtlIcmpError& e) {
  TtlResult r;
  r.session_id = cfg_.session_id;
  r.seq = probe.seq;
  r.tx_ns = probe.tx_ns;
  if (e.rx_ns != 0) r.rx_ns = e.rx_ns;
  r.from = e.offender;
  r.icmp_type = e.icmp_type;
  r.icmp_code = e.icmp_code;
  r.path = kPathUnknown;
  if (time_exceeded(e)) {
    if (const std::string* p = hops_.find(e.offender)) {
      r.outcome = TtlOutcome::Hop;
      r.path = *p;
      ++stats_.hop_answers;
      ++stats_.per_path[*p];
    } else {
      r.outcome = TtlOutcome::Unmapped;
      count_bounded(stats_.unmapped, e.offender.to_string(), stats_.unmapped_overflow);
    }
  } else if (e.offender == cfg_.target) {
    r.outcome = TtlOutcome::Target;
    ++stats_.target_answers;
  } else {
    r.outcome = TtlOutcome::Other;
    count_bounded(stats_.other,
                  e.offender.to_string() + " type " + std::to_string(e.icmp_type) + "/" +
                      std::to_string(e.icmp_code),
                  stats_.other_overflow);
  }
  return r;
}

void TtlTracker::on_error(const TtlIcmpError& e, std::vector<TtlResult>& out) {
  const auto quoted =
      decode_ttl_payload(std::span<const std::uint8_t>(e.quoted.data(), e.quoted_size));
  if (quoted) {
    auto it = pending_.find(quoted->seq);
    if (quoted->session_id != cfg_.session_id || it == pending_.end()) {
      const bool late = quoted->session_id == cfg_.session_id && quoted->seq < next_seq_;
      ++(late ? stats_.late : stats_.unmatched);
      return;
    }
    TtlPayload p = *quoted;
    p.tx_ns = it->second.tx_ns;
    const std::int64_t sent_mono = it->second.mono_ns;
    pending_.erase(it);
    if (hops_.find(e.offender) != nullptr &&
        std::find(full_quoters_.begin(), full_quoters_.end(), e.offender) == full_quoters_.end()) {
      full_quoters_.push_back(e.offender);
    }
    out.push_back(classify(p, e));
    if (cfg_.reorder_grace_ns > 0) expire_before(sent_mono - cfg_.reorder_grace_ns, out);
    return;
  }
  if (e.quoted_size == 0 && pending_.size() == 1) {
    // The router quoted only the UDP header: the only probe in flight is the one it names,
    // unless the error cannot be that router's (it quoted our payload before) or that
    // probe's (it came before the probe left).
    const auto it = pending_.begin();
    const bool quoted_before =
        std::find(full_quoters_.begin(), full_quoters_.end(), e.offender) != full_quoters_.end();
    if (quoted_before || (e.rx_ns != 0 && e.rx_ns < it->second.tx_ns)) {
      ++stats_.short_quote_refused;
      return;
    }
    TtlPayload p{cfg_.agent_id, cfg_.session_id, it->first, it->second.tx_ns};
    pending_.erase(it);
    ++stats_.by_order;
    out.push_back(classify(p, e));
    return;
  }
  ++stats_.unmatched;
}

void TtlTracker::expire_before(std::int64_t sent_ns, std::vector<TtlResult>& out) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.mono_ns >= sent_ns) {
      ++it;
      continue;
    }
    TtlResult r;
    r.session_id = cfg_.session_id;
    r.seq = it->first;
    r.tx_ns = it->second.tx_ns;
    r.outcome = TtlOutcome::None;
    r.path = kPathNone;
    ++stats_.no_answer;
    out.push_back(std::move(r));
    it = pending_.erase(it);
  }
}

void TtlTracker::poll(std::int64_t now_ns, std::vector<TtlResult>& out) {
  // Unanswered for timeout_ns or more: sent at or before now - timeout.
  expire_before(now_ns - cfg_.timeout_ns + 1, out);
}

void TtlTracker::flush(std::vector<TtlResult>& out) {
  expire_before(std::numeric_limits<std::int64_t>::max(), out);
}

// --- prober -------------------------------------------------------------------------------------

TtlProber::TtlProber(const Clock& clock, TtlSessionConfig config, std::unique_ptr<TtlSocket> socket,
                     Sink sink, std::function<void(const std::string&)> log, Waiter& waiter)
    : clock_(clock),
      cfg_(std::move(config)),
      socket_(std::move(socket)),
      sink_(std::move(sink)),
      log_(std::move(log)),
      waiter_(waiter),
      tracker_(cfg_) {}

TtlProber::~TtlProber() {
  stop();
}

void TtlProber::start() {
  if (started_) return;
  started_ = true;
  thread_ = start_thread("ttl " + cfg_.target.to_string(), [this] { run(); });
}

void TtlProber::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

TtlStats TtlProber::stats() const {
  std::lock_guard lock(mu_);
  return tracker_.stats();
}

std::string TtlProber::stats_line() const {
  return format_ttl_stats(cfg_, stats());
}

void TtlProber::drain_errors(std::vector<TtlResult>& out) {
  std::array<TtlIcmpError, 16> errs{};
  for (;;) {
    auto n = socket_->receive_errors(errs);
    if (!n) {
      if (log_)
        log_("ttl " + cfg_.target.to_string() + ": reading ICMP errors: " + n.error().message());
      return;
    }
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < *n; ++i) tracker_.on_error(errs[i], out);
    if (*n < errs.size()) return;
  }
}

void TtlProber::run() {
  Pacer pacer(cfg_.rate_pps, clock_.monotonic_ns(), cfg_.max_lag_ns);
  std::vector<TtlResult> results;
  std::array<std::uint8_t, kTtlPayloadSize> buf{};
  const int fd = socket_->native_handle();
  const short events = socket_->poll_events();
  // Clear log lines for what makes the method blind: the target answering (TTL too high), an
  // unmapped router (first time per address), a run of unanswered probes (once per run).
  const std::string who = "ttl " + cfg_.target.to_string() + " ttl=" + std::to_string(cfg_.ttl);
  bool target_logged = false;
  BoundedAddressSet unmapped_logged(kTtlMaxAddresses);
  std::uint64_t none_run = 0;
  constexpr std::uint64_t kNoneRunLog = 5;
  auto note = [&](const TtlResult& r) {
    if (!log_) return;
    if (r.outcome == TtlOutcome::Target && !target_logged) {
      target_logged = true;
      log_(who + ": the target itself answered (ICMP type " + std::to_string(r.icmp_type) + "/" +
           std::to_string(r.icmp_code) +
           "): the TTL is too high to expire at a hop; path unknown (counted)");
    } else if (r.outcome == TtlOutcome::Unmapped && r.from) {
      const auto ins = unmapped_logged.insert(*r.from);
      if (ins == BoundedAddressSet::Insert::New) {
        log_(who + ": time exceeded from " + r.from->to_string() +
             ", which no --ttl-hop / ttl.hops maps: path unknown (counted per address)");
      } else if (ins == BoundedAddressSet::Insert::Full && unmapped_logged.refused() == 1) {
        log_(who + ": time exceeded from more than " + std::to_string(kTtlMaxAddresses) +
             " unmapped addresses: the others are no longer logged nor counted one by one");
      }
    }
    none_run = r.outcome == TtlOutcome::None ? none_run + 1 : 0;
    if (none_run == kNoneRunLog) {
      log_(who + ": " + std::to_string(kNoneRunLog) +
           " probes in a row unanswered (path down, or routers policing ICMP errors: is "
           "--ttl-rate above what they answer?)");
    }
  };
  auto deliver = [&] {
    for (const TtlResult& r : results) {
      note(r);
      if (sink_) sink_(r);
    }
    results.clear();
  };
  auto wait = [&](std::int64_t until_mono) {
    const std::int64_t left = std::max<std::int64_t>(0, until_mono - clock_.monotonic_ns());
    // POLLERR (always reported): an ICMP error is queued.
    waiter_.wait_fd(fd, events, std::min<std::int64_t>(left / 1'000'000 + 1, 10) * 1'000'000);
  };
  while (!stop_.load()) {
    const Pacer::Due due = pacer.poll(clock_.monotonic_ns(), 16);
    for (std::uint64_t k = 0; k < due.send; ++k) {
      TtlPayload p;
      // Reported on realtime, timed out on the monotonic clock (docs/design.md "Clocks").
      const ClockReadings at = clock_.readings();
      {
        std::lock_guard lock(mu_);
        p = tracker_.next_probe(at.system_ns);
      }
      encode_ttl_payload(p, std::span<std::uint8_t, kTtlPayloadSize>(buf));
      auto sent = socket_->send(buf);
      if (!sent) {
        // A connected UDP socket reports a queued ICMP error (the target's port unreachable)
        // on the next send once: retry.
        sent = socket_->send(buf);
      }
      std::lock_guard lock(mu_);
      if (sent) {
        tracker_.on_sent(p, at.monotonic_ns);
      } else {
        ++tracker_.mutable_stats().send_errors;
      }
    }
    if (due.missed != 0) {
      std::lock_guard lock(mu_);
      tracker_.mutable_stats().missed += due.missed;
    }
    drain_errors(results);
    {
      std::lock_guard lock(mu_);
      tracker_.poll(clock_.monotonic_ns(), results);
    }
    deliver();
    wait(pacer.next_deadline_ns());
  }
  // The last answers: up to the timeout (or the drain cap, when shorter).
  const std::int64_t last_wait =
      cfg_.drain_ns > 0 ? std::min(cfg_.drain_ns, cfg_.timeout_ns) : cfg_.timeout_ns;
  const std::int64_t end = clock_.monotonic_ns() + last_wait;
  for (;;) {
    drain_errors(results);
    bool empty = false;
    {
      std::lock_guard lock(mu_);
      tracker_.poll(clock_.monotonic_ns(), results);
      empty = tracker_.outstanding() == 0;
    }
    deliver();
    if (empty || clock_.monotonic_ns() >= end) break;
    wait(end);
  }
  {
    std::lock_guard lock(mu_);
    tracker_.flush(results);
  }
  deliver();
}

std::string format_ttl_stats(const TtlSessionConfig& c, const TtlStats& s) {
  std::string l = "ttl " + c.target.to_string() + " ttl=" + std::to_string(c.ttl) + ": sent " +
                  std::to_string(s.sent) + ", hop answers " + std::to_string(s.hop_answers);
  if (!s.per_path.empty()) {
    l += " (";
    bool first = true;
    for (const auto& [p, n] : s.per_path) {
      l += (first ? "" : ", ") + p + " " + std::to_string(n);
      first = false;
    }
    l += ")";
  }
  l += ", unmapped";
  if (s.unmapped.empty()) l += " 0";
  for (const auto& [a, n] : s.unmapped) l += " " + a + " x" + std::to_string(n);
  l += ", target answered (TTL too high) " + std::to_string(s.target_answers) + ", other";
  if (s.other.empty()) l += " 0";
  for (const auto& [a, n] : s.other) l += " [" + a + "] x" + std::to_string(n);
  l += ", no answer " + std::to_string(s.no_answer);
  if (s.by_order != 0) l += ", matched by order " + std::to_string(s.by_order);
  if (s.short_quote_refused != 0) {
    l += ", short quotes refused " + std::to_string(s.short_quote_refused);
  }
  if (s.late != 0) l += ", late answers " + std::to_string(s.late);
  if (s.unmatched != 0) l += ", unmatched errors " + std::to_string(s.unmatched);
  if (s.unmapped_overflow + s.other_overflow != 0) {
    l += ", from more than " + std::to_string(kTtlMaxAddresses) + " addresses: unmapped " +
         std::to_string(s.unmapped_overflow) + " other " + std::to_string(s.other_overflow);
  }
  if (s.send_errors != 0) l += ", send errors " + std::to_string(s.send_errors);
  if (s.missed != 0) l += ", missed slots " + std::to_string(s.missed);
  return l;
}

}  // namespace pathsentry::probe
