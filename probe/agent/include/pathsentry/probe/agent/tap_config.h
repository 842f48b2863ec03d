#pragma once

#include <string>
#include <vector>

#include "pathsentry/probe/attribution/detector.h"
#include "pathsentry/probe/attribution/healthcheck_watch.h"
#include "pathsentry/probe/capture/tap.h"
#include "pathsentry/probe/ttl/ttl_config.h"

namespace pathsentry::probe {

/// The agent's taps and detector settings ([[tap]] and [detector] in the TOML file, --tap,
/// --confirm-probes, --outage-losses on the command line; docs/probe.md has the reference). The
/// agent's option table (agent_config.cpp) reads them.
struct TapSettings {
  std::vector<TapSpec> taps;  ///< empty = no attribution (paths stay "")
  /// For each tap, where it came from ("tap[0]" in the file or "--tap"), for startup errors.
  std::vector<std::string> tap_keys;
  DetectorConfig detector;
  /// The mirror-free TTL method ([ttl], --ttl-*; ttl_config.h). Its results go through the
  /// same detector and, with taps, are cross-checked against them.
  TtlSettings ttl;
  /// The cloud's health check of each clear tap's line ([healthcheck], --healthcheck*;
  /// docs/healthcheck.md): on by default.
  HealthCheckSettings healthcheck;
};

/// Parses one --tap value: `IFACE:PATH:clear` or
/// `IFACE:PATH:esp:LOCAL:REMOTE[:TRANSFORM[:LO_US:HI_US[:REV_LO_US:REV_HI_US]]]` (IPv6
/// endpoints in brackets).
/// Throws ConfigError naming the flag and the value.
[[nodiscard]] TapSpec parse_tap_flag(const std::string& flag, const std::string& text);

/// Checks the taps together (distinct interfaces, a path label per tap, windows ordered).
void check_taps(const std::string& file, const TapSettings& settings);

}  // namespace pathsentry::probe
