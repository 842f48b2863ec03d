// Writes the generated seed inputs of the fuzz targets into <dir>/<target>/ (usage:
// fuzz_seedgen fuzz/corpus): frames, STAMP packets, replies and payloads built by the code's
// own encoders and tests/support's packet builder, control buffers as the kernel lays them
// out, JSON lines as the agent writes them. The config seeds are deploy/config's examples and
// hand-written files (fuzz/README.md); scripts/fuzz.sh never rewrites the corpus.

#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>  // struct timespec, which linux/errqueue.h uses without including it
//
#include <linux/errqueue.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "capture/pcap_builder.h"
#include "common/sample_records.h"
#include "pathsentry/common/record_json.h"
#include "pathsentry/probe/ttl/ttl_probe.h"
#include "pathsentry/probe/wire/icmp_payload.h"
#include "pathsentry/probe/wire/probe_wire.h"
#include "pathsentry/probe/wire/stamp.h"

using namespace pathsentry;
using namespace pathsentry::probe;
using test::addr;
using test::Bytes;

namespace {

std::string g_dir;

void write(const std::string& target, const std::string& name, const Bytes& b) {
  const std::string dir = g_dir + "/" + target;
  std::filesystem::create_directories(dir);
  std::FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
  if (f == nullptr || std::fwrite(b.data(), 1, b.size(), f) != b.size()) {
    std::perror(name.c_str());
    std::exit(1);
  }
  std::fclose(f);
}
void write(const std::string& target, const std::string& name, const std::string& s) {
  write(target, name, Bytes(s.begin(), s.end()));
}

Bytes prefixed(std::uint8_t first, const Bytes& rest) {
  Bytes b{first};
  b.insert(b.end(), rest.begin(), rest.end());
  return b;
}

Bytes sll2(const Bytes& ip, std::uint16_t ethertype) {
  Bytes b(20, 0);
  b[0] = static_cast<std::uint8_t>(ethertype >> 8);
  b[1] = static_cast<std::uint8_t>(ethertype);
  b.insert(b.end(), ip.begin(), ip.end());
  return b;
}

Bytes null_link(const Bytes& ip, std::uint32_t family) {
  Bytes b(4);
  std::memcpy(b.data(), &family, 4);
  b.insert(b.end(), ip.begin(), ip.end());
  return b;
}

void frames() {
  const auto a4 = addr("172.16.1.188");
  const auto t4 = addr("192.168.20.161");
  const auto a6 = addr("fd00::188");
  const auto t6 = addr("fd01::161");
  const auto l = addr("10.0.0.1");
  const auto r = addr("10.0.0.2");
  // First byte: link (0 Ethernet, 1 SLL, 2 SLL2, 3 raw, 4 DLT_NULL), 0x08 = an ESP tap.
  const Bytes icmp_req = test::icmp_probe(a4, t4, true, 1, 0x10002, 5, 42);
  const Bytes icmp_rep = test::icmp_probe(t4, a4, false, 1, 0x10002, 5, 42, 200);
  const Bytes icmp6 = test::icmp_probe(a6, t6, true, 1, 0x10002, 5, 42);
  const Bytes st_req = test::stamp_request(a4, t4, 40000, 862, 9, 2);
  const Bytes st_rep = test::stamp_reply(t4, a4, 862, 40000, 3, 9, 2);
  const Bytes st6 = test::stamp_reply(t6, a6, 862, 40000, 3, 9, 2, 300);
  const Bytes esp = test::esp_packet(l, r, 0xC0FFEE, 7, 120, false);
  const Bytes esp_udp = test::esp_packet(r, l, 0xC0FFEE, 8, 120, true);
  const Bytes ike = test::ike_packet(l, r);
  write("decode_frame", "icmp_request_eth", prefixed(0, test::ethernet(icmp_req)));
  write("decode_frame", "icmp_reply_vlan", prefixed(0, test::ethernet(icmp_rep, 20)));
  write("decode_frame", "icmp6_sll", prefixed(1, test::linux_sll(icmp6)));
  write("decode_frame", "stamp_request_sll2", prefixed(2, sll2(st_req, 0x0800)));
  write("decode_frame", "stamp_reply_raw", prefixed(3, st_rep));
  write("decode_frame", "stamp6_null", prefixed(4, null_link(st6, 10)));
  write("decode_frame", "esp_eth", prefixed(8, test::ethernet(esp)));
  write("decode_frame", "esp_udp_eth", prefixed(8, test::ethernet(esp_udp)));
  write("decode_frame", "ike_eth", prefixed(8, test::ethernet(ike)));
}

void stamp_packets() {
  stamp::SenderPacket s;
  s.sequence = 17;
  s.timestamp = stamp::ns_to_ntp(1'700'000'000'000'000'123);
  s.error = {true, false, 10, 3};
  s.ssid = 0x1234;
  Bytes b(stamp::kBasePacketSize);
  stamp::encode(s, b);
  write("stamp", "sender_ntp", b);
  s.error.ptp = true;
  s.timestamp = stamp::ns_to_ptp(1'700'000'000'000'000'123);
  stamp::encode(s, b);
  write("stamp", "sender_ptp", b);
  stamp::ReflectorPacket p;
  p.sequence = 3;
  p.timestamp = stamp::ns_to_ntp(1'700'000'000'004'010'000);
  p.error = {true, false, 10, 3};
  p.ssid = 0x1234;
  p.receive_timestamp = stamp::ns_to_ntp(1'700'000'000'004'000'000);
  p.sender_sequence = 17;
  p.sender_timestamp = s.timestamp;
  p.sender_error = s.error;
  p.sender_ttl = 62;
  stamp::encode(p, b);
  write("stamp", "reflector", b);
}

void replies() {
  // First byte: bit 0 STAMP, bit 1 IPv6, bit 2 raw ICMP socket, bit 3 200-byte probes, bit 4
  // newest below 2^16; then the newest sequence sent (8 bytes, host order); then the datagram.
  const std::uint64_t newest = 9;
  const auto head = [&](std::uint8_t sel) {
    Bytes b{sel};
    b.resize(9);
    std::memcpy(b.data() + 1, &newest, 8);
    return b;
  };
  WireFormat wf;
  wf.echo_id = 0x1234;
  wf.agent_id = 1;
  wf.session_id = 0x00010002;
  wf.datagram_size = datagram_size_for(Proto::Icmp, 0);
  Bytes req(wf.datagram_size);
  build_request(wf, 5, 42, req);
  Bytes rep = req;
  rep[0] = icmp::kEchoReply4;
  // A raw IPv4 socket hands the IP header too.
  Bytes raw = head(4);
  const Bytes ip = test::ip_packet(addr("192.168.20.161"), addr("172.16.1.188"), 1, rep);
  raw.insert(raw.end(), ip.begin(), ip.end());
  write("probe_reply", "icmp4_raw", raw);
  Bytes ping = head(0);
  ping.insert(ping.end(), rep.begin(), rep.end());
  write("probe_reply", "icmp4_ping", ping);
  Bytes v6 = head(2);
  rep[0] = icmp::kEchoReply6;
  v6.insert(v6.end(), rep.begin(), rep.end());
  write("probe_reply", "icmp6", v6);
  Bytes cut = head(4);
  const Bytes short_ip = test::ip_packet(addr("192.168.20.161"), addr("172.16.1.188"), 1,
                                         Bytes(rep.begin(), rep.begin() + 8));
  cut.insert(cut.end(), short_ip.begin(), short_ip.end());
  cut[9 + 20] = icmp::kEchoReply4;
  write("probe_reply", "icmp4_truncated", cut);
  stamp::ReflectorPacket p;
  p.sequence = 3;
  p.error = {true, false, 10, 3};
  p.ssid = 0x0002;
  p.sender_sequence = 5;
  p.sender_timestamp = stamp::ns_to_ntp(42);
  p.receive_timestamp = stamp::ns_to_ntp(1'700'000'000'004'000'000);
  p.timestamp = stamp::ns_to_ntp(1'700'000'000'004'010'000);
  Bytes st(stamp::kBasePacketSize);
  stamp::encode(p, st);
  Bytes s1 = head(1);
  s1.insert(s1.end(), st.begin(), st.end());
  write("probe_reply", "stamp", s1);
  p.error.ptp = true;
  p.sender_error.ptp = true;
  p.timestamp = stamp::ns_to_ptp(1'700'000'000'004'010'000);
  stamp::encode(p, st);
  Bytes s2 = head(3);
  s2.insert(s2.end(), st.begin(), st.end());
  write("probe_reply", "stamp6_ptp", s2);
}

void payloads() {
  Bytes b(icmp::kPayloadSize);
  icmp::encode({1, 0x10002, 5, 42}, b);
  write("payloads", "icmp", b);
  std::array<std::uint8_t, kTtlPayloadSize> t{};
  encode_ttl_payload({1, 0x10002, 5, 42}, t);
  write("payloads", "ttl", Bytes(t.begin(), t.end()));
}

// One control message as the kernel lays it out (CMSG_SPACE each).
void cmsg(Bytes& b, int level, int type, const void* data, std::size_t len) {
  const std::size_t at = b.size();
  b.resize(at + CMSG_SPACE(len));
  cmsghdr h{};
  h.cmsg_len = CMSG_LEN(len);
  h.cmsg_level = level;
  h.cmsg_type = type;
  std::memcpy(b.data() + at, &h, sizeof h);
  std::memcpy(b.data() + at + CMSG_LEN(0), data, len);
}

void controls() {
  // First byte: bit 0 sets MSG_CTRUNC; the rest is the control buffer.
  struct {
    sock_extended_err ee;
    sockaddr_in off;
  } icmp_err{};
  icmp_err.ee.ee_origin = SO_EE_ORIGIN_ICMP;
  icmp_err.ee.ee_type = 11;
  icmp_err.off.sin_family = AF_INET;
  icmp_err.off.sin_addr.s_addr = htonl(0x0A000001);
  const timespec ts{1'700'000'000, 5};
  Bytes ttl{0};
  cmsg(ttl, SOL_IP, IP_RECVERR, &icmp_err, sizeof icmp_err);
  cmsg(ttl, SOL_SOCKET, SCM_TIMESTAMPNS, &ts, sizeof ts);
  write("control", "ttl_error", ttl);
  Bytes tx{0};
  sock_extended_err ee{};
  ee.ee_errno = ENOMSG;
  ee.ee_origin = SO_EE_ORIGIN_TIMESTAMPING;
  ee.ee_data = 7;
  timespec three[3] = {ts, {}, {}};
  cmsg(tx, SOL_SOCKET, SCM_TIMESTAMPING, three, sizeof three);
  cmsg(tx, SOL_IP, IP_RECVERR, &ee, sizeof ee);
  write("control", "tx_timestamp", tx);
  Bytes rx{0};
  const int ttl_v = 61;
  const std::uint8_t tos = 0xB8;
  in_pktinfo pi{};
  pi.ipi_ifindex = 2;
  cmsg(rx, SOL_SOCKET, SCM_TIMESTAMPNS, &ts, sizeof ts);
  cmsg(rx, IPPROTO_IP, IP_TTL, &ttl_v, sizeof ttl_v);
  cmsg(rx, IPPROTO_IP, IP_TOS, &tos, 1);
  cmsg(rx, IPPROTO_IP, IP_PKTINFO, &pi, sizeof pi);
  write("control", "rx_v4", rx);
  Bytes rx6{1};
  in6_pktinfo pi6{};
  cmsg(rx6, IPPROTO_IPV6, IPV6_HOPLIMIT, &ttl_v, sizeof ttl_v);
  cmsg(rx6, IPPROTO_IPV6, IPV6_TCLASS, &ttl_v, sizeof ttl_v);
  cmsg(rx6, IPPROTO_IPV6, IPV6_PKTINFO, &pi6, sizeof pi6);
  write("control", "rx_v6", rx6);
}

// The record model tests' sample, with a tap down so the seed carries every key.
ProbeRecord stamp_record() {
  ProbeRecord r = test::sample_records::stamp_record();
  r.taps_down = {"eth1"};
  return r;
}

void json_lines() {
  std::string probe;
  append_json(stamp_record(), probe);
  ProbeRecord lost;
  lost.target = "fd01::161";
  lost.seq = 0xFFFF'FFFF'FFFF'FFFEull;
  lost.fwd_path = "express-connect";
  lost.rev_path = "none";
  lost.loss = LossDirection::Undetermined;
  std::string lost_line;
  append_json(lost, lost_line);
  PathEvent e = test::sample_records::switchover();
  e.event_id = 99;
  std::string event;
  append_json(e, event);
  PathEvent hc;
  hc.type = EventType::HealthcheckBlocked;
  hc.target = "192.168.20.1";
  hc.event_id = 100;
  std::string hc_line;
  append_json(hc, hc_line);
  Rollup ru;
  ru.target = "192.168.20.161";
  ru.second_ns = 1'700'000'000'000'000'000;
  ru.path = "ipsec";
  ru.sent = 1000;
  ru.received = 999;
  std::string rollup;
  append_json(ru, rollup);
  BatchHeader h;
  h.agent = "dc1";
  h.run = "0123456789abcdef";
  h.batch = 4;
  h.created_ns = 1'700'000'000'000'000'000;
  h.version = "0.1.0";
  std::string header;
  append_json(h, header);
  write("json_line", "probe", probe);
  write("json_line", "lost", lost_line);
  write("json_line", "event", event);
  write("json_line", "healthcheck", hc_line);
  write("json_line", "rollup", rollup);
  write("json_line", "batch", header);
  probe.pop_back();
  lost_line.pop_back();
  write("ingest_fast_diff", "probe", probe);
  write("ingest_fast_diff", "lost", lost_line);
  std::string with_agent;
  append_json(stamp_record(), with_agent, "dc1");
  write("ingest_fast_diff", "probe_agent", with_agent);
  write("ingest", "batch", header + probe + "\n" + lost_line + "\n" + event + rollup);
  write("ingest", "batch_crlf", header.substr(0, header.size() - 1) + "\r\n" + with_agent);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seedgen CORPUS_DIR\n");
    return 2;
  }
  g_dir = argv[1];
  frames();
  stamp_packets();
  replies();
  payloads();
  controls();
  json_lines();
  return 0;
}
