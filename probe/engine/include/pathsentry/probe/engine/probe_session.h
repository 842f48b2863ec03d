#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pathsentry/common/clock.h"
#include "pathsentry/common/ip.h"
#include "pathsentry/common/record.h"
#include "pathsentry/probe/engine/histogram.h"
#include "pathsentry/probe/engine/pacer.h"
#include "pathsentry/probe/engine/record_sink.h"
#include "pathsentry/probe/io/datagram_socket.h"
#include "pathsentry/probe/wire/probe_wire.h"

namespace pathsentry::probe {

/// Everything that defines one probe session (one target, one protocol).
struct SessionConfig {
  IpAddress target;
  Proto proto = Proto::Icmp;
  double rate_pps = 1000;                   ///< probes per second
  std::int64_t timeout_ns = 1'000'000'000;  ///< a probe unanswered this long is lost
  /// Pacing: a slot still unsent this long after its deadline is missed (skipped, never sent).
  /// A slot sent later than its deadline but within this lag is sent: with kernel timestamps
  /// its RTT is exact, only its send time moved (a VM's vCPU stalls for tens of ms at times).
  /// The engine's coalescing paces the catch-up (ProbeSession::start).
  std::int64_t max_lag_ns = 50'000'000;
  std::uint8_t dscp = 0;  ///< 0..63
  std::size_t size = 0;   ///< IP payload bytes per probe; 0 = the minimum
  /// Size cycling: probe k of the agent (counted across all sessions sharing one SizeCycle)
  /// is padded by (k mod size_cycle) * size_step bytes over `size`, so probes close in time
  /// have distinct sizes and distinct ESP lengths (docs/attribution.md §2). 0 or 1 = fixed.
  std::uint32_t size_cycle = 1;
  std::uint32_t size_step = 16;    ///< bytes between two sizes of the cycle (AES-CBC block)
  std::uint16_t stamp_port = 862;  ///< STAMP: the reflector's UDP port
  /// STAMP: the reflector keeps its own per-session sequence (RFC 8762 stateful mode), so
  /// gaps in it split loss into forward and reverse.
  bool stamp_stateful = true;
  std::optional<IpAddress> source;  ///< bind to this source address
  std::string interface;            ///< SO_BINDTODEVICE; empty = none
  std::uint32_t agent_id = 0;
  std::uint32_t session_id = 0;  ///< agent-unique
  /// STAMP: the SSID (RFC 8972) of this session's requests; 0 = the low 16 bits of session_id.
  /// The agent draws a random non-zero one per session (an off-path sender cannot guess it from
  /// the session's index).
  std::uint16_t stamp_ssid = 0;
};

/// Counters of a session, over the whole run or over one interval.
struct SessionCounters {
  std::uint64_t sent = 0;          ///< probes handed to the kernel
  std::uint64_t received = 0;      ///< first replies within the timeout
  std::uint64_t lost = 0;          ///< no reply within the timeout (a late reply takes it back
                                   ///< from the run's total, not from the interval's)
  std::uint64_t late = 0;          ///< replies after the probe was declared lost
  std::uint64_t duplicates = 0;    ///< replies to a probe already answered
  std::uint64_t reordered = 0;     ///< replies older than one already received
  std::uint64_t missed_slots = 0;  ///< pacing slots skipped, never sent (the two causes below)
  /// ... because the sender woke up more than max_lag after their deadline (a stall);
  std::uint64_t missed_late_wakeup = 0;
  /// ... because every TX ring slot still held an unresolved probe.
  std::uint64_t missed_ring_full = 0;
  std::uint64_t send_errors = 0;      ///< probes the kernel refused to send
  std::uint64_t unmatched = 0;        ///< datagrams on the socket that were not our replies
  std::uint64_t no_tx_timestamp = 0;  ///< answered probes timed with the userspace send time
  /// Replies refused as spoofed or corrupt (not counted in `unmatched`), by reason:
  /// the echoed send time (STAMP t1, the ICMP payload's) differs from the one sent, or an ICMP
  /// reply lacks it (truncated) though the target has echoed it whole before;
  std::uint64_t rejected_send_time = 0;
  /// a STAMP reply carrying another SSID (or none, once the reflector has echoed ours);
  std::uint64_t rejected_ssid = 0;
  /// a reply too old for the ring whose send time lies outside this session's sending span
  /// (it could not have been ours, and its RTT would be meaningless or overflow).
  std::uint64_t rejected_implausible_time = 0;
};

/// RTT statistics in ns (all 0 when nothing was received).
struct RttStats {
  std::uint64_t count = 0;
  std::int64_t min = 0, p50 = 0, p99 = 0, max = 0;
  double mean = 0;
  static RttStats of(const LogHistogram& h);
};

/// One interval (a second) of one session, for the live summary.
struct IntervalReport {
  SessionCounters counters;
  RttStats rtt;
  /// STAMP with a stateful reflector: set when the requests the reflector took have come at one
  /// steady rate below ours for the last kCapIntervals intervals, steadier than random forward
  /// loss of that size could be: forward loss consistent with a rate limit on the way or at the
  /// reflector (its per-source limit). The rate that gets through, per second.
  std::optional<double> forward_cap_pps;
};

/// The whole run of one session, for --summary-json.
struct SessionSummary {
  SessionCounters counters;
  RttStats rtt;
  double jitter_ns = 0;  ///< mean |rtt(n) - rtt(n-1)| over consecutive replies (IPDV)
  /// The latest any probe of the run left after its slot's deadline (send coalescing, wake-up
  /// latency, stalls up to max_lag), ns; slots later than that were missed instead.
  std::int64_t max_send_lag_ns = 0;
  /// Lost probes split by direction: STAMP with a stateful reflector from its counter, or, with
  /// taps, the attributor's records' `loss` (the agent fills these in then, so the summary
  /// says what the records say). Null where nothing tells the direction (ICMP without taps).
  std::optional<std::uint64_t> lost_forward;
  std::optional<std::uint64_t> lost_reverse;
  /// Lost probes whose direction is undetermined (ICMP without taps: all of them).
  std::optional<std::uint64_t> lost_undetermined;
  /// The last IntervalReport::forward_cap_pps seen in the run (null if none), and that of the
  /// newest interval (null when the forward loss does not look capped now).
  std::optional<double> forward_cap_pps;
  std::optional<double> forward_cap_now_pps;
};

/// The padding cycle shared by every session of an agent: each probe takes the next extra
/// size 0, step, 2·step, … (count sizes), whatever its session. Used by the sender thread only
/// (not thread-safe); no allocation, no division per probe.
class SizeCycle {
 public:
  /// `count` sizes `step` bytes apart; count 0 or 1 = always 0 extra bytes.
  SizeCycle(std::uint32_t count, std::uint32_t step)
      : count_(count < 1 ? 1 : count), step_(step), span_(count_ * step) {}
  /// Extra bytes for the next probe.
  std::uint32_t next() {
    const std::uint32_t e = extra_;
    extra_ += step_;
    if (extra_ >= span_) extra_ = 0;
    return e;
  }
  [[nodiscard]] std::uint32_t count() const { return count_; }
  [[nodiscard]] std::uint32_t step() const { return step_; }
  /// The largest extra size next() returns.
  [[nodiscard]] std::uint32_t max_extra() const { return (count_ - 1) * step_; }

 private:
  std::uint32_t count_;
  std::uint32_t step_;
  std::uint32_t span_;
  std::uint32_t extra_ = 0;
};

/// One probe session: paces and sends probes on its socket (sender thread), matches replies
/// and TX timestamps to probes, declares losses and emits records (receiver thread).
///
/// Per-probe state lives in two preallocated rings indexed by seq mod capacity (capacity >=
/// 2 x rate x timeout): one written by the sender before each send and read by the receiver
/// while the probe is outstanding, one private to the receiver. The sender only reuses a slot
/// whose probe the receiver has resolved (answered or lost); when none is free it counts the
/// pacing slot as missed. No allocation after construction.
///
/// Thread-safety: the "sender" methods must be called from one thread, the "receiver" methods
/// from one other thread; the const observers may be called from either.
class ProbeSession {
 public:
  /// Probes sent per send() call at most.
  static constexpr std::size_t kBatch = 64;
  /// Intervals of steady capped forward loss before IntervalReport::forward_cap_pps is set.
  static constexpr std::size_t kCapIntervals = 5;

  ProbeSession(SessionConfig cfg, WireFormat wire, std::unique_ptr<DatagramSocket> socket,
               RecordSink& sink);
  ProbeSession(const ProbeSession&) = delete;
  ProbeSession& operator=(const ProbeSession&) = delete;

  [[nodiscard]] const SessionConfig& config() const { return cfg_; }
  [[nodiscard]] const WireFormat& wire() const { return wire_; }
  [[nodiscard]] DatagramSocket& socket() { return *socket_; }
  [[nodiscard]] std::size_t capacity() const { return slots_.size(); }
  /// Takes probe sizes from `cycle` (shared with other sessions, owned by the caller, same
  /// count and step as this session's config) instead of the session's own cycle. Call before
  /// start(). Throws std::invalid_argument when count or step differ.
  void share_size_cycle(SizeCycle& cycle);
  /// Bytes handed to the socket for the largest probe of the cycle.
  [[nodiscard]] std::size_t max_datagram_size() const { return max_datagram_; }

  // --- sender thread ---
  /// Starts pacing: the first slot is due at `start_mono_ns`.
  /// `coalesce_ns` is the engine's send coalescing interval: slots may wait that long for a
  /// shared wake-up by design, so it widens the lag allowed before a slot is missed; and each
  /// send_due() then sends at most 2 x ceil(rate x coalesce_ns) + 1 slots, so a backlog after a
  /// stall is caught up at no more than twice the rate over the following wake-ups instead of
  /// in one burst. 0 = no coalescing, no cap.
  ///
  /// `launch_ahead_ns` > 0 turns on launch-time pacing (docs/probe.md "Pacing"): slots are
  /// handed to the kernel up to that long before their deadline, each with its deadline as
  /// launch time (DatagramSocket::enable_launch_time), so one wake-up sends several probes that
  /// still leave one period apart. Whether the egress qdisc honours launch times is seen in the
  /// TX timestamps: until one probe handed over ahead has left on time (LaunchTime::Trial) the
  /// sender looks ahead one coalescing interval only; a probe that leaves early turns it off
  /// for the run (LaunchTime::Off: today's coalescing), as does a socket that refuses it.
  void start(std::int64_t start_mono_ns, std::int64_t coalesce_ns = 0,
             std::int64_t launch_ahead_ns = 0);
  /// No slot due at or after `end_mono_ns` is sent.
  void stop_at(std::int64_t end_mono_ns);
  /// Sends every slot due now (clock.monotonic_ns()), in batches. Returns probes sent.
  std::size_t send_due(const Clock& clock);
  /// When the next slot is due (CLOCK_MONOTONIC ns), Pacer::kNever when finished.
  [[nodiscard]] std::int64_t next_deadline_ns() const { return pacer_.next_deadline_ns(); }
  /// When the sender should wake for this session: the next deadline less the time slots are
  /// handed over ahead of it (launch-time pacing), Pacer::kNever when finished.
  [[nodiscard]] std::int64_t next_wake_ns() const;

  /// Launch-time pacing: off (not asked, refused, or the qdisc sent a probe early), on trial
  /// (asked, not yet seen honoured), on (a probe handed over ahead left at its launch time).
  enum class LaunchTime : std::uint8_t { Off, Trial, On };
  [[nodiscard]] LaunchTime launch_time() const { return launch_state_.load(); }
  /// Why launch-time pacing is off ("" when it was never asked for or is on).
  [[nodiscard]] std::string launch_time_note() const;
  /// A probe whose TX timestamp is this much before its launch time proves the qdisc ignores
  /// launch times; one handed over at least kLaunchConfirmNs ahead and not early proves it
  /// honours them.
  static constexpr std::int64_t kLaunchEarlyNs = 200'000;
  static constexpr std::int64_t kLaunchConfirmNs = 400'000;

  // --- receiver thread ---
  /// Reads every pending reply and TX timestamp from the socket and matches them. `clock`
  /// stands in for a missing kernel RX timestamp. Returns datagrams read.
  std::size_t service_io(const Clock& clock);
  /// Handles one received datagram (exposed for tests and other I/O loops).
  void on_datagram(std::span<const std::uint8_t> bytes, std::int64_t rx_ns);
  /// Handles one TX timestamp.
  void on_tx_timestamp(const io::TxTimestamp& ts);
  /// Declares probes sent at least `timeout` before `now_mono_ns` lost (or, if answered but
  /// their TX timestamp never came, emits them timed with the userspace send time).
  void expire(std::int64_t now_mono_ns);
  /// Declares every outstanding probe resolved now, as at the end of the run after the
  /// timeout has passed.
  void expire_all();
  /// Counters and RTTs since the previous call, then starts a new interval.
  IntervalReport roll_interval();
  /// The run so far.
  [[nodiscard]] SessionSummary summary() const;

  // --- either thread ---
  /// True once the sender has stopped for good (stop_at passed) and every probe is resolved.
  [[nodiscard]] bool drained() const;
  /// True when every probe published so far is resolved (answered, lost or refused).
  [[nodiscard]] bool all_resolved() const {
    return resolved_.load(std::memory_order_acquire) == sent_count_.load(std::memory_order_acquire);
  }
  /// True once the sender will send no more.
  [[nodiscard]] bool sending_finished() const { return sender_done_.load(); }
  /// Probes sent so far (sequence numbers 0..n-1 were used).
  [[nodiscard]] std::uint64_t sequences_used() const { return sent_count_.load(); }

 private:
  // How long before its launch time a probe was handed to the kernel, as far as check_launch
  // needs to know.
  enum class Ahead : std::uint8_t {
    None,     // not ahead (<= 0: no launch time, or late)
    Short,    // less than kLaunchConfirmNs
    Confirm,  // at least kLaunchConfirmNs: leaving on time proves launch times honoured
  };
  // Written by the sender before the probe is published; read by the receiver while the probe
  // is outstanding (seq >= resolved_). Its seq is the index's (the ring holds seq mod capacity).
  struct TxSlot {
    std::int64_t tx_user_ns = 0;   // CLOCK_REALTIME read before send (also in the payload)
    std::int64_t tx_mono_ns = 0;   // for the timeout
    std::uint32_t wire_bytes = 0;  // IP total length (size cycling)
    Ahead ahead = Ahead::None;     // handed to the kernel ahead of its launch time
    std::atomic<bool> failed{false};
  };
  // Each ring holds capacity() slots (>= 2 x rate x timeout: 65 536 at 50 000/s and 500 ms),
  // a fixed part of the agent's memory: TxSlot was 48 bytes and RxSlot 64 before issue 14
  // session 10 (docs/bench.md).
  static_assert(sizeof(TxSlot) <= 24, "a TX slot grew");
  enum class State : std::uint8_t { Pending, Replied, Received, Lost, LateReceived };
  // Receiver-private.
  struct RxSlot {
    std::uint64_t seq = ~std::uint64_t{0};
    std::int64_t tx_kernel_ns = 0;
    // Answered: the reply's rx. Lost: the userspace send time, copied from the TX slot (which a
    // newer probe may take) for a late reply (lost_tx_user_ns()). One field for both: a lost
    // probe has no rx, and the late reply that writes it ends the Lost state.
    std::int64_t rx_ns = 0;
    std::int64_t reflector_rx_ns = 0;
    std::int64_t reflector_tx_ns = 0;
    std::uint32_t reflector_seq = 0;
    State state = State::Pending;
    bool reflector_synced = false;
    bool has_reflector = false;
    [[nodiscard]] std::int64_t lost_tx_user_ns() const { return rx_ns; }
    void set_lost_tx_user_ns(std::int64_t ns) { rx_ns = ns; }
  };
  static_assert(sizeof(RxSlot) <= 48, "an RX slot grew");

  RxSlot& rx_slot(std::uint64_t seq);
  // Launch-time pacing: did the probe leave at its launch time? (receiver thread)
  void check_launch(const TxSlot& tx, std::int64_t tx_kernel_ns);
  void announce();
  void emit(std::uint64_t seq, const RxSlot& rx, std::int64_t tx_user_ns, bool late);
  /// The probe is lost: its receiver slot keeps the send time for a late reply, and its
  /// record goes out.
  void declare_lost(std::uint64_t seq, RxSlot& rx, const TxSlot& tx);
  void emit_lost(std::uint64_t seq, std::int64_t tx_user_ns);
  void count_reply(std::uint64_t seq, std::int64_t rtt_ns);
  // False (and counted) when `reply` must not be trusted; `stored` is the send time kept for
  // its sequence, nullopt when it is too old for the ring.
  bool accept(const ParsedReply& reply, std::optional<std::int64_t> stored);
  void track_reflector(std::uint64_t seq, std::uint32_t reflector_seq);
  bool reflector_seen(std::uint64_t r) const;
  void set_reflector_seen(std::uint64_t r, bool v);

  SessionConfig cfg_;
  WireFormat wire_;
  std::unique_ptr<DatagramSocket> socket_;
  RecordSink& sink_;
  std::uint64_t mask_;

  // Sender-owned.
  std::size_t max_datagram_;  // wire_.datagram_size + the cycle's largest extra
  SizeCycle own_cycle_;
  SizeCycle* cycle_ = &own_cycle_;
  Pacer pacer_;
  std::uint64_t per_wake_ = ~std::uint64_t{0};         // slots one send_due() sends at most
  std::uint64_t per_wake_launch_ = ~std::uint64_t{0};  // ... with launch times
  std::int64_t coalesce_ns_ = 0;
  std::int64_t launch_ahead_ns_ = 0;  // asked for (0 = off)
  std::int64_t trial_ahead_ns_ = 0;   // while on trial
  std::int64_t catchup_gap_ns_ = 0;   // launch spacing of late slots: half a period
  std::int64_t last_launch_ns_ = 0;
  [[nodiscard]] std::int64_t send_ahead_ns() const;
  std::uint64_t next_seq_ = 0;
  std::vector<std::uint8_t> tx_buffers_;
  std::vector<TxDatagram> tx_batch_;

  // Shared.
  std::vector<TxSlot> slots_;
  std::atomic<std::uint64_t> sent_count_{0};  // sequences published (sent or failed)
  std::atomic<std::uint64_t> resolved_{0};    // every seq below this is resolved
  std::atomic<bool> sender_done_{false};
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> missed_late_{0};  // missed: late wake-up (the pacer skipped them)
  std::atomic<std::uint64_t> missed_ring_{0};  // missed: no free TX ring slot
  std::atomic<std::int64_t> max_send_lag_{0};  // written by the sender only
  std::atomic<std::uint64_t> send_errors_{0};
  std::atomic<LaunchTime> launch_state_{LaunchTime::Off};  // receiver turns it on/off
  std::atomic<bool> launch_refused_{false};       // enable_launch_time() failed (error below)
  std::error_code launch_error_;                  // written before the threads start
  std::atomic<std::int64_t> launch_early_ns_{0};  // how early the probe that turned it off left

  // Receiver-owned.
  std::uint64_t announced_ = 0;   // sequences below this were passed to sink_.on_sent()
  std::uint32_t wire_bytes_ = 0;  // IP total length of a probe without cycling extra
  std::vector<RxSlot> rx_slots_;
  std::vector<std::uint8_t> rx_buffers_;
  std::vector<RxDatagram> rx_batch_;
  std::vector<io::TxTimestamp> ts_batch_;
  ProbeRecord record_;
  SessionCounters total_;
  SessionCounters interval_;
  SessionCounters sender_seen_;  // sender counters at the last roll
  LogHistogram total_rtt_;
  LogHistogram interval_rtt_;
  std::uint64_t max_rx_seq_ = 0;
  bool any_rx_ = false;
  std::int64_t last_rtt_ = 0;
  bool have_last_rtt_ = false;
  long double jitter_sum_ = 0;
  std::uint64_t jitter_n_ = 0;
  // Reflector sequence tracking (forward/reverse loss split).
  bool refl_any_ = false;
  std::uint64_t refl_last_ = 0;
  std::uint64_t reverse_gaps_ = 0;
  std::vector<std::uint64_t> refl_seen_;  // bitmap over reflector seq mod capacity
  // Rate-cap detection: the newest reflector sequence, its t2 and our sequence of that reply,
  // at the interval's start and now; the accepted rates of the last intervals.
  bool cap_have_first_ = false;
  std::uint64_t cap_first_r_ = 0, cap_last_r_ = 0;
  std::uint64_t cap_first_s_ = 0, cap_last_s_ = 0;  // our sequence of those replies
  std::int64_t cap_first_t2_ = 0, cap_last_t2_ = 0;
  std::array<double, kCapIntervals> cap_rates_{};
  std::array<double, kCapIntervals> cap_sigma_{};  // relative spread random loss would give
  std::size_t cap_n_ = 0;
  std::optional<double> last_cap_pps_;
  std::optional<double> now_cap_pps_;
  std::optional<double> detect_cap();
  // Reply checks.
  std::int64_t first_tx_ns_ = 0;  // userspace send time of the first probe announced
  std::int64_t last_tx_ns_ = 0;   // ... and of the newest one
  bool ssid_echoed_ = false;      // a reply echoed our SSID: the reflector implements RFC 8972
  bool payload_echoed_ = false;   // a reply carried our send time back (ICMP: not truncated)
};

}  // namespace pathsentry::probe
