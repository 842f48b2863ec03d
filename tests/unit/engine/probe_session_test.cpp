#include "pathsentry/probe/engine/probe_session.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <vector>

#include "engine/fake_socket.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using namespace std::chrono_literals;
using pathsentry::test::CollectingSink;
using pathsentry::test::FakeSocket;

namespace {

constexpr std::int64_t kRtt = 50'000;

// A session on a fake socket, driven by a manual clock: one probe per ms at 1000/s.
struct Rig {
  ManualClock clock;
  CollectingSink sink;
  FakeSocket* sock = nullptr;
  WireFormat wf;
  std::unique_ptr<ProbeSession> s;

  explicit Rig(Proto proto, std::int64_t timeout_ns = 100'000'000, double rate_pps = 1000) {
    SessionConfig c;
    c.target = *IpAddress::parse("198.18.0.2");
    c.proto = proto;
    c.rate_pps = rate_pps;
    c.timeout_ns = timeout_ns;
    c.agent_id = 7;
    c.session_id = 0x12340001;
    wf.proto = proto;
    wf.family = AF_INET;
    wf.icmp_raw = true;
    wf.echo_id = 0x4321;
    wf.agent_id = c.agent_id;
    wf.session_id = c.session_id;
    wf.datagram_size = datagram_size_for(proto, 0);
    auto fs = std::make_unique<FakeSocket>(clock);
    sock = fs.get();
    s = std::make_unique<ProbeSession>(c, wf, std::move(fs), sink);
    s->start(clock.monotonic_ns());
  }
  // Sends `n` probes, one per millisecond.
  void send(int n) {
    for (int i = 0; i < n; ++i) {
      s->send_due(clock);
      clock.advance(1ms);
    }
  }
  [[nodiscard]] std::int64_t tx(std::uint64_t seq) const { return sock->sent.at(seq).tx_ns; }
  // Queues the echo reply to probe `seq`, received kRtt after its TX timestamp.
  void reply(std::uint64_t seq) {
    sock->deliver(test::icmp_echo_reply(wf, sock->sent.at(seq).bytes), tx(seq) + kRtt);
  }
  // Queues the reflector's reply number `r` to probe `seq`.
  void stamp_reply(std::uint64_t seq, std::uint32_t r) {
    sock->deliver(
        test::stamp_reply(sock->sent.at(seq).bytes, r, tx(seq) + 20'000, tx(seq) + 30'000),
        tx(seq) + kRtt);
  }
  void io() { s->service_io(clock); }
  std::uint64_t roll_interval_rejected() {
    const auto c = s->roll_interval().counters;
    return c.rejected_send_time + c.rejected_ssid + c.rejected_implausible_time;
  }
  void expire_after_timeout() {
    clock.advance(std::chrono::nanoseconds(s->config().timeout_ns));
    s->expire(clock.monotonic_ns());
  }
};

}  // namespace

// Replies in order are matched to their probes, timed from the kernel TX timestamp to the
// kernel RX timestamp, and emitted once each.
TEST_CASE("session matches in-order replies with kernel timestamps", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(10);
  REQUIRE(rig.sock->sent.size() == 10);
  for (std::uint64_t i = 0; i < 10; ++i) rig.reply(i);
  rig.io();
  REQUIRE(rig.sink.records.size() == 10);
  for (std::uint64_t i = 0; i < 10; ++i) {
    const auto r = rig.sink.for_seq(i);
    REQUIRE(r.size() == 1);
    REQUIRE(r[0].tx_kernel_ts);
    REQUIRE(r[0].tx_ns == rig.tx(i));
    REQUIRE(r[0].rtt_ns == kRtt);
    REQUIRE_FALSE(r[0].late);
    REQUIRE(r[0].target == "198.18.0.2");
    REQUIRE(r[0].session_id == 0x12340001u);
  }
  rig.expire_after_timeout();
  const auto sum = rig.s->summary();
  REQUIRE(sum.counters.sent == 10);
  REQUIRE(sum.counters.received == 10);
  REQUIRE(sum.counters.lost == 0);
  REQUIRE(sum.rtt.min == kRtt);
  REQUIRE(sum.rtt.max == kRtt);
  REQUIRE(rig.s->sequences_used() == 10);
}

// A dropped reply is declared lost only once the timeout has passed, with a null rx.
TEST_CASE("session declares drops lost at the timeout", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(5);
  for (std::uint64_t i : {0, 2, 4}) rig.reply(i);
  rig.io();
  rig.s->expire(rig.clock.monotonic_ns());  // 1..5 ms after sending: not yet lost
  REQUIRE(rig.s->summary().counters.lost == 0);
  REQUIRE(rig.sink.records.size() == 3);
  rig.expire_after_timeout();
  const auto sum = rig.s->summary();
  REQUIRE(sum.counters.lost == 2);
  REQUIRE(sum.counters.received == 3);
  for (std::uint64_t i : {1, 3}) {
    const auto r = rig.sink.for_seq(i);
    REQUIRE(r.size() == 1);
    REQUIRE_FALSE(r[0].rx_ns.has_value());
    REQUIRE(r[0].tx_ns == rig.tx(i));
  }
}

// A reply that comes twice is counted as a duplicate and produces one record only.
TEST_CASE("session counts duplicate replies", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(2);
  rig.reply(0);
  rig.reply(0);
  rig.reply(1);
  rig.io();
  rig.expire_after_timeout();
  rig.reply(1);  // a duplicate after the probe was resolved
  rig.io();
  REQUIRE(rig.sink.records.size() == 2);
  REQUIRE(rig.s->summary().counters.duplicates == 2);
  REQUIRE(rig.s->summary().counters.received == 2);
}

// Replies older than one already received count as reordered; all are still received.
TEST_CASE("session counts reordered replies", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(4);
  for (std::uint64_t i : {2, 0, 3, 1}) rig.reply(i);
  rig.io();
  const auto sum = rig.s->summary();
  REQUIRE(sum.counters.received == 4);
  REQUIRE(sum.counters.reordered == 2);
  REQUIRE(rig.sink.records.size() == 4);
}

// A reply after the timeout yields a second record flagged late with the real RTT; the run's
// lost total no longer counts it, the interval that declared it lost still does.
TEST_CASE("session handles late replies", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(3);
  rig.reply(0);
  rig.reply(2);
  rig.io();
  rig.expire_after_timeout();
  REQUIRE(rig.s->summary().counters.lost == 1);
  rig.reply(1);  // RX timestamp: tx + kRtt, as if it had been held up in a queue somewhere
  rig.io();
  const auto r = rig.sink.for_seq(1);
  REQUIRE(r.size() == 2);
  REQUIRE_FALSE(r[0].rx_ns.has_value());
  REQUIRE(r[1].late);
  REQUIRE(r[1].rx_ns.has_value());
  REQUIRE(r[1].rtt_ns == kRtt);
  const auto sum = rig.s->summary();
  REQUIRE(sum.counters.late == 1);
  REQUIRE(sum.counters.lost == 0);
  REQUIRE(sum.counters.received == 2);
  REQUIRE(rig.s->roll_interval().counters.lost == 1);
}

// A reply the kernel received after the timeout is late even when the receiver thread reads it
// before it ran the expiry (a stalled thread): the probe was lost at its timeout. Before, it
// came out as an on-time answer with an RTT above the timeout (CI under load: 4 s at a 1 s
// timeout, and a second record for a probe the attributor had declared lost).
TEST_CASE("session makes a reply received past the timeout late, whenever it is read",
          "[unit][session]") {
  Rig rig(Proto::Icmp);  // 100 ms timeout
  rig.send(3);
  rig.reply(0);
  rig.sock->deliver(test::icmp_echo_reply(rig.wf, rig.sock->sent.at(1).bytes),
                    rig.tx(1) + 100'000'000 + 1'000'000);  // 101 ms after it left
  rig.sock->deliver(test::icmp_echo_reply(rig.wf, rig.sock->sent.at(2).bytes),
                    rig.tx(2) + 100'000'000 - 1'000'000);  // 99 ms: in time
  rig.io();                                                // no expire() ran in between
  const auto r1 = rig.sink.for_seq(1);
  REQUIRE(r1.size() == 2);
  CHECK_FALSE(r1[0].rx_ns.has_value());
  CHECK_FALSE(r1[0].late);
  CHECK(r1[1].late);
  // timed from the user-space send time here (the fake's TX timestamps come after the replies)
  CHECK(r1[1].rtt_ns >= 101'000'000);
  CHECK(r1[1].rtt_ns < 101'100'000);
  const auto r2 = rig.sink.for_seq(2);
  REQUIRE(r2.size() == 1);
  CHECK_FALSE(r2[0].late);
  CHECK(r2[0].rtt_ns == 99'000'000);
  rig.expire_after_timeout();  // the expiry passes over it: no third record
  CHECK(rig.sink.for_seq(1).size() == 2);
  const auto sum = rig.s->summary();
  CHECK(sum.counters.late == 1);
  CHECK(sum.counters.lost == 0);
  CHECK(sum.rtt.max == 99'000'000);  // a late reply is not in the RTT statistics
  CHECK(rig.s->roll_interval().counters.lost == 1);
}

// Without a TX timestamp, a late reply is timed from the userspace send time the receiver kept
// when it declared the probe lost (the receiver slot holds it where the reply's rx then goes).
TEST_CASE("session times a late reply without a TX timestamp from the kept send time",
          "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.sock->tx_timestamps = false;
  rig.send(2);
  rig.expire_after_timeout();
  REQUIRE(rig.s->summary().counters.lost == 2);
  const std::int64_t user_tx = rig.tx(1) - rig.sock->tx_delay_ns;  // the userspace read
  const std::int64_t rx = rig.clock.system_ns();
  rig.sock->deliver(test::icmp_echo_reply(rig.wf, rig.sock->sent.at(1).bytes), rx);
  rig.io();
  const auto r = rig.sink.for_seq(1);
  REQUIRE(r.size() == 2);
  CHECK(r[0].tx_ns == user_tx);
  REQUIRE(r[1].late);
  CHECK_FALSE(r[1].tx_kernel_ts);
  CHECK(r[1].tx_ns == user_tx);
  CHECK(r[1].rx_ns == rx);
  CHECK(r[1].rtt_ns == rx - user_tx);
}

// A reply whose probe's slot has since been reused is still recognised as late, timed from
// the send time the packet carried.
TEST_CASE("session recognises very late replies from the packet", "[unit][session]") {
  Rig rig(Proto::Icmp, 10'000'000);  // 10 ms timeout: ring of 1024
  rig.send(1);
  const auto old_request = rig.sock->sent.at(0).bytes;
  for (int i = 0; i < 3; ++i) {  // 3000 more probes, expiring as we go
    rig.send(1000);
    rig.s->expire(rig.clock.monotonic_ns());
  }
  rig.sock->deliver(test::icmp_echo_reply(rig.wf, old_request), rig.clock.system_ns());
  rig.io();
  const auto r = rig.sink.for_seq(0);
  REQUIRE(r.size() == 2);
  REQUIRE(r[1].late);
  REQUIRE_FALSE(r[1].tx_kernel_ts);
  REQUIRE(r[1].rtt_ns == *r[1].rx_ns - r[1].tx_ns);
  REQUIRE(r[1].rtt_ns > 3'000'000'000 - 1);
}

// A reply that arrives before its TX timestamp waits for it; if the timestamp never comes,
// the probe is timed with the userspace send time at the timeout and counted as such.
TEST_CASE("session waits for the TX timestamp", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.sock->tx_timestamps = false;
  rig.send(2);
  rig.reply(0);
  rig.reply(1);
  rig.io();
  REQUIRE(rig.sink.records.empty());
  rig.s->on_tx_timestamp({0, rig.tx(0)});
  REQUIRE(rig.sink.records.size() == 1);
  REQUIRE(rig.sink.records[0].tx_kernel_ts);
  REQUIRE(rig.sink.records[0].rtt_ns == kRtt);
  rig.expire_after_timeout();
  REQUIRE(rig.sink.records.size() == 2);
  const auto r = rig.sink.for_seq(1);
  REQUIRE_FALSE(r[0].tx_kernel_ts);
  REQUIRE(r[0].rx_ns.has_value());
  REQUIRE(r[0].tx_ns == rig.tx(1) - rig.sock->tx_delay_ns);  // the userspace read
  REQUIRE(rig.s->summary().counters.no_tx_timestamp == 1);
  REQUIRE(rig.s->summary().counters.lost == 0);
}

// Datagrams that are not replies to this session are counted and ignored.
TEST_CASE("session ignores foreign datagrams", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(1);
  rig.sock->deliver({1, 2, 3}, rig.clock.system_ns());
  auto other = test::icmp_echo_reply(rig.wf, rig.sock->sent.at(0).bytes);
  other[20 + 8 + 15] ^= 0xFF;  // another session id (payload offset 12..15)
  rig.sock->deliver(other, rig.clock.system_ns());
  auto request = rig.sock->sent.at(0).bytes;  // our own request looped back
  std::vector<std::uint8_t> looped(20, 0);
  looped[0] = 0x45;
  looped.insert(looped.end(), request.begin(), request.end());
  rig.sock->deliver(looped, rig.clock.system_ns());
  rig.io();
  REQUIRE(rig.sink.records.empty());
  REQUIRE(rig.s->summary().counters.unmatched == 3);
}

// Probes the kernel refused are send errors, not losses, and their sequence is not reused.
TEST_CASE("session counts send errors apart from loss", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.sock->fail_sends = 2;
  rig.send(5);
  REQUIRE(rig.sock->sent.size() == 3);
  REQUIRE(rig.s->sequences_used() == 5);
  rig.expire_after_timeout();
  const auto sum = rig.s->summary();
  REQUIRE(sum.counters.send_errors == 2);
  REQUIRE(sum.counters.sent == 3);
  REQUIRE(sum.counters.lost == 3);
  REQUIRE(rig.sink.records.size() == 3);
}

// When the receiver has not resolved old probes, the sender does not overwrite their slots:
// the pacing slots are counted as missed instead, and sending resumes once they resolve.
TEST_CASE("session counts missed slots when its ring is full", "[unit][session]") {
  Rig rig(Proto::Icmp);  // 100 ms timeout at 1000/s: 1024 slots
  REQUIRE(rig.s->capacity() == 1024);
  rig.send(1100);
  REQUIRE(rig.s->sequences_used() == 1024);
  REQUIRE(rig.s->summary().counters.missed_slots == 76);
  // ... and the cause is the ring, not the sender's wake-ups.
  REQUIRE(rig.s->summary().counters.missed_ring_full == 76);
  REQUIRE(rig.s->summary().counters.missed_late_wakeup == 0);
  rig.s->expire(rig.clock.monotonic_ns());
  rig.send(10);
  REQUIRE(rig.s->sequences_used() == 1034);
}

// Issue 14: every unsent slot is counted with its cause, in the run's summary and in the
// interval that saw it: a sender that woke up past max_lag (late_wakeup), no free TX slot
// (ring_full), the kernel's refusal (send_errors). missed_slots is the sum of the first two.
TEST_CASE("session counts each missed slot with its cause", "[unit][session]") {
  Rig rig(Proto::Icmp);  // 1000/s, default max_lag 50 ms
  rig.send(3);
  rig.s->roll_interval();
  // An 80 ms stall: slots due more than 50 ms ago are skipped; the 51 within the lag go out.
  rig.clock.advance(80ms);
  rig.s->send_due(rig.clock);
  auto iv = rig.s->roll_interval().counters;
  CHECK(iv.missed_late_wakeup == 30);
  CHECK(iv.missed_ring_full == 0);
  CHECK(iv.missed_slots == 30);
  CHECK(iv.sent == 51);
  rig.sock->fail_sends = 1;
  rig.clock.advance(1ms);
  rig.s->send_due(rig.clock);
  iv = rig.s->roll_interval().counters;
  CHECK(iv.send_errors == 1);
  CHECK(iv.missed_slots == 0);
  const auto sum = rig.s->summary().counters;
  CHECK(sum.missed_late_wakeup == 30);
  CHECK(sum.missed_ring_full == 0);
  CHECK(sum.missed_slots == 30);
  CHECK(sum.send_errors == 1);
  // Every slot of the run is accounted for once.
  CHECK(sum.sent + sum.missed_slots + sum.send_errors == rig.s->sequences_used() + 30);
}

// Issue 14: a slot sent late is still a measurement (kernel TX timestamps time it exactly);
// only a slot never sent loses information. So a wake-up late by a few or tens of
// milliseconds (a VM's vCPU preempted by its host, no SCHED_FIFO) sends the slots due
// meanwhile instead of skipping them; only a stall past max_lag (default 50 ms) skips.
TEST_CASE("session sends slots late instead of missing them", "[unit][session]") {
  Rig rig(Proto::Stamp, 100'000'000, 2000);  // 0.5 ms period
  rig.s->send_due(rig.clock);
  rig.clock.advance(3ms);  // 6 slots due, the oldest 2.5 ms late (the old 200 us default missed it)
  REQUIRE(rig.s->send_due(rig.clock) == 6);
  REQUIRE(rig.s->summary().counters.missed_slots == 0);
  REQUIRE(rig.s->summary().max_send_lag_ns == 2'500'000);
  rig.clock.advance(30ms);  // a 30 ms stall (the old default missed 59 slots of it)
  REQUIRE(rig.s->send_due(rig.clock) == 60);
  REQUIRE(rig.s->summary().counters.missed_slots == 0);
  rig.clock.advance(80ms);  // a long stall: only the last 50 ms of slots go out
  REQUIRE(rig.s->send_due(rig.clock) == 101);
  REQUIRE(rig.s->summary().counters.missed_late_wakeup == 59);
  // The oldest slot sent after the stall was 50 ms late.
  REQUIRE(rig.s->summary().max_send_lag_ns == 50'000'000);
}

// With the engine's send coalescing the lag allowed grows by the coalescing interval, and a
// backlog after a stall goes out at no more than twice the rate: each wake-up sends at most
// 2 x (slots per interval) + 1, never the whole backlog at once.
TEST_CASE("session catches up after a stall without a burst", "[unit][session]") {
  Rig rig(Proto::Icmp, 1'000'000'000, 1000);
  rig.s->start(rig.clock.monotonic_ns(), 5'000'000);  // 5 ms coalescing: 5 slots a wake-up
  std::uint64_t due_total = 1;                        // slot 0 at t = 0
  REQUIRE(rig.s->send_due(rig.clock) == 1);
  for (int i = 0; i < 4; ++i) {
    rig.clock.advance(5ms);
    due_total += 5;
    REQUIRE(rig.s->send_due(rig.clock) == 5);
  }
  rig.clock.advance(40ms);  // a stall: 40 slots due at once
  due_total += 40;
  std::vector<std::size_t> per_wake;
  per_wake.push_back(rig.s->send_due(rig.clock));
  for (int i = 0; i < 10; ++i) {
    rig.clock.advance(5ms);
    due_total += 5;
    per_wake.push_back(rig.s->send_due(rig.clock));
  }
  for (const std::size_t n : per_wake) REQUIRE(n <= 11);
  REQUIRE(per_wake.front() == 11);
  REQUIRE(per_wake.back() == 5);  // caught up
  REQUIRE(rig.s->summary().counters.missed_slots == 0);
  REQUIRE(rig.s->sequences_used() == due_total);
  REQUIRE(rig.s->summary().max_send_lag_ns <= 55'000'000);
}

// A stateful reflector's sequence splits loss: a request that never reached it leaves no gap
// (forward loss); replies it sent that never came back leave gaps (reverse loss). Reflector
// sequence and timestamps land in the records.
TEST_CASE("session splits stamp loss into forward and reverse", "[unit][session]") {
  Rig rig(Proto::Stamp);
  rig.send(10);
  // Probe 3 is lost on the way out; the reflector numbers 0,1,2,-,3,4,5,6,7,8.
  // Its replies 5 and 6 (probes 6 and 7) are lost on the way back.
  const std::pair<std::uint64_t, std::uint32_t> delivered[] = {{0, 0}, {1, 1}, {2, 2}, {4, 3},
                                                               {5, 4}, {8, 7}, {9, 8}};
  for (auto [seq, r] : delivered) rig.stamp_reply(seq, r);
  rig.io();
  rig.expire_after_timeout();
  const auto sum = rig.s->summary();
  REQUIRE(sum.counters.received == 7);
  REQUIRE(sum.counters.lost == 3);
  REQUIRE(sum.lost_reverse == 2u);
  REQUIRE(sum.lost_forward == 1u);
  REQUIRE(sum.lost_undetermined == 0u);  // the reflector's counter splits every loss
  const auto r = rig.sink.for_seq(4);
  REQUIRE(r.size() == 1);
  REQUIRE(r[0].reflector_seq == 3u);
  REQUIRE(r[0].reflector_rx_ns == rig.tx(4) + 20'000);
  REQUIRE(r[0].reflector_tx_ns == rig.tx(4) + 30'000);
  REQUIRE(r[0].rtt_ns == kRtt);
}

// A reflector gap that a reordered reply fills again is not reverse loss.
TEST_CASE("session reordered stamp reply fills its reflector gap", "[unit][session]") {
  Rig rig(Proto::Stamp);
  rig.send(3);
  rig.stamp_reply(0, 0);
  rig.stamp_reply(2, 2);
  rig.stamp_reply(1, 1);
  rig.io();
  rig.expire_after_timeout();
  const auto sum = rig.s->summary();
  REQUIRE(sum.counters.lost == 0);
  REQUIRE(sum.counters.reordered == 1);
  REQUIRE(sum.lost_reverse == 0u);
  REQUIRE(sum.lost_forward == 0u);
}

// When the first replies are lost on the way back, the first reflector sequence seen (the
// reflector counts each session from 0) says how many.
TEST_CASE("session counts reverse loss before the first stamp reply", "[unit][session]") {
  Rig rig(Proto::Stamp);
  rig.send(4);
  rig.stamp_reply(2, 2);
  rig.stamp_reply(3, 3);
  rig.io();
  rig.expire_after_timeout();
  const auto sum = rig.s->summary();
  REQUIRE(sum.counters.lost == 2);
  REQUIRE(sum.lost_reverse == 2u);
  REQUIRE(sum.lost_forward == 0u);
}

// Each interval report covers only what happened since the previous one.
TEST_CASE("session interval counters reset on roll", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(5);
  for (std::uint64_t i = 0; i < 5; ++i) rig.reply(i);
  rig.io();
  auto a = rig.s->roll_interval();
  REQUIRE(a.counters.sent == 5);
  REQUIRE(a.counters.received == 5);
  REQUIRE(a.rtt.count == 5);
  REQUIRE(a.rtt.p50 == kRtt);
  rig.send(2);
  auto b = rig.s->roll_interval();
  REQUIRE(b.counters.sent == 2);
  REQUIRE(b.counters.received == 0);
  REQUIRE(b.rtt.count == 0);
}

// ICMP sessions cannot split loss by direction; the summary says so with no value.
TEST_CASE("session icmp has no direction split", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(1);
  rig.expire_after_timeout();
  REQUIRE(rig.s->summary().counters.lost == 1);
  REQUIRE_FALSE(rig.s->summary().lost_forward.has_value());
  REQUIRE(rig.s->summary().lost_undetermined == 1u);  // as its record says (no taps)
}

// A session is drained once its sender has stopped and every probe it sent is resolved.
TEST_CASE("session drains after stop and timeout", "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(2);
  rig.s->stop_at(rig.clock.monotonic_ns());
  REQUIRE(rig.s->sending_finished());
  REQUIRE_FALSE(rig.s->drained());  // two probes outstanding
  rig.s->expire(rig.clock.monotonic_ns());
  REQUIRE_FALSE(rig.s->drained());
  rig.expire_after_timeout();
  REQUIRE(rig.s->drained());
}

// Every probe that left is announced to the sink once, in order, before its record, with the
// request's IP length; probes the kernel refused are not announced.
TEST_CASE("session announces sent probes before their records", "[unit][session]") {
  Rig rig(Proto::Stamp);
  rig.sock->fail_sends = 1;
  rig.send(4);            // sequence 0 refused, 1..3 sent
  rig.stamp_reply(2, 0);  // sock->sent[2] is sequence 3
  rig.io();
  REQUIRE(rig.sink.sent.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE(rig.sink.sent[i].seq == i + 1);
    REQUIRE(rig.sink.sent[i].session_id == 0x12340001u);
    REQUIRE(rig.sink.sent[i].wire_bytes == 20 + 8 + 44);
  }
  REQUIRE(rig.sink.sent[2].tx_ns == rig.tx(2) - rig.sock->tx_delay_ns);
  rig.expire_after_timeout();
  REQUIRE(rig.sink.records.size() == 3);
  for (std::size_t n : rig.sink.announced_at_record) REQUIRE(n == 3);
}

// Issue 13: a reply is checked against what was sent. One whose echoed send time (the ICMP
// payload's, STAMP t1) differs from the one stored for its sequence is refused and counted;
// the genuine reply that follows is still taken.
TEST_CASE("session rejects replies whose echoed send time differs", "[unit][session]") {
  SECTION("icmp") {
    Rig rig(Proto::Icmp);
    rig.send(2);
    auto forged = test::icmp_echo_reply(rig.wf, rig.sock->sent.at(0).bytes);
    forged[20 + 8 + 31] ^= 0x01;  // tx time: payload offset 24..31
    rig.sock->deliver(forged, rig.tx(0) + kRtt);
    rig.io();
    REQUIRE(rig.sink.records.empty());
    REQUIRE(rig.s->summary().counters.rejected_send_time == 1);
    REQUIRE(rig.s->summary().counters.unmatched == 0);
    rig.reply(0);
    rig.io();
    REQUIRE(rig.s->summary().counters.received == 1);
    REQUIRE(rig.s->summary().counters.duplicates == 0);
  }
  SECTION("stamp, in time and late") {
    Rig rig(Proto::Stamp);
    rig.send(2);
    auto forged = test::stamp_reply(rig.sock->sent.at(0).bytes, 0, rig.tx(0), rig.tx(0));
    forged[35] ^= 0x01;  // sender timestamp: offset 28..35
    rig.sock->deliver(forged, rig.tx(0) + kRtt);
    rig.io();
    REQUIRE(rig.sink.records.empty());
    rig.expire_after_timeout();
    REQUIRE(rig.s->summary().counters.lost == 2);
    // An off-path sender answering for a dead path after the timeout: not taken back as late.
    auto late = test::stamp_reply(rig.sock->sent.at(1).bytes, 0, rig.tx(1), rig.tx(1));
    late[28] ^= 0x40;
    rig.sock->deliver(late, rig.clock.system_ns());
    rig.io();
    const auto sum = rig.s->summary();
    REQUIRE(sum.counters.rejected_send_time == 2);
    REQUIRE(sum.counters.lost == 2);
    REQUIRE(sum.counters.late == 0);
    REQUIRE(rig.roll_interval_rejected() == 2);
  }
}

// Issue 13: a STAMP reply with another session's SSID is refused and counted apart from
// `unmatched`; SSID 0 (a plain RFC 8762 reflector) is taken until the reflector has echoed ours.
TEST_CASE("session rejects stamp replies with a foreign ssid", "[unit][session]") {
  Rig rig(Proto::Stamp);
  rig.send(3);
  auto foreign = test::stamp_reply(rig.sock->sent.at(0).bytes, 0, rig.tx(0), rig.tx(0));
  foreign[14] ^= 0x80;  // SSID: offset 14..15
  rig.sock->deliver(foreign, rig.tx(0) + kRtt);
  rig.io();
  REQUIRE(rig.s->summary().counters.rejected_ssid == 1);
  REQUIRE(rig.s->summary().counters.unmatched == 0);
  rig.stamp_reply(0, 0);  // echoes our SSID
  rig.io();
  REQUIRE(rig.s->summary().counters.received == 1);
  auto zero = test::stamp_reply(rig.sock->sent.at(1).bytes, 1, rig.tx(1), rig.tx(1));
  zero[14] = zero[15] = 0;
  rig.sock->deliver(zero, rig.tx(1) + kRtt);
  rig.io();
  REQUIRE(rig.s->summary().counters.rejected_ssid == 2);
  REQUIRE(rig.s->summary().counters.received == 1);
}

// A plain RFC 8762 reflector never echoes the SSID: its zero-SSID replies are taken.
TEST_CASE("session takes zero-ssid replies from a reflector that never echoes one",
          "[unit][session]") {
  Rig rig(Proto::Stamp);
  rig.send(2);
  for (std::uint64_t i = 0; i < 2; ++i) {
    auto r = test::stamp_reply(rig.sock->sent.at(i).bytes, static_cast<std::uint32_t>(i), rig.tx(i),
                               rig.tx(i));
    r[14] = r[15] = 0;
    rig.sock->deliver(r, rig.tx(i) + kRtt);
  }
  rig.io();
  REQUIRE(rig.s->summary().counters.received == 2);
  REQUIRE(rig.s->summary().counters.rejected_ssid == 0);
}

// Issue 13: a reply too old for the ring is timed from the send time it carries, so that time
// must be one this session could have sent: a forged INT64_MIN would make rx_ns - tx_ns
// overflow (undefined behaviour: the UBSan build aborts here without the check).
TEST_CASE("session rejects implausible send times on very late replies", "[unit][session]") {
  Rig rig(Proto::Icmp, 10'000'000);  // 10 ms timeout: ring of 1024
  rig.send(1);
  const auto old_request = rig.sock->sent.at(0).bytes;
  for (int i = 0; i < 3; ++i) {
    rig.send(1000);
    rig.s->expire(rig.clock.monotonic_ns());
  }
  const auto records_before = rig.sink.records.size();
  for (const std::uint8_t fill : {std::uint8_t{0x80}, std::uint8_t{0x7F}}) {
    auto forged = test::icmp_echo_reply(rig.wf, old_request);
    forged[20 + 8 + 24] = fill;  // tx time far before the session began / far after its end
    for (int b = 1; b < 8; ++b) forged[20 + 8 + 24 + b] = fill == 0x80 ? 0 : 0xFF;
    rig.sock->deliver(forged, rig.clock.system_ns());
  }
  rig.io();
  REQUIRE(rig.sink.records.size() == records_before);
  REQUIRE(rig.s->summary().counters.rejected_implausible_time == 2);
  REQUIRE(rig.s->summary().counters.late == 0);
  // The genuine one is still taken (as "session recognises very late replies" shows).
  rig.sock->deliver(test::icmp_echo_reply(rig.wf, old_request), rig.clock.system_ns());
  rig.io();
  REQUIRE(rig.s->summary().counters.late == 1);
}

namespace {

// Runs a STAMP session at `rate` probes/s for `seconds`, one probe per send_due(), against a
// stateful reflector that takes a request when `take(tx_ns)` says so; rolls an interval every
// second and returns the reports.
template <class Take>
std::vector<IntervalReport> run_stamp(Rig& rig, int seconds, int rate, Take take) {
  std::vector<IntervalReport> reports;
  std::uint32_t reflector_seq = 0;
  std::size_t handled = 0;
  const auto period = std::chrono::nanoseconds(1'000'000'000 / rate);
  for (int step = 1; step <= seconds * rate; ++step) {
    rig.s->send_due(rig.clock);
    for (; handled < rig.sock->sent.size(); ++handled) {
      const std::int64_t tx = rig.tx(handled);
      if (!take(tx)) continue;
      rig.sock->deliver(test::stamp_reply(rig.sock->sent.at(handled).bytes, reflector_seq++,
                                          tx + 20'000, tx + 30'000),
                        tx + kRtt);
    }
    rig.clock.advance(period);
    rig.io();
    rig.s->expire(rig.clock.monotonic_ns());
    if (step % rate == 0) reports.push_back(rig.s->roll_interval());
  }
  return reports;
}

}  // namespace

// Issue 14 goal 7: a session at twice a reflector's per-source limit loses half its probes
// forward. The reflector's sequence then advances at exactly the limit, steadier than random
// loss could: the session says so (forward_cap_pps), so the user is told to look at the
// reflector's rate limit rather than at the path.
TEST_CASE("session tells forward loss capped by a rate limit from random loss", "[unit][session]") {
  SECTION("token bucket at half the rate: flagged, at its rate") {
    Rig rig(Proto::Stamp, 100'000'000, 4000);
    double tokens = 100;  // burst
    std::int64_t last = 0;
    const auto reports = run_stamp(rig, 8, 4000, [&](std::int64_t tx) {  // 2000/s bucket
      if (last != 0)
        tokens = std::min(100.0, tokens + 2000.0 * static_cast<double>(tx - last) / 1e9);
      last = tx;
      if (tokens < 1) return false;
      tokens -= 1;
      return true;
    });
    REQUIRE(reports.size() == 8);
    for (std::size_t i = 0; i + 1 < ProbeSession::kCapIntervals; ++i) {
      REQUIRE_FALSE(reports[i].forward_cap_pps.has_value());
    }
    REQUIRE(reports.back().forward_cap_pps.has_value());
    REQUIRE(*reports.back().forward_cap_pps == Approx(2000).epsilon(0.01));
    const auto sum = rig.s->summary();
    REQUIRE(sum.forward_cap_now_pps.has_value());
    REQUIRE(sum.forward_cap_pps.has_value());
    REQUIRE(sum.counters.missed_slots == 0);
    REQUIRE(*sum.lost_forward > 7 * 2000);
  }
  SECTION("random forward loss of the same size: not flagged") {
    Rig rig(Proto::Stamp, 100'000'000, 4000);
    std::uint64_t x = 0x9E3779B97F4A7C15ULL;
    const auto reports = run_stamp(rig, 8, 4000, [&](std::int64_t) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return (x & 1) != 0;
    });
    for (const auto& r : reports) REQUIRE_FALSE(r.forward_cap_pps.has_value());
    REQUIRE_FALSE(rig.s->summary().forward_cap_pps.has_value());
    REQUIRE(*rig.s->summary().lost_forward > 7 * 1500);
  }
  SECTION("no loss: not flagged") {
    Rig rig(Proto::Stamp, 100'000'000, 4000);
    const auto reports = run_stamp(rig, 6, 4000, [](std::int64_t) { return true; });
    REQUIRE(rig.s->summary().counters.missed_slots == 0);
    for (const auto& r : reports) REQUIRE_FALSE(r.forward_cap_pps.has_value());
  }
}

// Issue 13: an ICMP reply truncated before our payload carries no send time and is matched by
// its 16-bit header sequence (a middlebox that truncates). Once the target has echoed our
// payload whole, such a reply is forged (identifier + 16-bit sequence are all it needs).
TEST_CASE("session refuses truncated icmp replies once the payload came back whole",
          "[unit][session]") {
  Rig rig(Proto::Icmp);
  rig.send(3);
  auto truncated = [&](std::uint64_t seq) {
    auto r = test::icmp_echo_reply(rig.wf, rig.sock->sent.at(seq).bytes);
    r.resize(20 + 8);  // IP + ICMP header: the payload cut off
    return r;
  };
  rig.sock->deliver(truncated(0), rig.tx(0) + kRtt);  // a truncating path: taken
  rig.io();
  REQUIRE(rig.s->summary().counters.received == 1);
  rig.reply(1);  // whole
  rig.io();
  rig.sock->deliver(truncated(2), rig.tx(2) + kRtt);
  rig.io();
  const auto sum = rig.s->summary();
  REQUIRE(sum.counters.received == 2);
  REQUIRE(sum.counters.rejected_send_time == 1);
}

// Issue 14 goal 1, launch-time pacing: once the qdisc is seen to hold probes until their launch
// time (a probe handed over ahead left at its slot, not at the send call), the sender hands
// several slots over per wake-up, each with its own deadline as launch time: the probes still
// leave one period apart (the 1 ms time resolution at 1000/s) with a wake-up per ~6 ms.
TEST_CASE("session hands slots over ahead with launch times once the qdisc holds them",
          "[unit][session]") {
  Rig rig(Proto::Icmp, 1'000'000'000, 1000);
  const std::int64_t t0 = rig.clock.monotonic_ns();
  rig.s->start(t0, 1'000'000, 8'000'000);  // 1 ms coalescing, 8 ms ahead
  REQUIRE(rig.s->launch_time() == ProbeSession::LaunchTime::Trial);
  // On trial: one coalescing interval ahead only (slots 0 and 1).
  REQUIRE(rig.s->send_due(rig.clock) == 2);
  REQUIRE(rig.sock->sent.at(1).launch_mono_ns == t0 + 1'000'000);
  rig.io();  // slot 1's TX timestamp is its launch time: the qdisc held it
  REQUIRE(rig.s->launch_time() == ProbeSession::LaunchTime::On);
  REQUIRE(rig.s->launch_time_note().empty());
  // A simulated second of wake-ups, each when the session asks for one.
  int wakes = 0;
  while (rig.s->sequences_used() < 1000) {
    const std::int64_t wake = rig.s->next_wake_ns();
    if (wake > rig.clock.monotonic_ns()) {
      rig.clock.advance(std::chrono::nanoseconds(wake - rig.clock.monotonic_ns()));
    }
    rig.s->send_due(rig.clock);
    ++wakes;
  }
  CHECK(wakes <= 1000 / 6 + 2);  // 8 ms ahead, woken 2 ms before the next slot: 6 a wake-up
  // Every probe left at its own slot: 1 ms apart, as without launch times but for the wake-ups.
  for (std::uint64_t k = 0; k < 1000; ++k) {
    REQUIRE(rig.sock->sent.at(k).launch_mono_ns == t0 + static_cast<std::int64_t>(k) * 1'000'000);
    if (k > 0) REQUIRE(rig.tx(k) - rig.tx(k - 1) == 1'000'000);
  }
  // The send time in the packet and in the record is the launch time.
  rig.reply(900);
  rig.io();
  const auto recs = rig.sink.for_seq(900);
  REQUIRE(recs.size() == 1);
  CHECK(recs[0].tx_ns == rig.tx(900));
  CHECK(rig.roll_interval_rejected() == 0);
  // After a 20 ms stall the late slots go out at once in the kernel's hands but spread at
  // twice the rate (half a period apart), never as one burst.
  rig.clock.advance(20ms);
  const std::uint64_t before = rig.sock->sent.size();
  rig.s->send_due(rig.clock);
  const std::int64_t now = rig.clock.monotonic_ns();
  for (std::uint64_t k = before + 1; k < rig.sock->sent.size(); ++k) {
    const std::int64_t gap =
        rig.sock->sent.at(k).launch_mono_ns - rig.sock->sent.at(k - 1).launch_mono_ns;
    REQUIRE(gap >= 500'000);
    if (rig.sock->sent.at(k).launch_mono_ns <= now + 1'000'000) REQUIRE(gap == 500'000);
  }
  CHECK(rig.s->summary().counters.missed_slots == 0);
}

// Where the qdisc sends at once (noqueue, pfifo, fq_codel: most), a probe handed over ahead
// leaves early: the TX timestamp shows it, launch-time pacing turns off for the run and the
// session is paced as before, one wake-up per slot (or coalescing interval) sending what is due.
// The probes of the trial left at most one coalescing interval early, still one period apart.
TEST_CASE("session turns launch times off when a probe leaves before its launch time",
          "[unit][session]") {
  Rig rig(Proto::Stamp, 1'000'000'000, 1000);
  rig.sock->qdisc_holds = false;
  const std::int64_t t0 = rig.clock.monotonic_ns();
  rig.s->start(t0, 1'000'000, 8'000'000);
  REQUIRE(rig.s->send_due(rig.clock) == 2);  // slot 1 handed over 1 ms ahead, left at once
  rig.io();
  REQUIRE(rig.s->launch_time() == ProbeSession::LaunchTime::Off);
  CHECK_THAT(rig.s->launch_time_note(), Catch::Contains("999 us before its launch time"));
  // Back to plain pacing: woken at each deadline, sends what is due then, no launch time.
  REQUIRE(rig.s->next_wake_ns() == t0 + 2'000'000);
  rig.clock.advance(2ms);
  REQUIRE(rig.s->send_due(rig.clock) == 1);
  REQUIRE(rig.sock->sent.at(2).launch_mono_ns == 0);
  // The reply to the probe that left early is matched and timed from its kernel timestamp.
  rig.stamp_reply(1, 1);
  rig.io();
  CHECK(rig.roll_interval_rejected() == 0);
  REQUIRE(rig.sink.for_seq(1).size() == 1);
  CHECK(rig.sink.for_seq(1)[0].tx_ns == rig.tx(1));
  // Fallen back, a backlog after a stall goes out as without launch times: at most
  // 2 x (slots per coalescing interval) + 1 a wake-up, not the lookahead's 17.
  rig.clock.advance(20ms);
  CHECK(rig.s->send_due(rig.clock) == 3);
}

// A socket that refuses SO_TXTIME (an old kernel) leaves the session paced as before, and says
// why.
TEST_CASE("session without SO_TXTIME paces as before and says why", "[unit][session]") {
  Rig rig(Proto::Icmp, 1'000'000'000, 1000);
  rig.sock->launch_time = false;
  const std::int64_t t0 = rig.clock.monotonic_ns();
  rig.s->start(t0, 1'000'000, 8'000'000);
  REQUIRE(rig.s->launch_time() == ProbeSession::LaunchTime::Off);
  CHECK_THAT(rig.s->launch_time_note(), Catch::Contains("SO_TXTIME refused"));
  REQUIRE(rig.s->send_due(rig.clock) == 1);
  REQUIRE(rig.s->next_wake_ns() == t0 + 1'000'000);
  // And without the option nothing changes either.
  rig.s->start(rig.clock.monotonic_ns(), 1'000'000, 0);
  REQUIRE(rig.s->launch_time() == ProbeSession::LaunchTime::Off);
  CHECK(rig.s->launch_time_note().empty());
}
