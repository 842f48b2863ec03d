#pragma once

#include <memory>
#include <string>
#include <tl/expected.hpp>

#include "pathsentry/probe/engine/probe_session.h"
#include "pathsentry/probe/engine/record_sink.h"
#include "pathsentry/probe/io/probe_sockets.h"

namespace pathsentry::probe {

/// A probe session with its real socket open.
struct OpenedSession {
  std::unique_ptr<ProbeSession> session;
  std::string note;  ///< what the ICMP socket choice wants said (e.g. a fallback), or ""
};

/// Opens the real socket of session `s` (ICMP: `icmp_mode`, echo id from the session id; UDP for
/// STAMP) and builds its ProbeSession, whose records go to `sink`. The agent and the privileged
/// tests both open sessions through here. Opens a socket: call in the network namespace and
/// with the privileges the socket needs. The error says which step and option failed.
[[nodiscard]] tl::expected<OpenedSession, io::OpenError> open_probe_session(
    const SessionConfig& s, io::IcmpSocketMode icmp_mode, RecordSink& sink);

}  // namespace pathsentry::probe
