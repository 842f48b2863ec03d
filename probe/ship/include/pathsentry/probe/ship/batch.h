#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "pathsentry/common/record.h"
#include "pathsentry/common/rollup.h"

namespace pathsentry::probe {

/// One ingest body (= one spool file): the "batch" line, then the rollups, the events and the
/// raw probe records, one JSON line each (record_json.h; no "agent" key: the header names it).
/// Rollups and events come first so a file stripped of its probe lines keeps its order.
[[nodiscard]] std::string encode_batch(const BatchHeader& header, std::span<const Rollup> rollups,
                                       std::span<const PathEvent> events,
                                       std::span<const ProbeRecord> records);

/// The body without its probe lines (what the spool keeps of a batch at its bound); `dropped`
/// gets the number of probe lines removed.
[[nodiscard]] std::string strip_probe_lines(const std::string& body, std::uint64_t& dropped);

/// A 16-hex-digit run id from getrandom(2).
[[nodiscard]] std::string new_run_id();

}  // namespace pathsentry::probe
