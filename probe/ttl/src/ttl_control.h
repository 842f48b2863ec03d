#pragma once
// The control messages of a TTL probe socket's error queue (ttl_socket.cpp), parsed apart from
// the socket so that tests can hand it truncated and hostile buffers.

#include <sys/socket.h>

#include <optional>

#include "pathsentry/probe/ttl/ttl_probe.h"

namespace pathsentry::probe {

/// The ICMP error in `msg`'s control messages (IP_RECVERR / IPV6_RECVERR from the ICMP or
/// ICMPv6 layer): the offender's address, type and code, and the SCM_TIMESTAMPNS arrival time
/// when present; the quoted bytes are left to the caller. nullopt when there is none (a local
/// error) or it is too short to hold what it claims: every read is checked against cmsg_len.
[[nodiscard]] std::optional<TtlIcmpError> parse_ttl_error_control(const msghdr& msg);

}  // namespace pathsentry::probe
