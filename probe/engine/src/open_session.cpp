#include "pathsentry/probe/engine/open_session.h"

#include "pathsentry/probe/wire/probe_wire.h"

namespace pathsentry::probe {

tl::expected<OpenedSession, io::OpenError> open_probe_session(const SessionConfig& s,
                                                              io::IcmpSocketMode icmp_mode,
                                                              RecordSink& sink) {
  io::ProbeSocketOptions o;
  o.target = s.target;
  o.port = s.stamp_port;
  o.source = s.source;
  o.interface = s.interface;
  o.dscp = s.dscp;
  const auto echo_id = static_cast<std::uint16_t>((s.session_id >> 16) ^ s.session_id);
  auto opened =
      s.proto == Proto::Icmp ? io::open_icmp_socket(o, icmp_mode, echo_id) : io::open_udp_socket(o);
  if (!opened) return tl::unexpected(opened.error());
  WireFormat wf;
  wf.proto = s.proto;
  wf.family = s.target.family;
  wf.icmp_raw = opened->icmp_raw;
  wf.echo_id = opened->echo_id;
  wf.agent_id = s.agent_id;
  wf.session_id = s.session_id;
  wf.ssid = s.stamp_ssid;
  wf.datagram_size = datagram_size_for(s.proto, s.size);
  wf.stamp_error = local_error_estimate();
  return OpenedSession{std::make_unique<ProbeSession>(s, wf, std::move(opened->socket), sink),
                       std::move(opened->note)};
}

}  // namespace pathsentry::probe
