#include "pathsentry/probe/wire/probe_wire.h"

#include <array>
#include <catch2/catch.hpp>
#include <vector>

#include "engine/fake_socket.h"
#include "pathsentry/probe/wire/icmp_payload.h"
#include "pathsentry/probe/wire/stamp.h"

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {
WireFormat icmp4() {
  WireFormat wf;
  wf.proto = Proto::Icmp;
  wf.family = AF_INET;
  wf.icmp_raw = true;
  wf.echo_id = 0xBEEF;
  wf.agent_id = 9;
  wf.session_id = 0x00050003;
  wf.datagram_size = datagram_size_for(Proto::Icmp, 100);
  return wf;
}
}  // namespace

// An ICMPv4 echo request carries type 8, our identifier, the low 16 bits of the sequence, a
// valid checksum, the full identity in the payload and zero padding up to the size.
TEST_CASE("wire icmpv4 request layout", "[unit][wire]") {
  const WireFormat wf = icmp4();
  REQUIRE(wf.datagram_size == 100);
  std::vector<std::uint8_t> b(100, 0xEE);
  REQUIRE(build_request(wf, 0x123456789ULL, 1'700'000'000'000'000'123, b) == 100);
  REQUIRE(b[0] == 8);
  REQUIRE(b[1] == 0);
  REQUIRE(b[4] == 0xBE);
  REQUIRE(b[5] == 0xEF);
  REQUIRE(b[6] == 0x67);
  REQUIRE(b[7] == 0x89);
  REQUIRE(internet_checksum(b) == 0);  // a valid checksum sums to zero
  const auto p = icmp::decode(std::span(b).subspan(8)).value();
  REQUIRE(p.agent_id == 9);
  REQUIRE(p.session_id == 0x00050003u);
  REQUIRE(p.seq == 0x123456789ULL);
  REQUIRE(p.tx_ns == 1'700'000'000'000'000'123);
  for (std::size_t i = 40; i < 100; ++i) REQUIRE(b[i] == 0);
}

// A raw IPv4 echo reply (with IP header) parses back to the probe; other identifiers,
// sessions, agents and our own request do not.
TEST_CASE("wire icmpv4 reply matching", "[unit][wire]") {
  const WireFormat wf = icmp4();
  std::vector<std::uint8_t> req(wf.datagram_size);
  build_request(wf, 41, 5, req);
  const auto reply = test::icmp_echo_reply(wf, req);
  const auto r = parse_reply(wf, reply, 41);
  REQUIRE(r.has_value());
  REQUIRE(r->seq == 41);
  REQUIRE(r->sender_tx_ns == 5);
  REQUIRE_FALSE(r->reflector_seq.has_value());
  REQUIRE_FALSE(parse_reply(wf, reply, 40).has_value());  // "newer than anything sent"

  WireFormat other = wf;
  other.echo_id = 1;
  REQUIRE_FALSE(parse_reply(other, reply, 41).has_value());
  other = wf;
  other.session_id = 4;
  REQUIRE_FALSE(parse_reply(other, reply, 41).has_value());
  other = wf;
  other.agent_id = 10;
  REQUIRE_FALSE(parse_reply(other, reply, 41).has_value());
  auto looped = reply;
  looped[20] = 8;  // echo request
  REQUIRE_FALSE(parse_reply(wf, looped, 41).has_value());
  REQUIRE_FALSE(parse_reply(wf, std::span(reply).subspan(0, 10), 41).has_value());
}

// A reply truncated to the ICMP header falls back to the 16-bit header sequence, unwrapped
// against the newest sequence sent.
TEST_CASE("wire truncated icmp reply uses the 16-bit sequence", "[unit][wire]") {
  const WireFormat wf = icmp4();
  std::vector<std::uint8_t> req(wf.datagram_size);
  const std::uint64_t seq = 3 * 65536 + 17;
  build_request(wf, seq, 5, req);
  auto reply = test::icmp_echo_reply(wf, req);
  reply.resize(20 + 8);
  const auto r = parse_reply(wf, reply, seq + 100);
  REQUIRE(r.has_value());
  REQUIRE(r->seq == seq);
  REQUIRE(r->sender_tx_ns == 0);
}

// ICMPv6 and ping-socket requests leave the checksum to the kernel; v6 uses types 128/129 and
// ping sockets get replies without an IP header.
TEST_CASE("wire icmpv6 and ping sockets", "[unit][wire]") {
  WireFormat wf = icmp4();
  wf.family = AF_INET6;
  std::vector<std::uint8_t> req(wf.datagram_size);
  build_request(wf, 7, 5, req);
  REQUIRE(req[0] == 128);
  REQUIRE(req[2] == 0);
  REQUIRE(req[3] == 0);
  const auto reply = test::icmp_echo_reply(wf, req);
  REQUIRE(reply[0] == 129);
  REQUIRE(parse_reply(wf, reply, 7)->seq == 7);

  WireFormat ping = icmp4();
  ping.icmp_raw = false;
  build_request(ping, 8, 5, req);
  REQUIRE(req[2] == 0);  // checksum left to the kernel
  auto reply4 = test::icmp_echo_reply(ping, req);
  reply4[4] = reply4[5] = 0x77;  // the kernel's identifier, not ours
  REQUIRE(parse_reply(ping, reply4, 8)->seq == 8);
}

// A STAMP request is an RFC 8762 Session-Sender packet: low 32 bits of the sequence, NTP send
// time, our error estimate, SSID = low 16 bits of the session id, zero padding.
TEST_CASE("wire stamp request layout", "[unit][wire]") {
  WireFormat wf;
  wf.proto = Proto::Stamp;
  wf.session_id = 0xABCD1234;
  wf.datagram_size = datagram_size_for(Proto::Stamp, 0);
  wf.stamp_error = {true, false, 2, 5};
  REQUIRE(wf.datagram_size == 44);
  REQUIRE(min_ip_payload(Proto::Stamp) == 52);
  REQUIRE(datagram_size_for(Proto::Stamp, 200) == 192);
  std::vector<std::uint8_t> b(44);
  const std::int64_t tx = 1'750'000'000'123'456'789;
  REQUIRE(build_request(wf, (std::uint64_t{5} << 32) | 77, tx, b) == 44);
  const auto p = stamp::decode_sender(b).value();
  REQUIRE(p.sequence == 77);
  REQUIRE(p.ssid == 0x1234);
  REQUIRE(p.error == wf.stamp_error);
  REQUIRE(stamp::ntp_to_ns(p.timestamp) == tx);
}

// A reflector reply maps back across the 2^32 wrap of the STAMP sequence and carries t2, t3
// and the reflector's own sequence; another SSID is rejected, SSID 0 (RFC 8762) accepted.
TEST_CASE("wire stamp reply unwraps the 32-bit sequence", "[unit][wire]") {
  WireFormat wf;
  wf.proto = Proto::Stamp;
  wf.session_id = 0xABCD1234;
  wf.datagram_size = 44;
  std::vector<std::uint8_t> req(44);
  const std::uint64_t seq = 0xFFFFFFFEULL;
  build_request(wf, seq, 1'750'000'000'000'000'000, req);
  auto reply = test::stamp_reply(req, 99, 1'750'000'000'000'010'000, 1'750'000'000'000'020'000);
  const auto r = parse_reply(wf, reply, (std::uint64_t{1} << 32) + 5);
  REQUIRE(r.has_value());
  REQUIRE(r->seq == seq);
  REQUIRE(r->reflector_seq == 99u);
  REQUIRE(r->reflector_rx_ns == 1'750'000'000'000'010'000);
  REQUIRE(r->reflector_tx_ns == 1'750'000'000'000'020'000);
  REQUIRE(r->sender_tx_ns == 1'750'000'000'000'000'000);
  reply[14] = 0x55;  // another SSID
  REQUIRE_FALSE(parse_reply(wf, reply, seq).has_value());
  reply[14] = reply[15] = 0;
  REQUIRE(parse_reply(wf, reply, seq).has_value());
  REQUIRE_FALSE(parse_reply(wf, std::span(reply).subspan(0, 43), seq).has_value());
}

// Issue 13: the agent's random SSID (WireFormat::ssid) goes into requests instead of the
// session id's low bits; a reply with another one says why it was refused, and the echoed t1
// comes back exactly as sent.
TEST_CASE("wire stamp uses the session's own ssid and says why a reply is refused",
          "[unit][wire]") {
  WireFormat wf;
  wf.proto = Proto::Stamp;
  wf.session_id = 0xABCD0001;
  wf.ssid = 0x7E57;
  wf.datagram_size = 44;
  std::vector<std::uint8_t> req(44);
  const std::int64_t tx = 1'750'000'000'123'456'789;
  build_request(wf, 3, tx, req);
  REQUIRE(stamp::decode_sender(req)->ssid == 0x7E57);
  auto reply = test::stamp_reply(req, 0, tx + 10'000, tx + 20'000);
  ReplyReject why = ReplyReject::NotOurs;
  const auto r = parse_reply(wf, reply, 3, &why);
  REQUIRE(r.has_value());
  REQUIRE(r->ssid == 0x7E57);
  REQUIRE(r->has_sender_tx);
  REQUIRE(r->sender_timestamp == stamp::ns_to_ntp(tx));
  reply[15] = 0x01;  // the session index's SSID: foreign now
  REQUIRE_FALSE(parse_reply(wf, reply, 3, &why).has_value());
  REQUIRE(why == ReplyReject::ForeignSsid);
  why = ReplyReject::ForeignSsid;
  REQUIRE_FALSE(parse_reply(wf, std::span(reply).subspan(0, 43), 3, &why).has_value());
  REQUIRE(why == ReplyReject::NotOurs);
}

// A reflector whose clock is PTP-disciplined stamps t2 and t3 in the PTPv2 format (its error
// estimate's Z bit, RFC 8762 §4.2.1) while echoing our NTP send time: each is read in its own
// format. Read as NTP, the PTP times would be ~70 years off.
TEST_CASE("wire stamp reply with PTP timestamps", "[unit][wire]") {
  namespace st = stamp;
  WireFormat wf;
  wf.proto = Proto::Stamp;
  wf.session_id = 0x00070002;
  wf.datagram_size = 44;
  std::vector<std::uint8_t> req(44);
  const std::int64_t t1 = 1'750'000'000'000'000'000;
  build_request(wf, 41, t1, req);
  const auto sender = st::decode_sender(req).value();
  st::ReflectorPacket p;
  p.sequence = 12;
  p.error = {true, true, 0, 1};  // S and Z: synchronized, PTP
  p.ssid = 0x0002;
  p.receive_timestamp = st::ns_to_ptp(t1 + 10'000);
  p.timestamp = st::ns_to_ptp(t1 + 20'000);
  p.sender_sequence = sender.sequence;
  p.sender_timestamp = sender.timestamp;
  p.sender_error = sender.error;
  std::vector<std::uint8_t> reply(44);
  st::encode(p, reply);
  const auto r = parse_reply(wf, reply, 41);
  REQUIRE(r.has_value());
  CHECK(r->seq == 41);
  CHECK(r->sender_tx_ns == t1);
  CHECK(r->reflector_rx_ns == t1 + 10'000);
  CHECK(r->reflector_tx_ns == t1 + 20'000);
  CHECK(r->reflector_synced);
}

// Every SSID but ours (and 0, RFC 8762's "not used") is a foreign session's reply, whichever
// of its bits differ: rejected at the wire before any sequence is matched.
TEST_CASE("wire stamp reply with a foreign SSID", "[unit][wire]") {
  WireFormat wf;
  wf.proto = Proto::Stamp;
  wf.session_id = 0x00070002;
  wf.datagram_size = 44;
  std::vector<std::uint8_t> req(44);
  build_request(wf, 5, 1'750'000'000'000'000'000, req);
  const auto reply =
      test::stamp_reply(req, 1, 1'750'000'000'000'010'000, 1'750'000'000'000'020'000);
  REQUIRE(parse_reply(wf, reply, 5).has_value());
  for (const std::uint16_t foreign : {0x0003, 0x0102, 0x8002, 0xFFFF, 0x0007}) {
    INFO("ssid " << foreign);
    auto b = reply;
    b[14] = static_cast<std::uint8_t>(foreign >> 8);
    b[15] = static_cast<std::uint8_t>(foreign);
    CHECK_FALSE(parse_reply(wf, b, 5).has_value());
  }
}
