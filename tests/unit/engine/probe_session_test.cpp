#include "pathsentry/probe/engine/probe_session.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>

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

  explicit Rig(Proto proto, std::int64_t timeout_ns = 100'000'000) {
    SessionConfig c;
    c.target = *IpAddress::parse("198.18.0.2");
    c.proto = proto;
    c.rate_pps = 1000;
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
  rig.s->expire(rig.clock.monotonic_ns());
  rig.send(10);
  REQUIRE(rig.s->sequences_used() == 1034);
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
