#pragma once

#include <string>
#include <string_view>
#include <tl/expected.hpp>

#include "pathsentry/db/store.h"

namespace pathsentry::collector {

/// Parses an ingest body (NDJSON, docs/collector.md "Ingest"): line 1 a "batch" line, then
/// "probe", "rollup" and "event" lines. Untrusted input: never throws. The error names the
/// line: "line 3: field 'seq' is not an unsigned integer", "line 1: the first line must be
/// the batch header", "line 7: agent 'dc2' differs from the batch header's 'dc1'", "line 4:
/// an event without event_id". One trailing newline is fine; an empty line elsewhere is not.
[[nodiscard]] tl::expected<db::IngestBatch, std::string> parse_ingest_body(std::string_view body);

/// Compares a presented secret with a configured one in time that depends only on the
/// presented one's length (not on where they differ, nor on the secret).
[[nodiscard]] bool constant_time_equal(std::string_view presented, std::string_view secret);

}  // namespace pathsentry::collector
