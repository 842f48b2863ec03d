#pragma once
// Readers of single agent settings, shared by the agent's option table (agent_config.cpp) and
// the compact forms of --tap and --ttl-hop. Each throws ConfigError naming the value's file,
// key (or flag) and text.

#include <cstdint>
#include <string>
#include <vector>

#include "pathsentry/common/ip.h"
#include "pathsentry/common/options.h"
#include "pathsentry/probe/capture/tap.h"
#include "pathsentry/probe/ttl/ttl_config.h"

namespace pathsentry::probe {

/// An IPv4 or IPv6 address.
[[nodiscard]] IpAddress address_of(const options::Value& v);
/// A path label other than "none" and "unknown".
[[nodiscard]] std::string path_label_of(const options::Value& v);

/// A tap's capture interface (1 to 15 characters).
[[nodiscard]] std::string tap_interface_of(const options::Value& v);
/// "clear" or "esp".
[[nodiscard]] Encap encap_of(const options::Value& v);
/// An EspTransform preset name.
[[nodiscard]] EspTransform transform_of(const options::Value& v);
/// One end of a correlation window, microseconds (±10 s), returned in nanoseconds.
[[nodiscard]] std::int64_t window_ns_of(const options::Value& v);
/// The checks across an ESP tap's keys (endpoints of one family and distinct, windows ordered);
/// errors name `file` and `key`.
void check_esp(const std::string& file, const std::string& key, const TapSpec& t);

/// --ttl-hop's ADDR=PATH (an IPv6 address may be bracketed).
[[nodiscard]] TtlHop ttl_hop_of_flag(const options::Value& v);
/// A `ttl.hops` entry: the key path's last part is the address, the value the path label.
[[nodiscard]] TtlHop ttl_hop_of_entry(const options::Value& v);

/// Checks the settings as a whole: hops without a TTL or a TTL without hops, duplicate hop
/// addresses, and (when taps are configured) hop paths that no tap carries, since the
/// cross-check compares labels. `tap_paths` may be empty (no taps).
void check_ttl(const TtlSettings& s, const std::vector<std::string>& tap_paths);

}  // namespace pathsentry::probe
