// Replies the agent's sockets receive (probe/wire parse_reply): ICMP echo replies on raw IPv4
// sockets (with their IP header), ping sockets and ICMPv6, and STAMP reflector packets. The
// first byte picks the session's wire format, the next 8 the newest sequence sent.

#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "pathsentry/probe/wire/probe_wire.h"

using namespace pathsentry;
using namespace pathsentry::probe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 9) return 0;
  WireFormat wf;
  const std::uint8_t sel = data[0];
  wf.proto = (sel & 1) != 0 ? Proto::Stamp : Proto::Icmp;
  wf.family = (sel & 2) != 0 ? AF_INET6 : AF_INET;
  wf.icmp_raw = (sel & 4) != 0;
  wf.echo_id = 0x1234;
  wf.agent_id = 1;
  wf.session_id = 0x00010002;
  wf.datagram_size = (sel & 8) != 0 ? 200 : datagram_size_for(wf.proto, 0);
  std::uint64_t newest = 0;
  std::memcpy(&newest, data + 1, 8);
  if ((sel & 0x10) != 0) newest &= 0xFFFF;  // a young session, often
  const std::span<const std::uint8_t> in(data + 9, size - 9);
  if (const auto r = parse_reply(wf, in, newest)) {
    if (r->seq > newest) __builtin_trap();  // a reply never names a sequence not yet sent
  }
  return 0;
}
