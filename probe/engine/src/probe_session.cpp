#include "pathsentry/probe/engine/probe_session.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "pathsentry/probe/wire/seq.h"
#include "pathsentry/probe/wire/stamp.h"

namespace pathsentry::probe {
namespace {

constexpr std::size_t kRxBatch = 64;
constexpr std::size_t kTsBatch = 128;
// Room for an IPv4 header (raw sockets) and reflectors that answer with more than we sent.
constexpr std::size_t kRxSlack = 128;

std::size_t ring_capacity(const SessionConfig& cfg) {
  const double per_timeout = cfg.rate_pps * static_cast<double>(cfg.timeout_ns) / 1e9;
  const auto want =
      static_cast<std::uint64_t>(std::ceil(2 * per_timeout)) + 2 * ProbeSession::kBatch;
  return std::bit_ceil(std::max<std::uint64_t>(1024, want));
}

}  // namespace

RttStats RttStats::of(const LogHistogram& h) {
  RttStats s;
  s.count = h.count();
  if (s.count == 0) return s;
  s.min = h.min();
  s.max = h.max();
  s.p50 = h.quantile(0.50);
  s.p99 = h.quantile(0.99);
  s.mean = h.mean();
  return s;
}

ProbeSession::ProbeSession(SessionConfig cfg, WireFormat wire,
                           std::unique_ptr<DatagramSocket> socket, RecordSink& sink)
    : cfg_(std::move(cfg)),
      wire_(wire),
      socket_(std::move(socket)),
      sink_(sink),
      mask_(ring_capacity(cfg_) - 1),
      max_datagram_(wire_.datagram_size + SizeCycle(cfg_.size_cycle, cfg_.size_step).max_extra()),
      own_cycle_(cfg_.size_cycle, cfg_.size_step),
      pacer_(cfg_.rate_pps, 0, cfg_.max_lag_ns),
      tx_buffers_(kBatch * max_datagram_),
      tx_batch_(kBatch),
      slots_(mask_ + 1),
      rx_slots_(mask_ + 1),
      rx_buffers_(kRxBatch * (max_datagram_ + kRxSlack)),
      rx_batch_(kRxBatch),
      ts_batch_(kTsBatch),
      refl_seen_((mask_ + 1) / 64 + 1) {
  const std::size_t rx_size = max_datagram_ + kRxSlack;
  for (std::size_t i = 0; i < kRxBatch; ++i) {
    rx_batch_[i].buffer = std::span(rx_buffers_).subspan(i * rx_size, rx_size);
  }
  wire_bytes_ = probe_ip_bytes(cfg_.target.family, cfg_.proto, wire_.datagram_size);
  record_.target = cfg_.target.to_string();
  record_.proto = cfg_.proto;
  record_.session_id = cfg_.session_id;
}

void ProbeSession::share_size_cycle(SizeCycle& cycle) {
  if (cycle.count() != own_cycle_.count() || cycle.step() != own_cycle_.step()) {
    throw std::invalid_argument("share_size_cycle: session " + std::to_string(cfg_.session_id) +
                                " cycles " + std::to_string(own_cycle_.count()) + " sizes of " +
                                std::to_string(own_cycle_.step()) + " bytes, the shared cycle " +
                                std::to_string(cycle.count()) + " of " +
                                std::to_string(cycle.step()));
  }
  cycle_ = &cycle;
}

// ---------------------------------------------------------------- sender thread

void ProbeSession::start(std::int64_t start_mono_ns, std::int64_t coalesce_ns,
                         std::int64_t launch_ahead_ns) {
  coalesce_ns = std::max<std::int64_t>(0, coalesce_ns);
  coalesce_ns_ = coalesce_ns;
  pacer_ = Pacer(cfg_.rate_pps, start_mono_ns, cfg_.max_lag_ns + coalesce_ns);
  const std::int64_t period = pacer_.deadline_ns(1) - pacer_.deadline_ns(0);
  launch_ahead_ns_ = std::max<std::int64_t>(0, launch_ahead_ns);
  launch_state_.store(LaunchTime::Off);
  launch_refused_.store(false);
  launch_early_ns_.store(0);
  if (launch_ahead_ns_ > 0) {
    if (auto r = socket_->enable_launch_time(); r) {
      launch_state_.store(LaunchTime::Trial);
    } else {
      launch_error_ = r.error();
      launch_refused_.store(true);
    }
  }
  // On trial the sender looks ahead one coalescing interval (at least one period, at most the
  // lookahead asked for): if the qdisc sends at once, probes leave that much early but still
  // evenly spaced.
  trial_ahead_ns_ = std::min(launch_ahead_ns_, std::max(coalesce_ns, period));
  catchup_gap_ns_ = period / 2;
  last_launch_ns_ = 0;
  // With coalescing, a wake-up sends at most twice the slots one coalescing interval holds
  // (plus one): after a stall the backlog goes out at up to twice the rate, one wake-up after
  // the other, never in one burst. With launch times, twice what the lookahead holds (the
  // kernel then spaces the backlog half a period apart); without (off, or fallen back), the
  // coalescing interval's cap again.
  const auto cap = [this](std::int64_t interval_ns) {
    if (interval_ns <= 0) return std::numeric_limits<std::uint64_t>::max();
    const double per_interval = cfg_.rate_pps * static_cast<double>(interval_ns) / 1e9;
    return 2 * static_cast<std::uint64_t>(std::ceil(per_interval)) + 1;
  };
  per_wake_ = cap(coalesce_ns);
  per_wake_launch_ = cap(std::max(coalesce_ns, launch_ahead_ns_));
}

void ProbeSession::stop_at(std::int64_t end_mono_ns) {
  pacer_.stop_at(end_mono_ns);
  if (pacer_.finished()) sender_done_.store(true);
}

std::int64_t ProbeSession::send_ahead_ns() const {
  switch (launch_state_.load(std::memory_order_relaxed)) {
    case LaunchTime::On:
      return launch_ahead_ns_;
    case LaunchTime::Trial:
      return trial_ahead_ns_;
    case LaunchTime::Off:
      break;
  }
  return 0;
}

std::int64_t ProbeSession::next_wake_ns() const {
  const std::int64_t d = pacer_.next_deadline_ns();
  if (d == Pacer::kNever) return d;
  const std::int64_t ahead = send_ahead_ns();
  // On, wake a quarter of the lookahead (at least a coalescing interval) before the next
  // deadline, the margin for a late wake-up: each wake-up then hands over ~3/4 of it. On trial
  // (or off) wake when the next slot is as far away as the sender looks ahead.
  const std::int64_t lead = launch_state_.load(std::memory_order_relaxed) == LaunchTime::On
                                ? std::min(ahead, std::max(coalesce_ns_, ahead / 4))
                                : ahead;
  return d - lead;
}

std::string ProbeSession::launch_time_note() const {
  if (launch_refused_.load()) return "SO_TXTIME refused: " + launch_error_.message();
  const std::int64_t early = launch_early_ns_.load();
  if (early > 0) {
    return "a probe left " + std::to_string(early / 1000) +
           " us before its launch time: the egress qdisc does not hold probes (fq does)";
  }
  return "";
}

std::size_t ProbeSession::send_due(const Clock& clock) {
  const std::int64_t now = clock.monotonic_ns();
  std::size_t total_sent = 0;
  const std::int64_t ahead = send_ahead_ns();
  std::uint64_t budget = ahead > 0 ? per_wake_launch_ : per_wake_;
  for (;;) {
    const std::uint64_t want = std::min<std::uint64_t>(kBatch, budget);
    if (want == 0) break;
    const Pacer::Due due = pacer_.poll(now, want, now + ahead);
    budget -= due.send;
    if (due.missed) missed_late_.fetch_add(due.missed, std::memory_order_relaxed);
    std::uint64_t n = due.send;
    if (n == 0) break;
    // Only reuse slots whose probes the receiver has resolved.
    const std::uint64_t room =
        resolved_.load(std::memory_order_acquire) + slots_.size() - next_seq_;
    if (n > room) {
      pacer_.give_back_as_missed(n - room);
      missed_ring_.fetch_add(n - room, std::memory_order_relaxed);
      n = room;
    }
    if (n == 0) break;
    // The oldest slot of this batch is the latest of it.
    const std::int64_t lag = now - pacer_.deadline_ns(pacer_.next_slot() - due.send);
    if (lag > max_send_lag_.load(std::memory_order_relaxed)) {
      max_send_lag_.store(lag, std::memory_order_relaxed);
    }
    const std::int64_t tx_user = clock.system_ns();
    const std::uint64_t first_slot = pacer_.next_slot() - due.send;
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t seq = next_seq_ + i;
      const std::uint32_t extra = cycle_->next();
      const std::size_t size = wire_.datagram_size + extra;
      // With launch times a probe leaves at its deadline; a late one at once, but a backlog
      // no faster than twice the rate.
      std::int64_t launch = 0;
      if (ahead > 0) {
        launch =
            std::max({pacer_.deadline_ns(first_slot + i), now, last_launch_ns_ + catchup_gap_ns_});
        last_launch_ns_ = launch;
      }
      const std::int64_t leave = launch > 0 ? launch : now;
      TxSlot& s = slots_[seq & mask_];
      const std::int64_t handed_ahead_ns = leave - now;
      s.tx_user_ns = tx_user + handed_ahead_ns;  // when it leaves, also in the payload
      s.tx_mono_ns = leave;
      s.ahead = handed_ahead_ns <= 0                 ? Ahead::None
                : handed_ahead_ns < kLaunchConfirmNs ? Ahead::Short
                                                     : Ahead::Confirm;
      s.wire_bytes = wire_bytes_ + extra;
      s.failed.store(false, std::memory_order_relaxed);
      auto buf = std::span(tx_buffers_).subspan(i * max_datagram_, size);
      build_request(wire_, seq, s.tx_user_ns, buf, size);
      tx_batch_[i] = TxDatagram{buf, static_cast<std::uint32_t>(seq), launch};
    }
    // Publish before sending: on a short path the reply can arrive before send() returns.
    const std::uint64_t first = next_seq_;
    next_seq_ += n;
    sent_count_.store(next_seq_, std::memory_order_release);

    std::uint64_t done = 0;
    while (done < n) {
      auto r = socket_->send(std::span(tx_batch_).subspan(done, n - done));
      if (!r || *r == 0) {
        // The first unsent probe failed: count it and try the rest once more.
        slots_[(first + done) & mask_].failed.store(true, std::memory_order_release);
        send_errors_.fetch_add(1, std::memory_order_relaxed);
        ++done;
        continue;
      }
      sent_.fetch_add(*r, std::memory_order_relaxed);
      total_sent += *r;
      done += *r;
    }
    if (due.send < want) break;
  }
  if (pacer_.finished()) sender_done_.store(true);
  return total_sent;
}

// ---------------------------------------------------------------- receiver thread

ProbeSession::RxSlot& ProbeSession::rx_slot(std::uint64_t seq) {
  RxSlot& r = rx_slots_[seq & mask_];
  if (r.seq != seq) r = RxSlot{seq};
  return r;
}

void ProbeSession::announce() {
  const std::uint64_t published = sent_count_.load(std::memory_order_acquire);
  for (; announced_ < published; ++announced_) {
    const TxSlot& tx = slots_[announced_ & mask_];  // unresolved: the sender leaves it alone
    if (announced_ == 0) first_tx_ns_ = tx.tx_user_ns;
    last_tx_ns_ = std::max(last_tx_ns_, tx.tx_user_ns);
    if (tx.failed.load(std::memory_order_acquire)) continue;
    sink_.on_sent({cfg_.session_id, announced_, tx.tx_user_ns, tx.wire_bytes});
  }
}

std::size_t ProbeSession::service_io(const Clock& clock) {
  std::size_t total = 0;
  for (;;) {
    auto n = socket_->receive(rx_batch_);
    if (!n || *n == 0) break;
    for (std::size_t i = 0; i < *n; ++i) {
      const RxDatagram& d = rx_batch_[i];
      on_datagram(d.buffer.subspan(0, d.size), d.rx_ns != 0 ? d.rx_ns : clock.system_ns());
    }
    total += *n;
    if (*n < rx_batch_.size()) break;
  }
  for (;;) {
    auto n = socket_->read_tx_timestamps(ts_batch_);
    if (!n || *n == 0) break;
    for (std::size_t i = 0; i < *n; ++i) on_tx_timestamp(ts_batch_[i]);
    if (*n < ts_batch_.size()) break;
  }
  return total;
}

void ProbeSession::on_tx_timestamp(const io::TxTimestamp& ts) {
  const std::uint64_t published = sent_count_.load(std::memory_order_acquire);
  if (published == 0) return;
  const auto seq = unwrap_seq(ts.id, 32, published - 1);
  if (!seq || *seq < resolved_.load(std::memory_order_relaxed)) return;  // too late to matter
  check_launch(slots_[*seq & mask_], ts.ns);
  RxSlot& rx = rx_slot(*seq);
  rx.tx_kernel_ns = ts.ns;
  if (rx.state == State::Replied) {
    rx.state = State::Received;
    emit(*seq, rx, slots_[*seq & mask_].tx_user_ns, false);
  }
}

void ProbeSession::check_launch(const TxSlot& tx, std::int64_t tx_kernel_ns) {
  const LaunchTime state = launch_state_.load(std::memory_order_relaxed);
  if (state == LaunchTime::Off || tx.ahead == Ahead::None) return;
  const std::int64_t early = tx.tx_user_ns - tx_kernel_ns;  // planned - actual departure
  if (early > kLaunchEarlyNs) {
    launch_early_ns_.store(early);
    launch_state_.store(LaunchTime::Off);
  } else if (state == LaunchTime::Trial && tx.ahead == Ahead::Confirm) {
    launch_state_.store(LaunchTime::On);
  }
}

void ProbeSession::on_datagram(std::span<const std::uint8_t> bytes, std::int64_t rx_ns) {
  announce();
  const std::uint64_t published = sent_count_.load(std::memory_order_acquire);
  ReplyReject why = ReplyReject::NotOurs;
  const auto reply = published == 0 ? std::nullopt : parse_reply(wire_, bytes, published - 1, &why);
  if (!reply) {
    if (why == ReplyReject::ForeignSsid) {
      ++total_.rejected_ssid;
      ++interval_.rejected_ssid;
    } else {
      ++total_.unmatched;
      ++interval_.unmatched;
    }
    return;
  }
  if (wire_.proto == Proto::Stamp) {
    if (reply->ssid == stamp_ssid(wire_)) {
      ssid_echoed_ = true;
    } else if (ssid_echoed_) {  // SSID 0 from a reflector that echoed ours before
      ++total_.rejected_ssid;
      ++interval_.rejected_ssid;
      return;
    }
  }
  const std::uint64_t seq = reply->seq;
  const std::uint64_t resolved = resolved_.load(std::memory_order_relaxed);

  RxSlot* rx = nullptr;
  bool late = false;
  if (seq >= resolved) {
    rx = &rx_slot(seq);
    if (slots_[seq & mask_].failed.load(std::memory_order_acquire)) {
      ++total_.unmatched;
      ++interval_.unmatched;
      return;
    }
    if (!accept(*reply, slots_[seq & mask_].tx_user_ns)) return;
    if (rx->state != State::Pending) {
      ++total_.duplicates;
      ++interval_.duplicates;
      return;
    }
    // The kernel received it after the probe's timeout, but this thread ran expire() only
    // after it (a stall): the probe was lost at its timeout, as it would have been declared
    // had the thread run; the reply is late. Without this, a reply 4 s after a 1 s timeout
    // came out as an on-time answer with a 4 s RTT (and, with taps, as a second record for a
    // probe the attributor had already declared lost when no record came).
    const TxSlot& tx = slots_[seq & mask_];
    const std::int64_t sent_ns = rx->tx_kernel_ns != 0 ? rx->tx_kernel_ns : tx.tx_user_ns;
    if (rx_ns - sent_ns > cfg_.timeout_ns) {
      declare_lost(seq, *rx, tx);
      late = true;
    }
  } else {
    // Already resolved. Its receiver slot still knows how, unless a newer probe took it.
    RxSlot& old = rx_slots_[seq & mask_];
    const bool kept = old.seq == seq && old.state == State::Lost;
    if (!accept(*reply, kept ? std::optional(old.lost_tx_user_ns()) : std::nullopt)) return;
    if (old.seq == seq && (old.state == State::Received || old.state == State::LateReceived)) {
      ++total_.duplicates;
      ++interval_.duplicates;
      return;
    }
    late = true;
    if (kept) rx = &old;
  }
  if (late) {
    // the run's loss count keeps never-answered only (a reply too old for any slot was never
    // counted lost here)
    if (rx != nullptr && total_.lost > 0) --total_.lost;
    ++total_.late;
    ++interval_.late;
  }

  if (any_rx_ && seq < max_rx_seq_) {
    ++total_.reordered;
    ++interval_.reordered;
  }
  if (!any_rx_ || seq > max_rx_seq_) max_rx_seq_ = seq;
  any_rx_ = true;
  if (reply->reflector_seq && cfg_.stamp_stateful) {
    track_reflector(seq, *reply->reflector_seq);
    if (refl_last_ != cap_last_r_ || !cap_have_first_) {  // a new highest reflector sequence
      cap_last_r_ = refl_last_;
      cap_last_s_ = seq;
      cap_last_t2_ = reply->reflector_rx_ns;
      if (!cap_have_first_) {
        cap_have_first_ = true;
        cap_first_r_ = cap_last_r_;
        cap_first_s_ = cap_last_s_;
        cap_first_t2_ = cap_last_t2_;
      }
    }
  }

  RxSlot scratch{seq};
  if (rx == nullptr) {
    // Too old for any slot: a record from the packet alone, if it still says when it left.
    if (!reply->has_sender_tx) return;
    rx = &scratch;
  }
  // A late reply: the TX slot may already hold a newer probe, so it is timed with the receiver
  // slot's copy of the send time (read before rx_ns takes its place), or the packet's.
  const std::int64_t late_tx_user_ns = rx == &scratch ? reply->sender_tx_ns : rx->lost_tx_user_ns();
  rx->rx_ns = rx_ns;
  rx->has_reflector = reply->reflector_seq.has_value();
  rx->reflector_seq = reply->reflector_seq.value_or(0);
  rx->reflector_rx_ns = reply->reflector_rx_ns;
  rx->reflector_tx_ns = reply->reflector_tx_ns;
  rx->reflector_synced = reply->reflector_synced;

  if (late) {
    rx->state = State::LateReceived;
    emit(seq, *rx, late_tx_user_ns, true);
    return;
  }
  if (rx->tx_kernel_ns != 0) {
    rx->state = State::Received;
    emit(seq, *rx, slots_[seq & mask_].tx_user_ns, false);
  } else {
    rx->state = State::Replied;  // wait for the TX timestamp (or the timeout)
  }
}

bool ProbeSession::accept(const ParsedReply& reply, std::optional<std::int64_t> stored) {
  if (!reply.has_sender_tx) {
    // An ICMP reply truncated before our payload: nothing to compare. A middlebox that
    // truncates does so to every reply, so once the target has echoed our payload whole, a
    // reply without it is forged (it needs only the identifier and a 16-bit sequence).
    if (!payload_echoed_) return true;
    ++total_.rejected_send_time;
    ++interval_.rejected_send_time;
    return false;
  }
  payload_echoed_ = true;
  if (stored) {
    // A reflector echoes t1's bytes as it got them: compare them with what we sent (an NTP
    // timestamp; 2^32 values per second, finer than the ns the time is stored in).
    const bool same = wire_.proto == Proto::Stamp
                          ? reply.sender_timestamp == stamp::ns_to_ntp(*stored)
                          : reply.sender_tx_ns == *stored;
    if (same) return true;
    ++total_.rejected_send_time;
    ++interval_.rejected_send_time;
    return false;
  }
  // Too old for the ring: the packet's own send time will time it, so it must be one this
  // session could have sent (between its first and newest probe). This also bounds
  // rx_ns - tx_ns: a forged time near INT64_MIN would overflow it.
  if (announced_ != 0 && reply.sender_tx_ns >= first_tx_ns_ && reply.sender_tx_ns <= last_tx_ns_) {
    return true;
  }
  ++total_.rejected_implausible_time;
  ++interval_.rejected_implausible_time;
  return false;
}

void ProbeSession::count_reply(std::uint64_t /*seq*/, std::int64_t rtt_ns) {
  ++total_.received;
  ++interval_.received;
  total_rtt_.add(rtt_ns);
  interval_rtt_.add(rtt_ns);
  if (have_last_rtt_) {
    jitter_sum_ += static_cast<long double>(std::llabs(rtt_ns - last_rtt_));
    ++jitter_n_;
  }
  last_rtt_ = rtt_ns;
  have_last_rtt_ = true;
}

void ProbeSession::emit(std::uint64_t seq, const RxSlot& rx, std::int64_t tx_user_ns, bool late) {
  ProbeRecord& r = record_;
  r.seq = seq;
  r.tx_kernel_ts = rx.tx_kernel_ns != 0;
  r.tx_ns = r.tx_kernel_ts ? rx.tx_kernel_ns : tx_user_ns;
  r.rx_ns = rx.rx_ns;
  r.rtt_ns = rx.rx_ns - r.tx_ns;
  r.late = late;
  if (rx.has_reflector) {
    r.reflector_seq = rx.reflector_seq;
    r.reflector_rx_ns = rx.reflector_rx_ns;
    r.reflector_tx_ns = rx.reflector_tx_ns;
    r.reflector_clock_synced = rx.reflector_synced;
  } else {
    r.reflector_seq.reset();
    r.reflector_rx_ns.reset();
    r.reflector_tx_ns.reset();
    r.reflector_clock_synced = false;
  }
  if (!late) {
    if (!r.tx_kernel_ts) {
      ++total_.no_tx_timestamp;
      ++interval_.no_tx_timestamp;
    }
    count_reply(seq, r.rtt_ns);
  }
  sink_.on_record(r);
}

void ProbeSession::declare_lost(std::uint64_t seq, RxSlot& rx, const TxSlot& tx) {
  rx.state = State::Lost;
  rx.set_lost_tx_user_ns(tx.tx_user_ns);
  emit_lost(seq, tx.tx_user_ns);
}

void ProbeSession::emit_lost(std::uint64_t seq, std::int64_t tx_user_ns) {
  ++total_.lost;
  ++interval_.lost;
  ProbeRecord& r = record_;
  const RxSlot& rx = rx_slots_[seq & mask_];
  r.seq = seq;
  r.tx_kernel_ts = rx.seq == seq && rx.tx_kernel_ns != 0;
  r.tx_ns = r.tx_kernel_ts ? rx.tx_kernel_ns : tx_user_ns;
  r.rx_ns.reset();
  r.rtt_ns = 0;
  r.late = false;
  r.reflector_seq.reset();
  r.reflector_rx_ns.reset();
  r.reflector_tx_ns.reset();
  r.reflector_clock_synced = false;
  sink_.on_record(r);
}

void ProbeSession::expire(std::int64_t now_mono_ns) {
  announce();
  const std::uint64_t published = announced_;  // never resolve a probe before announcing it
  std::uint64_t seq = resolved_.load(std::memory_order_relaxed);
  for (; seq < published; ++seq) {
    const TxSlot& tx = slots_[seq & mask_];
    if (tx.failed.load(std::memory_order_acquire)) continue;
    RxSlot& rx = rx_slot(seq);
    // Received, or lost and answered late already (on_datagram: a reply past the timeout)
    if (rx.state == State::Received || rx.state == State::LateReceived) continue;
    if (now_mono_ns - tx.tx_mono_ns < cfg_.timeout_ns) break;  // later probes are younger
    if (rx.state == State::Replied) {
      // Answered, but its TX timestamp never came: time it with the userspace send time.
      rx.state = State::Received;
      emit(seq, rx, tx.tx_user_ns, false);
    } else {
      declare_lost(seq, rx, tx);
    }
  }
  resolved_.store(seq, std::memory_order_release);
}

void ProbeSession::expire_all() {
  expire(Pacer::kNever);
}

bool ProbeSession::drained() const {
  return sender_done_.load() &&
         resolved_.load(std::memory_order_acquire) == sent_count_.load(std::memory_order_acquire);
}

bool ProbeSession::reflector_seen(std::uint64_t r) const {
  const std::uint64_t i = r & mask_;
  return (refl_seen_[i / 64] >> (i % 64)) & 1U;
}

void ProbeSession::set_reflector_seen(std::uint64_t r, bool v) {
  const std::uint64_t i = r & mask_;
  if (v) {
    refl_seen_[i / 64] |= std::uint64_t{1} << (i % 64);
  } else {
    refl_seen_[i / 64] &= ~(std::uint64_t{1} << (i % 64));
  }
}

// A stateful reflector numbers the requests it received. A jump of more than one between the
// reflector sequences of two replies means requests reached it whose replies never came back:
// reverse loss. A reply that arrives out of order fills its gap again.
void ProbeSession::track_reflector(std::uint64_t seq, std::uint32_t reflector_seq) {
  const std::uint64_t cap = mask_ + 1;
  if (!refl_any_) {
    refl_any_ = true;
    // RFC 8762 stateful reflectors count each session from 0; if that is consistent with what
    // we sent before this reply, the first `reflector_seq` replies were lost on the way back.
    if (reflector_seq <= seq) reverse_gaps_ += reflector_seq;
    refl_last_ = reflector_seq;
    set_reflector_seen(refl_last_, true);
    return;
  }
  const std::uint64_t r = unwrap_nearest(reflector_seq, 32, refl_last_);
  if (r > refl_last_) {
    const std::uint64_t jump = r - refl_last_;
    if (jump > cap) {  // the reflector restarted or wrapped far away: start over
      std::fill(refl_seen_.begin(), refl_seen_.end(), 0);
    } else {
      reverse_gaps_ += reflector_arrivals_between(static_cast<std::uint32_t>(refl_last_),
                                                  static_cast<std::uint32_t>(r));
      for (std::uint64_t g = refl_last_ + 1; g < r; ++g) set_reflector_seen(g, false);
    }
    refl_last_ = r;
    set_reflector_seen(r, true);
  } else if (r < refl_last_ && refl_last_ - r < cap && !reflector_seen(r)) {
    set_reflector_seen(r, true);
    if (reverse_gaps_ > 0) --reverse_gaps_;
  }
}

IntervalReport ProbeSession::roll_interval() {
  SessionCounters sender;
  sender.sent = sent_.load(std::memory_order_relaxed);
  sender.missed_late_wakeup = missed_late_.load(std::memory_order_relaxed);
  sender.missed_ring_full = missed_ring_.load(std::memory_order_relaxed);
  sender.missed_slots = sender.missed_late_wakeup + sender.missed_ring_full;
  sender.send_errors = send_errors_.load(std::memory_order_relaxed);
  IntervalReport out;
  out.counters = interval_;
  out.counters.sent = sender.sent - sender_seen_.sent;
  out.counters.missed_slots = sender.missed_slots - sender_seen_.missed_slots;
  out.counters.missed_late_wakeup = sender.missed_late_wakeup - sender_seen_.missed_late_wakeup;
  out.counters.missed_ring_full = sender.missed_ring_full - sender_seen_.missed_ring_full;
  out.counters.send_errors = sender.send_errors - sender_seen_.send_errors;
  out.rtt = RttStats::of(interval_rtt_);
  out.forward_cap_pps = detect_cap();
  if (out.forward_cap_pps) last_cap_pps_ = out.forward_cap_pps;
  now_cap_pps_ = out.forward_cap_pps;
  sender_seen_ = sender;
  interval_ = SessionCounters{};
  interval_rtt_.clear();
  return out;
}

// A token bucket (the reflector's per-source limit, a policer on the way) passes exactly its
// rate once the offered rate exceeds it: the reflector's sequence then advances at one steady
// rate (measured on its own receive times t2, so our wake-ups do not blur it), while random
// forward loss of the same size makes that rate wander by about sqrt(p / ((1 - p) n)) of
// itself (binomial, n offered, p lost). Between two replies, our sequence counts what was
// offered and the reflector's what it took (reverse loss changes neither). Capped:
// kCapIntervals intervals in a row with >= 5 % forward loss whose accepted rates lie within
// half that spread (plus 3 counts) of each other.
std::optional<double> ProbeSession::detect_cap() {
  const bool measured = cap_have_first_ && cap_last_t2_ - cap_first_t2_ > 100'000'000 &&
                        cap_last_s_ > cap_first_s_ && cap_last_r_ >= cap_first_r_;
  double rate = 0;
  double t_s = 0;
  double offered = 0;
  double taken = 0;
  if (measured) {
    t_s = static_cast<double>(cap_last_t2_ - cap_first_t2_) / 1e9;
    offered = static_cast<double>(cap_last_s_ - cap_first_s_);
    taken = static_cast<double>(cap_last_r_ - cap_first_r_);
    rate = taken / t_s;
  }
  // The next interval starts from this one's newest reply.
  cap_first_r_ = cap_last_r_;
  cap_first_s_ = cap_last_s_;
  cap_first_t2_ = cap_last_t2_;
  const double p = measured ? 1.0 - taken / offered : 0.0;
  if (!measured || p < 0.05 || p >= 1.0) {
    cap_n_ = 0;
    return std::nullopt;
  }
  std::move(cap_rates_.begin() + 1, cap_rates_.end(), cap_rates_.begin());
  std::move(cap_sigma_.begin() + 1, cap_sigma_.end(), cap_sigma_.begin());
  cap_rates_.back() = rate;
  cap_sigma_.back() = std::sqrt(p / ((1.0 - p) * offered)) / 2 + 3.0 / (rate * t_s);
  if (cap_n_ < kCapIntervals) ++cap_n_;
  if (cap_n_ < kCapIntervals) return std::nullopt;
  const auto [lo, hi] = std::minmax_element(cap_rates_.begin(), cap_rates_.end());
  double mean = 0;
  for (const double r : cap_rates_) mean += r / static_cast<double>(kCapIntervals);
  const double allowed = *std::min_element(cap_sigma_.begin(), cap_sigma_.end());
  if ((*hi - *lo) / mean > allowed) return std::nullopt;
  return mean;
}

SessionSummary ProbeSession::summary() const {
  SessionSummary s;
  s.counters = total_;
  s.counters.sent = sent_.load(std::memory_order_relaxed);
  s.counters.missed_late_wakeup = missed_late_.load(std::memory_order_relaxed);
  s.counters.missed_ring_full = missed_ring_.load(std::memory_order_relaxed);
  s.counters.missed_slots = s.counters.missed_late_wakeup + s.counters.missed_ring_full;
  s.counters.send_errors = send_errors_.load(std::memory_order_relaxed);
  s.rtt = RttStats::of(total_rtt_);
  s.max_send_lag_ns = max_send_lag_.load(std::memory_order_relaxed);
  s.forward_cap_pps = last_cap_pps_;
  s.forward_cap_now_pps = now_cap_pps_;
  s.jitter_ns =
      jitter_n_ ? static_cast<double>(jitter_sum_ / static_cast<long double>(jitter_n_)) : 0;
  if (cfg_.proto == Proto::Stamp && cfg_.stamp_stateful) {
    s.lost_reverse = std::min(reverse_gaps_, total_.lost);
    s.lost_forward = total_.lost - *s.lost_reverse;
    s.lost_undetermined = 0;
  } else {
    s.lost_undetermined = total_.lost;
  }
  return s;
}

}  // namespace pathsentry::probe
